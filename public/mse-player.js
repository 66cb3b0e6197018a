// Plays one websocketlivestream stream from /ws/{name} into a <video> through Media Source
// Extensions (ManagedMediaSource where the browser has it, as iOS Safari does).
//
// The server's protocol (SPEC.md, "WebSocket protocol"):
//   text   {"type":"init","mime":…,"codecs":…,…}   followed by one binary frame: the init segment
//   binary media: whole top-level boxes, each frame appendable to a SourceBuffer as it is
//   text   {"type":"skipped","fragments":N}      we were too slow and were moved to a key frame
//   text   {"type":"end"}                        then close code 1000
// When the source restarts, init text and init segment come again on the same socket.

/** Where playback aims: this far behind the newest buffered media, in seconds. */
const LIVE_OFFSET = 0.1;
/** A playhead further behind the newest buffered media than this jumps forward. */
const MAX_LAG = 1.5;
/** Browsers round media times; a playhead this close to a range counts as inside it. */
const TIME_TOLERANCE = 0.01;
/** Smaller lags are worked off by playing slightly faster, which a viewer barely notices. */
const CATCH_UP_ABOVE = 0.25;
const CATCH_UP_RATE = 1.1;
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
    this.#tickTimer = setInterval(() => this.#tick(), TICK_MS);
    this.#connect();
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
    // With no src, load() empties the element without reporting an error.
    this.#video.removeAttribute('src');
    this.#video.load();
  }

  stats() {
    return {
      latencyMs: null, // needs the server's wall clock from prft boxes: not read yet
      joinMs: this.#joinMs === null ? null : Math.round(this.#joinMs),
      bufferMs: this.#bufferMs(),
      fps: this.#fps.value,
      bitrateBps: this.#bitrate.bitsPerSecond(),
      skipped: this.#skipped,
      reconnects: this.#reconnects,
    };
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
    if (!this.#ws && !this.#retryTimer) this.#connect();
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
    // Without a sink (no init yet, or codecs we cannot play) media has nowhere to go.
    this.#sink?.append(bytes);
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
  }

  /** After every completed append or remove. */
  #onUpdated() {
    if (this.#started) return;
    const range = lastRange(this.#video.buffered);
    // Buffered is what every track has: it stays empty until audio and video both arrived.
    if (!range) return;
    this.#started = true;
    this.#video.currentTime = liveTarget(range);
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
      this.#log(`jump to live: ${now.toFixed(2)} -> ${liveTarget(range).toFixed(2)}`);
      video.currentTime = liveTarget(range);
      video.playbackRate = 1;
    } else if (lag > CATCH_UP_ABOVE) {
      video.playbackRate = CATCH_UP_RATE;
    } else if (lag <= LIVE_OFFSET * 1.5) {
      video.playbackRate = 1;
    }
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
      const op = this.#ops.shift();
      try {
        this.#run(sourceBuffer, op);
        if (sourceBuffer.updating) this.#inFlight = op;
      } catch (err) {
        this.#recover(op, err);
      }
    }
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

function liveTarget(range) {
  return Math.max(range.start, range.end - LIVE_OFFSET);
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
