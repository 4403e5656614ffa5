/**
 * Long-lived gRPC calls (server-streaming watches, bidi chats: ordinary gRPC) must
 * not take every client's place towards an h2c upstream that limits its
 * concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS; 100 is common). The pool
 * kept a fixed two sessions: once the held calls filled both sessions' stream
 * slots, nghttp2 queued every further stream, and every other client of every
 * identity waited until `upstreamTimeoutMs` for UNAVAILABLE (measured: 200 held
 * calls from one client, two connections × 100 streams, with the upstream at 100:
 * 3 of 3 other calls failed; here the same with the upstream at 2). Envoy opens
 * another connection when a connection's stream limit is reached; the pool now
 * does the same, up to a bound.
 *
 * Oracle: counts. Other clients' unary calls answered OK while the held calls are
 * open; upstream connections stay bounded.
 */
import t from 'tap';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { h2Connect, h2Request } from '../helpers/clients.js';

const TIE = '127.0.0.10';
const UPSTREAM_LIMIT = 2;
const HELD = 4; // fills the two sessions the pool used to keep
const OTHERS = 5;
const GRPC = { 'content-type': 'application/grpc', te: 'trailers' };
const EMPTY_MESSAGE = Buffer.from([0, 0, 0, 0, 0]);

t.test(`${HELD} held calls on an upstream allowing ${UPSTREAM_LIMIT} streams per connection`, async (t) => {
  let connections = 0;
  let peakStreams = 0;
  const server = http2.createServer({ settings: { maxConcurrentStreams: UPSTREAM_LIMIT } });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    connections++;
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  let open = 0;
  server.on('stream', (st, headers) => {
    st.on('error', () => {});
    open++;
    peakStreams = Math.max(peakStreams, open);
    st.on('close', () => open--);
    st.resume();
    if (String(headers[':path']).endsWith('/Watch')) {
      // A watch: the head and one message, then held open.
      st.respond({ ':status': 200, 'content-type': 'application/grpc' });
      st.write(EMPTY_MESSAGE);
      return;
    }
    st.on('end', () => {
      st.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      st.once('wantTrailers', () => st.sendTrailers({ 'grpc-status': '0' }));
      st.end(EMPTY_MESSAGE);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const cfg = await starWarsDir({
    upstream: `h2c://127.0.0.1:${(server.address() as AddressInfo).port}`,
    extraHttp: ['{ method: "POST", path: "/svc\\\\.A/.*" }'],
    limits: { upstreamTimeoutMs: 2000 },
    admin: false,
  });
  const proxy = await startProxy({ configDir: cfg.dir });
  const port = proxy.listeners[0]!.address.port;
  const holder = await h2Connect(port, TIE);
  t.teardown(async () => {
    holder.destroy();
    await proxy.close(0);
    for (const s of sessions) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await cfg.cleanup();
  });

  let watching = 0;
  await new Promise<void>((resolve) => {
    for (let i = 0; i < HELD; i++) {
      const st = holder.request({ ':method': 'POST', ':path': '/svc.A/Watch', ':authority': 'deathstar', ...GRPC });
      st.on('error', () => {});
      st.once('data', () => {
        if (++watching === HELD) resolve();
      });
      st.write(EMPTY_MESSAGE);
    }
    setTimeout(resolve, 3000).unref();
  });
  t.equal(watching, HELD, 'every held call is open upstream');

  let ok = 0;
  const failures: string[] = [];
  for (let i = 0; i < OTHERS; i++) {
    const s = await h2Connect(port, TIE);
    const r = await h2Request(s, { method: 'POST', path: '/svc.A/Get', headers: GRPC, body: EMPTY_MESSAGE });
    s.destroy();
    const status = r.trailers?.['grpc-status'] ?? r.headers['grpc-status'];
    if (status === '0') ok++;
    else failures.push(`${status} ${r.headers['grpc-message']}`);
  }
  t.equal(ok, OTHERS, `other calls answered while the held ones stay open (failed: ${failures.join(', ') || 'none'})`);
  t.ok(peakStreams >= HELD + 1, `upstream had the held calls and another one at once (${peakStreams})`);
  t.ok(connections <= HELD, `upstream connections bounded (${connections})`);
});
