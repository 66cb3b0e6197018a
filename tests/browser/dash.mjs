// The server's live MPD in dash.js (from npm, served locally), in the same Chromium.
//   node dash.mjs --url http://127.0.0.1:PORT --stream live

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';

import { args, fail, launch, result, until, watchErrors } from './lib.mjs';

const { url, stream = 'live', player = 'dash' } = args();
const here = fileURLToPath(new URL('.', import.meta.url));
const scripts = {
  dash: `${here}node_modules/dashjs/dist/modern/umd/dash.all.min.js`,
  hls: `${here}node_modules/hls.js/dist/hls.min.js`,
};
const page = (source) => `<!doctype html><meta charset="utf-8">
<video id="video" muted playsinline></video>
<script src="/player.js"></script>
<script>
  window.errors = [];
  const video = document.getElementById('video');
  const source = ${JSON.stringify(source)};
  if (${JSON.stringify(player)} === 'dash') {
    const p = dashjs.MediaPlayer().create();
    p.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } });
    p.on(dashjs.MediaPlayer.events.ERROR, (e) => window.errors.push(JSON.stringify(e.error ?? e)));
    p.initialize(video, source, true);
    window.player = p;
  } else {
    const h = new Hls({ lowLatencyMode: true });
    h.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.errors.push(d.type + ' ' + d.details); });
    h.loadSource(source);
    h.attachMedia(video);
    h.on(Hls.Events.MANIFEST_PARSED, () => video.play());
    window.player = h;
  }
</script>`;

// The player page comes from another origin than the stream, as it would in the field.
const pageServer = createServer(async (req, res) => {
  if (req.url === '/player.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(await readFile(scripts[player]));
  } else {
    const manifest =
      player === 'dash' ? `${url}/dash/${stream}/manifest.mpd` : `${url}/hls/${stream}/index.m3u8`;
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page(manifest));
  }
});
await new Promise((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
const browser = await launch();
try {
  const tab = await browser.newPage();
  const errors = watchErrors(tab);
  await tab.goto(`http://127.0.0.1:${pageServer.address().port}/`);
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
  const state = await tab.evaluate(() => {
    const v = document.getElementById('video');
    const lowLatency = window.player.lowLatencyMode ?? window.player.config?.lowLatencyMode ?? null;
    return { time: v.currentTime, errors: window.errors, lowLatency, latency: window.player.latency ?? null };
  });
  const advanced = state.time - start;
  if (advanced < 3.5) fail(`${player}: time advanced ${advanced.toFixed(2)} s over 5 s`);
  if (state.errors.length) fail(`${player} errors: ${state.errors.join('; ')}`);
  const fatal = errors.filter((e) => !e.includes('favicon'));
  if (fatal.length) fail(fatal.join('; '));
  result({ player, advanced, lowLatency: state.lowLatency, latency: state.latency });
} finally {
  await browser.close();
  pageServer.close();
}
