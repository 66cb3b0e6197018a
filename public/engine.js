// The contract between the player (player.js) and the engines it drives, WebCodecsEngine
// (webcodecs-player.js) and MseEngine (mse-player.js), written down once. Both implement all
// of it, so the player calls every member without asking whether it is there; an engine with
// nothing to say for a figure answers null.

/** @typedef {ReturnType<typeof import('./fmp4.js').parseInit>} Tracks */

/**
 * One media message, as the player hands it to the engine: read by fmp4.js once, with the
 * tracks of the init the engine was given, for the engine and the latency alike. A fragment
 * fmp4.js cannot read has no `fragment` and `unreadable` says why; what that costs is the
 * engine's call (WebCodecs has nothing to decode, MSE lets the browser judge the bytes).
 * @typedef {object} Media
 * @property {ArrayBuffer} bytes  as the socket received them
 * @property {ReturnType<typeof import('./fmp4.js').parseFragment> | null} fragment
 * @property {string | null} unreadable
 */

/**
 * What an engine tells the player.
 * @typedef {object} EngineEvents
 * @property {(mediaSeconds: number, shownPageMs: number, preview?: boolean) => void} frameShown
 *   a frame reached the screen at page wall clock `shownPageMs`; a `preview` is a joiner's
 *   picture behind the live edge, which the latency does not count
 * @property {(message: string) => void} fatal  the player shows it and starts over on a new
 *   connection
 * @property {(text: string) => void} status
 */

/**
 * An engine class: `new Engine(surface, on, log)` shows the stream on `surface` (the <canvas>
 * for WebCodecs, the <video> for MSE), with `on` the EngineEvents and `log` the debug log.
 * @typedef {object} EngineClass
 * @property {'webcodecs' | 'mse'} kind
 * @property {(tracks: Tracks, info: object) => Promise<string | null>} unsupported  why this
 *   browser cannot play these tracks (`info`: the server's init message) with this engine, in
 *   words for the page, or null if it can
 */

/**
 * A running engine.
 * @typedef {object} Engine
 * @property {() => void} destroy  lets go of the surface and everything else
 * @property {(info: object, bytes: ArrayBuffer, tracks: Tracks) => void} init  a new init
 *   segment, on a new connection or on the same one after a source restart
 * @property {(media: Media) => void} media
 * @property {() => void} skipped  the server left fragments out
 * @property {() => void} reset  a new connection or a hidden tab
 * @property {() => void} tick  a few times a second, on the player's clock
 * @property {() => number} position  media time (s) of the picture on screen
 * @property {() => number | null} bufferMs
 * @property {() => number | null} framesShown  a running count
 * @property {() => number} droppedFrames
 * @property {() => number | null} avSyncMs
 * @property {() => number | null} audioFrames
 * @property {() => number | null} audioBehindMs
 * @property {() => number | null} audioTrimmed
 * @property {() => boolean} hasAudio
 * @property {() => boolean} soundOn
 * @property {() => Promise<boolean>} unmute  from a user gesture; whether sound is on after it
 */

// Types only; the export makes this a module that import('./engine.js') can name.
export {};
