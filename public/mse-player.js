// The MSE engine: the stream's fragments appended to a SourceBuffer of a <video>, through
// Media Source Extensions (ManagedMediaSource where the browser has it, as iOS Safari does).
// The page's player (player.js) owns the socket and the measurements; this keeps the
// element at the live edge: a seek to the newest key frame on joining, the playback rate
// steered towards a small buffer, a jump forward when far behind, old media trimmed.
//
// Sound is what holds an MSE picture back. With an audio track, Chromium's audio renderer is
// the clock and it wants about 0.2 s decoded ahead before it plays, more after every stall
// (media/renderers/audio_renderer_impl.cc, media/filters/audio_renderer_algorithm.cc), even
// for a muted element; a video-only source runs on the wall clock and plays as soon as one
// frame is there. So while the element is muted (as every autoplaying page starts) the
// SourceBuffer gets the video track only; when the viewer turns sound on, it is built again
// with both tracks from the newest key frame, which is kept for that; and off again.

import { initWithTracks, parseFragment } from './fmp4.js';

/**
 * Where playback aims: this far behind the newest buffered media, in seconds. Less, and
 * Chromium's renderers run dry and stall for far longer than the gain: measured here, a
 * stream with sound stalls below about 0.12 s; video alone holds LIVE_OFFSET_VIDEO_ONLY.
 */
const LIVE_OFFSET_WITH_AUDIO = 0.12;
const LIVE_OFFSET_VIDEO_ONLY = 0.04;
/**
 * Chromium's audio renderer starts playing only with 0.2 s decoded ahead, and every stall
 * doubles that (up to 3 s): a sink with sound starts this far behind the newest media, and
 * the rate brings it to its live offset from there.
 */
const START_OFFSET_WITH_AUDIO = 0.3;
/** At most one such restart (a seek, which resets the renderer) this often, in ms. */
const MIN_RESTART_INTERVAL_MS = 1000;
/** At most this many fragments are kept from the newest key frame (for sound on or off). */
const MAX_KEPT_FRAGMENTS = 1200;
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

const MediaSourceImpl = globalThis.ManagedMediaSource ?? globalThis.MediaSource;
const HAS_FRAME_CALLBACK = 'requestVideoFrameCallback' in HTMLVideoElement.prototype;
const MEDIA_ERRORS = ['', 'aborted', 'network error', 'decode error', 'source not supported'];

export class MseEngine {
  static kind = 'mse';

  /** Why this browser cannot play `info` through MSE, or null if it can. */
  static unsupported(info) {
    if (!MediaSourceImpl) return 'This browser has no Media Source Extensions.';
    if (!MediaSourceImpl.isTypeSupported(info.mime)) {
      return `This browser cannot play ${info.codecs ?? info.mime} through MSE.`;
    }
    return null;
  }

  #video;
  #on;
  #log;
  #sink = null;
  #mime = null;
  #started = false; // the current sink has been seeked to its live edge and told to play
  #caughtUp = false; // since it started, a frame was shown near the live edge
  #liveOffset = LIVE_OFFSET_WITH_AUDIO;
  // The stream as it comes: its init message and segment, its tracks.
  #stream = null; // {info, bytes, tracks, videoId, videoMime, hasAudio, separable}
  #withSound = true; // the sink carries the audio track
  #sinceKey = []; // every fragment from the newest video key frame on, all tracks
  #restartedAt = -Infinity; // when a stall with sound last restarted playback (page ms)

