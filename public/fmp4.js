// A small demuxer for the fragmented MP4 our server sends (ISO/IEC 14496-12): each track of an
// init segment with what a WebCodecs decoder needs, and each media fragment's samples with
// their times, sizes, key-frame flags and bytes. Plain ES module, no build step. Every read is
// bounds-checked: a malformed box throws an Mp4Error naming the box and the byte offset, never
// a TypeError or RangeError from deep inside.
//
//   init:     ftyp
//             moov > trak > tkhd
//                         > mdia > mdhd, hdlr
//                                > minf > stbl > stsd > avc1|avc3 > avcC
//                                                     > hvc1|hev1 > hvcC
//                                                     > mp4a > esds
//                                                     > Opus > dOps
//                  > mvex > trex
//   fragment: [styp] [prft] [emsg] moof > mfhd
//                                       > traf > tfhd, [tfdt], trun*
//             mdat

/** Seconds from the NTP epoch (1900) to the Unix epoch (1970). */
const NTP_UNIX_OFFSET = 2_208_988_800;
/** More samples than this in one run is not a live fragment: refuse before allocating. */
const MAX_SAMPLES_PER_RUN = 1 << 16;

export class Mp4Error extends Error {
  name = 'Mp4Error';
}

/**
 * The boxes in `view[start, end)`, as {type, start, headerSize, end}.
 * @param {DataView} view
 */
export function* boxes(view, start = 0, end = view.byteLength) {
  let pos = start;
  while (pos < end) {
    if (end - pos < 8) throw new Mp4Error(`truncated box header at byte ${pos}`);
    let size = view.getUint32(pos);
    const type = fourcc(view, pos + 4);
    let headerSize = 8;
    if (size === 1) {
      if (end - pos < 16) throw new Mp4Error(`truncated ${type} header at byte ${pos}`);
      size = Number(view.getBigUint64(pos + 8));
      headerSize = 16;
    } else if (size === 0) {
      size = end - pos;
    }
    if (size < headerSize || pos + size > end) {
      throw new Mp4Error(`${type} box at byte ${pos} has an impossible size ${size}`);
    }
    yield { type, start: pos, headerSize, end: pos + size };
    pos += size;
  }
}

function fourcc(view, at) {
  return String.fromCharCode(
    view.getUint8(at),
    view.getUint8(at + 1),
    view.getUint8(at + 2),
    view.getUint8(at + 3),
  );
}

/** The first child of `box` of `type`, or null. */
function child(view, box, type, from = box.start + box.headerSize) {
  for (const b of boxes(view, from, box.end)) {
    if (b.type === type) return b;
  }
  return null;
}

function children(view, box, type) {
  return [...boxes(view, box.start + box.headerSize, box.end)].filter((b) => b.type === type);
}

function need(box, type, where) {
  if (!box) throw new Mp4Error(`${where} has no ${type} box`);
  return box;
}

/** Version and flags of a full box, and where its fields start. */
function fullBox(view, box) {
  const at = box.start + box.headerSize;
  if (box.end - at < 4) throw new Mp4Error(`${box.type} at byte ${box.start} is too short`);
  const word = view.getUint32(at);
  return { version: word >>> 24, flags: word & 0xffffff, at: at + 4 };
}

/**
 * A bounded cursor over one box's fields: reading past the box's end throws an Mp4Error
 * naming it, so a short box can never be read into its neighbour.
 */
class Cursor {
  constructor(view, box, at) {
    this.view = view;
    this.box = box;
    this.pos = at;
  }

