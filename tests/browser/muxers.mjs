// MP4 files written by three other muxers from npm (mp4box.js, mux.js, mediabunny), so a test
// can feed `package` the layouts that real tools write and not only ffmpeg's: each library's
// public API remuxes ffmpeg-made inputs, never re-encoding and never writing boxes by hand.
//   node muxers.mjs --input-mp4 IN.mp4 --input-ts IN.ts --out DIR
// IN.mp4 is a progressive H.264 (with B-frames) + AAC file, IN.ts the same content as MPEG-TS.
// Prints one JSON line, a list of {file, muxer, layout, bframes, video_frames, audio_frames}:
// frames are the samples the muxer was given per track (for mux.js, which is given the TS
// bytes, the samples it wrote), bframes whether those samples' presentation order differs
// from their decode order.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import {
  ALL_FORMATS,
  BufferSource,
  BufferTarget,
  EncodedAudioPacketSource,
  EncodedPacketSink,
  EncodedVideoPacketSource,
  Input,
  Mp4OutputFormat,
  Output,
} from 'mediabunny';
import { DataStream, MP4BoxBuffer, createFile } from 'mp4box';
import muxjs from 'mux.js';

const { values } = parseArgs({
  options: {
    'input-mp4': { type: 'string' },
    'input-ts': { type: 'string' },
    out: { type: 'string' },
  },
});
const { 'input-mp4': inputMp4, 'input-ts': inputTs, out } = values;
if (!inputMp4 || !inputTs || !out) {
  console.error('usage: node muxers.mjs --input-mp4 IN.mp4 --input-ts IN.ts --out DIR');
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const written = [];
function save(name, bytes, entry) {
  writeFileSync(join(out, name), bytes);
  written.push({ file: name, ...entry });
}

/** The whole file as an MP4BoxBuffer (an ArrayBuffer with fileStart) for appendBuffer. */
function mp4boxBuffer(path) {
  const bytes = readFileSync(path);
  const ab = new MP4BoxBuffer(bytes.byteLength);
  new Uint8Array(ab).set(bytes);
  ab.fileStart = 0;
  return ab;
}

/** True when some sample is presented in another order than it is decoded. */
function reordered(presentationTimes) {
  let max = -Infinity;
  for (const t of presentationTimes) {
    if (t < max) return true;
    max = Math.max(max, t);
  }
  return false;
}

/** mp4box.js demuxes IN.mp4: its tracks (info, sample entry) and every sample of each. */
function mp4boxDemux(path) {
  const file = createFile();
  const tracks = new Map();
  file.onError = (module, message) => {
    throw new Error(`mp4box.js ${module}: ${message}`);
  };
  file.onReady = (info) => {
    for (const track of info.tracks) {
      const trak = file.getTrackById(track.id);
      tracks.set(track.id, { info: track, entry: trak.mdia.minf.stbl.stsd.entries[0], samples: [] });
      file.setExtractionOptions(track.id, null, { nbSamples: 1000 });
    }
    file.start();
  };
  file.onSamples = (id, _user, samples) => tracks.get(id).samples.push(...samples);
  file.appendBuffer(mp4boxBuffer(path));
  file.flush();
  return [...tracks.values()];
}

/** A box's payload (without its 8-byte header), as mp4box.js writes it. */
function boxPayload(box) {
  const stream = new DataStream();
  box.write(stream);
  return stream.buffer.slice(8, stream.getPosition());
}

/**
 * mp4box.js's file-creation API (createFile, addTrack, addSample, getBuffer). It has no
 * progressive writer: addSample appends a moof+mdat per sample, so the file is a fragmented
 * one with a single sample in each fragment, behind a moov whose sample tables are empty.
 */
function mp4boxCreate(tracks) {
  const file = createFile();
  const counts = {};
  const queue = [];
  let bframes = false;
  for (const { info, entry, samples } of tracks) {
    const video = info.type === 'video';
    const id = file.addTrack(
      video
        ? {
            type: entry.type,
            timescale: info.timescale,
            width: info.video.width,
            height: info.video.height,
            avcDecoderConfigRecord: boxPayload(entry.avcC),
          }
        : {
            type: entry.type,
            hdlr: 'soun',
            timescale: info.timescale,
            samplerate: info.audio.sample_rate,
            channel_count: info.audio.channel_count,
            samplesize: info.audio.sample_size,
            // The input's esds (AudioSpecificConfig) as the sample entry's description box.
            description: entry.esds,
          },
    );
    queue.push(...samples.map((s) => ({ id, s, at: s.dts / info.timescale })));
    counts[info.type] = samples.length;
    if (video) bframes = reordered(samples.map((s) => s.cts));
  }
  // Samples as a live writer would add them: the tracks interleaved in decode-time order.
  queue.sort((a, b) => a.at - b.at);
  for (const { id, s } of queue) {
    file.addSample(id, s.data, { duration: s.duration, cts: s.cts, dts: s.dts, is_sync: s.is_sync });
  }
  const stream = file.getBuffer();
  save('mp4box-created.mp4', new Uint8Array(stream.buffer, 0, stream.getPosition()), {
    muxer: 'mp4box.js',
    layout: 'fragmented-sample-per-moof',
    bframes,
    video_frames: counts.video ?? 0,
    audio_frames: counts.audio ?? 0,
  });
}

/**
 * mp4box.js's segmentation API on IN.mp4: one init segment for all tracks
 * (initializeSegmentation's default 'combined' mode), then each track's media segments in the
 * order onSegment gives them, so each moof holds one track's traf.
 */
function mp4boxSegment(path) {
  const file = createFile();
  const parts = [];
  const frames = {};
  const types = new Map();
  let bframes = false;
  file.onError = (module, message) => {
    throw new Error(`mp4box.js ${module}: ${message}`);
  };
  file.onReady = (info) => {
    // mp4box.js takes one nbSamples for all tracks: 1 s of the video. With rapAlignement it
    // closes a segment at the first sync sample past that count and puts that sample last, so
    // each video segment after the first starts on the frame after a keyframe.
    const lead = info.tracks.find((t) => t.type === 'video') ?? info.tracks[0];
    const nbSamples = Math.max(1, Math.round(lead.nb_samples / (lead.duration / lead.timescale)));
    for (const track of info.tracks) {
      types.set(track.id, track.type);
      file.setSegmentOptions(track.id, null, { nbSamples, rapAlignement: true });
      if (track.type === 'video') {
        bframes = reordered(file.getTrackSamplesInfo(track.id).map((s) => s.cts));
      }
    }
    parts.push(new Uint8Array(file.initializeSegmentation().buffer));
    file.start();
  };
  file.onSegment = (id, _user, buffer, nextSample) => {
    parts.push(new Uint8Array(buffer));
    frames[types.get(id)] = nextSample;
  };
  file.appendBuffer(mp4boxBuffer(path));
  file.flush();
  save('mp4box-segmented.mp4', Buffer.concat(parts), {
    muxer: 'mp4box.js',
    layout: 'fragmented',
    bframes,
    video_frames: frames.video ?? 0,
    audio_frames: frames.audio ?? 0,
  });
}

/**
 * mux.js's Transmuxer on IN.ts, audio and video remuxed into one stream (remux: true, its
 * default), timestamps kept as in the TS: the first data event's initSegment, then the data
 * (a moof+mdat per track) of every data event.
 */
function muxjsTransmux(path) {
  const transmuxer = new muxjs.mp4.Transmuxer({ remux: true, keepOriginalTimestamps: true });
  const parts = [];
  transmuxer.on('data', (segment) => {
    if (parts.length === 0) parts.push(segment.initSegment);
    parts.push(segment.data);
  });
  transmuxer.push(new Uint8Array(readFileSync(path)));
  transmuxer.flush();
  const bytes = Buffer.concat(parts);
  // What mux.js wrote, read back with mux.js's own inspector: the samples in each track's truns.
  const handlers = new Map();
  const frames = { vide: 0, soun: 0 };
  let bframes = false;
  const walk = (boxes) => {
    for (const box of boxes) {
      if (box.type === 'trak') {
        const id = box.boxes.find((b) => b.type === 'tkhd').trackId;
        const mdia = box.boxes.find((b) => b.type === 'mdia');
        handlers.set(id, mdia.boxes.find((b) => b.type === 'hdlr').handlerType);
      } else if (box.type === 'traf') {
        const handler = handlers.get(box.boxes.find((b) => b.type === 'tfhd').trackId);
        for (const trun of box.boxes.filter((b) => b.type === 'trun')) {
          frames[handler] += trun.samples.length;
          if (handler === 'vide') {
            bframes ||= trun.samples.some((s) => (s.compositionTimeOffset ?? 0) !== 0);
          }
        }
      } else if (box.boxes) {
        walk(box.boxes);
      }
    }
  };
  walk(muxjs.mp4.tools.inspect(bytes));
  save('muxjs.mp4', bytes, {
    muxer: 'mux.js',
    layout: 'fragmented',
    bframes,
    video_frames: frames.vide,
    audio_frames: frames.soun,
  });
}

/** The packets of an input track, in decode order. */
async function packets(track) {
  const all = [];
  if (track) for await (const packet of new EncodedPacketSink(track).packets()) all.push(packet);
  return all;
}

/**
 * mediabunny copies IN.mp4's encoded packets, without decoding, into an Output with
 * Mp4OutputFormat: each track's packets go through an Encoded*PacketSource, the first one
 * with the input track's decoder config, the two tracks interleaved by time.
 */
async function mediabunnyCopy(path, fastStart, name, layout) {
  const input = new Input({ source: new BufferSource(readFileSync(path)), formats: ALL_FORMATS });
  const target = new BufferTarget();
  const output = new Output({ format: new Mp4OutputFormat({ fastStart }), target });
  const tracks = {};
  const videoTrack = await input.getPrimaryVideoTrack();
  if (videoTrack) {
    const source = new EncodedVideoPacketSource(videoTrack.codec);
    output.addVideoTrack(source);
    const config = await videoTrack.getDecoderConfig();
    tracks.video = { source, config, packets: await packets(videoTrack) };
  }
  const audioTrack = await input.getPrimaryAudioTrack();
  if (audioTrack) {
    const source = new EncodedAudioPacketSource(audioTrack.codec);
    output.addAudioTrack(source);
    const config = await audioTrack.getDecoderConfig();
    tracks.audio = { source, config, packets: await packets(audioTrack) };
  }
  await output.start();
  // Interleaved: next, always the track whose next packet starts earliest.
  const pending = Object.values(tracks).map((t) => ({ ...t, next: 0 }));
  for (;;) {
    const open = pending.filter((t) => t.next < t.packets.length);
    if (open.length === 0) break;
    const t = open.reduce((a, b) =>
      b.packets[b.next].timestamp < a.packets[a.next].timestamp ? b : a,
    );
    const meta = t.next === 0 ? { decoderConfig: t.config } : undefined;
    await t.source.add(t.packets[t.next++], meta);
  }
  await output.finalize();
  input.dispose();
  const videoPackets = tracks.video?.packets ?? [];
  save(name, new Uint8Array(target.buffer), {
    muxer: 'mediabunny',
    layout,
    bframes: reordered(videoPackets.map((p) => p.timestamp)),
    video_frames: videoPackets.length,
    audio_frames: tracks.audio?.packets.length ?? 0,
  });
}

mp4boxCreate(mp4boxDemux(inputMp4));
mp4boxSegment(inputMp4);
muxjsTransmux(inputTs);
await mediabunnyCopy(inputMp4, false, 'mediabunny-moov-last.mp4', 'progressive-moov-last');
await mediabunnyCopy(inputMp4, 'in-memory', 'mediabunny-faststart.mp4', 'progressive-moov-first');
await mediabunnyCopy(inputMp4, 'fragmented', 'mediabunny-fragmented.mp4', 'fragmented');
console.log(JSON.stringify(written));
