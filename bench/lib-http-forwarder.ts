/**
 * The minimal Node forwarder the proxy is compared with: node:http (HTTP/1.1) and
 * node:http2 compat (h2c) in front of one undici Pool, `pool.stream()` piping the
 * answer into the response. No policy, no validation. Prints `h1 <port>`, `h2 <port>`.
 * argv[2] = upstream origin (http://127.0.0.1:PORT).
 */
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { Pool } from 'undici';

const pool = new Pool(process.argv[2]!, { connections: 128 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'host', 'http2-settings', 'proxy-connection']);

function forward(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (k[0] !== ':' && !HOP.has(k) && typeof v === 'string') headers[k] = v;
  pool.stream(
    { path: req.url, method: req.method as 'GET', headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : body(req) },
    ({ statusCode, headers: h }) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(h)) if (!HOP.has(k) && v !== undefined) out[k] = v as string;
      (res as http.ServerResponse).writeHead(statusCode, out);
      return res as http.ServerResponse;
    },
    (err) => {
      if (err && !res.headersSent) {
        res.statusCode = 502;
        res.end();
      }
    },
  );
}

/**
 * undici destroys a stream body once it has read it. That is harmless for an
 * HTTP/1 request that has ended, but destroying an HTTP/2 compat request resets
 * its stream before the answer is written, and under load the pool then stalls
 * (every connection waiting on a response nobody can take). So an HTTP/2 body is
 * piped through a PassThrough, the shortest correct way.
 */
function body(req: http.IncomingMessage | http2.Http2ServerRequest): Readable {
  return req instanceof http.IncomingMessage ? req : req.pipe(new PassThrough());
}

const h1 = http.createServer(forward);
h1.keepAliveTimeout = 60_000;
h1.listen(0, '127.0.0.1', () => console.log(`h1 ${(h1.address() as AddressInfo).port}`));
const h2 = http2.createServer(forward);
h2.listen(0, '127.0.0.1', () => console.log(`h2 ${(h2.address() as AddressInfo).port}`));
process.on('SIGTERM', () => process.exit(0));
