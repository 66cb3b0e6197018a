// The WebCodecs engine: the stream's fragments as fmp4.js demuxes them (the player reads each
// once, see engine.js), decoded by VideoDecoder and AudioDecoder, and each picture drawn to a
// <canvas> the moment it is due, with none of MSE's buffering in between.
//
// When a picture is due depends on the clock in charge:
// - without sound (before the viewer's first click, or a silent stream) the wall clock: a
//   frame is due as early as the fastest recent fragment arrived, relative to its media time,
//   so in practice the moment it is decoded, and one that is late when a newer one is already
//   decoding is left out;
// - with sound, the audio clock: decoded audio is scheduled a little ahead on an
//   AudioContext, and a picture is shown when the sound of its moment is heard.
// A joiner decodes the group of pictures it is given as fast as it can and shows only the
// newest frame, so the first picture is the live one; a decoder that falls behind (its queue
// grows, or the picture is far behind the newest media) starts again at the next key frame.

/** Chunks waiting for the decoder beyond this mean it cannot keep up. */
const MAX_DECODE_QUEUE = 15;
/** The same while a joiner's burst decodes: a group of pictures of up to 4 s at 30 fps. */
const MAX_CATCH_UP_QUEUE = 120;
/** A picture this far behind the newest video received restarts at the next key frame. */
const MAX_BEHIND_MS = 1000;
/** How far back the wall clock looks for the fastest arrival (adapts to clock drift). */
const ARRIVALS_KEPT = 90;
/** Audio is scheduled this far ahead of its first sample's arrival: its jitter buffer. */
const AUDIO_LEAD_S = 0.04;
/** Audio scheduled further ahead than its lead by this much, for a while, is brought nearer. */
const AUDIO_SLACK_S = 0.02;
/** The while: about half a second of 1024-sample chunks. */
const AUDIO_SLACK_CHUNKS = 24;
/** Scheduled audio further ahead than this (a fast sound card, a burst) starts over. */
const AUDIO_MAX_AHEAD_S = 0.5;
/** Frames without a duration of their own are taken to last this long. */
const DEFAULT_FRAME_MS = 1000 / 30;

/** @implements {import('./engine.js').Engine} */
export class WebCodecsEngine {
  static kind = 'webcodecs';

  /** Why WebCodecs cannot play these tracks here, or null if it can. */
  static async unsupported(tracks) {
    if (typeof VideoDecoder === 'undefined') {
      return globalThis.isSecureContext
        ? 'this browser has no WebCodecs VideoDecoder'
        : 'WebCodecs needs a secure page (https or localhost)';
    }
    const video = tracks.find((t) => t.kind === 'video');
    if (!video) return 'the stream has no video';
    if (!video.codec) return 'its video codec is unknown here';
    if (!(await isSupported(VideoDecoder, videoConfig(video)))) {
      return `WebCodecs cannot decode ${video.codec} in this browser`;
    }
    for (const audio of tracks.filter((t) => t.kind === 'audio')) {
      if (typeof AudioDecoder === 'undefined') return 'this browser has no WebCodecs AudioDecoder';
      if (!audio.codec || !(await isSupported(AudioDecoder, audioConfig(audio)))) {
        return `WebCodecs cannot decode ${audio.codec ?? 'its audio'} in this browser`;
      }
    }
    return null;
  }

  #canvas;
  #context;
  #on;
  #log;

  #video = null; // the video track, from parseInit
  #audio = null;
  #videoDecoder = null;
  #audioDecoder = null;
  #waitingForKey = true; // after an init, a reset or a skip: chunks up to a key frame are left out
  #catchingUp = true; // after a (re)start, until the decoder has caught up: skipped frames are no drops
  #previewed = false; // a picture was drawn since the last (re)start
  #pending = []; // decoded VideoFrames not yet drawn, oldest first
  #drawTimer = 0;

