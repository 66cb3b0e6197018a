// A capture clock for capture-to-screen latency: raw 1280x720 yuv420p frames at 30 fps on
// stdout, each carrying the wall clock (ms since the epoch, 40 bits) at the moment it is
// written, as a barcode across the top of the picture: 40 blocks of 32x32 (white = 1), and
// under them the same bits inverted, so a reader can tell a clean read from a smeared one.
// What reads them back: screenReader() in lib.mjs. The frame's writing is its capture: what
// follows (encoder, transport, server, player, screen) is what the measurement covers.
//   node stamp.mjs | ffmpeg -f rawvideo -pix_fmt yuv420p -s 1280x720 -r 30 -i - …

export const WIDTH = 1280;
export const HEIGHT = 720;
export const BITS = 40;
export const BLOCK = 32;

/** Paints the stamp of `ms` into a luma plane (or any 8-bit plane) `width` wide. */
export function paintStamp(plane, width, ms) {
  let value = ms % 2 ** BITS;
  for (let bit = BITS - 1; bit >= 0; bit -= 1) {
    const one = value % 2 === 1;
    value = Math.floor(value / 2);
    for (let y = 0; y < 2 * BLOCK; y += 1) {
      const on = y < BLOCK ? one : !one;
      plane.fill(on ? 235 : 16, y * width + bit * BLOCK, y * width + (bit + 1) * BLOCK);
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const FPS = 30;
  const frame = Buffer.alloc((WIDTH * HEIGHT * 3) / 2, 128);
  const start = Date.now();
  let n = 0;
  const next = () => {
    const due = start + (n * 1000) / FPS;
    const wait = due - Date.now();
    if (wait > 1) {
      setTimeout(next, wait - 1);
      return;
    }
    // A moving bar below the stamp, so the encoder sees motion as a camera's would.
    const luma = frame.subarray(0, WIDTH * HEIGHT);
    luma.fill(128, 2 * BLOCK * WIDTH);
    const bar = (n * 16) % (WIDTH - 64);
    for (let y = 3 * BLOCK; y < HEIGHT; y += 1) luma.fill(200, y * WIDTH + bar, y * WIDTH + bar + 64);
    paintStamp(luma, WIDTH, Date.now());
    n += 1;
    if (process.stdout.write(frame)) setImmediate(next);
    else process.stdout.once('drain', next);
  };
  process.stdout.on('error', () => process.exit(0));
  next();
}
