/**
 * Launcher for the repository's `npm run demo`, which runs `dist/demo.js`: the demo itself is plain JavaScript in
 * `bench/demo.js` (not published; this file is excluded from the package too). Not part of the public API.
 */
await import(new URL('../bench/demo.js', import.meta.url).href);
