// Encoder-to-screen latency in headless Chromium, for each player in turn on the same server:
// per frame shown, the wall clock at the screen minus the encoder's prft wall clock (our page,
// see public/player.js; hls.js and dash.js, see players.mjs), over a run, then the join time of
// fresh page loads (socket open to first picture for ours, page load to first picture for the
// others) and, for ours, when the picture was live (a joiner's first picture may be its key
// frame, shown while the rest of its group decodes).
//   node latency.mjs --url http://127.0.0.1:PORT [--stream live] [--seconds 60] [--joins 5]
//                    [--players webcodecs,mse,ll-hls,ll-dash]
//                    (any of auto, webcodecs, mse: our page, muted as a page starts; the same
//                    with +sound, e.g. mse+sound: after a click on the sound button, with no
//                    joins timed, as a fresh page starts muted; ll-hls: hls.js; ll-dash:
//                    dash.js)
//                    [--publish 1]  (first publish Chromium's fake camera from
//                    /publish/{stream}, in a window of its own, and keep it publishing)
//                    [--screen 1]  (capture-to-screen: our players only, each latency read
//                    off the picture, whose frames carry stamp.mjs's barcode of when they
//                    were made; joins are page load to the first stamped picture, "live" the
//                    first one within the run's p95; with --publish, the publisher's camera
//                    is a stamped canvas)

import { args, launch, quantile, screenReader, stampedCamera, until } from './lib.mjs';
import { playerPage } from './players.mjs';

const { url, stream = 'live', seconds = '60', joins = '5', players = 'webcodecs,mse', publish, screen } = args();
const WARM_UP_MS = 3000;
/** Third-party players, and ours with sound, need longer to settle at their target latency. */
const THIRD_PARTY_WARM_UP_MS = 15000;
const THIRD_PARTY = { 'll-hls': 'hls', 'll-dash': 'dash' };

async function measureThirdParty(browser, player) {
  const site = await playerPage(url, stream, THIRD_PARTY[player]);
  try {
    const page = await browser.newPage();
    await page.goto(site.url);
    await until(page, () => window.latencies.length > 0, 30000, `${player}: the first frame`);
    await page.waitForTimeout(THIRD_PARTY_WARM_UP_MS);
    const skip = await page.evaluate(() => window.latencies.length);
    await page.waitForTimeout(Number(seconds) * 1000);
    const latencies = (await page.evaluate(() => window.latencies)).slice(skip);
    const state = await page.evaluate(() => ({ errors: window.errors, ...window.state() }));
    await page.close();
    latencies.sort((a, b) => a - b);
    const joinTimes = [];
    for (let i = 0; i < Number(joins); i += 1) {
      const tab = await browser.newPage();
      const opened = Date.now();
      await tab.goto(site.url);
      await until(tab, () => window.latencies.length > 0, 30000, `${player}: the first frame`);
      joinTimes.push(Date.now() - opened);
      await tab.close();
    }
    joinTimes.sort((a, b) => a - b);
    return {
      player,
      mode: `${player} (${THIRD_PARTY[player] === 'hls' ? 'hls.js' : 'dash.js'}${state.lowLatency ? ', low-latency' : ''}${state.target ? `, target ${state.target.toFixed(1)} s` : ''})`,
      latencies,
      joinTimes,
      stats: { skipped: '-', droppedFrames: '-', reconnects: '-', fps: '-', errors: state.errors.length },
    };
  } finally {
    site.close();
  }
}

/** Our page, every latency read off the picture (screenReader). */
async function measureScreen(browser, player) {
  const pageUrl = `${url}/watch/${stream}?player=${player}`;
  const context = await browser.newContext();
  await context.addInitScript(screenReader);
  const page = await context.newPage();
  await page.goto(pageUrl);
  await until(page, () => window.screenFirstAt !== null, 15000, `${player}: the first stamped picture`);
  await page.waitForTimeout(WARM_UP_MS);
  const skip = await page.evaluate(() => window.screenLatencies.length);
  await page.waitForTimeout(Number(seconds) * 1000);
  const latencies = (await page.evaluate(() => window.screenLatencies)).slice(skip);
  const stats = await page.evaluate(() => window.wslive.stats());
  await page.close();
  latencies.sort((a, b) => a - b);
  const liveBound = quantile(latencies, 0.95);
  const joinTimes = [];
  const liveTimes = [];
  for (let i = 0; i < Number(joins); i += 1) {
    const tab = await context.newPage();
    const opened = Date.now();
    await tab.goto(pageUrl);
    const first = await until(tab, () => window.screenFirstAt, 15000, `${player}: the first stamped picture`);
    const live = await until(
      tab,
      (bound) => {
        const all = window.screenLatencies;
        for (let j = 0; j < all.length; j += 1) if (all[j] <= bound) return { at: window.screenTimes[j] };
        return null;
      },
      15000,
      `${player}: a live stamped picture`,
      liveBound,
    );
    joinTimes.push(first - opened);
    liveTimes.push(live.at - opened);
    await tab.close();
    await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 700));
  }
  await context.close();
  joinTimes.sort((a, b) => a - b);
  liveTimes.sort((a, b) => a - b);
  return { player, mode: `${stats.mode}, off the screen`, latencies, joinTimes, liveTimes, stats };
}

