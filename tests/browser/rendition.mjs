// A ladder on /watch/{name}?player=P in Chromium: the page offers the rungs, plays the top
// one under `auto`, and on the viewer's pick moves to the lowest rung and back on the same
// socket (no reconnect, no reload), the picture going on through each move, with no media
// error; `stats().rendition` follows the server's word.
//   node rendition.mjs --url http://127.0.0.1:PORT --stream tv --player webcodecs|mse
//                      --rungs 360,180,90

import { args, fail, launch, playerState, result, until, watchErrors } from './lib.mjs';

const { url, stream = 'tv', player = 'auto', rungs = '' } = args();
const ladder = rungs.split(',');
const browser = await launch();
try {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(`${url}/watch/${stream}?player=${player}`);
  await until(page, () => window.wslive?.stats().joinMs !== null, 8000, 'the first frame');
  const first = await page.evaluate(playerState);
  if (first.stats.rendition !== ladder[0] || first.stats.renditionAuto !== true) {
    fail(`started on ${first.stats.rendition} (auto ${first.stats.renditionAuto}), not ${ladder[0]} auto`);
  }
  const offered = await page.evaluate(() =>
    [...document.querySelectorAll('#rendition option')].map((o) => o.value),
  );
  if (offered.join(',') !== ['auto', ...ladder].join(',')) fail(`the page offers ${offered}`);
  const moves = [];
  for (const rung of [ladder[ladder.length - 1], ladder[0]]) {
    const before = await page.evaluate(playerState);
    await page.selectOption('#rendition', rung);
    await until(
      page,
      (want) => window.wslive.stats().rendition === want && window.wslive.stats().renditionAuto === false,
      5000,
      `rendition ${rung}`,
      rung,
    );
    // The picture goes on: from the new rung's key frame it advances.
    await page.waitForTimeout(2500);
    const after = await page.evaluate(playerState);
    const advanced = after.time - before.time;
    if (advanced < 2) fail(`the picture advanced ${advanced.toFixed(2)} s over the move to ${rung}`);
    if (after.mediaError) fail(`media error after the move to ${rung}: ${after.mediaError}`);
    if (after.banner) fail(`error shown after the move to ${rung}: ${after.banner}`);
    if (after.stats.reconnects !== first.stats.reconnects) fail(`reconnected moving to ${rung}`);
    const height = await page.evaluate(() => window.wslive.player.info?.height ?? null);
    if (String(height) !== rung) fail(`the init after the move to ${rung} is ${height} high`);
    moves.push({ rung, advanced, height });
  }
  if (errors.length) fail(errors.join('; '));
  const last = await page.evaluate(playerState);
  result({
    player: last.stats.mode,
    moves,
    renditionChanges: last.stats.renditionChanges,
    droppedFrames: last.stats.droppedFrames,
  });
} finally {
  await browser.close();
}
