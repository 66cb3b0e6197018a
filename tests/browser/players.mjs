// dash.js and hls.js (from npm, served locally) playing the server's DASH and HLS, for the
// browser tests and the latency benchmark. The page comes from another origin than the
// stream, as it would in the field. Every frame shown is timed, as our own player times its
// frames: the wall clock at the screen minus the wall clock of that media time, which for
// LL-HLS is its EXT-X-PROGRAM-DATE-TIME (the encoder's prft) and for DASH the MPD's
// availabilityStartTime plus the media time (where the server anchored the stream on its
// clock as the first segment arrived). Server and browser share this machine's clock.

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const scripts = {
  dash: `${here}node_modules/dashjs/dist/modern/umd/dash.all.min.js`,
  hls: `${here}node_modules/hls.js/dist/hls.min.js`,
};

const page = (player, source) => `<!doctype html><meta charset="utf-8">
<video id="video" muted playsinline></video>
<script src="/player.js"></script>
<script>
  window.errors = [];
  window.latencies = [];
  const video = document.getElementById('video');
  const source = ${JSON.stringify(source)};
  let wallOf;
  if (${JSON.stringify(player)} === 'dash') {
    const p = dashjs.MediaPlayer().create();
    const q = new URLSearchParams(location.search);
    p.updateSettings({ debug: { logLevel: dashjs.Debug[q.get("log") ?? "LOG_LEVEL_WARNING"] } });
    // Chunked low-latency downloads measured by the bytes that came and when (dash.js's
    // default, timing each moof to the end of its mdat, reads several times what a throttled
    // link carries, and it never moves down a ladder).
    p.updateSettings({ streaming: { abr: { throughput: { lowLatencyDownloadTimeCalculationMode: q.get("llmode") ?? "lowLatencyDownloadTimeCalculationModeDownloadedData" } } } });
    p.on(dashjs.MediaPlayer.events.ERROR, (e) => window.errors.push(JSON.stringify(e.error ?? e)));
    p.initialize(video, source, true);
    window.player = p;
    window.state = () => ({ lowLatency: p.getLowLatencyModeEnabled(), latency: p.getCurrentLiveLatency() });
    window.abr = () => ({
      representations: p.getRepresentationsByType?.('video')?.map((r) => r.id) ?? null,
      current: p.getCurrentRepresentationForType?.('video')?.id ?? null,
      throughputKbps: p.getAverageThroughput?.('video') ?? null,
    });
    // timeAsUTC: the MPD's availabilityStartTime plus the playhead, in seconds.
    wallOf = (media) => (p.timeAsUTC() - (video.currentTime - media)) * 1000;
  } else {
    // Low-latency mode, allowed to play a little faster to get back to its target latency
    // (dash.js catches up by default, at up to the MPD's PlaybackRate).
    const h = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.1 });
    h.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.errors.push(d.type + ' ' + d.details); });
    h.loadSource(source);
    h.attachMedia(video);
    h.on(Hls.Events.MANIFEST_PARSED, () => video.play());
    window.player = h;
    window.state = () => {
      const details = h.latestLevelDetails;
      return {
        lowLatency: Boolean(h.lowLatencyMode && details?.partList?.length && details?.canBlockReload),
        parts: details?.partList?.length ?? 0,
        latency: h.latency,
        // What hls.js steers to: the playlist's PART-HOLD-BACK, plus a second per stall.
        target: h.targetLatency,
      };
    };
    window.abr = () => ({
      representations: h.levels?.map((l) => l.height) ?? null,
      // What its ABR picked (the level it loads), as dash.js's current.
      current: h.levels?.[h.loadLevel]?.height ?? null,
      playing: h.levels?.[h.currentLevel]?.height ?? null,
      throughputKbps: Math.round((h.bandwidthEstimate ?? 0) / 1000),
    });
    // playingDate: the program date time of the playhead.
    wallOf = (media) => (h.playingDate ? h.playingDate.getTime() - (video.currentTime - media) * 1000 : null);
  }
  const onFrame = (_now, meta) => {
    const wall = wallOf(meta.mediaTime);
    if (wall) window.latencies.push(performance.timeOrigin + meta.expectedDisplayTime - wall);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
</script>`;

/**
 * A page server for `player` ('dash' or 'hls') playing `stream` of the server at `url`, with
 * `?token=` on the manifest's URL if a token is given (the server carries it on to the rest),
 * and `extra` query parameters (`start=…&end=…`: a recorded stretch) if given.
 */
export async function playerPage(url, stream, player, token, extra) {
  const params = [token ? `token=${encodeURIComponent(token)}` : '', extra ?? ''].filter(Boolean);
  const query = params.length ? `?${params.join('&')}` : '';
  const manifest =
    player === 'dash'
      ? `${url}/dash/${stream}/manifest.mpd${query}`
      : `${url}/hls/${stream}/index.m3u8${query}`;
  const server = createServer(async (req, res) => {
    if (req.url === '/player.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(await readFile(scripts[player]));
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(page(player, manifest));
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}
