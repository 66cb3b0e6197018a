// `?player=auto` falls back to MSE where WebCodecs cannot play the stream: in a browser without
// VideoDecoder (deleted by an init script, as on a page that is not a secure context), and in
// one whose decoder refuses the stream's codec; and says why in the page.
//   node fallback.mjs --url http://127.0.0.1:PORT --stream live

import { args, fail, launch, playerState, result, until, watchErrors } from './lib.mjs';

const { url, stream = 'live' } = args();

const cases = {
  'no VideoDecoder': () => {
    delete globalThis.VideoDecoder;
  },
  'codec refused': () => {
    VideoDecoder.isConfigSupported = async (config) => ({ supported: false, config });
  },
};

const browser = await launch();
try {
  const seen = {};
  for (const [name, script] of Object.entries(cases)) {
    const page = await browser.newPage();
    const errors = watchErrors(page);
    await page.addInitScript(script);
    await page.goto(`${url}/watch/${stream}?player=auto`);
    await until(page, () => window.wslive?.stats().joinMs !== null, 5000, `the first frame (${name})`);
    const before = await page.evaluate(playerState);
    await page.waitForTimeout(2000);
    const after = await page.evaluate(playerState);
    const note = await page.evaluate(() => document.getElementById('note').textContent);
    if (after.mode !== 'mse') fail(`${name}: auto runs ${after.mode}`);
    if (!/MSE/.test(note) || !/WebCodecs/.test(note)) fail(`${name}: the page says "${note}"`);
    if (after.time - before.time < 1.5) fail(`${name}: MSE advanced ${after.time - before.time} s in 2 s`);
    if (after.banner) fail(`${name}: error shown: ${after.banner}`);
    if (errors.length) fail(`${name}: ${errors.join('; ')}`);
    seen[name] = { mode: after.mode, note };
    await page.close();
  }
  result(seen);
} finally {
  await browser.close();
}
