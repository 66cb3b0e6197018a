// The browser publisher: the camera and microphone (getUserMedia), encoded with WebCodecs
// (H.264 `latencyMode: "realtime"`, a key frame every second; AAC where the browser encodes
// it, Opus otherwise), each chunk sent the moment it is encoded over a WebSocket to
// /ws/publish/{name}, in the framing of src/fmp4/webcodecs.rs:
//
//   [u8 kind] then, all numbers big-endian:
//   1 video config  u16 width, u16 height, avcC
//   2 audio config  u8 codec (1 AAC, 2 Opus), u32 sample rate, u8 channels, AudioSpecificConfig | OpusHead
//   3 video chunk   u8 flags (1 key), u64 timestamp µs, u32 duration µs, the chunk (AVCC)
//   4 audio chunk   the same header, the chunk
//   5 no audio
//
// The server answers {"type":"stats","viewers":N,"bytes":B} every second, and closes with
// 4401/4403/4410 (the token), 4404 (not a publish stream), 4409 (busy, or taken over) or 4400
// (media it cannot use). `?token=` is passed on; `?autostart=1` starts without the button.

const KEY_FRAME_EVERY_US = 1_000_000;
const VIDEO_BITRATE = 1_000_000;
const AUDIO_BITRATE = 64_000;
/// Frames waiting in the encoder beyond this are dropped, not queued: latency first.
const MAX_ENCODE_QUEUE = 2;

const VIDEO_CONFIG = 1;
const AUDIO_CONFIG = 2;
const VIDEO_CHUNK = 3;
const AUDIO_CHUNK = 4;
const NO_AUDIO = 5;

const CLOSES = {
  4401: 'Publishing needs a valid token with the publish action (?token=…).',
  4403: 'This token does not allow publishing to this stream.',
  4410: 'The token has expired.',
  4404: 'This stream does not take publishers (its source is not "publish").',
  4409: 'Another publisher publishes to this stream, or took over from this page.',
  4400: 'The server could not use what this page sent.',
};

const name = document.body.dataset.stream;
const params = new URLSearchParams(location.search);
const token = params.get('token');
const statusLine = document.getElementById('status');
const banner = document.getElementById('error');
const startButton = document.getElementById('start');
const preview = document.getElementById('preview');
const cells = [...document.querySelectorAll('[data-stat]')];

const stats = {
  state: 'idle',
  videoCodec: null,
  audioCodec: null,
  framesSent: 0,
  framesDropped: 0,
  audioSent: 0,
  bytesSent: 0,
  bitrateBps: null,
  viewers: null,
  closeCode: null,
};
window.wspublish = { stats: () => ({ ...stats }) };

function fail(message) {
  banner.textContent = message;
  banner.hidden = false;
  stats.state = 'failed';
  statusLine.textContent = 'Not publishing.';
}

/** A BufferSource's bytes. */
function bytesOf(source) {
  return ArrayBuffer.isView(source)
    ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength)
    : new Uint8Array(source);
}

function header(kind, flags, timestampUs, durationUs, size) {
  const out = new Uint8Array(14 + size);
  const view = new DataView(out.buffer);
  view.setUint8(0, kind);
  view.setUint8(1, flags);
  view.setBigUint64(2, BigInt(Math.max(0, Math.round(timestampUs))));
  view.setUint32(10, Math.max(0, Math.round(durationUs ?? 0)));
  return out;
}

/** A clock per track: its first sample is placed at the page's time it arrived. */
function rebase() {
  let first = null;
  let at = 0;
  return (timestampUs) => {
    if (first === null) {
      first = timestampUs;
      at = performance.now() * 1000;
    }
    return at + (timestampUs - first);
  };
}

async function firstSupported(Encoder, configs) {
  for (const config of configs) {
    try {
      if ((await Encoder.isConfigSupported(config)).supported) return config;
    } catch {
      // Not this one.
    }
  }
  return null;
}

