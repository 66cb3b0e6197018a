// What both players measure the same way: the server's clock, the encoder's wall clock for
// each frame (from `prft` boxes), per-frame latency, bitrate and frame rate.

/** How often the page re-measures its clock against the server's, in rounds of requests a
 * little apart (the one with the shortest round trip wins: its halves are the most even). */
const CLOCK_SYNC_MS = 60_000;
const SYNC_ROUNDS = 5;
const SYNC_SPACING_MS = 50;
/** Producer stamps kept: 20 s of a 30 fps stream. */
const PRODUCER_HISTORY = 600;
/** A frame further than this from the newest stamp before it is not measured. */
const MAX_STAMP_DISTANCE_S = 1;

/**
 * The server's clock as seen from the page: offset = server time − page time, from /api/time
 * (the MPD's UTCTiming) with the round trip halved, keeping the round with the shortest trip.
 */
export class ServerClock {
  offsetMs = null;
  #timer = 0;

  start() {
    this.#sync();
    this.#timer = setInterval(() => this.#sync(), CLOCK_SYNC_MS);
  }

  stop() {
    clearInterval(this.#timer);
  }

  async #sync() {
    let best = null;
    for (let i = 0; i < SYNC_ROUNDS; i += 1) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, SYNC_SPACING_MS));
      try {
        const sent = performance.now();
        const response = await fetch('/api/time', { cache: 'no-store' });
        // The server writes whole milliseconds, rounded down: its clock was half a one later.
        const server = Date.parse(await response.text()) + 0.5;
        const received = performance.now();
        if (!response.ok || Number.isNaN(server)) continue;
        const rtt = received - sent;
        const pageMs = performance.timeOrigin + (sent + received) / 2;
        if (!best || rtt < best.rtt) best = { rtt, offset: server - pageMs };
      } catch {
        // Offline for a moment: the next round will do.
      }
    }
    if (best) this.offsetMs = best.offset;
  }
}

/**
 * The encoder's wall clock for media times of the video track: every `prft` seen, and for
 * any frame the newest stamp at or before it, counted on by media time.
 */
export class ProducerClock {
  #stamps = []; // [{media (s), wallMs}], oldest first

  clear() {
    this.#stamps = [];
  }

  add(mediaSeconds, wallMs) {
    const stamps = this.#stamps;
    stamps.push({ media: mediaSeconds, wallMs });
    if (stamps.length > PRODUCER_HISTORY) stamps.splice(0, stamps.length - PRODUCER_HISTORY);
  }

  /** The encoder's wall clock (server ms) for media time `media` (s), or null. */
  wallMsAt(media) {
    const stamps = this.#stamps;
    let i = stamps.length - 1;
    while (i >= 0 && stamps[i].media > media + 0.001) i -= 1;
    if (i < 0 || media - stamps[i].media > MAX_STAMP_DISTANCE_S) return null;
    return stamps[i].wallMs + (media - stamps[i].media) * 1000;
  }
}

/** Per-frame latencies: the median of the recent ones, and a long history for benchmarks. */
export class LatencyMeter {
  #windowMs;
  #limit;
  #samples = []; // [time, ms]

  constructor(windowMs, limit) {
    this.#windowMs = windowMs;
    this.#limit = limit;
  }

  add(ms) {
    this.#samples.push([performance.now(), ms]);
    if (this.#samples.length > this.#limit) this.#samples.splice(0, this.#samples.length - this.#limit);
  }

  median() {
    const since = performance.now() - this.#windowMs;
    const recent = [];
    for (let i = this.#samples.length - 1; i >= 0 && this.#samples[i][0] >= since; i -= 1) {
      recent.push(this.#samples[i][1]);
    }
    if (recent.length === 0) return null;
    recent.sort((a, b) => a - b);
    return Math.round(recent[recent.length >> 1]);
  }

  all() {
    return this.#samples.map(([, ms]) => ms);
  }
}

/** Bytes received over a sliding window, as bits per second. */
export class ByteRate {
  #windowMs;
  #samples = []; // [time, bytes], oldest first

  constructor(windowMs) {
    this.#windowMs = windowMs;
  }

  add(bytes) {
    this.#samples.push([performance.now(), bytes]);
    this.#forgetOld();
  }

  bitsPerSecond() {
    this.#forgetOld();
    const bytes = this.#samples.reduce((sum, [, n]) => sum + n, 0);
    return Math.round((bytes * 8 * 1000) / this.#windowMs);
  }

  #forgetOld() {
    const since = performance.now() - this.#windowMs;
    while (this.#samples.length > 0 && this.#samples[0][0] < since) this.#samples.shift();
  }
}

/** Frames per second from a running count of frames shown, sampled now and then. */
export class FrameRate {
  value = null;
  #windowMs;
  #last = null; // {time, frames}

  constructor(windowMs) {
    this.#windowMs = windowMs;
  }

  /** @param {number | null} frames  frames shown so far; it may start again from zero */
  sample(frames) {
    if (frames === null) return;
    const time = performance.now();
    if (!this.#last || frames < this.#last.frames) {
      this.#last = { time, frames };
      return;
    }
    if (time - this.#last.time < this.#windowMs) return;
    this.value = Math.round(((frames - this.#last.frames) * 10_000) / (time - this.#last.time)) / 10;
    this.#last = { time, frames };
  }
}

/** "avc1.64001f, mp4a.40.2" */
export function describeCodecs(info) {
  return String(info?.codecs ?? info?.mime ?? '')
    .split(',')
    .map((codec) => codec.trim())
    .join(', ');
}
