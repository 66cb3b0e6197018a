// The server's live MPD in dash.js and its LL-HLS playlists in hls.js, in the same Chromium:
// playback advances, no errors, and the player runs in its low-latency mode.
//   node dash.mjs --url http://127.0.0.1:PORT --stream live --player dash|hls [--token JWT]

import { args, fail, launch, quantile, result, until, watchErrors } from './lib.mjs';
import { playerPage } from './players.mjs';

const { url, stream = 'live', player = 'dash', token } = args();
const site = await playerPage(url, stream, player, token);
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
    errors: window.errors,
    latencies: window.latencies.slice(-60).sort((a, b) => a - b),
    ...window.state(),
  }));
  const advanced = state.time - start;
  if (advanced < 3.5) fail(`${player}: time advanced ${advanced.toFixed(2)} s over 5 s`);
  if (state.errors.length) fail(`${player} errors: ${state.errors.join('; ')}`);
  const fatal = errors.filter((e) => !e.includes('favicon'));
  if (fatal.length) fail(fatal.join('; '));
  result({
    player,
    advanced,
    lowLatency: state.lowLatency,
    parts: state.parts ?? null,
    playerLatency: state.latency,
    frameLatencyMs: quantile(state.latencies, 0.5),
  });
} finally {
  await browser.close();
  site.close();
}
