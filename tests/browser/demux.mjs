// public/fmp4.js in a real browser, on what our server wrote: the init segment's tracks
// (codec strings, decoder descriptions WebCodecs accepts) and every sample of one complete
// segment, for tests/browser.rs to hold against ffprobe's reading of the same bytes. Then bad
// input: truncations and random damage of those bytes must throw Mp4Error, never anything else.
//   node demux.mjs --url http://127.0.0.1:PORT --stream live --segment N

import { args, fail, launch, result } from './lib.mjs';

const { url, stream = 'live', segment } = args();
const browser = await launch();
try {
  const page = await browser.newPage();
  // The module is served by the server itself: the page has to be same-origin with it.
  await page.goto(`${url}/`);
  const out = await page.evaluate(
    async ({ stream, segment }) => {
      const { parseInit, parseFragment, Mp4Error } = await import('/assets/fmp4.js');
      const get = async (path) => {
        const response = await fetch(path);
        if (!response.ok) throw new Error(`${path}: ${response.status}`);
        return response.arrayBuffer();
      };
      const init = await get(`/dash/${stream}/init.mp4`);
      const media = await get(`/dash/${stream}/${segment}.m4s`);
      const tracks = parseInit(init);
      const supported = {};
      for (const t of tracks) {
        const config =
          t.kind === 'video'
            ? { codec: t.codec, description: t.description, codedWidth: t.width, codedHeight: t.height }
            : { codec: t.codec, sampleRate: t.sampleRate, numberOfChannels: t.channels, description: t.description };
        const Decoder = t.kind === 'video' ? VideoDecoder : AudioDecoder;
        supported[t.kind] = (await Decoder.isConfigSupported(config)).supported;
      }
      // A segment is fragments one after another; the demuxer reads them all at once.
      const { trafs } = parseFragment(media, tracks);
      const byTrack = {};
      for (const t of tracks) byTrack[t.kind] = { dts: [], pts: [], sizes: [], keys: [], durations: [] };
      for (const traf of trafs) {
        const kind = tracks.find((t) => t.id === traf.trackId).kind;
        for (const s of traf.samples) {
          byTrack[kind].dts.push(s.dts);
          byTrack[kind].pts.push(s.pts);
          byTrack[kind].sizes.push(s.size);
          byTrack[kind].keys.push(s.key);
          byTrack[kind].durations.push(s.duration);
          if (s.data.byteLength !== s.size) throw new Error('sample data of the wrong length');
        }
      }

      // Damage: every truncation of the first fragments, then random bytes overwritten.
      const other = [];
      const attempt = (buffer) => {
        try {
          parseFragment(buffer, tracks);
          return 'ok';
        } catch (err) {
          if (err instanceof Mp4Error) return 'Mp4Error';
          other.push(`${err.name}: ${err.message}`);
          return 'other';
        }
      };
      const counts = { ok: 0, Mp4Error: 0, other: 0 };
      const head = media.slice(0, Math.min(media.byteLength, 4096));
      for (let cut = 1; cut < head.byteLength; cut += 7) counts[attempt(head.slice(0, cut))] += 1;
      let seed = 12345;
      const random = () => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed / 2 ** 31;
      };
      for (let i = 0; i < 3000; i += 1) {
        const copy = new Uint8Array(head.slice(0));
        for (let j = 0; j < 1 + Math.floor(random() * 8); j += 1) {
          copy[Math.floor(random() * copy.length)] = Math.floor(random() * 256);
        }
        counts[attempt(copy.buffer)] += 1;
      }
      let initDamage = 'ok';
      try {
        parseInit(init.slice(0, init.byteLength - 40));
      } catch (err) {
        initDamage = err instanceof Mp4Error ? 'Mp4Error' : `${err.name}: ${err.message}`;
      }
      return {
        tracks: tracks.map((t) => ({
          id: t.id,
          kind: t.kind,
          codec: t.codec,
          timescale: t.timescale,
          width: t.width,
          height: t.height,
          sampleRate: t.sampleRate,
          channels: t.channels,
          descriptionBytes: t.description?.byteLength ?? 0,
        })),
        supported,
        samples: byTrack,
        damage: { counts, other: other.slice(0, 5), initDamage },
      };
    },
    { stream, segment },
  );
  if (out.damage.counts.other > 0) fail(`damaged input threw other errors: ${out.damage.other.join('; ')}`);
  if (out.damage.initDamage !== 'Mp4Error') fail(`a truncated init gave ${out.damage.initDamage}`);
  result(out);
} catch (err) {
  fail(err.message);
} finally {
  await browser.close();
}
