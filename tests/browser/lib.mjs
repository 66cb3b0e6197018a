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

/**
 * Capture-to-screen latency off the picture itself (run in the page, by addInitScript): at
 * every animation frame, the top strip of whichever surface the player shows (the <video> or
 * the <canvas>) is read back (scaled to 640 wide) and its stamp (stamp.mjs's barcode: the wall clock when the frame
 * was made) decoded; each new stamp gives `Date.now() − stamp` into window.screenLatencies, and
 * when it was read into window.screenTimes, and the first
 * read sets window.screenFirstAt. Smeared reads (a bit and its inverse agree) are left
 * out. Read before the frame is composited, so up to one display interval early.
 */
export function screenReader() {
  const BITS = 40;
  const BLOCK = 16;
  const WRAP = 2 ** BITS;
  const probe = document.createElement('canvas');
  probe.width = BITS * BLOCK;
  probe.height = 2 * BLOCK;
  const ctx = probe.getContext('2d', { willReadFrequently: true });
  window.screenLatencies = [];
  window.screenTimes = [];
  window.screenFirstAt = null;
  let last = null;
  const tick = () => {
    requestAnimationFrame(tick);
    const video = document.getElementById('video');
    const canvas = document.getElementById('canvas');
    let surface = null;
    let width = 0;
    if (video && !video.hidden && video.readyState >= 2) [surface, width] = [video, video.videoWidth];
    else if (canvas && !canvas.hidden) [surface, width] = [canvas, canvas.width];
    if (!surface || !width) return;
    const scale = width / 640;
    ctx.drawImage(surface, 0, 0, probe.width * scale, probe.height * scale, 0, 0, probe.width, probe.height);
    const px = ctx.getImageData(0, 0, probe.width, probe.height).data;
    let value = 0;
    for (let bit = 0; bit < BITS; bit += 1) {
      const x = bit * BLOCK + BLOCK / 2;
      const top = px[((BLOCK / 2) * probe.width + x) * 4] > 128;
      const bottom = px[((BLOCK * 1.5) * probe.width + x) * 4] > 128;
      if (top === bottom) return;
      value = value * 2 + (top ? 1 : 0);
    }
    if (value === last) return;
    last = value;
    const now = Date.now();
    const latency = (((now % WRAP) - value) % WRAP + WRAP) % WRAP;
    if (latency > 60000) return;
    window.screenLatencies.push(latency);
    window.screenTimes.push(now);
    if (window.screenFirstAt === null) window.screenFirstAt = now;
  };
  requestAnimationFrame(tick);
}

/**
 * A stamped camera (run in the publisher page, by addInitScript): getUserMedia answers with
 * a 640x360 canvas at 30 fps, each frame stamped as stamp.mjs stamps them (the wall clock when
 * it is drawn), and a 440 Hz tone for the microphone.
 */
export function stampedCamera() {
  const BITS = 40;
  const BLOCK = 16;
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const canvas = document.createElement('canvas');
    canvas.width = 640;
    canvas.height = 360;
    const ctx = canvas.getContext('2d');
    let n = 0;
    setInterval(() => {
      ctx.fillStyle = 'rgb(128,128,128)';
      ctx.fillRect(0, 0, 640, 360);
      ctx.fillStyle = 'rgb(200,200,200)';
      ctx.fillRect((n * 8) % 640, 3 * BLOCK, 32, 360);
      n += 1;
      let value = Date.now() % 2 ** BITS;
      for (let bit = BITS - 1; bit >= 0; bit -= 1) {
        const one = value % 2 === 1;
        value = Math.floor(value / 2);
        ctx.fillStyle = one ? '#fff' : '#000';
        ctx.fillRect(bit * BLOCK, 0, BLOCK, BLOCK);
        ctx.fillStyle = one ? '#000' : '#fff';
        ctx.fillRect(bit * BLOCK, BLOCK, BLOCK, BLOCK);
      }
    }, 1000 / 30);
    const stream = canvas.captureStream(30);
    if (constraints?.audio) {
      const audio = new AudioContext();
      const tone = audio.createOscillator();
      tone.frequency.value = 440;
      const out = audio.createMediaStreamDestination();
      tone.connect(out);
      tone.start();
      for (const track of out.stream.getAudioTracks()) stream.addTrack(track);
    }
    return stream;
  };
}
