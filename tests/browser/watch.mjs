// /watch/{name}?player=P in Chromium: plays within 5 s, the picture advances at least 3 s over
// 4 s, no media error, the player that runs is the one expected, a latency is measured; a
// stream with sound decodes it (WebCodecs: AudioDecoder outputs counted, and after a click
// sound and picture stay within 40 ms; MSE: no sound decoded while muted, sound decoded after
// a click, the picture playing on through both switches); a hidden tab lets go of the stream
// and comes back live.
//   node watch.mjs --url http://127.0.0.1:PORT --stream live [--player auto|mse|webcodecs]
//                  [--expect webcodecs|mse]

import { args, fail, launch, playerState, result, until, watchErrors } from './lib.mjs';

const { url, stream = 'live', player = 'auto', expect = player } = args();
const browser = await launch();
try {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  const opened = Date.now();
  await page.goto(`${url}/watch/${stream}?player=${player}`);
  await until(page, () => window.wslive?.stats().joinMs !== null, 5000, 'the first frame');
  const firstFrameMs = Date.now() - opened;

  const before = await page.evaluate(playerState);
  if (before.mode !== expect) fail(`player ${player} runs ${before.mode}, expected ${expect}`);
  // A joiner decodes the group of pictures it was sent, however far into it, rather than
  // waiting for the next key frame (which counted what it threw away as dropped). Counted by
  // the page at the moment of its first picture: `droppedFrames` read here would also count
  // what the page did between that picture and this look.
  if (expect === 'webcodecs' && before.stats.droppedAtJoin !== 0) {
    fail(`${before.stats.droppedAtJoin} frames dropped before the first picture`);
  }
  await page.waitForTimeout(4000);
  const after = await page.evaluate(playerState);
  const advanced = after.time - before.time;
  if (advanced < 3) fail(`the picture advanced ${advanced.toFixed(2)} s over 4 s`);
  if (after.mediaError) fail(`media error: ${after.mediaError}`);
  if (after.banner) fail(`error shown in the page: ${after.banner}`);
  const latency = await until(page, () => window.wslive.stats().latencyMs, 3000, 'a latency');
  if (!(latency > 0 && latency < 2000)) fail(`implausible latency ${latency} ms`);
  const { joinMs, liveMs } = after.stats;
  if (!(liveMs >= joinMs)) fail(`live at ${liveMs} ms, before the first picture at ${joinMs} ms`);

  let sound = null;
  if (expect === 'webcodecs') {
    // Sound is decoded from the start, heard only after a click.
    const decoded = after.stats.audioFrames - before.stats.audioFrames;
    if (!(decoded > 100)) fail(`${decoded} audio frames decoded in 4 s`);
    if (after.stats.avSyncMs !== null) fail('an A/V sync before the sound was turned on');
    await page.click('#sound');
    await until(page, () => window.wslive.player.soundState() === 'on', 3000, 'sound on');
    await page.waitForTimeout(2000);
    const heard = [];
    for (let i = 0; i < 10; i += 1) {
      heard.push(await page.evaluate(() => window.wslive.stats().avSyncMs));
      await page.waitForTimeout(100);
    }
    if (!heard.every((ms) => ms !== null && Math.abs(ms) <= 40)) {
      fail(`sound and picture apart: avSyncMs ${heard.join(', ')}`);
    }
    const playing = await page.evaluate(playerState);
    await page.waitForTimeout(1000);
    const later = await page.evaluate(playerState);
    if (later.time - playing.time < 0.7) fail('the picture stalled with sound on');
    sound = { avSyncMs: heard, decoded };
  } else if (expect === 'mse') {
    // Muted, the element gets the picture alone: no sound is decoded, none held it back.
    const audioBytes = () => document.querySelector('video').webkitAudioDecodedByteCount;
    const mutedBytes = await page.evaluate(audioBytes);
    if (mutedBytes !== 0) fail(`${mutedBytes} bytes of sound decoded while muted`);
    if ((await page.evaluate(() => window.wslive.player.soundState())) !== 'muted') {
      fail('a stream with sound does not offer it');
    }
    await page.click('#sound');
    await until(page, () => window.wslive.player.soundState() === 'on', 3000, 'sound on');
    await until(
      page,
      () => document.querySelector('video').webkitAudioDecodedByteCount > 0,
      5000,
      'sound decoded after the click',
    );
    const playing = await page.evaluate(playerState);
    await page.waitForTimeout(2000);
    const later = await page.evaluate(playerState);
    if (later.time - playing.time < 1.4) fail('the picture stalled with sound on');
    const heardBytes = await page.evaluate(audioBytes);
    // Muted again: back to the picture alone, still playing.
    await page.evaluate(() => {
      document.querySelector('video').muted = true;
    });
    await until(page, () => window.wslive.player.soundState() === 'muted', 3000, 'muted again');
    const muted = await page.evaluate(playerState);
    await page.waitForTimeout(2000);
    const mutedLater = await page.evaluate(playerState);
    if (mutedLater.time - muted.time < 1.4) fail('the picture stalled after muting');
    sound = { heardBytes, withSoundAdvanced: later.time - playing.time };
  }

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
      const now = window.wslive.position();
      return now > t + 2.5 && window.wslive.stats().bufferMs < 1000 && now;
    },
    8000,
    'playback at the live edge after the tab came back',
    hidden.time,
  );
  if (errors.length) fail(errors.join('; '));
  const stats = await page.evaluate(() => window.wslive.stats());
  result({ firstFrameMs, advanced, latencyMs: latency, resumedAt: resumed, sound, stats });
} finally {
  await browser.close();
}
