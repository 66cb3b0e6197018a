// Plays one websocketlivestream stream from /ws/{name} into a <video> through Media Source
// Extensions (ManagedMediaSource where the browser has it, as iOS Safari does).
//
// The server's protocol (SPEC.md, "WebSocket protocol"):
//   text   {"type":"init","mime":…,"codecs":…,…}   followed by one binary frame: the init segment
//   binary media: whole top-level boxes, each frame appendable to a SourceBuffer as it is
//   text   {"type":"skipped","fragments":N}      we were too slow and were moved to a key frame
//   text   {"type":"end"}                        then close code 1000
// When the source restarts, init text and init segment come again on the same socket.
//
// Latency is measured per frame shown: the wall clock at which the frame reaches the screen
// (requestVideoFrameCallback) minus the wall clock the encoder wrote for it in the `prft` box
// before its fragment, with the page's clock lined up with the server's through /api/time.

import { parseFragment, parseInit } from './fmp4.js';

/**
 * Where playback aims: this far behind the newest buffered media, in seconds. Less, and
 * Chromium's renderers run dry and stall for far longer than the gain: measured here, a
 * stream with sound stalls below about 0.12 s, a silent one holds 0.07 s.
 */
const LIVE_OFFSET_WITH_AUDIO = 0.12;
const LIVE_OFFSET_VIDEO_ONLY = 0.07;
/** A playhead further behind the newest buffered media than this jumps forward. */
const MAX_LAG = 1.0;
/** Browsers round media times; a playhead this close to a range counts as inside it. */
const TIME_TOLERANCE = 0.01;
/** Lags between are steered to the live offset with the playback rate, which a viewer barely
 * notices: this much faster or slower per second of lag off target, within MAX_RATE_CHANGE. */
const RATE_PER_SECOND_OFF = 0.5;
const MAX_RATE_CHANGE = 0.1;
/** Further behind than this (a joiner starting at its key frame), fast-forward harder. */
const FAST_ABOVE = 0.2;
const FAST_PER_SECOND_OFF = 1.5;
const MAX_FAST_CHANGE = 1.0;
/** Media older than this behind the playhead is removed from the SourceBuffer. */
const KEEP_BEHIND = 10;
/** Trim only once this much can go, so removals stay few and large. */
const TRIM_STEP = 5;
/** After a QuotaExceededError, keep only this much behind the playhead. */
const QUOTA_KEEP_BEHIND = 1;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;
const TICK_MS = 250;
const BITRATE_WINDOW_MS = 2000;
const FPS_WINDOW_MS = 1000;
/** The latency shown is the median over this window of per-frame measurements. */
const LATENCY_WINDOW_MS = 1000;
/** Per-frame latencies kept for `latencies()` (a benchmark reads them). */
const LATENCY_HISTORY = 20_000;
/** How often the page re-measures its clock against the server's. */
const CLOCK_SYNC_MS = 60_000;

const MediaSourceImpl = globalThis.ManagedMediaSource ?? globalThis.MediaSource;
const HAS_FRAME_CALLBACK = 'requestVideoFrameCallback' in HTMLVideoElement.prototype;
const MEDIA_ERRORS = ['', 'aborted', 'network error', 'decode error', 'source not supported'];

export class MsePlayer {
  /** The latest init message as the server sent it, fields we do not use included. */
  info = null;

  #video;
  #name;
  #onStatus;
  #onError;
  #log;

  #ws = null;
  #sink = null;
  #tickTimer = 0;
  #retryTimer = 0;
  #attempt = 0; // failed connections in a row, for the back-off
  #ended = false; // the server said the stream ended; retry slowly until it is back
  #unloading = false;
  #socketOpened = false; // the current socket got as far as `open`
  #started = false; // the current sink has been seeked to its live edge and told to play
  #frameShown = false; // the current sink has put a picture on screen
  #openedAt = null; // socket open time, until this connection's first picture is shown

