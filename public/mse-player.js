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
//
// The SourceBuffer and its queue of appends and removals are mse-sink.js.

import { initWithTracks } from './fmp4.js';
import { MediaSourceImpl, MseSink, describeMediaError } from './mse-sink.js';

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

const HAS_FRAME_CALLBACK = 'requestVideoFrameCallback' in HTMLVideoElement.prototype;

/** @implements {import('./engine.js').Engine} */
export class MseEngine {
  static kind = 'mse';

  /** Why this browser cannot play `info` through MSE, or null if it can. */
  static async unsupported(_tracks, info) {
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
  // The stream as it comes: its init message and segment, and what its tracks are.
  #stream = null; // {info, bytes, videoId, videoMime, hasAudio, separable}
  #withSound = true; // the sink carries the audio track
  #sinceKey = []; // every media message from the newest video key frame on, all tracks
  #restartedAt = -Infinity; // when a stall with sound last restarted playback (page ms)

  /**
   * @param {HTMLVideoElement} video
   * @param {import('./engine.js').EngineEvents} on
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

  media(media) {
    // Without a sink (no init yet on this connection) media has nowhere to go.
    if (!this.#sink) return;
    const { bytes, fragment } = media;
    // A fragment fmp4.js cannot read: the SourceBuffer says what it makes of it.
    if (!this.#stream?.separable || !fragment) {
      this.#sink.append(bytes);
      return;
    }
    const { trafs } = fragment;
    const video = trafs.find((traf) => traf.trackId === this.#stream.videoId);
    if (video?.samples[0]?.key) this.#sinceKey = [];
    if (this.#sinceKey.length < MAX_KEPT_FRAGMENTS) this.#sinceKey.push(media);
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
    for (const media of kept) this.media(media);
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

  /** The element decodes and schedules its sound itself, out of reach of these counts. */
  audioFrames() {
    return null;
  }

  audioBehindMs() {
    return null;
  }

  audioTrimmed() {
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

/** `seconds` before the end of `range`, but not before its start. */
function behindEdge(range, seconds) {
  return Math.max(range.start, range.end - seconds);
}

function lastRange(buffered) {
  const n = buffered.length;
  return n === 0 ? null : { start: buffered.start(n - 1), end: buffered.end(n - 1) };
}
