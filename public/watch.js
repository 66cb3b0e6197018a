// The player page: picks a player for the stream named in <body data-stream>, shows its
// status and errors, and refreshes the stats panel.

import { MsePlayer } from './mse-player.js';

const PLAYERS = ['auto', 'mse', 'webcodecs'];
const STATS_INTERVAL_MS = 500;

const params = new URLSearchParams(location.search);
const name = document.body.dataset.stream;
const requested = params.get('player') || 'auto';

const statusLine = document.getElementById('status');
const note = document.getElementById('note');
const banner = document.getElementById('error');
const statCells = [...document.querySelectorAll('[data-stat]')];

note.textContent = playerNote(requested);

const player = new MsePlayer(document.getElementById('video'), name, {
  debug: params.get('debug') === '1',
  onStatus: (text) => {
    statusLine.textContent = text;
  },
  onError: (message) => {
    banner.textContent = message ?? '';
    banner.hidden = !message;
  },
});
player.start();

// For tests and for poking at the player from the console.
window.wslive = { stats: () => player.stats(), player };

setInterval(() => renderStats(player.stats()), STATS_INTERVAL_MS);

/** Why the page plays through MSE when something else was asked for; empty if it was not. */
function playerNote(choice) {
  if (choice === 'mse') return '';
  if (!PLAYERS.includes(choice)) return `Unknown player "${choice}", using MSE.`;
  return 'WebCodecs player not available yet, using MSE.';
}

function renderStats(stats) {
  for (const cell of statCells) {
    const key = cell.dataset.stat;
    const value = stats[key];
    cell.textContent = value === null || value === undefined ? '–' : formatStat(key, value);
  }
}

function formatStat(key, value) {
  switch (key) {
    case 'latencyMs':
    case 'joinMs':
    case 'bufferMs':
      return `${Math.round(value)} ms`;
    case 'fps':
      return value.toFixed(1);
    case 'bitrateBps':
      return value >= 1e6 ? `${(value / 1e6).toFixed(2)} Mbit/s` : `${Math.round(value / 1e3)} kbit/s`;
    default:
      return String(value);
  }
}
