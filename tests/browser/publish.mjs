// The browser publisher: Chromium's fake camera and microphone published from /publish/NAME
// with WebCodecs, while another window watches /watch/NAME with each player.
//   node publish.mjs --url URL --stream cam [--seconds 2.5]   (how long each player is watched;
//   the latency is from the prft the server stamps as each chunk arrives)

import { args, fail, launch, playerState, quantile, result, until, watchErrors } from './lib.mjs';

const { url, stream = 'cam', seconds = '2.5' } = args();
const browser = await launch(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
try {
  // Each page in a window of its own: a background tab would count as hidden.
  const publisher = await (await browser.newContext()).newPage();
  const publishErrors = watchErrors(publisher);
  await publisher.goto(`${url}/publish/${stream}?autostart=1`);
  const started = await until(
    publisher,
    () => {
      const s = window.wspublish?.stats();
      return s && (s.state === 'failed' || s.framesSent >= 30) && s;
    },
    15000,
    'the publisher to send 30 frames',
  );
  if (started.state !== 'publishing') {
    const banner = await publisher.evaluate(() => document.getElementById('error').textContent);
    fail(`the publisher did not start: ${banner}`);
  }
  const seen = { publisher: started };
  for (const player of ['webcodecs', 'mse']) {
    const page = await (await browser.newContext()).newPage();
    const errors = watchErrors(page);
    await page.goto(`${url}/watch/${stream}?player=${player}`);
    await until(page, () => window.wslive?.stats().joinMs != null, 10000, `${player}: the first frame`);
    const before = await page.evaluate(playerState);
    const skip = await page.evaluate(() => window.wslive.latencies().length);
    await page.waitForTimeout(Number(seconds) * 1000);
    const after = await page.evaluate(playerState);
    const latencies = (await page.evaluate(() => window.wslive.latencies())).slice(skip);
    latencies.sort((a, b) => a - b);
    if (after.mode !== player) fail(`${player}: runs ${after.mode}`);
    if (after.time - before.time < 1.5) fail(`${player}: advanced ${after.time - before.time} s in ${seconds} s`);
    if (after.banner) fail(`${player}: ${after.banner}`);
    if (errors.length) fail(`${player}: ${errors.join('; ')}`);
    seen[player] = {
      advanced: after.time - before.time,
      latencyMs: after.stats.latencyMs,
      frames: latencies.length,
      p50: quantile(latencies, 0.5),
      p95: quantile(latencies, 0.95),
      joinMs: after.stats.joinMs,
      codecs: await page.evaluate(() => window.wslive.player.info?.codecs),
    };
    const viewers = await publisher.evaluate(() => window.wspublish.stats().viewers);
    if (!(viewers >= 1)) fail(`the publisher page shows ${viewers} viewers`);
    await page.close();
  }
  const last = await publisher.evaluate(() => window.wspublish.stats());
  if (publishErrors.length) fail(`publisher: ${publishErrors.join('; ')}`);
  if (last.state !== 'publishing') fail(`the publisher stopped: ${JSON.stringify(last)}`);
  seen.publisherEnd = last;
  result(seen);
} finally {
  await browser.close();
}
