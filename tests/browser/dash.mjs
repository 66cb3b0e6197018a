// The server's live MPD in dash.js and its LL-HLS playlists in hls.js, in the same Chromium:
// playback advances, no errors, and the player runs in its low-latency mode. With
// `--throttle-kbps N` (a ladder), the page's network is then held to N kbit/s for 25 s and the
// picture heights the player plays are reported, then lifted again.
// With `--query 'start=T&end=T'` the manifest is a recorded stretch's, played from its start.
//   node dash.mjs --url http://127.0.0.1:PORT --stream live --player dash|hls [--token JWT]
//                 [--throttle-kbps N] [--query Q]

import { args, fail, launch, quantile, result, until, watchErrors } from './lib.mjs';
import { playerPage } from './players.mjs';

const { url, stream = 'live', player = 'dash', token, 'throttle-kbps': throttleKbps, query } = args();
const site = await playerPage(url, stream, player, token, query);
const browser = await launch();
try {
  const tab = await browser.newPage();
  const errors = watchErrors(tab);
  await tab.goto(site.url);
  const start = await until(
    tab,
    () => {
      const v = document.getElementById('video');
      return v.currentTime > 0 && !v.paused && v.currentTime;
    },
    30000,
    `${player} to start playing`,
  );
  await tab.waitForTimeout(5000);
  const state = await tab.evaluate(() => ({
    time: document.getElementById('video').currentTime,
    duration: document.getElementById('video').duration,
    errors: window.errors,
    latencies: window.latencies.slice(-60).sort((a, b) => a - b),
    ...window.state(),
  }));
  const advanced = state.time - start;
  if (advanced < 3.5) fail(`${player}: time advanced ${advanced.toFixed(2)} s over 5 s`);
  if (state.errors.length) fail(`${player} errors: ${state.errors.join('; ')}`);
  const fatal = errors.filter((e) => !e.includes('favicon'));
  if (fatal.length) fail(fatal.join('; '));
  let throttled = null;
  if (throttleKbps) {
    const cdp = await tab.context().newCDPSession(tab);
    await cdp.send('Network.enable');
    const height = () => document.getElementById('video').videoHeight;
    const before = await tab.evaluate(height);
    const startedAt = await tab.evaluate(() => document.getElementById('video').currentTime);
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: (Number(throttleKbps) * 1000) / 8,
      uploadThroughput: -1,
    });
    const heights = [];
    const chosen = new Set(); // the rungs its ABR picked to load (the picture follows
    // at the next segment)
    const deadline = Date.now() + 25000;
    while (Date.now() < deadline) {
      heights.push(await tab.evaluate(height));
      const pick = await tab.evaluate(() => window.abr?.().current ?? null);
      if (pick !== null) chosen.add(pick);
      await tab.waitForTimeout(250);
    }
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: -1,
    });
    const after = await tab.evaluate(() => ({
      time: document.getElementById('video').currentTime,
      errors: window.errors,
    }));
    if (after.errors.length) fail(`${player} errors while throttled: ${after.errors.join('; ')}`);
    throttled = {
      before,
      lowest: Math.min(...heights),
      heights: [...new Set(heights)],
      chosen: [...chosen],
      lowestChosen: chosen.size ? Math.min(...[...chosen].map(Number)) : null,
      advanced: after.time - startedAt,
      abr: await tab.evaluate(() => window.abr?.() ?? null),
    };
  }
  result({
    throttled,
    player,
    advanced,
    startedAt: start,
    duration: Number.isFinite(state.duration) ? state.duration : null,
    lowLatency: state.lowLatency,
    parts: state.parts ?? null,
    playerLatency: state.latency,
    frameLatencyMs: quantile(state.latencies, 0.5),
  });
} finally {
  await browser.close();
  site.close();
}
