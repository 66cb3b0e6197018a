// The player of one stream: the socket to /ws/{name}, an engine that turns what arrives into
// pictures (WebCodecs into a <canvas>, or MSE into a <video>), and what both are measured by.
//
// Modes: `webcodecs`, `mse`, or `auto` (the default): WebCodecs where this browser's decoders
// take the stream's codecs (VideoDecoder.isConfigSupported, and AudioDecoder's for a stream
// with sound), MSE otherwise. The choice is made again at every init segment, so a source
// that changes codecs moves to the engine that can play them, on the same socket. What the
// player asks of an engine is in engine.js; each fragment is read here, once, for both.
//
// Latency is measured per frame on screen: the wall clock when the frame is shown minus the
// encoder's wall clock for it (the `prft` box before its fragment), with the page's clock
// lined up with the server's through /api/time.

import { Mp4Error, parseFragment, parseInit } from './fmp4.js';
import {
  ByteRate,
  FrameRate,
  LatencyMeter,
  ProducerClock,
  ServerClock,
  describeCodecs,
} from './meters.js';
import { MseEngine } from './mse-player.js';
import { RecordingFeed } from './recording.js';
import { LiveSocket } from './socket.js';
import { WebCodecsEngine } from './webcodecs-player.js';

export const MODES = ['auto', 'webcodecs', 'mse'];
/** @type {Record<string, import('./engine.js').EngineClass>} */
const ENGINES = { mse: MseEngine, webcodecs: WebCodecsEngine };

const TICK_MS = 250;
const BITRATE_WINDOW_MS = 2000;
const FPS_WINDOW_MS = 1000;
/** The latency shown is the median over this window of per-frame measurements. */
const LATENCY_WINDOW_MS = 1000;
/** Per-frame latencies kept for `latencies()` (a benchmark reads them). */
const LATENCY_HISTORY = 20_000;

export class Player {
  /** The latest init message as the server sent it, fields we do not use included. */
  info = null;
  /** Why `auto` did not pick WebCodecs, when it did not. */
  fallbackReason = null;

  #requested;
  #name;
  #token;
  #events; // what the socket (or a recording's feed) tells the player
  /** @type {RecordingFeed | null} the recording being played instead of the live stream */
  #feed = null;
  #surfaces;
  #on;
  #log;
  #socket;
  /** @type {import('./engine.js').Engine | null} */
  #engine = null;
  #tracks = null; // from the latest init segment
  #videoTrack = null;
  #choosing = null; // an engine choice in progress; media waits for it in #waiting
  #waiting = [];
  #playable = false; // the current init can be played by the engine we have
  #tickTimer = 0;
  #onRecorded;
  #seekedAt = null; // when playFrom was asked, until the recording's first picture
  #seekMs = null;

  #openedAt = null; // socket open time, until this connection's first picture is shown
  #liveFrom = null; // socket open time, until this connection's first live picture is shown
  #frameShown = false;
  #joinMs = null;
  #droppedAtJoin = null; // the engine's dropped frames when this connection's first picture showed
  #liveMs = null;
  #skipped = 0;
  #rendition = null; // the server's latest `rendition` message, on a ladder
  #renditionChanges = 0;
  #bitrate = new ByteRate(BITRATE_WINDOW_MS);
  #fps = new FrameRate(FPS_WINDOW_MS);
  #clock = new ServerClock();
  #producer = new ProducerClock();
  #latency = new LatencyMeter(LATENCY_WINDOW_MS, LATENCY_HISTORY);

