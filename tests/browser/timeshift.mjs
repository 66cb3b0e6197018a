// Rewinding the live page: /watch/{name}?player=P plays live, the timeline under the picture
// is dragged 10 s back and the recording plays from there (the picture about 10 s behind the
// camera by its prft, and advancing), seeked again N times (each seek's time to the first
// picture reported), then the Live button brings it back to the live edge; a page opened
// with ?at= (8 s ago) starts on the recording.
//   node timeshift.mjs --url http://127.0.0.1:PORT --stream live --player webcodecs|mse
//                      [--seeks N]

import { args, fail, launch, playerState, quantile, result, until, watchErrors } from './lib.mjs';

const { url, stream = 'live', player = 'webcodecs', seeks = '3' } = args();
const browser = await launch();

/** Drags the timeline's handle to `backMs` before now and lets go, as a viewer would. */
async function dragBack(page, backMs) {
  await page.evaluate((back) => {
    const scrub = document.getElementById('scrub');
    scrub.value = String(Date.now() - back);
    scrub.dispatchEvent(new Event('input'));
    scrub.dispatchEvent(new Event('change'));
  }, backMs);
}

async function checkPlaying(page, what, seconds) {
  const before = await page.evaluate(playerState);
  await page.waitForTimeout(seconds * 1000);
  const after = await page.evaluate(playerState);
  const advanced = after.time - before.time;
  if (advanced < seconds * 0.6) {
    fail(`${what}: the picture advanced ${advanced.toFixed(2)} s over ${seconds} s`);
  }
  if (after.mediaError) fail(`${what}: media error ${after.mediaError}`);
  if (after.banner) fail(`${what}: error shown: ${after.banner}`);
  return after;
}

try {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(`${url}/watch/${stream}?player=${player}`);
  await until(page, () => window.wslive?.stats().joinMs !== null, 10000, 'the first live frame');
  await until(
    page,
    () => !document.getElementById('timeline').hidden && window.wslive.spans().length > 0,
    10000,
    'the timeline',
  );
  const live = await checkPlaying(page, 'live', 2);
  if (live.stats.recorded) fail('the page starts on the recording');

  await dragBack(page, 10000);
  await until(page, () => window.wslive.stats().seekMs !== null, 10000, 'the recording to show');
  const rewound = await checkPlaying(page, 'rewound', 3);
  if (!rewound.stats.recorded) fail('not playing the recording after the timeline was dragged');
  const behind = await until(page, () => window.wslive.stats().latencyMs, 3000, 'a latency');
  // 10 s back, from the key frame at or before: up to a segment more.
  if (!(behind >= 8500 && behind <= 14000)) fail(`rewound 10 s, the picture is ${behind} ms behind`);
  const label = await page.evaluate(() => document.getElementById('scrub-time').textContent);

  // More seeks, each timed from letting go to the first picture of the recording.
  const seekTimes = [rewound.stats.seekMs];
  for (let i = 1; i < Number(seeks); i += 1) {
    await dragBack(page, 6000 + (i % 5) * 1000);
    await until(page, () => window.wslive.stats().seekMs !== null, 10000, `seek ${i} to show`);
    seekTimes.push(await page.evaluate(() => window.wslive.stats().seekMs));
    await page.waitForTimeout(500);
  }

  await page.click('#live');
  await until(page, () => !window.wslive.stats().recorded, 2000, 'the live stream again');
  await until(page, () => window.wslive.stats().joinMs !== null, 10000, 'the live picture again');
  await page.waitForTimeout(2000);
  const back = await checkPlaying(page, 'back live', 2);
  const backLatency = back.stats.latencyMs;
  if (!(backLatency > 0 && backLatency < 2000)) fail(`back live, latency ${backLatency} ms`);
  const pressed = await page.evaluate(() => document.getElementById('live').getAttribute('aria-pressed'));
  if (pressed !== 'true') fail('the Live button is not shown pressed when live');

  // Opened at a moment.
  const opened = await browser.newPage();
  const errorsAt = watchErrors(opened);
  const at = new Date(Date.now() - 8000).toISOString();
  await opened.goto(`${url}/watch/${stream}?player=${player}&at=${encodeURIComponent(at)}`);
  await until(opened, () => window.wslive?.stats().seekMs !== null, 10000, 'the ?at= picture');
  const atState = await checkPlaying(opened, '?at=', 2);
  const atBehind = await until(opened, () => window.wslive.stats().latencyMs, 3000, 'a latency');
  if (!atState.stats.recorded || atBehind < 6000) {
    fail(`opened at ${at}: recorded ${atState.stats.recorded}, ${atBehind} ms behind`);
  }

  const fatal = [...errors, ...errorsAt].filter((e) => !e.includes('favicon'));
  if (fatal.length) fail(fatal.join('; '));
  const sorted = [...seekTimes].sort((a, b) => a - b);
  result({
    player,
    mode: rewound.stats.mode,
    behindMs: behind,
    label,
    seekMs: seekTimes,
    seekMedianMs: quantile(sorted, 0.5),
    backLatencyMs: backLatency,
    atBehindMs: atBehind,
  });
} finally {
  await browser.close();
}