  #take(bytes) {
    const at = this.pos;
    if (at + bytes > this.box.end) {
      throw new Mp4Error(`${this.box.type} at byte ${this.box.start} is too short`);
    }
    this.pos += bytes;
    return at;
  }

  remaining() {
    return this.box.end - this.pos;
  }

  skip(bytes) {
    this.#take(bytes);
  }

  u8() {
    return this.view.getUint8(this.#take(1));
  }

  u16() {
    return this.view.getUint16(this.#take(2));
  }

  u32() {
    return this.view.getUint32(this.#take(4));
  }

  i32() {
    return this.view.getInt32(this.#take(4));
  }

  u64() {
    return Number(this.view.getBigUint64(this.#take(8)));
  }

  /** A 32-bit field in version 0, a 64-bit one in version 1. */
  sized(version) {
    return version === 1 ? this.u64() : this.u32();
  }

  bytes(length) {
    const at = this.#take(length);
    return new Uint8Array(this.view.buffer, this.view.byteOffset + at, length);
  }
}

function cursor(view, box) {
  const { version, flags, at } = fullBox(view, box);
  return { version, flags, c: new Cursor(view, box, at) };
}

/** A box's body, past its header, as a copy (decoder descriptions outlive the message). */
function body(view, box) {
  const start = view.byteOffset + box.start + box.headerSize;
  return new Uint8Array(view.buffer.slice(start, view.byteOffset + box.end));
}

// --- init segment ---

/**
 * The tracks of an init segment. Each: {id, kind: 'video'|'audio'|handler, timescale,
 * codec, description, width, height, sampleRate, channels, defaults: {duration, size, flags}}.
 * `codec` is the RFC 6381 / WebCodecs codec string (null for a sample entry we do not know),
 * `description` the decoder configuration record WebCodecs wants (avcC, hvcC, the AAC
 * AudioSpecificConfig, an OpusHead), or null.
 * @param {ArrayBuffer} buffer
 */
export function parseInit(buffer) {
  const view = new DataView(buffer);
  const top = [...boxes(view)];
  const moov = need(
    top.find((b) => b.type === 'moov'),
    'moov',
    'the init segment',
  );
  const defaults = new Map();
  const mvex = child(view, moov, 'mvex');
  if (mvex) {
    for (const trex of children(view, mvex, 'trex')) {
      // ISO/IEC 14496-12 §8.8.3: the defaults every fragment of the track may lean on.
      const { c } = cursor(view, trex);
      const trackId = c.u32();
      c.skip(4); // default_sample_description_index
      defaults.set(trackId, { duration: c.u32(), size: c.u32(), flags: c.u32() });
    }
  }
  return children(view, moov, 'trak').map((trak) => {
    const tkhd = need(child(view, trak, 'tkhd'), 'tkhd', 'trak');
    const t = cursor(view, tkhd);
    // creation and modification times come first: 4 bytes each in version 0, 8 in version 1.
    t.c.skip(t.version === 1 ? 16 : 8);
    const id = t.c.u32();
    const mdia = need(child(view, trak, 'mdia'), 'mdia', 'trak');
    const mdhd = need(child(view, mdia, 'mdhd'), 'mdhd', 'mdia');
    const m = cursor(view, mdhd);
    m.c.skip(m.version === 1 ? 16 : 8);
    const timescale = m.c.u32();
    if (timescale === 0) throw new Mp4Error(`track ${id} has a timescale of 0`);
    const hdlr = need(child(view, mdia, 'hdlr'), 'hdlr', 'mdia');
    const h = cursor(view, hdlr);
    h.c.skip(4); // pre_defined
    const handler = fourcc(view, h.c.pos);
    const kind = handler === 'vide' ? 'video' : handler === 'soun' ? 'audio' : handler;
    const track = {
      id,
      kind,
      timescale,
      codec: null,
      description: null,
      width: 0,
      height: 0,
      sampleRate: 0,
      channels: 0,
      defaults: defaults.get(id) ?? { duration: 0, size: 0, flags: 0 },
    };
    const minf = child(view, mdia, 'minf');
    const stbl = minf && child(view, minf, 'stbl');
    const stsd = stbl && child(view, stbl, 'stsd');
    if (stsd) readSampleEntry(view, stsd, track);
    return track;
  });
}

/**
 * The init segment with only the tracks whose ids are in `keep`: their `trak` and `trex`
 * boxes, every other box as it was. A SourceBuffer declared for those tracks only takes it
 * (one that finds a track it was not told of fails the append).
 * @param {ArrayBuffer} buffer
 * @param {Set<number>} keep
 * @returns {ArrayBuffer}
 */
export function initWithTracks(buffer, keep) {
  const view = new DataView(buffer);
  const whole = (box) => new Uint8Array(buffer, box.start, box.end - box.start);
  const trackOf = (box, fieldsAt) => {
    const c = cursor(view, box);
    c.c.skip(fieldsAt(c.version));
    return c.c.u32();
  };
  const parts = [];
  for (const top of boxes(view)) {
    if (top.type !== 'moov') {
      parts.push(whole(top));
      continue;
    }
    const kept = [];
    for (const box of boxes(view, top.start + top.headerSize, top.end)) {
      if (box.type === 'trak') {
        const tkhd = need(child(view, box, 'tkhd'), 'tkhd', 'trak');
        // creation and modification times: 4 bytes each in version 0, 8 in version 1.
        if (keep.has(trackOf(tkhd, (version) => (version === 1 ? 16 : 8)))) kept.push(whole(box));
      } else if (box.type === 'mvex') {
        const trexes = [...boxes(view, box.start + box.headerSize, box.end)].filter(
          (b) => b.type !== 'trex' || keep.has(trackOf(b, () => 0)),
        );
        kept.push(container('mvex', trexes.map(whole)));
      } else {
        kept.push(whole(box));
      }
    }
    parts.push(container('moov', kept));
  }
  return join(parts).buffer;
}

/** A container box of `type` around `children` (byte arrays). */
function container(type, children) {
  const size = 8 + children.reduce((sum, c) => sum + c.byteLength, 0);
  const head = new Uint8Array(8);
  new DataView(head.buffer).setUint32(0, size);
  for (let i = 0; i < 4; i += 1) head[4 + i] = type.charCodeAt(i);
  return join([head, ...children]);
}

function join(arrays) {
  const out = new Uint8Array(arrays.reduce((sum, a) => sum + a.byteLength, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.byteLength;
  }
  return out;
}

/** Fills in `track` from the first entry of its `stsd` (ISO/IEC 14496-12 §8.5.2). */
function readSampleEntry(view, stsd, track) {
  const { c } = cursor(view, stsd);
  if (c.u32() === 0) return;
  const [entry] = boxes(view, c.pos, stsd.end);
  if (!entry) return;
  const e = new Cursor(view, entry, entry.start + entry.headerSize);
  e.skip(8); // reserved, data_reference_index
  switch (entry.type) {
    case 'avc1':
    case 'avc3':
    case 'hvc1':
    case 'hev1': {
      // VisualSampleEntry (§12.1.3): 16 bytes of pre_defined and reserved, width, height,
      // resolutions, frame count, compressor name, depth: 70 bytes, then child boxes.
      e.skip(16);
      track.width = e.u16();
      track.height = e.u16();
      e.skip(50);
      const avc = entry.type.startsWith('avc');
      const config = need(child(view, entry, avc ? 'avcC' : 'hvcC', e.pos), avc ? 'avcC' : 'hvcC', entry.type);
      track.description = body(view, config);
      track.codec = avc
        ? avcCodec(entry.type, track.description)
        : hevcCodec(entry.type, track.description);
      break;
    }
    case 'mp4a':
    case 'Opus': {
      // AudioSampleEntry (§12.2.3); QuickTime's versions 1 and 2 carry more fields.
      const version = e.u16();
      e.skip(6);
      track.channels = e.u16();
      e.skip(6); // sample size, pre_defined, reserved
      track.sampleRate = e.u32() >>> 16;
      if (version === 1) e.skip(16);
      else if (version === 2) e.skip(36);
      if (entry.type === 'Opus') {
        const dops = need(child(view, entry, 'dOps', e.pos), 'dOps', 'Opus');
        track.codec = 'opus';
        track.description = opusHead(view, dops);
        track.sampleRate = 48000; // RFC 7845: Opus always decodes at 48 kHz
      } else {
        const esds = need(child(view, entry, 'esds', e.pos), 'esds', 'mp4a');
        const { objectType, config } = readEsds(view, esds);
        track.description = config;
        const aot = objectType === 0x40 ? audioObjectType(config) : null;
        track.codec =
          aot !== null ? `mp4a.40.${aot}` : `mp4a.${objectType.toString(16).padStart(2, '0')}`;
      }
      break;
    }
    default:
      track.codec = null;
  }
}

function hex2(n) {
  return n.toString(16).padStart(2, '0');
}

/** `avc1.PPCCLL` (ISO/IEC 14496-15 Annex E.2). */
function avcCodec(type, avcc) {
  if (avcc.length < 4) throw new Mp4Error('avcC is too short');
  return `${type}.${hex2(avcc[1])}${hex2(avcc[2])}${hex2(avcc[3])}`;
}

/** `hvc1.P.C.TL.CC…` (ISO/IEC 14496-15 Annex E.3), as src/fmp4/codec.rs writes it. */
function hevcCodec(type, hvcc) {
  if (hvcc.length < 13) throw new Mp4Error('hvcC is too short');
  const space = ['', 'A', 'B', 'C'][hvcc[1] >> 6];
  const tier = hvcc[1] & 0x20 ? 'H' : 'L';
  const profile = hvcc[1] & 0x1f;
  const compat = ((hvcc[2] << 24) | (hvcc[3] << 16) | (hvcc[4] << 8) | hvcc[5]) >>> 0;
  let reversed = 0;
  for (let i = 0; i < 32; i += 1) reversed = (reversed << 1) | ((compat >>> i) & 1);
  const constraints = [...hvcc.subarray(6, 12)];
  while (constraints.length > 0 && constraints[constraints.length - 1] === 0) constraints.pop();
  const tail = constraints.map((b) => `.${b.toString(16).toUpperCase()}`).join('');
  return `${type}.${space}${profile}.${(reversed >>> 0).toString(16).toUpperCase()}.${tier}${hvcc[12]}${tail}`;
}

/**
 * The object type and the DecoderSpecificInfo of an `esds` (ISO/IEC 14496-1 §7.2.6):
 * ES_Descriptor (tag 3) > DecoderConfigDescriptor (tag 4) > DecoderSpecificInfo (tag 5).
 */
function readEsds(view, esds) {
  const { c } = cursor(view, esds);
  const descriptor = () => {
    const tag = c.u8();
    let size = 0;
    for (let i = 0; i < 4; i += 1) {
      const b = c.u8();
      size = (size << 7) | (b & 0x7f);
      if (!(b & 0x80)) break;
    }
    if (size > c.remaining()) throw new Mp4Error(`esds descriptor ${tag} overruns its box`);
    return { tag, end: c.pos + size };
  };
  const es = descriptor();
  if (es.tag !== 3) throw new Mp4Error(`esds starts with descriptor ${es.tag}, not 3`);
  c.skip(2); // ES_ID
  const flags = c.u8();
  if (flags & 0x80) c.skip(2); // dependsOn_ES_ID
  if (flags & 0x40) c.skip(c.u8()); // URL
  if (flags & 0x20) c.skip(2); // OCR_ES_ID
  const dc = descriptor();
  if (dc.tag !== 4) throw new Mp4Error(`esds has descriptor ${dc.tag} where 4 belongs`);
  const objectType = c.u8();
  c.skip(12); // stream type, buffer size, max and average bitrate
  let config = null;
  if (c.pos < dc.end) {
    const dsi = descriptor();
    if (dsi.tag === 5) config = c.bytes(dsi.end - c.pos).slice();
  }
  return { objectType, config };
}

/** The audio object type at the start of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1). */
function audioObjectType(config) {
  if (!config || config.length < 1) return null;
  const aot = config[0] >> 3;
  if (aot !== 31) return aot;
  if (config.length < 2) return null;
  return 32 + (((config[0] & 0x07) << 3) | (config[1] >> 5));
}

/**
 * An Ogg OpusHead (RFC 7845 §5.1), what WebCodecs takes as an Opus description, from the
 * `dOps` box of ISO/IEC 23003-5 ("Encapsulation of Opus in ISOBMFF" §4.3.2): the same
 * fields, but big-endian and without the magic.
 */
function opusHead(view, dops) {
  const c = new Cursor(view, dops, dops.start + dops.headerSize);
  c.skip(1); // version
  const channels = c.u8();
  const preSkip = c.u16();
  const rate = c.u32();
  const gain = c.u16();
  const family = c.u8();
  const table = family !== 0 ? c.bytes(Math.min(c.remaining(), 2 + channels)) : new Uint8Array();
  const head = new Uint8Array(19 + table.length);
  const out = new DataView(head.buffer);
  head.set([0x4f, 0x70, 0x75, 0x73, 0x48, 0x65, 0x61, 0x64]); // "OpusHead"
  out.setUint8(8, 1);
  out.setUint8(9, channels);
  out.setUint16(10, preSkip, true);
  out.setUint32(12, rate, true);
  out.setUint16(16, gain, true);
  out.setUint8(18, family);
  head.set(table, 19);
  return head;
}

// --- media fragments ---

/** ISO/IEC 14496-12 §8.8.3.1: sample_is_non_sync_sample, and sample_depends_on == 1. */
function isKey(flags) {
  return ((flags >>> 16) & 1) === 0 && ((flags >>> 24) & 3) !== 1;
}

/**
 * What a media fragment holds. Without `tracks` (from parseInit), only times: each track
 * fragment's decode time and the producer reference time (`prft`). With them, every sample:
 * {dts, pts, duration, size, key, data}, times in the track's timescale, `data` a view of
 * `buffer` (copy it to keep it past the buffer's life).
 * @param {ArrayBuffer} buffer
 * @param {ReturnType<typeof parseInit>} [tracks]
 * @returns {{prft: {trackId: number, unixMs: number, mediaTime: number} | null,
 *            trafs: {trackId: number, decodeTime: number | null, samples?: object[]}[]}}
 */
export function parseFragment(buffer, tracks) {
  const view = new DataView(buffer);
  let prft = null;
  const trafs = [];
  for (const box of boxes(view)) {
    if (box.type === 'prft') {
      // ISO/IEC 14496-12 §8.16.5: the producer's NTP clock at a media time of one track.
      const { version, c } = cursor(view, box);
      const trackId = c.u32();
      const seconds = c.u32();
      const fraction = c.u32();
      const mediaTime = c.sized(version);
      const unixMs = (seconds - NTP_UNIX_OFFSET) * 1000 + (fraction * 1000) / 2 ** 32;
      prft = { trackId, unixMs, mediaTime };
    } else if (box.type === 'moof') {
      readMoof(view, box, tracks, trafs);
    }
  }
  return { prft, trafs };
}

function readMoof(view, moof, tracks, trafs) {
  // §8.8.7.1: without a base-data-offset or default-base-is-moof, the first track fragment's
  // data starts at the moof and each later one's where the previous one's data ended.
  let previousEnd = moof.start;
  for (const traf of children(view, moof, 'traf')) {
    const tfhd = need(child(view, traf, 'tfhd'), 'tfhd', 'traf');
    const h = cursor(view, tfhd);
    const trackId = h.c.u32();
    const track = tracks?.find((t) => t.id === trackId);
    const defaults = { ...(track?.defaults ?? { duration: 0, size: 0, flags: 0 }) };
    let base = previousEnd;
    if (h.flags & 0x01) base = h.c.u64();
    else if (h.flags & 0x20000) base = moof.start;
    if (h.flags & 0x02) h.c.skip(4); // sample_description_index
    if (h.flags & 0x08) defaults.duration = h.c.u32();
    if (h.flags & 0x10) defaults.size = h.c.u32();
    if (h.flags & 0x20) defaults.flags = h.c.u32();
    const tfdt = child(view, traf, 'tfdt');
    let decodeTime = null;
    if (tfdt) {
      const t = cursor(view, tfdt);
      decodeTime = t.c.sized(t.version);
    }
    if (!tracks) {
      trafs.push({ trackId, decodeTime });
      continue;
    }
    if (!track) throw new Mp4Error(`traf at byte ${traf.start} is for unknown track ${trackId}`);
    const samples = [];
    let dts = decodeTime ?? 0;
    let dataAt = base;
    for (const trun of children(view, traf, 'trun')) {
      dataAt = readTrun(view, trun, base, dataAt, defaults, samples, dts);
      const last = samples[samples.length - 1];
      if (last) dts = last.dts + last.duration;
    }
    previousEnd = dataAt;
    trafs.push({ trackId, decodeTime, samples });
  }
}

/** Appends a track run's samples (§8.8.8); returns where its data ends. */
function readTrun(view, trun, base, dataAt, defaults, samples, firstDts) {
  const { version, flags, c } = cursor(view, trun);
  const count = c.u32();
  const fieldBytes =
    4 * [0x100, 0x200, 0x400, 0x800].filter((bit) => flags & bit).length;
  if (count > MAX_SAMPLES_PER_RUN || count * fieldBytes > c.remaining()) {
    throw new Mp4Error(`trun at byte ${trun.start} claims ${count} samples it has no room for`);
  }
  let at = flags & 0x01 ? base + c.i32() : dataAt;
  const firstFlags = flags & 0x04 ? c.u32() : null;
  let dts = firstDts;
  for (let i = 0; i < count; i += 1) {
    const duration = flags & 0x100 ? c.u32() : defaults.duration;
    const size = flags & 0x200 ? c.u32() : defaults.size;
    let sampleFlags = flags & 0x400 ? c.u32() : defaults.flags;
    if (i === 0 && firstFlags !== null) sampleFlags = firstFlags;
    // Version 0 offsets are unsigned, version 1 signed (§8.8.8.3).
    const offset = flags & 0x800 ? (version === 0 ? c.u32() : c.i32()) : 0;
    if (at < 0 || at + size > view.byteLength) {
      throw new Mp4Error(
        `trun at byte ${trun.start}: sample ${i} (${size} bytes at ${at}) lies outside the fragment`,
      );
    }
    samples.push({
      dts,
      pts: dts + offset,
      duration,
      size,
      key: isKey(sampleFlags),
      data: new Uint8Array(view.buffer, view.byteOffset + at, size),
    });
    at += size;
    dts += duration;
  }
  return at;
}