  /**
   * @param {string} name  the stream, as in /ws/{name}
   * @param {{mode?: string, video: HTMLVideoElement, canvas: HTMLCanvasElement,
   *          onStatus?: (text: string) => void, onError?: (text: string | null) => void,
   *          onMode?: (mode: string, reason: string | null) => void, debug?: boolean,
   *          token?: string | null, onExpiring?: (expiresMs: number) => void}} options
   *   onError(null) means the error is over; `token` is sent to the socket (a stream that
   *   needs one); `onExpiring` is told when it runs out soon (call `renew` with a new one)
   */
  constructor(
    name,
    {
      mode = 'auto',
      video,
      canvas,
      onStatus,
      onError,
      onMode,
      debug = false,
      token = null,
      onExpiring,
      onRendition,
      onRecorded,
    },
  ) {
    this.#requested = MODES.includes(mode) ? mode : 'auto';
    this.#surfaces = { mse: video, webcodecs: canvas };
    this.#on = {
      status: onStatus ?? (() => {}),
      error: onError ?? (() => {}),
      mode: onMode ?? (() => {}),
    };
    this.#log = debug ? (...args) => console.debug('[wslive]', ...args) : () => {};
    this.#name = name;
    this.#token = token;
    this.#onRecorded = onRecorded ?? (() => {});
    this.#events = {
        connecting: () => this.#onConnecting(),
        open: () => {
          this.#openedAt = performance.now();
          this.#liveFrom = this.#openedAt;
        },
        init: (info) => {
          this.info = info;
          this.#log('init:', info);
        },
        initSegment: (bytes) => this.#onInitSegment(bytes),
        media: (bytes) => this.#onMedia(bytes),
        skipped: (n) => {
          this.#skipped += n;
          this.#log('server skipped', n, 'fragments');
          this.#engine?.skipped();
        },
        end: () => this.#on.status('Stream ended.'),
        hidden: () => this.#engine?.reset(),
        status: (text) => this.#on.status(text),
        error: (text) => this.#on.error(text),
        expiring: (expiresMs) => onExpiring?.(expiresMs),
        rendition: (message) => {
          this.#rendition = message;
          this.#renditionChanges += 1;
          this.#log('rendition:', message);
          onRendition?.(message);
        },
        // The recording has been played up to what is being recorded now.
        caughtUp: () => this.goLive(),
      };
    this.#socket = new LiveSocket(name, this.#events, this.#log, token);
  }

  /**
   * Plays the recording from `wallMs` (Unix ms) instead of the live stream, from the key
   * frame that starts the recorded segment it falls in; `goLive` comes back.
   */
  playFrom(wallMs) {
    this.#feed?.destroy();
    this.#socket.destroy();
    this.#onConnecting();
    this.#seekedAt = performance.now();
    this.#seekMs = null;
    this.#feed = new RecordingFeed(this.#name, this.#events, this.#log, this.#token, wallMs);
    this.#onRecorded(wallMs);
    this.#feed.start();
  }

  /** Back to the live stream, after `playFrom`. */
  goLive() {
    if (!this.#feed) return;
    this.#feed.destroy();
    this.#feed = null;
    this.#onConnecting();
    this.#onRecorded(null);
    this.#socket.start();
  }

  /** Whether the recording is playing (after `playFrom`), not the live stream. */
  get recorded() {
    return this.#feed !== null;
  }

  /** The wall clock (Unix ms) at which the picture on screen was captured, if known. */
  wallClockAtScreen() {
    return this.#producer.wallMsAt(this.position());
  }

  /** Sends a new token for this viewer (before the current one runs out). */
  renew(token) {
    this.#token = token;
    this.#socket.renew(token);
    this.#feed?.renew(token);
  }

  /** On a ladder: play rung `name` (`360`), or `auto` to let the server pick by the link. */
  chooseRendition(name) {
    this.#socket.askRendition(name);
  }

  /** When the viewer's token runs out (Unix ms), if the server said. */
  get tokenExpiresMs() {
    return this.#socket.expiresMs;
  }

  /** The engine running: 'webcodecs', 'mse', or null before the first init. */
  get mode() {
    return this.#engine?.constructor.kind ?? null;
  }

  get requested() {
    return this.#requested;
  }

  /** Starts playing: the live stream, or with `fromMs` (Unix ms) the recording from then. */
  start({ fromMs = null } = {}) {
    this.#clock.start();
    this.#tickTimer = setInterval(() => this.#tick(), TICK_MS);
    if (fromMs !== null) this.playFrom(fromMs);
    else this.#socket.start();
  }

  destroy() {
    clearInterval(this.#tickTimer);
    this.#feed?.destroy();
    this.#socket.destroy();
    this.#clock.stop();
    this.#engine?.destroy();
    this.#engine = null;
  }

  stats() {
    const engine = this.#engine;
    return {
      mode: this.mode,
      latencyMs: this.#latency.median(),
      joinMs: this.#joinMs === null ? null : Math.round(this.#joinMs),
      droppedAtJoin: this.#droppedAtJoin,
      liveMs: this.#liveMs === null ? null : Math.round(this.#liveMs),
      bufferMs: engine?.bufferMs() ?? null,
      fps: this.#fps.value,
      bitrateBps: this.#bitrate.bitsPerSecond(),
      droppedFrames: engine?.droppedFrames() ?? 0,
      skipped: this.#skipped,
      reconnects: this.#socket.reconnects,
      avSyncMs: engine?.avSyncMs() ?? null,
      audioFrames: engine?.audioFrames() ?? null,
      audioBehindMs: engine?.audioBehindMs() ?? null,
      audioTrimmed: engine?.audioTrimmed() ?? null,
      rendition: this.#rendition?.name ?? null,
      renditionAuto: this.#rendition?.auto ?? null,
      renditions: this.#rendition?.renditions ?? null,
      renditionChanges: this.#renditionChanges,
      recorded: this.recorded,
      atMs: this.wallClockAtScreen(),
      seekMs: this.#seekMs === null ? null : Math.round(this.#seekMs),
    };
  }

  /** Every per-frame latency measured so far (the newest LATENCY_HISTORY), in ms. */
  latencies() {
    return this.#latency.all();
  }

  /** The media time (s) of the picture on screen. */
  position() {
    return this.#engine?.position() ?? 0;
  }

  /** WebCodecs plays sound only once asked from a click; MSE's <video> has its own control. */
  async unmute() {
    return (await this.#engine?.unmute()) ?? false;
  }

  soundState() {
    const engine = this.#engine;
    if (!engine?.hasAudio()) return 'none';
    return engine.soundOn() ? 'on' : 'muted';
  }

  #tick() {
    this.#engine?.tick();
    this.#fps.sample(this.#engine?.framesShown() ?? null);
  }

  #onConnecting() {
    this.#openedAt = null;
    this.#liveFrom = null;
    this.#frameShown = false;
    this.#choosing = null;
    this.#waiting = [];
    this.#playable = false;
    this.#producer.clear();
    this.#engine?.reset();
  }

  async #onInitSegment(bytes) {
    const info = this.info;
    let tracks;
    try {
      tracks = parseInit(bytes);
    } catch (err) {
      this.#playable = false;
      this.#on.error(`Unreadable init segment from the server: ${err.message}`);
      return;
    }
    this.#tracks = tracks;
    const video = tracks.find((track) => track.kind === 'video');
    this.#videoTrack = video ? { id: video.id, timescale: video.timescale } : null;
    // Media arriving while the browser is asked about codecs waits, in order.
    const choice = {};
    this.#choosing = choice;
    this.#waiting = [];
    this.#playable = false;
    const { kind, problem } = await this.#choose(tracks, info);
    this.#log(`${Math.round(performance.now())}: engine ${kind} chosen, ${Math.round(performance.now() - (this.#openedAt ?? 0))} ms after open`);
    if (this.#choosing !== choice) return;
    this.#choosing = null;
    const waiting = this.#waiting;
    this.#waiting = [];
    if (problem) {
      // Media is dropped until an init we can play arrives (the source may restart).
      this.#engine?.reset();
      this.#on.error(problem);
      this.#on.status('Cannot play this stream.');
      return;
    }
    if (this.mode !== kind) {
      this.#engine?.destroy();
      this.#engine = new ENGINES[kind](this.#surfaces[kind], this.#engineEvents(), this.#log);
    }
    this.#on.mode(kind, this.fallbackReason);
    this.#playable = true;
    this.#engine.init(info, bytes, tracks);
    for (const media of waiting) this.#engine.media(media);
    if (this.#frameShown) this.#showLive();
  }

  /** Which engine plays these tracks, or why none can. */
  async #choose(tracks, info) {
    this.fallbackReason = null;
    if (this.#requested !== 'mse') {
      const why = await WebCodecsEngine.unsupported(tracks, info);
      if (!why) return { kind: 'webcodecs' };
      if (this.#requested === 'webcodecs') {
        return { kind: 'webcodecs', problem: `Cannot play with WebCodecs: ${why}. Try the MSE player.` };
      }
      this.fallbackReason = why;
    }
    const problem = await MseEngine.unsupported(tracks, info);
    return problem ? { kind: 'mse', problem } : { kind: 'mse' };
  }

  /** @returns {import('./engine.js').EngineEvents} */
  #engineEvents() {
    return {
      frameShown: (media, shownPageMs, preview) => this.#onFrameShown(media, shownPageMs, preview),
      fatal: (message) => this.#fail(message),
      status: (text) => this.#on.status(text),
    };
  }

  #onMedia(bytes) {
    this.#bitrate.add(bytes.byteLength);
    const media = this.#read(bytes);
    this.#noteProducerTime(media.fragment);
    if (this.#choosing) this.#waiting.push(media);
    else if (this.#playable) this.#engine?.media(media);
  }

  /**
   * The fragment as fmp4.js reads it with the latest init's tracks, which are the ones the
   * engine gets (media waits while an engine is chosen for them).
   * @returns {import('./engine.js').Media}
   */
  #read(bytes) {
    try {
      return { bytes, fragment: parseFragment(bytes, this.#tracks), unreadable: null };
    } catch (err) {
      const unreadable = err instanceof Mp4Error ? err.message : `${err.name}: ${err.message}`;
      // The engine judges what that costs; here it costs a latency sample.
      this.#log('unreadable fragment:', unreadable);
      return { bytes, fragment: null, unreadable };
    }
  }

  /** Notes when the encoder stamped this fragment's video (its prft), for latency. */
  #noteProducerTime(fragment) {
    const video = this.#videoTrack;
    const prft = fragment?.prft;
    if (video && prft && prft.trackId === video.id) {
      this.#producer.add(prft.mediaTime / video.timescale, prft.unixMs);
    }
  }

  /**
   * One frame of media time `media` (s) shown at page wall clock `shownPageMs`; a `preview` is
   * a joiner's key frame, shown while the frames after it decode, behind the live edge.
   */
  #onFrameShown(media, shownPageMs, preview = false) {
    if (!preview && this.#liveFrom !== null) {
      this.#liveMs = shownPageMs - performance.timeOrigin - this.#liveFrom;
      this.#liveFrom = null;
    }
    if (!this.#frameShown) {
      this.#frameShown = true;
      if (this.#openedAt !== null) {
        this.#joinMs = shownPageMs - performance.timeOrigin - this.#openedAt;
        this.#droppedAtJoin = this.#engine?.droppedFrames() ?? 0;
        this.#openedAt = null;
      }
      if (this.#seekedAt !== null && this.#feed) {
        this.#seekMs = shownPageMs - performance.timeOrigin - this.#seekedAt;
        this.#seekedAt = null;
      }
      (this.#feed ?? this.#socket).playing();
      this.#on.error(null);
      this.#showLive();
    }
    if (preview) return;
    const offset = this.#clock.offsetMs;
    const captured = this.#producer.wallMsAt(media);
    if (offset !== null && captured !== null) this.#latency.add(shownPageMs + offset - captured);
  }

  #showLive() {
    const info = this.info;
    const size = info?.width && info?.height ? `${info.width}×${info.height} · ` : '';
    this.#on.status(`${this.#feed ? 'Recorded' : 'Live'} · ${size}${describeCodecs(info)}`);
  }

  /** Something the engine cannot recover from: say so and start over on a new connection. */
  #fail(message) {
    this.#log('fatal:', message);
    this.#on.error(message);
    this.#engine?.reset();
    this.#playable = false;
    if (this.#feed) {
      // The recording again, from where it got to.
      this.playFrom(this.#feed.fromMs);
    } else {
      this.#socket.restart();
    }
  }
}