async function measure(browser, player) {
  if (THIRD_PARTY[player]) return measureThirdParty(browser, player);
  if (screen) return measureScreen(browser, player);
  const [engine, withSound] = player.split('+');
  const pageUrl = `${url}/watch/${stream}?player=${engine}`;
  const page = await browser.newPage();
  await page.goto(pageUrl);
  await until(page, () => window.wslive?.stats().joinMs !== null, 10000, 'the first frame');
  if (withSound) {
    await page.click('#sound');
    await until(page, () => window.wslive.player.soundState() === 'on', 5000, 'sound on');
  }
  // With sound, players start further back (the audio renderer's start) and steer gently.
  await page.waitForTimeout(withSound ? THIRD_PARTY_WARM_UP_MS : WARM_UP_MS);
  const skip = await page.evaluate(() => window.wslive.latencies().length);
  await page.waitForTimeout(Number(seconds) * 1000);
  const latencies = (await page.evaluate(() => window.wslive.latencies())).slice(skip);
  const stats = await page.evaluate(() => window.wslive.stats());
  await page.close();
  latencies.sort((a, b) => a - b);

  const joinTimes = [];
  const liveTimes = [];
  for (let i = 0; i < (withSound ? 0 : Number(joins)); i += 1) {
    const tab = await browser.newPage();
    await tab.goto(pageUrl);
    const { joinMs, liveMs } = await until(
      tab,
      () => {
        const s = window.wslive?.stats();
        return s?.liveMs != null && s.joinMs != null ? s : null;
      },
      10000,
      'the first live frame',
    );
    joinTimes.push(joinMs);
    liveTimes.push(liveMs);
    await tab.close();
    // Join at a different point of the group of pictures each time.
    await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 700));
  }
  joinTimes.sort((a, b) => a - b);
  liveTimes.sort((a, b) => a - b);
  return { player, mode: withSound ? `${stats.mode}, sound on` : stats.mode, latencies, joinTimes, liveTimes, stats };
}

const browser = await launch(
  publish ? ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'] : [],
);
try {
  if (publish) {
    // The publisher in a window of its own (a background tab would count as hidden).
    const publishing = await browser.newContext();
    if (screen) await publishing.addInitScript(stampedCamera);
    const publisher = await publishing.newPage();
    await publisher.goto(`${url}/publish/${stream}?autostart=1`);
    await until(publisher, () => window.wspublish?.stats().framesSent >= 30, 15000, 'the publisher');
    await publisher.waitForTimeout(2000);
  }
  const rows = [];
  for (const player of players.split(',')) rows.push(await measure(browser, player));
  for (const { player, mode, latencies, joinTimes, liveTimes, stats } of rows) {
    console.log(`\n${url}/watch/${stream}?player=${player} (${mode})`);
    console.log(`frames measured: ${latencies.length} over ${seconds} s (after ${WARM_UP_MS} ms warm-up)`);
    console.log(
      `latency ms: p50 ${quantile(latencies, 0.5)}  p95 ${quantile(latencies, 0.95)}  p99 ${quantile(latencies, 0.99)}  max ${quantile(latencies, 1)}`,
    );
    console.log(
      `join ms (${joinTimes.length} fresh loads): median ${quantile(joinTimes, 0.5)}  max ${quantile(joinTimes, 1)}  all ${joinTimes.join(', ')}`,
    );
    if (liveTimes?.length) {
      console.log(
        `live ms (the same loads): median ${quantile(liveTimes, 0.5)}  max ${quantile(liveTimes, 1)}  all ${liveTimes.join(', ')}`,
      );
    }
    console.log(
      `skipped fragments ${stats.skipped}, dropped frames ${stats.droppedFrames}, reconnects ${stats.reconnects}, fps ${stats.fps}`,
    );
  }
  console.log(`\n${'player'.padEnd(32)}   p50   p95   p99  join  live (medians)`);
  for (const { mode, latencies, joinTimes, liveTimes } of rows) {
    const cell = (v) => String(v).padStart(5);
    console.log(
      `${mode.padEnd(32)} ${cell(quantile(latencies, 0.5))} ${cell(quantile(latencies, 0.95))} ${cell(quantile(latencies, 0.99))} ${cell(quantile(joinTimes, 0.5))} ${cell(liveTimes ? quantile(liveTimes, 0.5) : '-')}`,
    );
  }
} finally {
  await browser.close();
}
