// The player page: plays the stream named in <body data-stream> with the player that
// `?player=` asks for (auto, webcodecs or mse), shows which one runs, its status, errors and
// stats, and the sound button of the WebCodecs player.

import { MODES, Player } from './player.js';
import { Timeline } from './timeline.js';

const STATS_INTERVAL_MS = 500;
const MODE_NAMES = { webcodecs: 'WebCodecs', mse: 'MSE' };

const params = new URLSearchParams(location.search);
const name = document.body.dataset.stream;
const asked = params.get('player') || 'auto';
const requested = MODES.includes(asked) ? asked : 'auto';

const statusLine = document.getElementById('status');
const note = document.getElementById('note');
const banner = document.getElementById('error');
const soundButton = document.getElementById('sound');
const canvas = document.getElementById('canvas');
const statCells = [...document.querySelectorAll('[data-stat]')];
const picker = document.getElementById('rendition-picker');
const renditionSelect = document.getElementById('rendition');

for (const link of document.querySelectorAll('.modes a')) {
  if (link.dataset.mode === requested) link.setAttribute('aria-current', 'page');
  // Switching player keeps the rest of the address (a token above all).
  link.addEventListener('click', (event) => {
    event.preventDefault();
    const url = new URL(location.href);
    url.searchParams.set('player', link.dataset.mode);
    location.assign(url);
  });
}
if (requested !== asked) note.textContent = `Unknown player "${asked}", using auto.`;

/** @type {Timeline | null} */
let timeline = null;
const player = new Player(name, {
  // Playing the recording (from a Unix ms), or the live stream again (null).
  onRecorded: (fromMs) => timeline?.showMode(fromMs),
  mode: requested,
  token: params.get('token'),
  // The page that embeds the player (or the console) may renew: `wslive.renew(token)`.
  onExpiring: (expiresMs) => {
    dispatchEvent(new CustomEvent('wslive:expiring', { detail: { expiresMs } }));
  },
  video: document.getElementById('video'),
  canvas,
  debug: params.get('debug') === '1',
  onStatus: (text) => {
    statusLine.textContent = text;
  },
  onError: (message) => {
    banner.textContent = message ?? '';
    banner.hidden = !message;
  },
  onMode: (mode, reason) => {
    const label = MODE_NAMES[mode];
    note.textContent =
      requested === 'auto'
        ? `Auto: ${label}${reason ? ` (WebCodecs: ${reason})` : ''}`
        : label;
  },
  // A ladder: the rungs to pick from, the one playing, and whether the server picks.
  onRendition: ({ name: rung, auto, renditions }) => {
    const options = ['auto', ...renditions];
    if (renditionSelect.options.length !== options.length) {
      renditionSelect.replaceChildren(
        ...options.map((value) => new Option(value === 'auto' ? 'Auto' : `${value}p`, value)),
      );
    }
    renditionSelect.value = auto ? 'auto' : rung;
    renditionSelect.options[0].text = auto ? `Auto (${rung}p)` : 'Auto';
    picker.hidden = false;
  },
});
renditionSelect.addEventListener('change', () => player.chooseRendition(renditionSelect.value));

// `?at=2026-12-01T10:00:00Z` (or Unix seconds) opens the page on the recording at that moment.
const at = params.get('at');
let atMs = null;
if (at) {
  atMs = /^\d+(\.\d+)?$/.test(at) ? Number(at) * 1000 : Date.parse(at);
  if (!Number.isFinite(atMs)) {
    note.textContent = `"${at}" is not a time (give 2026-12-01T10:00:00Z); playing live.`;
    atMs = null;
  }
}
if (atMs !== null && document.body.dataset.recorded !== 'true') {
  note.textContent = 'This stream is not recorded; playing live.';
  atMs = null;
}
timeline = new Timeline(name, params.get('token'), player);
player.start({ fromMs: atMs });
// Only a recorded stream has a timeline to fetch (the server marks the page).
if (document.body.dataset.recorded === 'true') timeline.start();

