/**
 * The minimal Node forwarder the proxy is compared with: node:http (HTTP/1.1) and
 * node:http2 compat (h2c) in front of one undici Pool, `pool.stream()` piping the
 * answer into the response. No policy, no validation. Prints `h1 <port>`, `h2 <port>`.
 * argv[2] = upstream origin (http://127.0.0.1:PORT); argv[3] = processes (default 1: more
 * fork through node:cluster and share the listeners, as `l7warden run --workers N`
 * does: the workers benchmark's two-process Node ceiling).
 *
 * Two things the HTTP/2 side needs to be correct at all, found when it stalled in the
 * concurrent benchmark:
 *  - undici destroys a stream body once read, which resets a compat request's stream
 *    before its answer: the body goes through a PassThrough;
 *  - a compat response whose client has gone (load tools stop with streams in flight)
 *    answers write() with false and never drains, and undici cannot see it close: the
 *    pooled connection's parser stayed paused for good, and after ~60k POSTs all 128
 *    were held and the forwarder answered nothing. The response's 'close' aborts the
 *    upstream request instead.
 */
import cluster from 'node:cluster';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { Pool } from 'undici';

const pool = new Pool(process.argv[2]!, { connections: 128 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'host', 'http2-settings', 'proxy-connection']);

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

function forward(req: Req, res: Res, body: Readable | null, signal?: AbortSignal): void {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (k[0] !== ':' && !HOP.has(k) && typeof v === 'string') headers[k] = v;
  pool.stream(
    { path: req.url ?? '/', method: req.method as 'GET', headers, body, ...(signal ? { signal } : {}) },
    ({ statusCode, headers: h }) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(h)) if (!HOP.has(k) && v !== undefined) out[k] = v as string;
      (res as http.ServerResponse).writeHead(statusCode, out);
      return res as http.ServerResponse;
    },
    (err) => {
      if (err && !res.headersSent && !res.destroyed) {
        res.statusCode = 502;
        res.end();
      }
    },
  );
}

const noBody = (req: Req): boolean => req.method === 'GET' || req.method === 'HEAD';

const processes = Math.max(1, Number(process.argv[3] ?? 1));
if (processes > 1 && cluster.isPrimary) {
  // Only the primary forks; the workers (same argv) fall through to the servers.
  const workers = Array.from({ length: processes }, () => cluster.fork());
  process.on('SIGTERM', () => {
    for (const w of workers) w.process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const h1 = http.createServer((req, res) => forward(req, res, noBody(req) ? null : req));
  h1.keepAliveTimeout = 60_000;
  h1.listen(0, '127.0.0.1', () => console.log(`h1 ${(h1.address() as AddressInfo).port}`));
  const h2 = http2.createServer((req, res) => {
    const ac = new AbortController();
    res.once('close', () => ac.abort());
    forward(req, res, noBody(req) ? null : req.pipe(new PassThrough()), ac.signal);
  });
  h2.listen(0, '127.0.0.1', () => console.log(`h2 ${(h2.address() as AddressInfo).port}`));
  process.on('SIGTERM', () => process.exit(0));
}
