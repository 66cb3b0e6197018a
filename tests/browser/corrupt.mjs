// Bad media reaches the player: one media frame cut short on its way from the socket (an init
// script wraps the page's WebSocket). The player must say so in the page, throw nothing at the
// page, and play again on its own (it reconnects and starts at a fresh key frame).
//   node corrupt.mjs --url http://127.0.0.1:PORT --stream live --player webcodecs

import { args, fail, launch, playerState, result, until, watchErrors } from './lib.mjs';

const { url, stream = 'live', player = 'webcodecs' } = args();
const browser = await launch();
try {
  const page = await browser.newPage();
  const errors = watchErrors(page);
  await page.addInitScript(() => {
    const Native = WebSocket;
    let binary = 0;
    window.__damaged = 0;
    window.WebSocket = class extends Native {
      set onmessage(handler) {
        if (!handler) {
          super.onmessage = null;
          return;
        }
        super.onmessage = (event) => {
          if (event.data instanceof ArrayBuffer && window.__damaged === 0 && ++binary === 40) {
            window.__damaged = 1;
            // Half a fragment: its boxes claim more bytes than there are.
            handler(new MessageEvent('message', { data: event.data.slice(0, event.data.byteLength >> 1) }));
            return;
          }
          handler(event);
        };
      }
    };
  });
  await page.goto(`${url}/watch/${stream}?player=${player}`);
  const shown = await until(
    page,
    () => !document.getElementById('error').hidden && document.getElementById('error').textContent,
    10000,
    'the error in the page',
  );
  const recovered = await until(
    page,
    () => document.getElementById('error').hidden && window.wslive.stats().reconnects >= 1,
    10000,
    'playing again after the bad fragment',
  );
  const before = await page.evaluate(playerState);
  await page.waitForTimeout(2000);
  const after = await page.evaluate(playerState);
  if (after.time - before.time < 1.5) fail(`after recovering the picture advanced ${after.time - before.time} s in 2 s`);
  if (errors.length) fail(errors.join('; '));
  result({ shown, recovered, mode: after.mode, reconnects: after.stats.reconnects });
} finally {
  await browser.close();
}
