// /watch/{name} in Chromium: plays within 5 s, time advances at least 3 s over 4 s, no MSE
// error, a latency is measured; a hidden tab lets go of the stream and comes back live.
//   node watch.mjs --url http://127.0.0.1:PORT --stream live

import { args, fail, launch, playerState, result, until, watchErrors } from './lib.mjs';

const { url, stream = 'live' } = args();
const browser = await launch();
try {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  const opened = Date.now();
  await page.goto(`${url}/watch/${stream}`);
  await until(page, () => window.wslive?.stats().joinMs !== null, 5000, 'the first frame');
  const firstFrameMs = Date.now() - opened;

  const before = await page.evaluate(playerState);
  await page.waitForTimeout(4000);
  const after = await page.evaluate(playerState);
  const advanced = after.time - before.time;
  if (advanced < 3) fail(`currentTime advanced ${advanced.toFixed(2)} s over 4 s`);
  if (after.mediaError) fail(`media error: ${after.mediaError}`);
  if (after.banner) fail(`error shown in the page: ${after.banner}`);
  const latency = await until(page, () => window.wslive.stats().latencyMs, 3000, 'a latency');
  if (!(latency > 0 && latency < 2000)) fail(`implausible latency ${latency} ms`);

  // Hidden: the player lets go of the socket. Visible again: it starts over at the live edge.
  await page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await page.waitForTimeout(2000);
  const hidden = await page.evaluate(playerState);
  if (!/hidden/i.test(hidden.status)) fail(`hidden tab still says "${hidden.status}"`);
  await page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { value: 'visible', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  const resumed = await until(
    page,
    (t) => {
      const v = document.querySelector('video');
      return v.currentTime > t + 2.5 && window.wslive.stats().bufferMs < 1000 && v.currentTime;
    },
    8000,
    'playback at the live edge after the tab came back',
    hidden.time,
  );
  if (errors.length) fail(errors.join('; '));
  const stats = await page.evaluate(() => window.wslive.stats());
  result({ firstFrameMs, advanced, latencyMs: latency, resumedAt: resumed, stats });
} finally {
  await browser.close();
}
