#!/usr/bin/env node
// Entry point of the `l7warden` binary; everything else is in commands.ts so tests can call main().
//
// V8's allocation-site pretenuring is turned off before anything else loads. It
// moves an allocation site's objects straight to the old generation once enough of
// them survive a scavenge, and the decision does not come back. A proxy's per-request
// objects (HTTP/2 streams, undici requests, parsed headers) survive scavenges while
// many requests are in flight: after one burst, or after loading a large policy,
// every later request's objects went to the old generation. Measured on the h2c
// half-load benchmark with 1,000 policies: 4.4 KB promoted per request, scavenges
// averaging 8.4 ms and a mark-compact every second, p99 +8.7 ms over the
// pass-through. With pretenuring off: scavenges 3.3-3.7 ms, p99 +0.5 to +3 ms
// (docs/http.md, "Tail latency and the garbage collector").
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--no-allocation-site-pretenuring');
const { main } = await import('./commands.js');

const argv = process.argv.slice(2);
// A reader that goes away (`l7warden observe --file f | head`) made the next write
// an unhandled EPIPE with a stack trace. A printing command ends quietly, as a C tool
// would on SIGPIPE; `run` and `demo` keep serving whatever reads their output (the
// flow sink stops writing to a closed stdout and says so once on stderr).
const serving = argv[0] === 'run' || argv[0] === 'demo';
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (!serving) process.exit(process.exitCode ?? 0);
  });
}

main(argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
