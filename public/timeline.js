// The timeline under the picture: the recorded stretches of the last hours (from
// /api/recordings/{name}), a handle at the moment on screen, and a Live button. Dragging the
// handle back plays the recording from there (the player's playFrom); Live, or dragging to
// the right end, goes back to the live stream. Hidden for a stream that is not recorded.

/** How far back the timeline reaches at most. */
const SPAN_MS = 6 * 3600 * 1000;
/** The listing is asked for again this often (the recording grows, rotation trims it). */
const REFRESH_MS = 5000;
/** A handle let go this near the right end means live. */
const LIVE_SNAP_MS = 3000;

export class Timeline {
  /** The recorded spans, [{startMs, endMs}], oldest first. */
  spans = [];

  #name;
  #token;
  #player;
  #box = document.getElementById('timeline');
  #scrub = document.getElementById('scrub');
  #label = document.getElementById('scrub-time');
  #live = document.getElementById('live');
  #dragging = false;
  #timer = 0;

  constructor(name, token, player) {
    this.#name = name;
    this.#token = token;
    this.#player = player;
    this.#scrub.addEventListener('input', () => {
      this.#dragging = true;
      this.#label.textContent = this.#near(Number(this.#scrub.value))
        ? 'live'
        : clock(Number(this.#scrub.value));
    });
    this.#scrub.addEventListener('change', () => {
      this.#dragging = false;
      const at = Number(this.#scrub.value);
      if (this.#near(at)) this.#player.goLive();
      else this.#player.playFrom(at);
    });
    this.#live.addEventListener('click', () => this.#player.goLive());
  }

  start() {
    this.#refresh();
    setInterval(() => this.#draw(), 500);
  }

  /** The player now plays the recording from `fromMs`, or live (null). */
  showMode(fromMs) {
    this.#live.setAttribute('aria-pressed', String(fromMs === null));
    this.#draw();
  }

  #near(at) {
    return Date.now() - at < LIVE_SNAP_MS;
  }

  async #refresh() {
    clearTimeout(this.#timer);
    try {
      const headers = this.#token ? { authorization: `Bearer ${this.#token}` } : {};
      const response = await fetch(`/api/recordings/${encodeURIComponent(this.#name)}`, {
        headers,
      });
      if (response.status === 404) {
        this.#box.hidden = true; // not recorded
        return;
      }
      if (response.ok) {
        const listing = await response.json();
        this.spans = listing.spans.map((s) => ({ startMs: s.start_ms, endMs: s.end_ms }));
        this.#box.hidden = this.spans.length === 0;
        this.#draw();
      }
    } catch {
      // A network blip: the next refresh tries again.
    }
    this.#timer = setTimeout(() => this.#refresh(), REFRESH_MS);
  }

  #draw() {
    if (this.#box.hidden || !this.spans.length) return;
    const now = Date.now();
    const min = Math.max(this.spans[0].startMs, now - SPAN_MS);
    const scrub = this.#scrub;
    scrub.min = String(min);
    scrub.max = String(now);
    const pct = (t) => `${(((t - min) / Math.max(1, now - min)) * 100).toFixed(3)}%`;
    // Recorded stretches lit, gaps left dark.
    const stops = ['var(--line) 0%'];
    for (const span of this.spans) {
      if (span.endMs < min) continue;
      const from = pct(Math.max(span.startMs, min));
      const to = pct(span.endMs);
      stops.push(`var(--line) ${from}`, `var(--buffer) ${from}`, `var(--buffer) ${to}`, `var(--line) ${to}`);
    }
    stops.push('var(--line) 100%');
    scrub.style.setProperty('--timeline', `linear-gradient(to right, ${stops.join(', ')})`);
    if (this.#dragging) return;
    const at = this.#player.recorded ? this.#player.wallClockAtScreen() : null;
    scrub.value = String(at ?? now);
    this.#label.textContent = at === null ? 'live' : `${clock(at)} · −${ago(now - at)}`;
  }
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
