// The recording of a stream, fed to the player as if it came live: from a moment (a wall
// clock time), the recorded segments the server lists (`/hls/{name}/index.m3u8?start=T`, a
// media playlist over the recording's files) are fetched one ahead, cut into their fragments
// and handed on at the pace they were recorded, each when its decode time comes. The engines
// play them as they play the socket's: the same init and fragment messages, the same `prft`
// (so the page's latency reads how far behind the camera it is).
//
// Playback starts at the key frame that begins the segment the moment falls in. A gap in
// the recording (the source was down) is skipped. Reaching what is being recorded now, the
// feed says `caughtUp` and the player goes back to the live socket.

import { boxes, parseFragment, parseInit } from './fmp4.js';

/** A playlist is asked for again this often while the recording grows. */
const POLL_MS = 500;
/** How far ahead of its time a fragment is handed on (the engines' decode head start). */
const LEAD_MS = 0;

/** The segments of a media playlist: [{uri, map, startMs, durationMs}], and whether it ended. */
export function parsePlaylist(text, base) {
  const segments = [];
  let map = null;
  let pdt = null;
  let duration = 0;
  let ended = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#EXT-X-MAP:')) {
      const uri = /URI="([^"]+)"/.exec(line)?.[1];
      if (uri) map = new URL(uri, base).href;
    } else if (line.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) {
      pdt = Date.parse(line.slice('#EXT-X-PROGRAM-DATE-TIME:'.length));
    } else if (line.startsWith('#EXTINF:')) {
      duration = parseFloat(line.slice('#EXTINF:'.length)) * 1000;
    } else if (line === '#EXT-X-ENDLIST') {
      ended = true;
    } else if (line && !line.startsWith('#')) {
      segments.push({ uri: new URL(line, base).href, map, startMs: pdt, durationMs: duration });
      pdt = pdt === null ? null : pdt + duration;
    }
  }
  return { segments, ended };
}

/** A segment file's fragments (`[styp] [prft] moof mdat` each), as separate buffers. */
export function fragmentsOf(buffer) {
  const view = new DataView(buffer);
  const out = [];
  let start = null;
  for (const box of boxes(view)) {
    if (start === null) start = box.start;
    if (box.type === 'mdat') {
      out.push(buffer.slice(start, box.end));
      start = null;
    }
  }
  return out;
}

export class RecordingFeed {
  reconnects = 0;
  expiresMs = null;

  #name;
  #on;
  #log;
  #token;
  #from; // wall clock ms to play from; moves on as segments are handed over
  #stopped = false;
  #timer = 0;
  #wake = null;
  #run = null;

  /**
   * @param {string} name  the stream
   * @param {object} on  the player's events, as LiveSocket's (open, init, initSegment, media,
   *   status, error), and `caughtUp` when the recording has been played up to now
   * @param {number} fromMs  the moment to play from (Unix ms)
   */
  constructor(name, on, log, token, fromMs) {
    this.#name = name;
    this.#on = on;
    this.#log = log;
    this.#token = token;
    this.#from = fromMs;
  }

  /** The moment (Unix ms) playback goes on from. */
  get fromMs() {
    return this.#from;
  }