  #joinMs = null;
  #skipped = 0;
  #reconnects = 0;
  #bitrate = new ByteRate(BITRATE_WINDOW_MS);
  #fps = new FrameRate(FPS_WINDOW_MS);
  #clock = new ServerClock();
  #latency = new LatencyMeter(LATENCY_WINDOW_MS, LATENCY_HISTORY);
  #expectInitSegment = false; // the next binary frame is an init segment
  #videoTrack = null; // {id, timescale} of the stream's video
  #producerTimes = []; // [{media (s), wallMs}] from prft boxes, oldest first
  #hidden = false; // the tab is hidden: no socket, no decoding
  #liveOffset = LIVE_OFFSET_WITH_AUDIO; // from the stream's tracks

  /**
   * @param {HTMLVideoElement} video
   * @param {string} name  the stream name, as in /ws/{name}
   * @param {{onStatus?: (text: string) => void, onError?: (text: string | null) => void,
   *          debug?: boolean}} options  onError(null) means the error is over
   */
  constructor(video, name, { onStatus = () => {}, onError = () => {}, debug = false } = {}) {
    this.#video = video;
    this.#name = name;
    this.#onStatus = onStatus;
    this.#onError = onError;
    this.#log = debug ? (...args) => console.debug('[wslive]', ...args) : () => {};
  }

  /** True when this browser has some form of Media Source Extensions. */
  static isSupported() {
    return Boolean(MediaSourceImpl);
  }

  start() {
    if (!MsePlayer.isSupported()) {
      this.#onError('This browser has no Media Source Extensions, so it cannot play this stream.');
      this.#onStatus('Cannot play this stream.');
      return;
    }
    this.#video.addEventListener('error', this.#onVideoError);
    this.#video.addEventListener('playing', this.#onPlaying);
    addEventListener('pagehide', this.#onPageHide);
    addEventListener('pageshow', this.#onPageShow);
    document.addEventListener('visibilitychange', this.#onVisibilityChange);
    this.#tickTimer = setInterval(() => this.#tick(), TICK_MS);
    this.#clock.start();
    this.#watchFrames();
    this.#hidden = document.visibilityState === 'hidden';
    if (this.#hidden) this.#onStatus('Paused while the tab is hidden.');
    else this.#connect();
  }

  destroy() {
    clearInterval(this.#tickTimer);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = 0;
    this.#dropSocket();
    this.#dropSink();
    this.#video.removeEventListener('error', this.#onVideoError);
    this.#video.removeEventListener('playing', this.#onPlaying);
    removeEventListener('pagehide', this.#onPageHide);
    removeEventListener('pageshow', this.#onPageShow);
    document.removeEventListener('visibilitychange', this.#onVisibilityChange);
    this.#clock.stop();
    // With no src, load() empties the element without reporting an error.
    this.#video.removeAttribute('src');
    this.#video.load();
  }

  stats() {
    return {
      latencyMs: this.#latency.median(),
      joinMs: this.#joinMs === null ? null : Math.round(this.#joinMs),
      bufferMs: this.#bufferMs(),
      fps: this.#fps.value,
      bitrateBps: this.#bitrate.bitsPerSecond(),
      skipped: this.#skipped,
      reconnects: this.#reconnects,
    };
  }

  /** Every per-frame latency measured so far (the newest LATENCY_HISTORY), in ms. */
  latencies() {
    return this.#latency.all();
  }

  // --- connection ---

  #connect() {
    this.#retryTimer = 0;
    // The old picture stays on screen until this connection's first init replaces it.
    this.#dropSink();
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${scheme}//${location.host}/ws/${encodeURIComponent(this.#name)}`);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      this.#socketOpened = true;
      this.#openedAt = performance.now();
      this.#onStatus('Connected, waiting for the stream…');
    };
    ws.onmessage = (event) => {
      if (typeof event.data === 'string') this.#onText(event.data);
      else this.#onMedia(event.data);
    };
    // An `error` event carries no detail and is always followed by `close`, which has the code.
    ws.onclose = (event) => this.#onClose(event);
    this.#ws = ws;
    this.#socketOpened = false;
    this.#onStatus('Connecting…');
  }

  /** Closes the socket without reporting it: the caller decides what happens next. */
  #dropSocket() {
    const ws = this.#ws;
    if (!ws) return;
    this.#ws = null;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.close();
  }

  #onClose(event) {
    this.#ws = null;
    this.#openedAt = null;
    if (this.#unloading) return;
    if (this.#ended) {
      this.#scheduleReconnect('Stream ended. Checking again in');
      return;
    }
    const detail = `code ${event.code}${event.reason ? `: ${event.reason}` : ''}`;
    this.#onError(
      this.#socketOpened
        ? `Connection lost (${detail}).`
        : `Cannot connect to the stream (${detail}).`,
    );
    this.#scheduleReconnect('Reconnecting in');
  }

  /** @param {string} what  the status before the delay, e.g. "Reconnecting in" */
  #scheduleReconnect(what) {
    // After the end of a stream there is no hurry: poll at the slowest rate until it is back.
    const base = this.#ended
      ? RETRY_MAX_MS
      : Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** this.#attempt);
    this.#attempt += 1;
    // Jitter spreads out the viewers who all lost their connection at the same moment.
    const delay = base / 2 + (Math.random() * base) / 2;
    this.#retryTimer = setTimeout(() => {
      this.#reconnects += 1;
      this.#connect();
    }, delay);
    this.#onStatus(`${what} ${(delay / 1000).toFixed(1)} s…`);
  }

  /** Something the current MediaSource cannot recover from: start over on a new connection. */
  #fail(message) {
    this.#log('fatal:', message);
    this.#onError(message);
    this.#dropSink();
    if (this.#retryTimer || this.#unloading) return;
    this.#dropSocket();
    this.#scheduleReconnect('Reconnecting in');
  }

  #onPageHide = () => {
    // The browser closes the socket as the page goes; that is not a failure to report.
    this.#unloading = true;
  };

