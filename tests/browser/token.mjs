// The watch page of a stream that needs a token: a good `?token=` plays; a missing or expired
// one is shown in the page and not retried; a token that runs out while watching is renewed
// through `wslive.renew`, and one that is not renewed ends with the expiry message.
//   node token.mjs --url URL --stream cam --good T --expired T --short T --renewal T --shortExp SECS

import { args, fail, launch, playerState, result, until, watchErrors } from './lib.mjs';

const { url, stream = 'cam', good, expired, short, renewal, shortExp } = args();
const browser = await launch();
const watch = (token) => `${url}/watch/${stream}?player=auto${token ? `&token=${token}` : ''}`;

async function refusedPage(name, token, expect) {
  const page = await browser.newPage();
  await page.goto(watch(token));
  const banner = await until(
    page,
    () => {
      const b = document.getElementById('error');
      return !b.hidden && b.textContent;
    },
    10000,
    `the ${name} message`,
  );
  if (!expect.test(banner)) fail(`${name}: the page says "${banner}"`);
  // Not a retry loop: nothing reconnects over the next seconds.
  await page.waitForTimeout(3000);
  const state = await page.evaluate(playerState);
  if (state.stats.reconnects !== 0) fail(`${name}: ${state.stats.reconnects} reconnects`);
  if (state.stats.joinMs !== null) fail(`${name}: it played`);
  await page.close();
  return { banner, status: state.status };
}

try {
  const seen = {};
  // First, while the short token still has seconds left.
  // Two viewers whose token runs out in seconds: one renews when told, one does not.
  // Each in a context (a window) of its own: a background tab would count as hidden.
  const renewing = await (await browser.newContext()).newPage();
  const lapsing = await (await browser.newContext()).newPage();
  await renewing.addInitScript((token) => {
    addEventListener('wslive:expiring', () => window.wslive.renew(token));
  }, renewal);
  await Promise.all([renewing.goto(watch(short)), lapsing.goto(watch(short))]);
  const expiresMs = Number(shortExp) * 1000;
  const untilMs = expiresMs + 2500 - Date.now();
  await until(renewing, () => window.wslive?.stats().joinMs != null, 10000, 'the renewing viewer');
  await renewing.waitForTimeout(Math.max(0, untilMs));
  const lapsed = await until(
    lapsing,
    () => {
      const b = document.getElementById('error');
      return !b.hidden && b.textContent;
    },
    10000,
    'the expiry message',
  );
  if (!/expired/.test(lapsed)) fail(`the lapsed viewer sees "${lapsed}"`);
  const one = await renewing.evaluate(playerState);
  await renewing.waitForTimeout(1500);
  const two = await renewing.evaluate(playerState);
  if (two.banner) fail(`the renewed viewer shows: ${two.banner}`);
  if (two.time - one.time < 1) fail(`the renewed viewer stopped (${two.time - one.time} s)`);
  const address = await renewing.evaluate(() => location.search);
  if (!address.includes(renewal)) fail('the page address does not keep the new token');
  const tokenExpires = await renewing.evaluate(() => window.wslive.player.tokenExpiresMs);
  if (!(tokenExpires > expiresMs)) fail(`the renewed expiry is ${tokenExpires}`);
  seen.renewed = { advanced: two.time - one.time, tokenExpires };
  seen.lapsed = lapsed;
  seen.missing = await refusedPage('missing token', null, /needs a valid token/);
  seen.expired = await refusedPage('expired token', expired, /expired/);

  // A good token plays.
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.goto(watch(good));
  await until(page, () => window.wslive?.stats().joinMs != null, 10000, 'the first frame');
  const before = await page.evaluate(playerState);
  await page.waitForTimeout(1500);
  const after = await page.evaluate(playerState);
  if (after.time - before.time < 1) fail(`a good token: advanced ${after.time - before.time} s`);
  if (errors.length) fail(errors.join('; '));
  seen.good = { mode: after.mode, advanced: after.time - before.time };
  await page.close();

  result(seen);
} finally {
  await browser.close();
}