  start() {
    this.#on.open();
    this.#on.status('Loading the recording…');
    this.#run = this.#play().catch((err) => {
      if (this.#stopped) return;
      this.#log('recording feed:', err);
      this.#on.error(`Cannot play the recording: ${err.message}`);
    });
  }

  destroy() {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#wake?.();
  }

  playing() {}

  /** Something went wrong in the engine: start again from where playback got to. */
  restart() {
    this.destroy();
  }

  renew(token) {
    this.#token = token;
  }

  askRendition() {}

  #headers() {
    return this.#token ? { authorization: `Bearer ${this.#token}` } : {};
  }

  async #fetch(url, what) {
    const response = await fetch(url, { headers: this.#headers() });
    if (!response.ok) {
      const text = (await response.text()).trim();
      const error = new Error(`${what}: ${response.status} ${text.slice(0, 200)}`);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  /** Waits `ms`, or less if the feed is stopped. */
  #sleep(ms) {
    return new Promise((resolve) => {
      this.#wake = resolve;
      this.#timer = setTimeout(resolve, Math.max(0, ms));
    });
  }

  async #playlist() {
    const base = `${location.origin}/hls/${encodeURIComponent(this.#name)}/index.m3u8`;
    const url = `${base}?start=${(this.#from / 1000).toFixed(3)}`;
    try {
      const response = await this.#fetch(url, 'the recording');
      return parsePlaylist(await response.text(), url);
    } catch (err) {
      if (err.status === 404) return null; // nothing recorded from there on
      throw err;
    }
  }

  async #play() {
    let initUri = null;
    let tracks = null;
    // The pace: the page clock at which media time `zero` (s) is handed on.
    let clock = null;
    let next = null; // the next segment's bytes, fetched while this one plays
    for (;;) {
      if (this.#stopped) return;
      const list = await this.#playlist();
      if (this.#stopped) return;
      const segments = (list?.segments ?? []).filter(
        (s) => s.startMs === null || s.startMs + s.durationMs > this.#from,
      );
      if (!segments.length) {
        // Played up to what is being recorded (or past the end of what is kept).
        this.#on.caughtUp?.();
        return;
      }
      for (let i = 0; i < segments.length; i += 1) {
        const segment = segments[i];
        if (segment.map && segment.map !== initUri) {
          const bytes = await (await this.#fetch(segment.map, 'the init segment')).arrayBuffer();
          if (this.#stopped) return;
          tracks = parseInit(bytes);
          initUri = segment.map;
          this.#on.init(describe(tracks));
          this.#on.initSegment(bytes);
          clock = null;
        }
        const bytes = await (next?.uri === segment.uri
          ? next.bytes
          : this.#fetch(segment.uri, 'a segment').then((r) => r.arrayBuffer()));
        const following = segments[i + 1];
        next = following
          ? {
              uri: following.uri,
              bytes: this.#fetch(following.uri, 'a segment').then((r) => r.arrayBuffer()),
            }
          : null;
        next?.bytes.catch(() => {}); // its failure is met when it is awaited
        if (this.#stopped) return;
        if (segment.startMs !== null && clock !== null && segment.startMs > this.#from + 500) {
          clock = null; // a gap: start the pace again
        }
        for (const fragment of fragmentsOf(bytes)) {
          const at = mediaSeconds(fragment, tracks);
          if (at !== null) {
            if (clock === null || at < clock.zero) clock = { zero: at, page: performance.now() };
            const due = clock.page + (at - clock.zero) * 1000 - LEAD_MS;
            const wait = due - performance.now();
            if (wait > 1) await this.#sleep(wait);
            if (this.#stopped) return;
          }
          this.#on.media(fragment);
        }
        if (segment.startMs !== null) this.#from = segment.startMs + segment.durationMs;
      }
      if (list.ended) continue; // the next stretch, past a gap, if there is one
      await this.#sleep(POLL_MS);
    }
  }
}

/** A fragment's first decode time in seconds, by its first track fragment's timescale. */
function mediaSeconds(fragment, tracks) {
  try {
    const traf = parseFragment(fragment).trafs[0];
    const track = tracks?.find((t) => t.id === traf?.trackId);
    return traf?.decodeTime != null && track ? traf.decodeTime / track.timescale : null;
  } catch {
    return null;
  }
}

/** What the socket's `init` message says, read from the init segment itself. */
function describe(tracks) {
  const codecs = tracks.map((t) => t.codec).filter(Boolean).join(',');
  const video = tracks.find((t) => t.kind === 'video');
  return {
    mime: `video/mp4; codecs="${codecs}"`,
    codecs,
    width: video?.width ?? null,
    height: video?.height ?? null,
    recorded: true,
  };
}