  #onPageShow = (event) => {
    // Back from the back/forward cache: the socket is gone and nothing is scheduled.
    if (!event.persisted) return;
    this.#unloading = false;
    if (!this.#ws && !this.#retryTimer && !this.#hidden) this.#connect();
  };

  // A hidden tab decodes nothing worth seeing and falls behind: it lets go of the stream, and
  // coming back starts from the newest key frame, at the live edge.
  #onVisibilityChange = () => {
    const hidden = document.visibilityState === 'hidden';
    if (hidden === this.#hidden) return;
    this.#hidden = hidden;
    if (hidden) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = 0;
      this.#dropSocket();
      this.#dropSink();
      this.#onStatus('Paused while the tab is hidden.');
    } else if (!this.#ws && !this.#unloading) {
      this.#attempt = 0;
      this.#connect();
    }
  };

  // --- messages ---

  #onText(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      this.#log('ignored text that is not JSON:', text);
      return;
    }
    switch (message.type) {
      case 'init':
        this.#onInit(message);
        break;
      case 'skipped':
        this.#skipped += Number(message.fragments) || 0;
        this.#log('server skipped', message.fragments, 'fragments');
        break;
      case 'end':
        this.#ended = true;
        this.#onStatus('Stream ended.');
        break;
      default:
        this.#log('ignored message:', message);
    }
  }

  #onInit(info) {
    const previous = this.info;
    this.info = info;
    this.#ended = false;
    this.#expectInitSegment = true;
    this.#log('init:', info);
    if (!MediaSourceImpl.isTypeSupported(info.mime)) {
      // Media is dropped until an init we can play arrives (the source may restart).
      this.#log('unsupported:', info.mime);
      this.#dropSink();
      this.#onError(`This browser cannot play ${describeCodecs(info)} through MSE.`);
      this.#onStatus('Cannot play this stream.');
      return;
    }
    // The same codecs again (a source restart): the server keeps timestamps continuous, so
    // the new init segment is simply appended to the SourceBuffer we have.
    const sameCodecs = previous?.mime === info.mime;
    if (this.#sink && (sameCodecs || this.#sink.changeType(info.mime))) {
      if (this.#frameShown) this.#showLive();
      return;
    }
    this.#newSink(info.mime);
  }

  #onMedia(bytes) {
    this.#bitrate.add(bytes.byteLength);
    if (this.#expectInitSegment) {
      this.#expectInitSegment = false;
      this.#readInit(bytes);
    } else {
      this.#readFragment(bytes);
    }
    // Without a sink (no init yet, or codecs we cannot play) media has nowhere to go.
    this.#sink?.append(bytes);
  }

  /** Learns the video track's id and timescale, to read the fragments' prft boxes. */
  #readInit(bytes) {
    try {
      const tracks = parseInit(bytes);
      const video = tracks.find((track) => track.kind === 'video');
      this.#videoTrack = video ? { id: video.id, timescale: video.timescale } : null;
      this.#liveOffset = tracks.some((track) => track.kind === 'audio')
        ? LIVE_OFFSET_WITH_AUDIO
        : LIVE_OFFSET_VIDEO_ONLY;
    } catch (err) {
      this.#videoTrack = null;
      this.#log('unreadable init segment:', err.message);
    }
  }

  /** Notes when the encoder stamped this fragment's video (its prft), for latency. */
  #readFragment(bytes) {
    const video = this.#videoTrack;
    if (!video) return;
    let prft;
    try {
      ({ prft } = parseFragment(bytes));
    } catch (err) {
      // MSE will judge the bytes; here they only cost a latency sample.
      this.#log('unreadable fragment:', err.message);
      return;
    }
    if (!prft || prft.trackId !== video.id) return;
    const times = this.#producerTimes;
    times.push({ media: prft.mediaTime / video.timescale, wallMs: prft.unixMs });
    if (times.length > 600) times.splice(0, times.length - 600);
  }

  /** Measures the latency of every frame the element presents. */
  #watchFrames() {
    if (!HAS_FRAME_CALLBACK) return;
    const onFrame = (_now, meta) => {
      this.#measure(meta.mediaTime, performance.timeOrigin + meta.expectedDisplayTime);
      this.#video.requestVideoFrameCallback(onFrame);
    };
    this.#video.requestVideoFrameCallback(onFrame);
  }

  /** One frame of media time `media` (s) shown at page wall clock `shownMs`. */
  #measure(media, shownMs) {
    const offset = this.#clock.offsetMs;
    if (offset === null || !this.#sink) return;
    // The newest stamp at or before this frame; frames between stamps count on from it.
    const times = this.#producerTimes;
    let i = times.length - 1;
    while (i >= 0 && times[i].media > media + 0.001) i -= 1;
    if (i < 0 || media - times[i].media > 1) return;
    const captureMs = times[i].wallMs + (media - times[i].media) * 1000;
    this.#latency.add(shownMs + offset - captureMs);
  }

  // --- media ---

  #newSink(mime) {
    this.#dropSink();
    this.#started = false;
    this.#frameShown = false;
    const sink = new MseSink(this.#video, mime, {
      onUpdated: () => this.#onUpdated(),
      onFatal: (message) => this.#fail(message),
      log: this.#log,
    });
    this.#sink = sink;
    this.#onStatus('Starting…');
    if (HAS_FRAME_CALLBACK) {
      // Registered after the new source is attached, so it fires for the new stream's picture.
      this.#video.requestVideoFrameCallback(() => {
        if (sink === this.#sink) this.#onFrameShown();
      });
    }
  }

  #dropSink() {
    this.#sink?.close();
    this.#sink = null;
    this.#producerTimes = [];
  }

  /** After every completed append or remove. */
  #onUpdated() {
    const range = lastRange(this.#video.buffered);
    // Buffered is what every track has: it stays empty until audio and video both arrived.
    if (!range) return;
    // A joiner gets the newest group of pictures in one burst. Appends are far quicker than
    // frames arrive, so the queue runs empty right after the burst: seek then, once, and the
    // first picture shown is the live one.
    if (this.#started || this.#sink.pending() > 0) return;
    this.#started = true;
    this.#video.currentTime = range.start;
    this.#play();
  }

  #play() {
    // Muted video may autoplay, but Firefox headless needs this explicit call.
    this.#video.play().catch((err) => {
      this.#log('play() refused:', err.name, err.message);
      if (err.name === 'NotAllowedError') this.#onStatus('Press play to start.');
    });
  }

  // Without requestVideoFrameCallback, `playing` is the nearest sign of a picture on screen.
  #onPlaying = () => {
    if (!HAS_FRAME_CALLBACK && this.#sink) this.#onFrameShown();
  };

  #onFrameShown() {
    if (this.#frameShown) return;
    this.#frameShown = true;
    if (this.#openedAt !== null) {
      this.#joinMs = performance.now() - this.#openedAt;
      this.#openedAt = null;
    }
    this.#attempt = 0;
    this.#onError(null);
    this.#showLive();
  }

  #showLive() {
    this.#onStatus(`Live · ${describeStream(this.info)}`);
  }

  #onVideoError = () => {
    const error = this.#video.error;
    // Errors from a source we have already let go of are not news.
    if (!error || !this.#sink) return;
    this.#fail(`Video error: ${describeMediaError(error)}`);
  };

  #tick() {
    this.#fps.sample(this.#video);
    if (!this.#sink || !this.#started) return;
    const range = lastRange(this.#video.buffered);
    if (!range) return;
    this.#keepLive(range);
    this.#trim(range);
  }

  /** Keeps the playhead near the newest media: a jump when far behind, else a faster rate. */
  #keepLive(range) {
    const video = this.#video;
    // A paused viewer is left alone; the jump happens once they press play.
    if (video.paused) return;
    const now = video.currentTime;
    const lag = range.end - now;
    // Before the newest range means stuck at a gap, e.g. where the server skipped fragments.
    if (now < range.start - TIME_TOLERANCE || lag > MAX_LAG) {
      this.#log(`jump to live: ${now.toFixed(2)} -> ${liveTarget(range, this.#liveOffset).toFixed(2)}`);
      video.currentTime = liveTarget(range, this.#liveOffset);
      video.playbackRate = 1;
      return;
    }
    // Faster when behind, slower when about to run dry (dash.js steers its low-latency mode
    // the same way); steps of 1% keep the rate from twitching with every frame.
    const off = lag - this.#liveOffset;
    const change =
      off > FAST_ABOVE
        ? Math.min(MAX_FAST_CHANGE, MAX_RATE_CHANGE + (off - FAST_ABOVE) * FAST_PER_SECOND_OFF)
        : Math.max(-MAX_RATE_CHANGE, Math.min(MAX_RATE_CHANGE, off * RATE_PER_SECOND_OFF));
    const rate = Math.round((1 + change) * 100) / 100;
    if (rate !== video.playbackRate) video.playbackRate = rate;
  }

  #trim(range) {
    const buffered = this.#video.buffered;
    // When paused, the playhead says nothing about what will be needed: keep the newest only.
    const playhead = this.#video.paused ? range.end : this.#video.currentTime;
    const cut = playhead - KEEP_BEHIND;
    if (cut - buffered.start(0) >= TRIM_STEP) this.#sink.removeBefore(cut);
  }

  #bufferMs() {
    const range = lastRange(this.#video.buffered);
    if (!this.#sink || !range) return null;
    return Math.max(0, Math.round((range.end - this.#video.currentTime) * 1000));
  }

}

/**
 * One MediaSource attached to the video, with one SourceBuffer fed strictly in order.
 * A SourceBuffer takes one append or remove at a time and throws if handed another while it
 * is `updating`, so every operation waits its turn in `#ops` and the next one starts on
 * `updateend`. What it cannot recover from is reported once, through `onFatal`.
 */
class MseSink {
  #video;
  #mime;
  #mediaSource;
  #sourceBuffer = null;
  #ops = [];
  #inFlight = null; // the append or remove the SourceBuffer is working on
  #removing = false; // a removal is queued or in flight
  #closed = false;
  #onUpdated;
  #onFatal;
  #log;

  constructor(video, mime, { onUpdated, onFatal, log }) {
    this.#video = video;
    this.#mime = mime;
    this.#onUpdated = onUpdated;
    this.#onFatal = onFatal;
    this.#log = log;
    this.#mediaSource = new MediaSourceImpl();
    // Safari never opens a ManagedMediaSource on an element that could play remotely (AirPlay).
    if (globalThis.ManagedMediaSource) video.disableRemotePlayback = true;
    const url = URL.createObjectURL(this.#mediaSource);
    this.#mediaSource.addEventListener(
      'sourceopen',
      () => {
        URL.revokeObjectURL(url);
        this.#open();
      },
      { once: true },
    );
    video.src = url;
  }

  append(bytes) {
    this.#push({ kind: 'append', bytes, retried: false });
  }

  /** Removes everything before `time`, unless a removal is already on its way. */
  removeBefore(time) {
    if (this.#removing) return;
    this.#removing = true;
    this.#push({ kind: 'remove', end: time });
  }

  /** Switches codecs in place; false where the browser cannot (then build a new sink). */
  changeType(mime) {
    if (typeof this.#sourceBuffer?.changeType !== 'function') return false;
    this.#log('changeType:', mime);
    this.#push({ kind: 'changeType', mime });
    return true;
  }

  /** Operations queued or in flight. */
  pending() {
    return this.#ops.length + (this.#inFlight ? 1 : 0);
  }

  /** Stops feeding; the element keeps its source until the next sink or destroy() replaces it. */
  close() {
    this.#closed = true;
    this.#ops = [];
  }

  #open() {
    if (this.#closed) return;
    try {
      const sourceBuffer = this.#mediaSource.addSourceBuffer(this.#mime);
      sourceBuffer.mode = 'segments';
      sourceBuffer.addEventListener('updateend', () => this.#onUpdateEnd());
      // By now the element has turned the failed append into a MediaError with the details.
      sourceBuffer.addEventListener('error', () =>
        this.#fatal(`The browser could not use the stream data: ${describeMediaError(this.#video.error)}`),
      );
      this.#sourceBuffer = sourceBuffer;
    } catch (err) {
      this.#fatal(`Cannot play ${this.#mime}: ${err.message}`);
      return;
    }
    this.#next();
  }

  #push(op) {
    if (this.#closed) return;
    this.#ops.push(op);
    this.#next();
  }

  #onUpdateEnd() {
    if (this.#inFlight?.kind === 'remove') this.#removing = false;
    this.#inFlight = null;
    if (this.#closed) return;
    this.#onUpdated();
    this.#next();
  }

  /** Starts queued operations until one is in flight (changeType completes at once). */
  #next() {
    const sourceBuffer = this.#sourceBuffer;
    while (!this.#closed && sourceBuffer && !sourceBuffer.updating && this.#ops.length > 0) {
      const op = this.#takeNext();
      try {
        this.#run(sourceBuffer, op);
        if (sourceBuffer.updating) this.#inFlight = op;
      } catch (err) {
        this.#recover(op, err);
      }
    }
  }

  /**
   * The next operation, with the appends queued right behind an append joined into it: each
   * appendBuffer costs a few milliseconds of its own, and a joiner's burst of a whole group of
   * pictures would otherwise pay that dozens of times before its first picture.
   */
  #takeNext() {
    const op = this.#ops.shift();
    if (op.kind !== 'append' || this.#ops[0]?.kind !== 'append') return op;
    const parts = [op.bytes];
    while (this.#ops[0]?.kind === 'append') parts.push(this.#ops.shift().bytes);
    const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
    let at = 0;
    for (const part of parts) {
      joined.set(new Uint8Array(part), at);
      at += part.byteLength;
    }
    return { kind: 'append', bytes: joined.buffer, retried: false };
  }

  #run(sourceBuffer, op) {
    switch (op.kind) {
      case 'append':
        sourceBuffer.appendBuffer(op.bytes);
        break;
      case 'remove':
        sourceBuffer.remove(0, op.end);
        break;
      case 'changeType':
        sourceBuffer.changeType(op.mime);
        break;
    }
  }

  /** A full SourceBuffer gets one retry after dropping what lies behind the playhead. */
  #recover(op, err) {
    const cut = this.#video.currentTime - QUOTA_KEEP_BEHIND;
    if (err.name === 'QuotaExceededError' && op.kind === 'append' && !op.retried && cut > 0) {
      this.#log('quota exceeded: removing media before', cut.toFixed(2));
      op.retried = true;
      this.#ops.unshift({ kind: 'remove', end: cut }, op);
      return;
    }
    this.#fatal(`${op.kind} failed: ${err.name}: ${err.message}`);
  }

  #fatal(message) {
    if (this.#closed) return;
    this.close();
    this.#onFatal(message);
  }
}

/**
 * The server's clock as seen from the page: offset = server time − page time, from /api/time
 * (the MPD's UTCTiming) with the round trip halved, keeping the round with the shortest trip.
 */
class ServerClock {
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
    for (let i = 0; i < 3; i += 1) {
      try {
        const sent = performance.now();
        const response = await fetch('/api/time', { cache: 'no-store' });
        const server = Date.parse(await response.text());
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

/** Per-frame latencies: the median of the recent ones, and a long history for benchmarks. */
class LatencyMeter {
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
class ByteRate {
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

/** Frames the element presented per second, from its playback quality counters. */
class FrameRate {
  value = null;
  #windowMs;
  #last = null; // {time, frames}

  constructor(windowMs) {
    this.#windowMs = windowMs;
  }

  sample(video) {
    const quality = video.getVideoPlaybackQuality?.();
    if (!quality) return;
    const time = performance.now();
    const frames = quality.totalVideoFrames - quality.droppedVideoFrames;
    // Counters start again from zero whenever the element gets a new source.
    if (!this.#last || frames < this.#last.frames) {
      this.#last = { time, frames };
      return;
    }
    if (time - this.#last.time < this.#windowMs) return;
    this.value = Math.round(((frames - this.#last.frames) * 10_000) / (time - this.#last.time)) / 10;
    this.#last = { time, frames };
  }
}

function lastRange(buffered) {
  const n = buffered.length;
  return n === 0 ? null : { start: buffered.start(n - 1), end: buffered.end(n - 1) };
}

/** The playhead `offset` seconds behind the newest media of `range`. */
function liveTarget(range, offset) {
  return Math.max(range.start, range.end - offset);
}

/** "avc1.64001f, mp4a.40.2" */
function describeCodecs(info) {
  return String(info.codecs ?? info.mime)
    .split(',')
    .map((codec) => codec.trim())
    .join(', ');
}

function describeMediaError(error) {
  if (!error) return 'no details.';
  const kind = MEDIA_ERRORS[error.code] ?? 'unknown error';
  return `${kind} (code ${error.code})${error.message ? `: ${error.message}` : '.'}`;
}

function describeStream(info) {
  if (!info) return '';
  const size = info.width && info.height ? `${info.width}×${info.height} · ` : '';
  return size + describeCodecs(info);
}