  #arrivals = []; // (arrival ms − pts ms) of recent video samples: the wall clock's offset
  #newestVideoMs = null; // pts of the newest video sample handed to the decoder
  #newestAudioS = null; // end of the newest audio sample received
  #audioArrivals = []; // (arrival ms − pts ms) of recent audio samples
  #audioTrimmed = 0; // chunks of sound left out to bring the audio clock nearer the live edge
  #shownMs = null; // pts of the picture on screen, since the last (re)start
  #positionMs = 0; // pts of the picture on screen, kept across restarts
  #frames = 0;
  #dropped = 0;
  #audioFrames = 0;
  #avSyncMs = null;

  #sound = null; // {context, gain, anchorContext, anchorMedia} once the viewer turned sound on
  #audioScratch = null;

  /**
   * @param {HTMLCanvasElement} canvas
   * @param {import('./engine.js').EngineEvents} on
   */
  constructor(canvas, on, log) {
    this.#canvas = canvas;
    this.#context = canvas.getContext('2d', { alpha: false, desynchronized: true });
    this.#on = on;
    this.#log = log;
    canvas.hidden = false;
  }

  destroy() {
    this.reset();
    this.#closeDecoders();
    this.#sound?.context.close().catch(() => {});
    this.#sound = null;
    this.#canvas.hidden = true;
  }

