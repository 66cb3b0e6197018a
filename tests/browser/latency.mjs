// Encoder-to-screen latency of a stream's player page in headless Chromium: per frame shown,
// the wall clock at the screen minus the encoder's prft wall clock (see public/mse-player.js),
// over a run, then the join time of fresh page loads.
//   node latency.mjs --url http://127.0.0.1:PORT [--stream live] [--seconds 60] [--joins 5]
//                    [--player auto|mse|webcodecs]

import { args, launch, quantile, until } from './lib.mjs';

const { url, stream = 'live', seconds = '60', joins = '5', player = 'auto' } = args();
const WARM_UP_MS = 3000;
const page_url = `${url}/watch/${stream}?player=${player}`;

const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(page_url);
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
    await tab.goto(page_url);
    joinTimes.push(
      await until(tab, () => window.wslive?.stats().joinMs, 10000, 'the first frame'),
    );
    await tab.close();
    // Join at a different point of the group of pictures each time.
    await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 700));
  }
  joinTimes.sort((a, b) => a - b);

  console.log(`player: ${page_url}`);
  console.log(`frames measured: ${latencies.length} over ${seconds} s (after ${WARM_UP_MS} ms warm-up)`);
  console.log(
    `latency ms: p50 ${quantile(latencies, 0.5)}  p95 ${quantile(latencies, 0.95)}  p99 ${quantile(latencies, 0.99)}  max ${quantile(latencies, 1)}`,
  );
  console.log(
    `join ms (${joinTimes.length} fresh loads): median ${quantile(joinTimes, 0.5)}  max ${quantile(joinTimes, 1)}  all ${joinTimes.join(', ')}`,
  );
  console.log(`skipped fragments ${stats.skipped}, reconnects ${stats.reconnects}, fps ${stats.fps}`);
} finally {
  await browser.close();
}