  /**
   * @param {HTMLVideoElement} video
   * @param {{frameShown: (mediaSeconds: number, shownPageMs: number, preview?: boolean) => void,
   *          fatal: (message: string) => void, status: (text: string) => void}} on
   */
  constructor(video, on, log) {
    this.#video = video;
    this.#on = on;
    this.#log = log;
    video.hidden = false;
    // Steering the rate with pitch kept costs the audio renderer ~50 ms more lookahead
    // (WSOLA); resampling needs none, and the steps are too small to hear.
    video.preservesPitch = false;
    video.addEventListener('error', this.#onVideoError);
    video.addEventListener('playing', this.#onPlaying);
    video.addEventListener('volumechange', this.#onVolumeChange);
    video.addEventListener('waiting', this.#onWaiting);
    if (HAS_FRAME_CALLBACK) video.requestVideoFrameCallback(this.#onFrame);
  }

  destroy() {
    this.reset();
    const video = this.#video;
    video.removeEventListener('error', this.#onVideoError);
    video.removeEventListener('playing', this.#onPlaying);
    video.removeEventListener('volumechange', this.#onVolumeChange);
    video.removeEventListener('waiting', this.#onWaiting);
    // With no src, load() empties the element without reporting an error.
    video.removeAttribute('src');
    video.load();
    video.hidden = true;
    this.#video = null;
  }

  /** A new init segment, on a new connection or the same one after a source restart. */
  init(info, bytes, tracks) {
    const video = tracks?.find((track) => track.kind === 'video');
    const audio = tracks?.find((track) => track.kind === 'audio');
    this.#stream = {
      info,
      bytes,
      tracks,
      videoId: video?.id ?? null,
      videoMime: video?.codec ? `video/mp4; codecs="${video.codec}"` : null,
      hasAudio: Boolean(audio),
      // The picture can play without the sound: both are there, in fragments of their own
      // (until a fragment says otherwise).
      separable: Boolean(video?.codec && audio),
    };
    this.#sinceKey = [];
    this.#load(this.#wantsSound());
  }

  media(bytes) {
    // Without a sink (no init yet on this connection) media has nowhere to go.
    if (!this.#sink) return;
    if (!this.#stream?.separable) {
      this.#sink.append(bytes);
      return;
    }
    let trafs;
    try {
      ({ trafs } = parseFragment(bytes, this.#stream.tracks));
    } catch (err) {
      // The SourceBuffer says what it makes of it.
      this.#sink.append(bytes);
      return;
    }
    const video = trafs.find((traf) => traf.trackId === this.#stream.videoId);
    if (video?.samples[0]?.key) this.#sinceKey = [];
    if (this.#sinceKey.length < MAX_KEPT_FRAGMENTS) this.#sinceKey.push(bytes);
    if (this.#withSound) {
      this.#sink.append(bytes);
    } else if (trafs.every((traf) => traf.trackId === this.#stream.videoId)) {
      this.#sink.append(bytes);
    } else if (video) {
      // Both tracks in one fragment: the video cannot be had alone; play both.
      this.#log('fragments carry both tracks: playing with sound');
      this.#stream.separable = false;
      this.#rebuild(true);
    }
  }

  hasAudio() {
    return Boolean(this.#stream?.hasAudio);
  }

  soundOn() {
    return this.#withSound && !this.#video.muted;
  }

  /** Turns sound on; call it from a user gesture (browsers start sound only after one). */
  async unmute() {
    if (!this.hasAudio()) return false;
    this.#video.muted = false;
    this.#onVolumeChange();
    return this.soundOn();
  }

  /** Whether the sink carries an audio track (muted or not: it is the clock either way). */
  #withSoundPlaying() {
    return this.#withSound && Boolean(this.#stream?.hasAudio);
  }

  /** Whether the sink should carry every track: the video cannot go alone, or sound is on. */
  #wantsSound() {
    return !this.#stream?.separable || !this.#video.muted;
  }

  /** Gives the sink the stream's init with or without its sound (all tracks, or the video's). */
  #load(withSound) {
    const stream = this.#stream;
    const videoOnly = !withSound && stream.separable;
    const mime = videoOnly ? stream.videoMime : stream.info.mime;
    const init = videoOnly ? initWithTracks(stream.bytes, new Set([stream.videoId])) : stream.bytes;
    this.#withSound = !videoOnly;
    this.#liveOffset = this.#withSoundPlaying() ? LIVE_OFFSET_WITH_AUDIO : LIVE_OFFSET_VIDEO_ONLY;
    // The same codecs again (a source restart): the server keeps timestamps continuous, so
    // the new init segment is simply appended to the SourceBuffer we have.
    const sameCodecs = this.#mime === mime;
    if (!this.#sink || !(sameCodecs || this.#sink.changeType(mime))) {
      this.#newSink(mime);
    }
    this.#mime = mime;
    this.#sink.append(init);
  }

  #onVolumeChange = () => {
    if (!this.#stream?.separable || !this.#sink) return;
    const wanted = this.#wantsSound();
    if (wanted === this.#withSound) return;
    this.#log(wanted ? 'sound on: playing both tracks' : 'muted: playing the video track alone');
    this.#rebuild(wanted);
  };

  /** A new sink with or without sound, fed from the newest key frame, started where we were. */
  #rebuild(withSound) {
    const kept = this.#sinceKey;
    // A new sink: a SourceBuffer's tracks are fixed by its first init.
    this.#sink?.close();
    this.#sink = null;
    this.#mime = null;
    this.#load(withSound);
    for (const bytes of kept) this.media(bytes);
  }

  /** The server left fragments out: the playhead will find a gap and jump over it. */
  skipped() {}

  /** A new connection: the old picture stays on screen until the next init replaces it. */
  reset() {
    this.#sink?.close();
    this.#sink = null;
    this.#mime = null;
    this.#sinceKey = [];
  }

  tick() {
    if (!this.#sink || !this.#started) return;
    const range = lastRange(this.#video.buffered);
    if (!range) return;
    this.#keepLive(range);
    this.#trim(range);
  }

  position() {
    return this.#video.currentTime;
  }

  bufferMs() {
    const range = lastRange(this.#video.buffered);
    if (!this.#sink || !range) return null;
    return Math.max(0, Math.round((range.end - this.#video.currentTime) * 1000));
  }

  framesShown() {
    const quality = this.#video.getVideoPlaybackQuality?.();
    return quality ? quality.totalVideoFrames - quality.droppedVideoFrames : null;
  }

  droppedFrames() {
    return this.#video.getVideoPlaybackQuality?.().droppedVideoFrames ?? 0;
  }

  /** The element keeps sound and picture together itself. */
  avSyncMs() {
    return null;
  }

  #newSink(mime) {
    this.reset();
    this.#started = false;
    this.#caughtUp = false;
    this.#sink = new MseSink(this.#video, mime, {
      onUpdated: () => this.#onUpdated(),
      onFatal: (message) => this.#on.fatal(message),
      log: this.#log,
    });
  }

  /** After every completed append or remove. */
  #onUpdated() {
    const range = lastRange(this.#video.buffered);
    // Buffered is what every track has: it stays empty until audio and video both arrived.
    if (!range) return;
    // A joiner gets the newest group of pictures in one burst. Appends are far quicker than
    // frames arrive, so the queue runs empty right after the burst: seek then, once, and the
    // first picture shown is the live one. (Chromium decodes from the key frame to the seek
    // target without showing the frames between, sooner than playing from the key frame and
    // fast-forwarding: here a median of about 190 ms to a live picture, against a first
    // picture at 240 ms and the live edge at 1.3 s.) A sink rebuilt for sound on or off
    // starts the same way.
    if (this.#started || this.#sink.pending() > 0) return;
    this.#started = true;
    const startOffset = this.#withSoundPlaying() ? START_OFFSET_WITH_AUDIO : this.#liveOffset;
    this.#video.currentTime = behindEdge(range, startOffset);
    this.#video.play().catch((err) => {
      this.#log('play() refused:', err.name, err.message);
      if (err.name === 'NotAllowedError') this.#on.status('Press play to start.');
    });
  }

  // Every frame presented, with its media time and when it reaches the screen.
  #onFrame = (_now, meta) => {
    if (!this.#video) return;
    if (this.#sink && this.#started) {
      // Until a frame near the live edge is shown (a start can land short of it and steer
      // there), what is shown is a preview, which the latency does not count.
      if (!this.#caughtUp) {
        const range = lastRange(this.#video.buffered);
        this.#caughtUp = !range || range.end - meta.mediaTime <= this.#liveOffset + FAST_ABOVE;
      }
      this.#on.frameShown(meta.mediaTime, performance.timeOrigin + meta.expectedDisplayTime, !this.#caughtUp);
    }
    this.#video.requestVideoFrameCallback(this.#onFrame);
  };

  // Without requestVideoFrameCallback, `playing` is the nearest sign of a picture on screen.
  #onPlaying = () => {
    if (!HAS_FRAME_CALLBACK && this.#sink) {
      this.#on.frameShown(this.#video.currentTime, performance.timeOrigin + performance.now());
    }
  };

  // The audio renderer ran dry. Left alone it waits for twice what it wanted before (0.4 s,
  // then 0.8 s...) and the latency climbs; a seek resets it to 0.2 s, so restart at once, a
  // little further back.
  #onWaiting = () => {
    const video = this.#video;
    if (!this.#started || !this.#withSoundPlaying() || video.seeking || video.paused) return;
    const now = performance.now();
    const range = lastRange(video.buffered);
    if (!range || now - this.#restartedAt < MIN_RESTART_INTERVAL_MS) return;
    this.#restartedAt = now;
    const target = behindEdge(range, START_OFFSET_WITH_AUDIO);
    this.#log(`sound ran dry at ${video.currentTime.toFixed(2)}: restarting at ${target.toFixed(2)}`);
    video.currentTime = target;
  };

  #onVideoError = () => {
    const error = this.#video?.error;
    // Errors from a source we have already let go of are not news.
    if (!error || !this.#sink) return;
    this.#on.fatal(`Video error: ${describeMediaError(error)}`);
  };

  /** Keeps the playhead near the newest media: a jump when far behind, else a faster rate. */
  #keepLive(range) {
    const video = this.#video;
    // A paused viewer is left alone; the jump happens once they press play.
    if (video.paused) return;
    const now = video.currentTime;
    const lag = range.end - now;
    // Before the newest range means stuck at a gap, e.g. where the server skipped fragments.
    if (now < range.start - TIME_TOLERANCE || lag > MAX_LAG) {
      const target = behindEdge(range, this.#liveOffset);
      this.#log(`jump to live: ${now.toFixed(2)} -> ${target.toFixed(2)}`);
      video.currentTime = target;
      video.playbackRate = 1;
      return;
    }
    // Faster when behind, slower when about to run dry (dash.js steers its low-latency mode
    // the same way); steps of 1% keep the rate from twitching with every frame.
    const off = lag - this.#liveOffset;
    // Sound played faster drains the audio renderer's queue, and a stall there doubles what
    // it waits for next time: with sound, only the gentle steps.
    const change =
      off > FAST_ABOVE && !this.#withSoundPlaying()
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

/** `seconds` before the end of `range`, but not before its start. */
function behindEdge(range, seconds) {
  return Math.max(range.start, range.end - seconds);
}

function lastRange(buffered) {
  const n = buffered.length;
  return n === 0 ? null : { start: buffered.start(n - 1), end: buffered.end(n - 1) };
}

function describeMediaError(error) {
  if (!error) return 'no details.';
  const kind = MEDIA_ERRORS[error.code] ?? 'unknown error';
  return `${kind} (code ${error.code})${error.message ? `: ${error.message}` : '.'}`;
}
