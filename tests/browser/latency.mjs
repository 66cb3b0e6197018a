// Encoder-to-screen latency of a stream's player page in headless Chromium, for each player in
// turn on the same server: per frame shown, the wall clock at the screen minus the encoder's
// prft wall clock (see public/player.js), over a run, then the join time of fresh page loads.
//   node latency.mjs --url http://127.0.0.1:PORT [--stream live] [--seconds 60] [--joins 5]
//                    [--players webcodecs,mse]  (any of auto, webcodecs, mse)

import { args, launch, quantile, until } from './lib.mjs';

const { url, stream = 'live', seconds = '60', joins = '5', players = 'webcodecs,mse' } = args();
const WARM_UP_MS = 3000;

async function measure(browser, player) {
  const pageUrl = `${url}/watch/${stream}?player=${player}`;
  const page = await browser.newPage();
  await page.goto(pageUrl);
  await until(page, () => window.wslive?.stats().joinMs !== null, 10000, 'the first frame');
  await page.waitForTimeout(WARM_UP_MS);
  const skip = await page.evaluate(() => window.wslive.latencies().length);
  await page.waitForTimeout(Number(seconds) * 1000);
  const latencies = (await page.evaluate(() => window.wslive.latencies())).slice(skip);
  const stats = await page.evaluate(() => window.wslive.stats());
  await page.close();
  latencies.sort((a, b) => a - b);

  const joinTimes = [];
  for (let i = 0; i < Number(joins); i += 1) {
    const tab = await browser.newPage();
    await tab.goto(pageUrl);
    joinTimes.push(await until(tab, () => window.wslive?.stats().joinMs, 10000, 'the first frame'));
    await tab.close();
    // Join at a different point of the group of pictures each time.
    await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 700));
  }
  joinTimes.sort((a, b) => a - b);
  return { player, mode: stats.mode, latencies, joinTimes, stats };
}

const browser = await launch();
try {
  const rows = [];
  for (const player of players.split(',')) rows.push(await measure(browser, player));
  for (const { player, mode, latencies, joinTimes, stats } of rows) {
    console.log(`\n${url}/watch/${stream}?player=${player} (${mode})`);
    console.log(`frames measured: ${latencies.length} over ${seconds} s (after ${WARM_UP_MS} ms warm-up)`);
    console.log(
      `latency ms: p50 ${quantile(latencies, 0.5)}  p95 ${quantile(latencies, 0.95)}  p99 ${quantile(latencies, 0.99)}  max ${quantile(latencies, 1)}`,
    );
    console.log(
      `join ms (${joinTimes.length} fresh loads): median ${quantile(joinTimes, 0.5)}  max ${quantile(joinTimes, 1)}  all ${joinTimes.join(', ')}`,
    );
    console.log(
      `skipped fragments ${stats.skipped}, dropped frames ${stats.droppedFrames}, reconnects ${stats.reconnects}, fps ${stats.fps}`,
    );
  }
  console.log('\nplayer      p50   p95   p99   join (median)');
  for (const { mode, latencies, joinTimes } of rows) {
    const cell = (v) => String(v).padStart(5);
    console.log(
      `${mode.padEnd(10)} ${cell(quantile(latencies, 0.5))} ${cell(quantile(latencies, 0.95))} ${cell(quantile(latencies, 0.99))} ${cell(quantile(joinTimes, 0.5))}`,
    );
  }
} finally {
  await browser.close();
}