async function start() {
  startButton.disabled = true;
  banner.hidden = true;
  if (typeof VideoEncoder === 'undefined' || typeof MediaStreamTrackProcessor === 'undefined') {
    fail(
      globalThis.isSecureContext
        ? 'This browser cannot encode with WebCodecs (VideoEncoder and MediaStreamTrackProcessor are needed; Chromium has them).'
        : 'WebCodecs encoding needs a secure page: open this over https (or on localhost).',
    );
    return;
  }
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } },
      audio: true,
    });
  } catch (err) {
    fail(`No camera: ${err.message}`);
    return;
  }
  preview.srcObject = media;
  const videoTrack = media.getVideoTracks()[0];
  const settings = videoTrack.getSettings();
  const width = (settings.width ?? 640) & ~1;
  const height = (settings.height ?? 360) & ~1;
  const videoConfig = await firstSupported(
    VideoEncoder,
    ['avc1.42e01f', 'avc1.4d401f', 'avc1.640028'].map((codec) => ({
      codec,
      width,
      height,
      bitrate: VIDEO_BITRATE,
      framerate: settings.frameRate ?? 30,
      latencyMode: 'realtime',
      avc: { format: 'avc' },
    })),
  );
  if (!videoConfig) {
    fail('This browser cannot encode H.264 with WebCodecs.');
    return;
  }
  stats.videoCodec = videoConfig.codec;

  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = token ? `?token=${encodeURIComponent(token)}` : '';
  const ws = new WebSocket(`${scheme}//${location.host}/ws/publish/${encodeURIComponent(name)}${query}`);
  ws.binaryType = 'arraybuffer';
  const send = (bytes) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(bytes);
    stats.bytesSent += bytes.byteLength;
  };
  let stopped = false;
  const stop = () => {
    stopped = true;
    for (const track of media.getTracks()) track.stop();
  };
  ws.onmessage = (event) => {
    if (typeof event.data !== 'string') return;
    const message = JSON.parse(event.data);
    if (message.type === 'stats') stats.viewers = message.viewers;
  };
  ws.onclose = (event) => {
    stats.closeCode = event.code;
    stop();
    const why = CLOSES[event.code];
    if (why) fail(`${why}${event.reason ? ` (${event.reason})` : ''}`);
    else if (stats.state === 'publishing') fail(`The connection closed (code ${event.code}).`);
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error('the WebSocket failed'));
  }).catch((err) => fail(`Cannot reach the server: ${err.message}`));
  if (ws.readyState !== WebSocket.OPEN) return;
  stats.state = 'publishing';
  statusLine.textContent = 'Publishing.';

  // Video: each frame from the camera into the encoder, each chunk out at once.
  const videoTime = rebase();
  const encoder = new VideoEncoder({
    output: (chunk, meta) => {
      const description = meta?.decoderConfig?.description;
      if (description) {
        const record = bytesOf(description);
        const out = new Uint8Array(5 + record.length);
        const view = new DataView(out.buffer);
        out[0] = VIDEO_CONFIG;
        view.setUint16(1, width);
        view.setUint16(3, height);
        out.set(record, 5);
        send(out);
      }
      const out = header(
        VIDEO_CHUNK,
        chunk.type === 'key' ? 1 : 0,
        videoTime(chunk.timestamp),
        chunk.duration,
        chunk.byteLength,
      );
      chunk.copyTo(out.subarray(14));
      send(out);
      stats.framesSent += 1;
    },
    error: (err) => fail(`The video encoder failed: ${err.message}`),
  });
  encoder.configure(videoConfig);
  (async () => {
    const reader = new MediaStreamTrackProcessor({ track: videoTrack }).readable.getReader();
    let lastKey = -Infinity;
    while (!stopped) {
      const { value: frame, done } = await reader.read();
      if (done) break;
      if (encoder.encodeQueueSize > MAX_ENCODE_QUEUE || encoder.state !== 'configured') {
        stats.framesDropped += 1;
        frame.close();
        continue;
      }
      const keyFrame = frame.timestamp - lastKey >= KEY_FRAME_EVERY_US;
      if (keyFrame) lastKey = frame.timestamp;
      encoder.encode(frame, { keyFrame });
      frame.close();
    }
  })();

  // Audio: AAC where the browser encodes it, Opus otherwise, or none.
  const audioTrack = media.getAudioTracks()[0];
  const audioSettings = audioTrack?.getSettings() ?? {};
  const sampleRate = audioSettings.sampleRate ?? 48000;
  const numberOfChannels = Math.min(2, audioSettings.channelCount ?? 1);
  const audioConfig =
    audioTrack && typeof AudioEncoder !== 'undefined'
      ? await firstSupported(
          AudioEncoder,
          ['mp4a.40.2', 'opus'].map((codec) => ({
            codec,
            sampleRate: codec === 'opus' ? 48000 : sampleRate,
            numberOfChannels,
            bitrate: AUDIO_BITRATE,
          })),
        )
      : null;
  if (!audioConfig) {
    send(new Uint8Array([NO_AUDIO]));
    return;
  }
  stats.audioCodec = audioConfig.codec;
  const codecId = audioConfig.codec === 'opus' ? 2 : 1;
  const audioTime = rebase();
  let sentConfig = false;
  const audioEncoder = new AudioEncoder({
    output: (chunk, meta) => {
      if (!sentConfig) {
        const description = meta?.decoderConfig?.description;
        const record = description ? bytesOf(description) : new Uint8Array(0);
        const out = new Uint8Array(7 + record.length);
        const view = new DataView(out.buffer);
        out[0] = AUDIO_CONFIG;
        out[1] = codecId;
        view.setUint32(2, meta?.decoderConfig?.sampleRate ?? audioConfig.sampleRate);
        out[6] = meta?.decoderConfig?.numberOfChannels ?? numberOfChannels;
        out.set(record, 7);
        send(out);
        sentConfig = true;
      }
      const out = header(AUDIO_CHUNK, 1, audioTime(chunk.timestamp), chunk.duration, chunk.byteLength);
      chunk.copyTo(out.subarray(14));
      send(out);
      stats.audioSent += 1;
    },
    error: (err) => {
      // The picture goes on without sound.
      if (!sentConfig) send(new Uint8Array([NO_AUDIO]));
      banner.textContent = `The audio encoder failed: ${err.message}`;
      banner.hidden = false;
    },
  });
  audioEncoder.configure(audioConfig);
  const audioReader = new MediaStreamTrackProcessor({ track: audioTrack }).readable.getReader();
  while (!stopped) {
    const { value: data, done } = await audioReader.read();
    if (done) break;
    if (audioEncoder.state === 'configured') audioEncoder.encode(data);
    data.close();
  }
}

startButton.addEventListener('click', start);
if (params.get('autostart') === '1') start();

let lastBytes = 0;
setInterval(() => {
  stats.bitrateBps = (stats.bytesSent - lastBytes) * 8;
  lastBytes = stats.bytesSent;
  for (const cell of cells) {
    const value = stats[cell.dataset.stat];
    cell.textContent =
      value === null || value === undefined
        ? '–'
        : cell.dataset.stat === 'bitrateBps'
          ? `${Math.round(value / 1000)} kbit/s`
          : String(value);
  }
}, 1000);
