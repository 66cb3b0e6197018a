// The connection to /ws/{name}, whichever player decodes what comes over it.
//
// The server's protocol (SPEC.md, "WebSocket protocol"):
//   text   {"type":"init","mime":…,"codecs":…,…}   followed by one binary frame: the init segment
//   binary media: whole top-level boxes, `[styp] [prft] moof mdat`, from a key frame on
//   text   {"type":"skipped","fragments":N}      we were too slow and were moved to a key frame
//   text   {"type":"end"}                        then close code 1000
// When the source restarts, init text and init segment come again on the same socket.
// On a stream that needs a token (`?token=` of the page, passed on to the socket):
//   text   {"type":"expiring","expires_ms":N}    the token runs out at N; send a new one:
//   sent   {"type":"token","token":"…"}          answered {"type":"renewed","expires_ms":N}
//   close  4401 no valid token · 4403 not allowed for this stream · 4410 the token expired
// Those closes are not retried: a new connection with the same token would be refused again.
// On a stream with renditions (a ladder), before the init and at every change of rung:
//   text   {"type":"rendition","name":"360","auto":true,"renditions":["720","360","180"]}
//   sent   {"type":"rendition","name":"360"|"auto"}  this rung from its next key frame, or
//                                                   let the server pick by the link
// A change of rung is a new init (the other rung's) on the same socket, then its key frame.
//
// Lost connections come back with jittered back-off; a hidden tab lets go of the stream (it
// would decode nothing worth seeing and fall behind) and coming back starts at the live edge.

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;

/** Close codes of access control (SPEC.md, protocol.rs) and what the page says for each. */
const REFUSALS = {
  4401: 'This stream needs a valid token: the link has none, or it is not valid.',
  4403: 'The token in this link does not allow watching this stream.',
  4410: 'The token in this link has expired. Get a new link to keep watching.',
};

export class LiveSocket {
  reconnects = 0;

  #name;
  #on;
  #log;
  #ws = null;
  #retryTimer = 0;
  #attempt = 0; // failed connections in a row, for the back-off
  #ended = false; // the server said the stream ended; retry slowly until it is back
  #unloading = false;
  #opened = false; // the current socket got as far as `open`
  #hidden = false;
  #expectInitSegment = false;
  #token = null;
  #refused = false; // closed by access control: not retried
  #rendition = null; // the rung asked for, sent again on every new connection
  expiresMs = null;

  /**
   * @param {string} name  the stream, as in /ws/{name}
   * @param {{connecting: () => void, open: () => void, init: (info: object) => void,
   *          initSegment: (bytes: ArrayBuffer) => void, media: (bytes: ArrayBuffer) => void,
   *          skipped: (fragments: number) => void, end: () => void, hidden: () => void,
   *          status: (text: string) => void, error: (text: string | null) => void}} on
   */
  constructor(name, on, log, token = null) {
    this.#name = name;
    this.#on = on;
    this.#log = log;
    this.#token = token || null;
  }

  /** A new token: sent on the open socket, and used by every later connection. */
  renew(token) {
    this.#token = token;
    if (this.#refused) {
      // A refused viewer starts over with the new token.
      this.#refused = false;
      this.#on.error(null);
      this.#attempt = 0;
      this.#connect();
      return;
    }
    if (this.#ws?.readyState === WebSocket.OPEN) {
      this.#ws.send(JSON.stringify({ type: 'token', token }));
    }
  }

  /** Asks for rung `name` of the stream's ladder, or `auto`. */
  askRendition(name) {
    this.#rendition = name;
    if (this.#ws?.readyState === WebSocket.OPEN) {
      this.#ws.send(JSON.stringify({ type: 'rendition', name }));
    }
  }

