// A small reader of the fragmented MP4 our server sends (ISO/IEC 14496-12): the tracks of an
// init segment, and what each media fragment says about its time and its producer's clock.
// Plain ES module, no build step; every read is bounds-checked and a malformed box throws an
// Error naming the box and the offset, never a TypeError from deep inside.
//
//   init:     ftyp, moov > trak > (tkhd, mdia > (mdhd, hdlr))
//   fragment: [styp] [prft] moof > traf > (tfhd, tfdt) ... mdat

/** Seconds from the NTP epoch (1900) to the Unix epoch (1970). */
const NTP_UNIX_OFFSET = 2_208_988_800;

export class Mp4Error extends Error {}

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
function child(view, box, type) {
  for (const b of boxes(view, box.start + box.headerSize, box.end)) {
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

/** Reads `bytes` bytes as an unsigned number, checking the box has them. */
function uint(view, box, at, bytes) {
  if (at + bytes > box.end) throw new Mp4Error(`${box.type} at byte ${box.start} is too short`);
  return bytes === 8 ? Number(view.getBigUint64(at)) : view.getUint32(at);
}

/**
 * The tracks of an init segment: [{id, kind: 'video'|'audio'|handler, timescale}].
 * @param {ArrayBuffer} buffer
 */
export function parseInit(buffer) {
  const view = new DataView(buffer);
  const moov = need(
    [...boxes(view)].find((b) => b.type === 'moov'),
    'moov',
    'the init segment',
  );
  return children(view, moov, 'trak').map((trak) => {
    const tkhd = need(child(view, trak, 'tkhd'), 'tkhd', 'trak');
    const { version, at } = fullBox(view, tkhd);
    // creation and modification times come first: 4 bytes each in version 0, 8 in version 1.
    const id = uint(view, tkhd, at + (version === 1 ? 16 : 8), 4);
    const mdia = need(child(view, trak, 'mdia'), 'mdia', 'trak');
    const mdhd = need(child(view, mdia, 'mdhd'), 'mdhd', 'mdia');
    const m = fullBox(view, mdhd);
    const timescale = uint(view, mdhd, m.at + (m.version === 1 ? 16 : 8), 4);
    const hdlr = need(child(view, mdia, 'hdlr'), 'hdlr', 'mdia');
    const handler = fourcc(view, fullBox(view, hdlr).at + 4);
    const kind = handler === 'vide' ? 'video' : handler === 'soun' ? 'audio' : handler;
    return { id, kind, timescale };
  });
}

/**
 * What a media fragment says of time: each track fragment's decode time, and the producer
 * reference time (`prft`) written before it, if any.
 * @param {ArrayBuffer} buffer
 * @returns {{prft: {trackId: number, unixMs: number, mediaTime: number} | null,
 *            trafs: {trackId: number, decodeTime: number}[]}}
 */
export function parseFragment(buffer) {
  const view = new DataView(buffer);
  let prft = null;
  const trafs = [];
  for (const box of boxes(view)) {
    if (box.type === 'prft') {
      const { version, at } = fullBox(view, box);
      const trackId = uint(view, box, at, 4);
      const seconds = uint(view, box, at + 4, 4);
      const fraction = uint(view, box, at + 8, 4);
      const mediaTime = uint(view, box, at + 12, version === 1 ? 8 : 4);
      const unixMs = (seconds - NTP_UNIX_OFFSET) * 1000 + (fraction * 1000) / 2 ** 32;
      prft = { trackId, unixMs, mediaTime };
    } else if (box.type === 'moof') {
      for (const traf of children(view, box, 'traf')) {
        const tfhd = need(child(view, traf, 'tfhd'), 'tfhd', 'traf');
        const trackId = uint(view, tfhd, fullBox(view, tfhd).at, 4);
        const tfdt = child(view, traf, 'tfdt');
        let decodeTime = null;
        if (tfdt) {
          const { version, at } = fullBox(view, tfdt);
          decodeTime = uint(view, tfdt, at, version === 1 ? 8 : 4);
        }
        trafs.push({ trackId, decodeTime });
      }
    }
  }
  return { prft, trafs };
}
