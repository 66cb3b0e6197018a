// The SourceBuffer side of the MSE engine (mse-player.js): a MediaSource on the <video> and
// the queue of appends and removals that feeds it.

/** After a QuotaExceededError, keep only this much behind the playhead. */
const QUOTA_KEEP_BEHIND = 1;

export const MediaSourceImpl = globalThis.ManagedMediaSource ?? globalThis.MediaSource;
const MEDIA_ERRORS = ['', 'aborted', 'network error', 'decode error', 'source not supported'];

/**
 * One MediaSource attached to the video, with one SourceBuffer fed strictly in order.
 * A SourceBuffer takes one append or remove at a time and throws if handed another while it
 * is `updating`, so every operation waits its turn in `#ops` and the next one starts on
 * `updateend`. What it cannot recover from is reported once, through `onFatal`.
 */
export class MseSink {
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

/** A MediaError in words, for the page. */
export function describeMediaError(error) {
  if (!error) return 'no details.';
  const kind = MEDIA_ERRORS[error.code] ?? 'unknown error';
  return `${kind} (code ${error.code})${error.message ? `: ${error.message}` : '.'}`;
}