  /** A new init segment: new decoders for its tracks, starting at the next key frame. */
  init(_info, _bytes, tracks) {
    this.reset();
    this.#closeDecoders();
    this.#video = tracks.find((t) => t.kind === 'video') ?? null;
    this.#audio = tracks.find((t) => t.kind === 'audio') ?? null;
    if (this.#video) {
      this.#canvas.width = this.#video.width || this.#canvas.width;
      this.#canvas.height = this.#video.height || this.#canvas.height;
      this.#videoDecoder = new VideoDecoder({
        output: (frame) => this.#onVideoFrame(frame),
        error: (err) => this.#onDecoderError('video', err),
      });
      this.#videoDecoder.configure(videoConfig(this.#video));
    }
    if (this.#audio) {
      this.#audioDecoder = new AudioDecoder({
        output: (data) => this.#onAudioData(data),
        error: (err) => this.#onDecoderError('audio', err),
      });
      this.#audioDecoder.configure(audioConfig(this.#audio));
    }
  }

  media({ fragment, unreadable }) {
    if (!this.#videoDecoder) return;
    if (!fragment) {
      // One bad fragment: said once in the page, and decoding starts over at a key frame.
      this.#on.fatal(`Unreadable media from the server: ${unreadable}`);
      return;
    }
    const arrived = performance.now();
    for (const traf of fragment.trafs) {
      if (traf.trackId === this.#video?.id) this.#decodeVideo(traf.samples, arrived);
      else if (traf.trackId === this.#audio?.id) this.#decodeAudio(traf.samples, arrived);
    }
    this.#checkBehind();
  }

  /** The server left fragments out: the next media starts at a key frame. */
  skipped() {
    this.#restartAtKey();
  }

  /** A new connection or a hidden tab: nothing decoded so far is shown any more. */
  reset() {
    this.#restartAtKey();
    this.#arrivals = [];
    this.#audioArrivals = [];
    this.#newestVideoMs = null;
    this.#newestAudioS = null;
    if (this.#sound) this.#sound.anchorContext = null;
  }

  tick() {
    this.#checkBehind();
  }

  position() {
    return this.#positionMs / 1000;
  }

  bufferMs() {
    if (this.#shownMs === null || this.#newestVideoMs === null) return null;
    return Math.max(0, Math.round(this.#newestVideoMs - this.#shownMs));
  }

  framesShown() {
    return this.#frames;
  }

  droppedFrames() {
    return this.#dropped;
  }

  avSyncMs() {
    return this.#sound ? this.#avSyncMs : null;
  }

  /**
   * How much later the sound of a moment arrives than its picture (the quickest of recent
   * arrivals of each): with sound on, pictures wait for it.
   */
  audioBehindMs() {
    if (this.#arrivals.length === 0 || this.#audioArrivals.length === 0) return null;
    return Math.round(Math.min(...this.#audioArrivals) - Math.min(...this.#arrivals));
  }

  /** Chunks of sound left out to catch up with the live edge. */
  audioTrimmed() {
    return this.#audioTrimmed;
  }

  /** AudioData the decoder put out, heard or not. */
  audioFrames() {
    return this.#audioFrames;
  }

  hasAudio() {
    return this.#audio !== null;
  }

  soundOn() {
    return this.#sound !== null && this.#sound.context.state === 'running';
  }

  /** Turns sound on; call it from a user gesture (browsers start audio only after one). */
  async unmute() {
    if (!this.#audio) return false;
    if (!this.#sound) {
      const context = new AudioContext({ latencyHint: 'interactive', sampleRate: this.#audio.sampleRate || undefined });
      const gain = context.createGain();
      gain.connect(context.destination);
      this.#sound = { context, gain, anchorContext: null, anchorMedia: 0, closest: Infinity, chunks: 0 };
    }
    await this.#sound.context.resume();
    return this.soundOn();
  }

  // --- video ---

  #decodeVideo(samples, arrived) {
    const decoder = this.#videoDecoder;
    for (const sample of samples) {
      if (this.#waitingForKey) {
        if (!sample.key) continue;
        this.#waitingForKey = false;
      }
      const ptsMs = (sample.pts * 1000) / this.#video.timescale;
      decoder.decode(
        new EncodedVideoChunk({
          type: sample.key ? 'key' : 'delta',
          timestamp: Math.round(ptsMs * 1000),
          duration: Math.round((sample.duration * 1e6) / this.#video.timescale),
          data: sample.data,
        }),
      );
      this.#newestVideoMs = ptsMs;
      this.#arrivals.push(arrived - ptsMs);
      if (this.#arrivals.length > ARRIVALS_KEPT) this.#arrivals.shift();
    }
  }

  #onVideoFrame(frame) {
    if (this.#catchingUp) this.#log(`${Math.round(performance.now())}: decoded ${frame.timestamp / 1000} ms, newest ${this.#newestVideoMs}, queue ${this.#videoDecoder.decodeQueueSize}`);
    this.#pending.push(frame);
    this.#render();
  }

  /** The media time (ms) that should be on screen now, by the clock in charge. */
  #nowMediaMs() {
    const sound = this.#sound;
    if (sound?.anchorContext != null && sound.context.state === 'running') {
      // What is being heard now, from the output timestamp (context time leaving the speaker).
      const { contextTime, performanceTime } = sound.context.getOutputTimestamp();
      const heard = contextTime + (performance.now() - performanceTime) / 1000;
      return (sound.anchorMedia + heard - sound.anchorContext) * 1000;
    }
    if (this.#arrivals.length === 0) return Infinity;
    return performance.now() - Math.min(...this.#arrivals);
  }

  /** Draws the newest frame that is due; keeps the rest for later or lets them go. */
  #render() {
    clearTimeout(this.#drawTimer);
    this.#drawTimer = 0;
    const now = this.#nowMediaMs();
    const pending = this.#pending;
    let due = -1;
    for (let i = 0; i < pending.length; i += 1) {
      if (pending[i].timestamp / 1000 <= now + 1) due = i;
    }
    if (due >= 0) {
      const frame = pending[due];
      const ptsMs = frame.timestamp / 1000;
      const lateMs = now - ptsMs;
      const interval = frame.duration ? frame.duration / 1000 : DEFAULT_FRAME_MS;
      // Late with a newer picture already decoding: leave this one out, show that one. A
      // joiner's burst is all late but its newest frame, which then comes first.
      const newerComing = this.#newestVideoMs !== null && this.#newestVideoMs > ptsMs + 0.5;
      // A joiner's key frame is drawn at once all the same, a picture while the rest of its
      // group decodes (up to a second of frames, some 10 ms each here): a preview, not live.
      const preview = !this.#previewed && this.#catchingUp && newerComing;
      const skipIt = !preview && newerComing && lateMs > (this.#catchingUp ? 0.5 : 1.5) * interval;
      for (let i = 0; i < due; i += 1) this.#letGo(pending[i]);
      pending.splice(0, due + 1);
      if (skipIt) this.#letGo(frame);
      else this.#draw(frame, ptsMs, now, preview);
    }
    if (pending.length > 0) {
      // The next frame waits for its moment (with sound: for the audio clock).
      const wait = pending[0].timestamp / 1000 - this.#nowMediaMs();
      this.#drawTimer = setTimeout(() => this.#render(), Math.max(1, Math.min(wait, 100)));
    }
  }

  #draw(frame, ptsMs, nowMediaMs, preview) {
    const canvas = this.#canvas;
    if (canvas.width !== frame.displayWidth || canvas.height !== frame.displayHeight) {
      canvas.width = frame.displayWidth;
      canvas.height = frame.displayHeight;
    }
    this.#context.drawImage(frame, 0, 0, canvas.width, canvas.height);
    frame.close();
    this.#frames += 1;
    this.#positionMs = ptsMs;
    this.#previewed = true;
    if (preview) {
      // Not yet where the stream is: neither the buffer nor the latency counts it.
      this.#on.frameShown(ptsMs / 1000, performance.timeOrigin + performance.now(), true);
      return;
    }
    this.#shownMs = ptsMs;
    // A joiner's burst is over once the decoder has nothing left of it.
    if (this.#videoDecoder?.decodeQueueSize === 0) this.#catchingUp = false;
    if (this.#sound?.anchorContext != null) this.#avSyncMs = Math.round(ptsMs - nowMediaMs);
    this.#on.frameShown(ptsMs / 1000, performance.timeOrigin + performance.now(), false);
  }

  /** A decoded frame that will never be shown. */
  #letGo(frame) {
    if (!this.#catchingUp) this.#dropped += 1;
    frame.close();
  }

  /** Too far behind: leave the queue and start again at the next key frame. */
  #checkBehind() {
    const decoder = this.#videoDecoder;
    if (!decoder || this.#waitingForKey) return;
    const queued = decoder.decodeQueueSize;
    const behind =
      this.#shownMs !== null && this.#newestVideoMs !== null
        ? this.#newestVideoMs - this.#shownMs
        : 0;
    // A joiner's group of pictures arrives at once and is all queued: that is not falling
    // behind (it was, before: a joiner more than 15 frames into a group threw it away and
    // waited for the next key frame, up to a second).
    const maxQueue = this.#catchingUp ? MAX_CATCH_UP_QUEUE : MAX_DECODE_QUEUE;
    if (queued <= maxQueue && behind <= MAX_BEHIND_MS) return;
    this.#log(`decoder behind (queue ${queued}, ${Math.round(behind)} ms): waiting for a key frame`);
    this.#dropped += queued + this.#pending.length;
    this.#restartAtKey();
  }

  #restartAtKey() {
    clearTimeout(this.#drawTimer);
    this.#drawTimer = 0;
    for (const frame of this.#pending) frame.close();
    this.#pending = [];
    this.#waitingForKey = true;
    this.#catchingUp = true;
    this.#previewed = false;
    this.#shownMs = null;
    for (const decoder of [this.#videoDecoder, this.#audioDecoder]) {
      if (decoder?.state !== 'configured') continue;
      // reset() drops what is queued; the configuration has to be given again.
      decoder.reset();
      decoder.configure(decoder === this.#videoDecoder ? videoConfig(this.#video) : audioConfig(this.#audio));
    }
  }

  #onDecoderError(kind, err) {
    this.#on.fatal(`The ${kind} decoder failed: ${err.message}`);
  }

  #closeDecoders() {
    for (const decoder of [this.#videoDecoder, this.#audioDecoder]) {
      if (decoder && decoder.state !== 'closed') decoder.close();
    }
    this.#videoDecoder = null;
    this.#audioDecoder = null;
  }

  // --- audio ---

  #decodeAudio(samples, arrived) {
    const decoder = this.#audioDecoder;
    if (!decoder || this.#waitingForKey) return;
    const scale = this.#audio.timescale;
    for (const sample of samples) {
      this.#audioArrivals.push(arrived - (sample.pts * 1000) / scale);
      if (this.#audioArrivals.length > ARRIVALS_KEPT) this.#audioArrivals.shift();
      decoder.decode(
        new EncodedAudioChunk({
          type: 'key',
          timestamp: Math.round((sample.pts * 1e6) / scale),
          duration: Math.round((sample.duration * 1e6) / scale),
          data: sample.data,
        }),
      );
      this.#newestAudioS = (sample.pts + sample.duration) / scale;
    }
  }

  #onAudioData(data) {
    this.#audioFrames += 1;
    const sound = this.#sound;
    if (!sound || sound.context.state !== 'running') {
      data.close();
      return;
    }
    const context = sound.context;
    const start = data.timestamp / 1e6;
    const end = start + data.numberOfFrames / data.sampleRate;
    // A joiner's burst: only the sound near the live edge is worth playing.
    if (this.#newestAudioS !== null && end < this.#newestAudioS - AUDIO_LEAD_S) {
      data.close();
      return;
    }
    let when = sound.anchorContext === null ? -1 : sound.anchorContext + (start - sound.anchorMedia);
    if (when < context.currentTime + 0.005 || when > context.currentTime + AUDIO_MAX_AHEAD_S) {
      // First sound, a gap (the decoder or network was late) or drift: anchor again.
      sound.anchorContext = context.currentTime + AUDIO_LEAD_S;
      sound.anchorMedia = start;
      sound.closest = Infinity;
      sound.chunks = 0;
      when = sound.anchorContext;
    }
    // How far ahead audio is scheduled only grows by itself: an output device that starts a
    // while after the context says it runs (100-200 ms seen in Chromium), a burst, a sound
    // card slower than the source. Pictures wait for their sound, so slack is latency: where
    // every chunk of the last half second had more than AUDIO_SLACK_S to spare, one is left
    // out (a few ms of sound) and everything after it comes that much sooner.
    sound.closest = Math.min(sound.closest, when - context.currentTime);
    sound.chunks += 1;
    if (sound.chunks >= AUDIO_SLACK_CHUNKS) {
      const spare = sound.closest > AUDIO_LEAD_S + AUDIO_SLACK_S;
      sound.closest = Infinity;
      sound.chunks = 0;
      if (spare) {
        sound.anchorContext -= end - start;
        this.#audioTrimmed += 1;
        data.close();
        return;
      }
    }
    const buffer = context.createBuffer(data.numberOfChannels, data.numberOfFrames, data.sampleRate);
    if (!this.#audioScratch || this.#audioScratch.length < data.numberOfFrames) {
      this.#audioScratch = new Float32Array(data.numberOfFrames);
    }
    const scratch = this.#audioScratch.subarray(0, data.numberOfFrames);
    for (let channel = 0; channel < data.numberOfChannels; channel += 1) {
      data.copyTo(scratch, { planeIndex: channel, format: 'f32-planar' });
      buffer.copyToChannel(scratch, channel);
    }
    data.close();
    const node = context.createBufferSource();
    node.buffer = buffer;
    node.connect(sound.gain);
    node.start(when);
  }
}

function videoConfig(track) {
  return {
    codec: track.codec,
    description: track.description ?? undefined,
    codedWidth: track.width || undefined,
    codedHeight: track.height || undefined,
    optimizeForLatency: true,
  };
}

function audioConfig(track) {
  return {
    codec: track.codec,
    sampleRate: track.sampleRate,
    numberOfChannels: track.channels,
    description: track.description ?? undefined,
  };
}

async function isSupported(Decoder, config) {
  try {
    return (await Decoder.isConfigSupported(config)).supported === true;
  } catch {
    return false;
  }
}