// Browsers start sound only after a gesture: the first click on the picture or the button.
async function listen() {
  if (await player.unmute()) soundButton.hidden = true;
}
soundButton.addEventListener('click', listen);
canvas.addEventListener('click', listen);

// For tests, benchmarks and poking at the player from the console.
window.wslive = {
  stats: () => player.stats(),
  latencies: () => player.latencies(),
  position: () => player.position(),
  /** A new token for this viewer; the page's address keeps it for a reload. */
  renew: (token) => {
    player.renew(token);
    const url = new URL(location.href);
    url.searchParams.set('token', token);
    history.replaceState(history.state, '', url);
  },
  player,
  /** On a ladder: play rung `name`, or `auto`. */
  chooseRendition: (name) => player.chooseRendition(name),
  /** Plays the recording from `wallMs` (Unix ms), as the timeline does. */
  seek: (wallMs) => player.playFrom(wallMs),
  live: () => player.goLive(),
  /** The recorded spans the timeline shows, once known. */
  spans: () => timeline.spans,
};

function renderStats(stats) {
  for (const cell of statCells) {
    const key = cell.dataset.stat;
    const value = stats[key];
    cell.textContent = value === null || value === undefined ? '–' : formatStat(key, value, stats);
  }
}

function formatStat(key, value, stats) {
  switch (key) {
    case 'mode':
      return MODE_NAMES[value] ?? value;
    case 'rendition':
      return `${value}p${stats.renditionAuto ? ' (auto)' : ''}`;
    case 'latencyMs':
    case 'joinMs':
    case 'bufferMs':
    case 'avSyncMs':
      return `${Math.round(value)} ms`;
    case 'fps':
      return value.toFixed(1);
    case 'bitrateBps':
      return value >= 1e6 ? `${(value / 1e6).toFixed(2)} Mbit/s` : `${Math.round(value / 1e3)} kbit/s`;
    default:
      return String(value);
  }
}

/** Latency and buffer over the last minute, as two lines on a canvas. */
class Graph {
  #canvas;
  #points;
  #history = []; // [latency, buffer], oldest first; null where unknown

  constructor(canvas, points) {
    this.#canvas = canvas;
    this.#points = points;
  }

  add(latency, buffer) {
    this.#history.push([latency, buffer]);
    if (this.#history.length > this.#points) this.#history.shift();
    this.#draw();
  }

  #draw() {
    const canvas = this.#canvas;
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    const { width, height } = canvas;
    ctx.clearRect(0, 0, width, height);
    const values = this.#history.flat().filter((v) => v !== null);
    // Round the scale up to a tidy step so the lines do not jitter with every new maximum.
    const top = Math.max(200, Math.ceil((Math.max(...values, 0) * 1.2) / 100) * 100);
    const x = (i) => (i / (this.#points - 1)) * width;
    const y = (v) => height - (v / top) * (height - 12);
    const styles = getComputedStyle(canvas);
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = styles.getPropertyValue('--muted') || '#888';
    ctx.fillText(`${top} ms`, 4, 11);
    for (const [index, color] of [
      [1, styles.getPropertyValue('--buffer') || '#888'],
      [0, styles.getPropertyValue('--accent') || '#4af'],
    ]) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let drawing = false;
      this.#history.forEach((point, i) => {
        const v = point[index];
        if (v === null) {
          drawing = false;
          return;
        }
        if (drawing) ctx.lineTo(x(i), y(v));
        else ctx.moveTo(x(i), y(v));
        drawing = true;
      });
      ctx.stroke();
    }
  }
}

const graph = new Graph(document.getElementById('graph'), (60 * 1000) / STATS_INTERVAL_MS);
setInterval(() => {
  const stats = player.stats();
  renderStats(stats);
  graph.add(stats.latencyMs, stats.bufferMs);
  soundButton.hidden = player.soundState() !== 'muted';
}, STATS_INTERVAL_MS);
