// mp4box.js's segmentation throughput, the JavaScript yardstick for `package`: reads a
// progressive MP4 (up to ~1 GB or more) in 4 MiB chunks into mp4box.js's appendBuffer, at the
// file positions mp4box.js asks for (so a moov at the end is read before the samples), with
// every track segmented into ~2 s media segments, whose bytes are counted and dropped; used
// samples are released so memory stays bounded. mp4box.js comes from tests/browser (npm ci
// there), so this runs from anywhere, e.g. the repo root:
//   node scripts/mp4box-throughput.mjs FILE
// Prints one JSON line: {bytes_in, segment_bytes, secs, gb_per_s, segments, peak_rss_mb}.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const { MP4BoxBuffer, createFile } = require('mp4box');

const CHUNK = 4 << 20;
const SEGMENT_SECS = 2;

const path = process.argv[2];
if (!path) {
  console.error('usage: node scripts/mp4box-throughput.mjs FILE');
  process.exit(2);
}

const fd = openSync(path, 'r');
const size = fstatSync(fd).size;
const file = createFile();
let bytesIn = 0;
let segmentBytes = 0;
let segments = 0;

file.onError = (module, message) => {
  throw new Error(`mp4box.js ${module}: ${message}`);
};
file.onReady = (info) => {
  // mp4box.js takes one nbSamples for all tracks (it refuses a track whose count differs), so
  // the count is ~2 s of the video (of the first track if there is none). rapAlignement cuts
  // video only at sync samples: at the first one past the count, which closes the segment, so
  // with a 2 s GOP most video segments are 4 s (and 2 s of video samples is less audio).
  const lead = info.tracks.find((t) => t.type === 'video') ?? info.tracks[0];
  const rate = lead.nb_samples / (lead.duration / lead.timescale);
  const nbSamples = Math.max(1, Math.round(rate * SEGMENT_SECS));
  for (const track of info.tracks) {
    file.setSegmentOptions(track.id, null, { nbSamples, rapAlignement: true });
  }
  file.initializeSegmentation();
  file.start();
};
file.onSegment = (id, _user, buffer, nextSample) => {
  segments += 1;
  segmentBytes += buffer.byteLength;
  // The samples up to this segment's end are written out: let mp4box.js drop their data.
  file.releaseUsedSamples(id, nextSample);
};

/** Reads `length` bytes at `position` into a fresh MP4BoxBuffer, which mp4box.js keeps. */
function chunkAt(position, length) {
  const ab = new MP4BoxBuffer(length);
  const view = new Uint8Array(ab);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, view, got, length - got, position + got);
    if (n === 0) throw new Error(`short read at ${position + got}`);
    got += n;
  }
  ab.fileStart = position;
  return ab;
}

const start = process.hrtime.bigint();
let position = 0;
while (position < size) {
  const length = Math.min(CHUNK, size - position);
  bytesIn += length;
  // appendBuffer answers with the next file position it wants, past what it already holds:
  // after a moov at the end, back at the first sample it has not read yet.
  const next = file.appendBuffer(chunkAt(position, length));
  position = Number.isFinite(next) && next !== position ? next : position + length;
  if (bytesIn > 4 * size) throw new Error(`read ${bytesIn} bytes of a ${size}-byte file`);
}
file.flush();
const secs = Number(process.hrtime.bigint() - start) / 1e9;
closeSync(fd);

console.log(
  JSON.stringify({
    bytes_in: bytesIn,
    segment_bytes: segmentBytes,
    secs: Number(secs.toFixed(3)),
    gb_per_s: Number((bytesIn / secs / 1e9).toFixed(3)),
    segments,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  }),
);
