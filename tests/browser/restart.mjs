// The source dies under a playing page: the page gets the fresh init on its open socket (the
// WebCodecs player configures new decoders from it) and plays on, without a reload.
//   node restart.mjs --url http://127.0.0.1:PORT --stream live --server-pid PID
//                    [--player auto|mse|webcodecs]

import { execFileSync } from 'node:child_process';

import { args, fail, launch, playerState, result, until, watchErrors } from './lib.mjs';

const { url, stream = 'live', 'server-pid': serverPid, player = 'auto' } = args();
const browser = await launch();
try {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(`${url}/watch/${stream}?player=${player}`);
  await page.evaluate(() => {
    window.__loadedOnce = true;
  });
  await until(page, () => window.wslive?.stats().joinMs !== null, 5000, 'the first frame');
  const before = await page.evaluate(playerState);

  const children = execFileSync('pgrep', ['-P', serverPid, 'ffmpeg'], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .filter(Boolean);
  if (children.length !== 1) fail(`expected one ffmpeg, found ${children.length}`);
  execFileSync('kill', ['-9', children[0]]);
  const killedAt = Date.now();

  await until(
    page,
    (g) => (window.wslive.player.info?.generation ?? 0) > g,
    20000,
    'a new init after the restart',
    before.generation,
  );
  const restartedMs = Date.now() - killedAt;
  const resumed = await page.evaluate(playerState);
  await page.waitForTimeout(3000);
  const after = await page.evaluate(playerState);
  if (after.time - resumed.time < 2) {
    fail(`after the restart time advanced only ${(after.time - resumed.time).toFixed(2)} s in 3 s`);
  }
  if (!(await page.evaluate(() => window.__loadedOnce === true))) fail('the page reloaded');
  if (after.mediaError) fail(`media error: ${after.mediaError}`);
  if (after.stats.reconnects !== 0) fail(`the socket was reconnected ${after.stats.reconnects} times`);
  if (after.mode !== before.mode) fail(`the player changed from ${before.mode} to ${after.mode}`);
  if (errors.length) fail(errors.join('; '));
  result({ restartedMs, generation: after.generation, time: after.time, mode: after.mode });
} finally {
  await browser.close();
}
