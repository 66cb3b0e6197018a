// What `package` wrote, played to its end in dash.js or hls.js (from npm) in Chromium: a small
// static server (byte ranges too, for the on-demand profile's SegmentBase) serves the folder
// and the page; the player plays at 4x until the video ends. Reports the frames the video
// element decoded and dropped, how far it played, and the player's errors.
//   node packaged.mjs --dir DIR --manifest manifest.mpd|index.m3u8 --player dash|hls

import { readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

import { args, fail, launch, result, until, watchErrors } from './lib.mjs';

const { dir, manifest, player = 'dash' } = args();
if (!dir || !manifest) fail('usage: --dir DIR --manifest NAME --player dash|hls');
const here = fileURLToPath(new URL('.', import.meta.url));
const script =
  player === 'dash'
    ? `${here}node_modules/dashjs/dist/modern/umd/dash.all.min.js`
    : `${here}node_modules/hls.js/dist/hls.min.js`;
const types = {
  '.mpd': 'application/dash+xml',
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.mp4': 'video/mp4',
  '.m4s': 'video/iso.segment',
};

const page = `<!doctype html><meta charset="utf-8">
<video id="video" muted playsinline></video>
<script src="/player.js"></script>
<script>
  window.errors = [];
  const video = document.getElementById('video');
  const source = '/media/${manifest}';
  if (${JSON.stringify(player)} === 'dash') {
    const p = dashjs.MediaPlayer().create();
    p.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } });
    p.on(dashjs.MediaPlayer.events.ERROR, (e) => window.errors.push(JSON.stringify(e.error ?? e)));
    p.initialize(video, source, true);
  } else {
    const h = new Hls();
    h.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.errors.push(d.type + ' ' + d.details); });
    h.loadSource(source);
    h.attachMedia(video);
    h.on(Hls.Events.MANIFEST_PARSED, () => video.play());
  }
  video.addEventListener('playing', () => { video.playbackRate = 4; });
</script>`;

const requests = [];
const missing = [];
const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  if (path === '/') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
    return;
  }
  if (path === '/favicon.ico') {
    res.writeHead(204);
    res.end();
    return;
  }
  if (path === '/player.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(await readFile(script));
    return;
  }
  const file = normalize(join(dir, path.replace(/^\/media\//, '')));
  if (!path.startsWith('/media/') || !file.startsWith(normalize(dir))) {
    missing.push(path);
    res.writeHead(404);
    res.end();
    return;
  }
  try {
    const { size } = await stat(file);
    const data = await readFile(file);
    const headers = { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'accept-ranges': 'bytes' };
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    requests.push(range ? `${path} ${range[1]}-${range[2]}` : path);
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${size}`, 'content-length': end - start + 1 });
      res.end(data.subarray(start, end + 1));
    } else {
      res.writeHead(200, { ...headers, 'content-length': size });
      res.end(data);
    }
  } catch {
    missing.push(path);
    res.writeHead(404);
    res.end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const browser = await launch();
try {
  const tab = await browser.newPage();
  const errors = watchErrors(tab);
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  await until(
    tab,
    () => {
      const v = document.getElementById('video');
      return window.errors.length > 0 || v.ended || (v.duration > 0 && v.currentTime >= v.duration - 0.1);
    },
    60000,
    `${player} to play to the end`,
  );
  const state = await tab.evaluate(() => {
    const v = document.getElementById('video');
    const q = v.getVideoPlaybackQuality();
    return {
      errors: window.errors,
      currentTime: v.currentTime,
      duration: v.duration,
      decodedFrames: q.totalVideoFrames,
      droppedFrames: q.droppedVideoFrames,
      mediaError: v.error ? `${v.error.code} ${v.error.message}` : null,
    };
  });
  if (state.errors.length) fail(`${player} errors: ${state.errors.join('; ')}`);
  if (state.mediaError) fail(`media error: ${state.mediaError}`);
  if (missing.length) fail(`not found: ${missing.join(', ')}`);
  const fatal = errors.filter((e) => !e.includes('favicon'));
  if (fatal.length) fail(fatal.join('; '));
  result({ player, ...state, ranged: requests.filter((r) => r.includes('-')).length, requests: requests.length });
} finally {
  await browser.close();
  server.close();
}