  start() {
    addEventListener('pagehide', this.#onPageHide);
    addEventListener('pageshow', this.#onPageShow);
    document.addEventListener('visibilitychange', this.#onVisibilityChange);
    this.#hidden = document.visibilityState === 'hidden';
    if (this.#hidden) this.#on.status('Paused while the tab is hidden.');
    else this.#connect();
  }

  destroy() {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = 0;
    this.#drop();
    removeEventListener('pagehide', this.#onPageHide);
    removeEventListener('pageshow', this.#onPageShow);
    document.removeEventListener('visibilitychange', this.#onVisibilityChange);
  }

  /** The stream plays: the next lost connection is retried quickly again. */
  playing() {
    this.#attempt = 0;
  }

  /** Something the player cannot recover from on this connection: start over on a new one. */
  restart() {
    if (this.#retryTimer || this.#unloading) return;
    this.#drop();
    this.#scheduleReconnect('Reconnecting in');
  }

  #connect() {
    this.#retryTimer = 0;
    this.#on.connecting();
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const params = new URLSearchParams();
    if (this.#token) params.set('token', this.#token);
    // A reconnection keeps the rung asked for (`auto` is what the server does anyway).
    if (this.#rendition && this.#rendition !== 'auto') params.set('rendition', this.#rendition);
    const query = params.size ? `?${params}` : '';
    const ws = new WebSocket(
      `${scheme}//${location.host}/ws/${encodeURIComponent(this.#name)}${query}`,
    );
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      this.#opened = true;
      this.#on.open();
      this.#on.status('Connected, waiting for the stream…');
    };
    ws.onmessage = (event) => {
      if (typeof event.data === 'string') this.#onText(event.data);
      else if (this.#expectInitSegment) {
        this.#expectInitSegment = false;
        this.#on.initSegment(event.data);
      } else this.#on.media(event.data);
    };
    // An `error` event carries no detail and is always followed by `close`, which has the code.
    ws.onclose = (event) => this.#onClose(event);
    this.#ws = ws;
    this.#opened = false;
    this.#expectInitSegment = false;
    this.#on.status('Connecting…');
  }

  /** Closes the socket without reporting it: the caller decides what happens next. */
  #drop() {
    const ws = this.#ws;
    if (!ws) return;
    this.#ws = null;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.close();
  }

  #onClose(event) {
    this.#ws = null;
    if (this.#unloading) return;
    if (this.#ended) {
      this.#scheduleReconnect('Stream ended. Checking again in');
      return;
    }
    const refusal = REFUSALS[event.code];
    if (refusal) {
      this.#refused = true;
      this.#log('refused:', event.code, event.reason);
      this.#on.error(refusal);
      this.#on.status(`Stopped (${event.code}${event.reason ? `: ${event.reason}` : ''}).`);
      return;
    }
    const detail = `code ${event.code}${event.reason ? `: ${event.reason}` : ''}`;
    this.#on.error(
      this.#opened ? `Connection lost (${detail}).` : `Cannot connect to the stream (${detail}).`,
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
      this.reconnects += 1;
      this.#connect();
    }, delay);
    this.#on.status(`${what} ${(delay / 1000).toFixed(1)} s…`);
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

  #onVisibilityChange = () => {
    const hidden = document.visibilityState === 'hidden';
    if (hidden === this.#hidden) return;
    this.#hidden = hidden;
    if (hidden) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = 0;
      this.#drop();
      this.#on.hidden();
      this.#on.status('Paused while the tab is hidden.');
    } else if (!this.#ws && !this.#unloading) {
      this.#attempt = 0;
      this.#connect();
    }
  };

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
        this.#ended = false;
        this.#expectInitSegment = true;
        this.#on.init(message);
        break;
      case 'skipped':
        this.#on.skipped(Number(message.fragments) || 0);
        break;
      case 'end':
        this.#ended = true;
        this.#on.end();
        break;
      case 'expiring':
        this.expiresMs = Number(message.expires_ms) || null;
        this.#on.expiring?.(this.expiresMs);
        break;
      case 'renewed':
        this.expiresMs = Number(message.expires_ms) || null;
        this.#log('token renewed until', new Date(this.expiresMs).toISOString());
        break;
      case 'rendition':
        this.#on.rendition?.(message);
        break;
      default:
        this.#log('ignored message:', message);
    }
  }
}
