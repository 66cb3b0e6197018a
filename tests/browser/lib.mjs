// Shared by the browser scenarios: launching Debian's Chromium headless, waiting on the page,
// and reporting. A scenario prints `RESULT {json}` and exits 0, or prints `FAIL reason` and
// exits 1; tests/browser.rs runs them against a real server.

import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';

/** Chromium as Debian installs it, unless CHROMIUM names another. */
export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    try {
      return execFileSync('which', [name], { encoding: 'utf8' }).trim();
    } catch {
      // Not this one.
    }
  }
  fail('no Chromium found (install the chromium package, or set CHROMIUM)');
}

/** Headless Chromium; `extra` are more command-line switches. */
export async function launch(extra = []) {
  return chromium.launch({
    executablePath: chromiumPath(),
    // FACTS.md: what headless Chromium needs on these machines.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--autoplay-policy=no-user-gesture-required',
      ...extra,
    ],
  });
}

/** `--name value` pairs from the command line. */
export function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  return out;
}

export function fail(reason) {
  console.log(`FAIL ${reason}`);
  process.exit(1);
}

export function result(values) {
  console.log(`RESULT ${JSON.stringify(values)}`);
}

/** Polls `probe` in the page until it returns something truthy; fails after `ms`. */
export async function until(page, probe, ms, what, arg) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await page.evaluate(probe, arg);
    if (value) return value;
    if (Date.now() > deadline) fail(`timed out after ${ms} ms waiting for ${what}`);
    await page.waitForTimeout(100);
  }
}

/** Records page errors and console errors, for scenarios to check. */
export function watchErrors(page) {
  const errors = [];
  page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  return errors;
}

/**
 * What the player page shows, whichever player runs: the media time on screen (the <video>'s
 * currentTime, or the last frame drawn to the canvas), errors, status and stats.
 */
export function playerState() {
  const video = document.querySelector('video');
  const banner = document.getElementById('error');
  return {
    time: window.wslive?.position() ?? 0,
    mode: window.wslive?.stats().mode ?? null,
    paused: video.paused,
    mediaError: video.error ? `${video.error.code} ${video.error.message}` : null,
    banner: banner && !banner.hidden ? banner.textContent : null,
    status: document.getElementById('status')?.textContent ?? '',
    stats: window.wslive?.stats() ?? null,
    generation: window.wslive?.player?.info?.generation ?? null,
  };
}

export function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]);
}
