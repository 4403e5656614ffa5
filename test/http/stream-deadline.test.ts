/**
 * requestTimeoutMs on HTTP/2 streams (src/http/stream-deadline.ts): a stream whose
 * request body is trickled past the deadline gets 408 and is ended, while other
 * streams on the same session are served; a body that completes in time is
 * forwarded whole; a gRPC stream (long-lived by design) to an HTTP/2 upstream is not
 * cut, while a "gRPC" content-type on a request to an HTTP/1.1 upstream buys nothing.
 */
import t from 'tap';
import * as http2 from 'node:http2';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureH2, startCaptureUpstream } from '../helpers/capture-upstream.js';
import type { TestT } from '../helpers/tap.js';

const TIE = '127.0.0.10';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  status: number | undefined;
  body: string;
  ms: number;
  closed: boolean;
}

/**
 * POST /v1/request-landing on `session`, writing one byte every `everyMs`, `chunks`
 * times, ending the body after them when `end`; resolves when the stream closes or
 * after `maxMs`.
 */
function trickled(session: http2.ClientHttp2Session, opts: { chunks: number; everyMs: number; end: boolean; maxMs: number; grpc?: boolean }): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const req = session.request({
      ':method': 'POST',
      ':path': '/v1/request-landing',
      ':authority': 'deathstar',
      ...(opts.grpc ? { 'content-type': 'application/grpc', te: 'trailers' } : {}),
    });
    let status: number | undefined;
    let body = '';
    let n = 0;
    const iv = setInterval(() => {
      if (req.destroyed || req.closed) return clearInterval(iv);
      if (n++ < opts.chunks) req.write('x');
      else {
        clearInterval(iv);
        if (opts.end) req.end();
      }
    }, opts.everyMs);
    const done = (closed: boolean) => {
      clearInterval(iv);
      clearTimeout(timer);
      resolve({ status, body, ms: Date.now() - t0, closed });
    };
    const timer = setTimeout(() => {
      done(false);
      req.close(http2.constants.NGHTTP2_CANCEL);
    }, opts.maxMs);
    req.on('response', (h) => (status = Number(h[':status'])));
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('error', () => {});
    req.on('close', () => done(true));
  });
}

/** The Star Wars proxy with requestTimeoutMs = ms, and an h2c session to it from tiefighter. */
async function setup(t: TestT, ms: number, upstream: 'http' | 'h2c' = 'http') {
  const up = upstream === 'h2c' ? await startCaptureH2() : await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url, limits: { requestTimeoutMs: ms, headersTimeoutMs: ms }, admin: false });
  t.teardown(cfg.cleanup);
  const proxy = await startProxy({ configDir: cfg.dir });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners.find((l) => l.name === 'deathstar')!.address.port;
  const session = http2.connect(`http://127.0.0.1:${port}`, { localAddress: TIE });
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  return { up, session };
}

t.test('a trickled HTTP/2 request body gets 408 at requestTimeoutMs; the session keeps serving', async (t) => {
  const { up, session } = await setup(t, 1000);

  // Five slow streams: a byte every 100 ms for up to 5 s, never ended.
  const slow = Array.from({ length: 5 }, () => trickled(session, { chunks: 50, everyMs: 100, end: false, maxMs: 6000 }));
  await sleep(200);
  // Meanwhile, on the same session: a request whose body completes in time.
  const inTime = await trickled(session, { chunks: 3, everyMs: 100, end: true, maxMs: 3000 });
  t.equal(inTime.status, 200, 'a body completed within the deadline is served');
  t.ok(up.requests.some((r) => r.body.toString() === 'xxx'), 'and reaches the upstream whole');
  for (const r of await Promise.all(slow)) {
    if (!r.closed || r.status !== 408 || r.ms < 900 || r.ms > 2600) {
      t.fail(`slow stream: closed=${r.closed} status=${r.status} after ${r.ms} ms`);
      return;
    }
  }
  t.pass('5 trickling streams got 408 and were ended within requestTimeoutMs (+ sweep interval)');
  t.equal(session.closed || session.destroyed, false, 'the session itself stays open');
  const after = await trickled(session, { chunks: 1, everyMs: 10, end: true, maxMs: 3000 });
  t.equal(after.status, 200, 'and serves a new stream afterwards');
});

t.test('a gRPC stream to an HTTP/2 upstream is not cut by requestTimeoutMs', async (t) => {
  const { session } = await setup(t, 500, 'h2c');
  // Sends for 1.5 s (three deadlines' worth) and then ends: answered by the upstream, not 408.
  const r = await trickled(session, { chunks: 15, everyMs: 100, end: true, maxMs: 5000, grpc: true });
  t.ok(r.closed, 'the call completes');
  t.not(r.status, 408, `not cut (status ${r.status} after ${r.ms} ms)`);
  t.ok(r.ms >= 1400, 'it lived past the deadline');
});

t.test('a gRPC content-type does not lift the deadline toward an HTTP/1.1 upstream', async (t) => {
  // gRPC cannot be served by an HTTP/1.1 upstream (no trailers), so the header is only a
  // way around requestTimeoutMs: without this, any HTTP/2 client could hold an upstream
  // HTTP/1.1 connection with a trickled body for as long as it liked.
  const { up, session } = await setup(t, 500);
  const r = await trickled(session, { chunks: 40, everyMs: 100, end: false, maxMs: 5000, grpc: true });
  t.ok(r.closed, `the stream was ended (after ${r.ms} ms)`);
  t.equal(r.status, 408, '408, as for any other trickled body');
  t.ok(r.ms < 3000, 'long before the client would have stopped');
  t.notOk(up.requests.some((q) => q.body.length >= 40), 'the upstream never got the whole trickle');
});
