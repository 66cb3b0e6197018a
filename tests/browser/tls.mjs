// Why TLS matters to the player: Chromium reaches the server by a name (not localhost), so
// only https makes the page a secure context. Over http `?player=auto` must pick MSE and say
// why; over https, with the server's self-signed certificate trusted by its SPKI hash, it must
// pick WebCodecs, and both must play.
//   node tls.mjs --http http://wsls.test:PORT --https https://wsls.test:PORT --spki HASH

import { args, fail, launch, playerState, result, until, watchErrors } from './lib.mjs';

const { http, https, spki, stream = 'live' } = args();
if (!http || !https || !spki) fail('usage: --http URL --https URL --spki HASH');

const browser = await launch([
  '--host-resolver-rules=MAP wsls.test 127.0.0.1',
  `--ignore-certificate-errors-spki-list=${spki}`,
]);
try {
  const seen = {};
  for (const [name, base, expect] of [
    ['http', http, 'mse'],
    ['https', https, 'webcodecs'],
  ]) {
    const page = await browser.newPage();
    const errors = watchErrors(page);
    await page.goto(`${base}/watch/${stream}?player=auto`);
    const secure = await page.evaluate(() => window.isSecureContext);
    await until(page, () => window.wslive?.stats().joinMs != null, 10000, `the first frame over ${name}`);
    const before = await page.evaluate(playerState);
    await page.waitForTimeout(2000);
    const after = await page.evaluate(playerState);
    const note = await page.evaluate(() => document.getElementById('note').textContent);
    if (after.mode !== expect) fail(`${name}: auto runs ${after.mode}, not ${expect} (${note})`);
    if (expect === 'mse' && !/secure/.test(note)) fail(`${name}: the page does not say why: "${note}"`);
    if (after.time - before.time < 1.5) fail(`${name}: advanced ${after.time - before.time} s in 2 s`);
    if (after.banner) fail(`${name}: error shown: ${after.banner}`);
    if (errors.length) fail(`${name}: ${errors.join('; ')}`);
    seen[name] = { secure, mode: after.mode, note, advanced: after.time - before.time };
    await page.close();
  }
  result(seen);
} finally {
  await browser.close();
}
