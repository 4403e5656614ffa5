/**
 * Attacks on the h2c/gRPC upstream side that held, kept as regression cases:
 *  - gRPC method paths spelled oddly (`//`, `/./`, `%6f`, trailing `/`, case, `;`,
 *    `..`, `%2F`, a query naming another method): decided on the canonical path and
 *    forwarded as exactly that, or denied / 400 with nothing upstream;
 *  - a denied call is Envoy's trailers-only PERMISSION_DENIED;
 *  - forwarded metadata: client provenance headers replaced or dropped, `te: trailers`
 *    and `-bin` / `grpc-timeout` metadata passed through;
 *  - a client cancelling a server-streaming call resets the upstream stream;
 *  - 200 streams of a large response held by clients that never read (window 0) do
 *    not stall other clients sharing the upstream sessions;
 *  - upstream answers nghttp2 refuses (pseudo-headers in trailers, `connection` in a
 *    response, 300 response headers, PUSH_PROMISE): the client is answered or reset,
 *    the proxy lives and the next call is served.
 */
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { h2Connect, h2Request } from '../helpers/clients.js';
import { waitFor, frame, FT, FL, block } from '../helpers/h2-raw.js';
import { startRawUpstream, headersFrame, dataFrame, type Behaviour } from '../helpers/h2-raw-upstream.js';

const TIE = '127.0.0.10';
const GRPC = { 'content-type': 'application/grpc', te: 'trailers' };
const MSG = Buffer.from([0, 0, 0, 0, 0]);
const RULES = ['{ method: "POST", path: "/svc\\\\.A/Allowed" }', '{ method: "POST", path: "/svc\\\\.A/(Ok.*|Watch|Big)" }'];

interface Seen {
  path: string;
  raw: string[];
  rst?: number;
}

async function grpcUpstream(): Promise<{ url: string; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const BIG = Buffer.alloc(4 << 20, 0x62);
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (st: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _f: number, raw: string[]) => {
    st.on('error', () => {});
    const r: Seen = { path: String(headers[':path']), raw };
    seen.push(r);
    st.on('close', () => (r.rst = st.rstCode));
    st.resume();
    if (r.path === '/svc.A/Watch') {
      st.respond({ ':status': 200, 'content-type': 'application/grpc' });
      st.write(MSG);
      return;
    }
    st.on('end', () => {
      if (st.destroyed) return;
      st.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      st.once('wantTrailers', () => st.sendTrailers({ 'grpc-status': '0' }));
      if (r.path !== '/svc.A/Big') {
        st.end(MSG);
        return;
      }
      // With backpressure, as a real server: a stalled reader holds one stream window.
      let off = 0;
      const pump = (): void => {
        while (off < BIG.length) {
          const c = BIG.subarray(off, (off += 16384));
          if (!st.write(c)) {
            st.once('drain', pump);
            return;
          }
        }
        st.end();
      };
      pump();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `h2c://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  };
}

async function withProxy(t: Test, upstream: string, limits?: Record<string, number>): Promise<number> {
  const cfg = await starWarsDir({ upstream, extraHttp: RULES, admin: false, ...(limits ? { limits } : {}) });
  const proxy: RunningProxy = await startProxy({ configDir: cfg.dir });
  t.teardown(async () => {
    await proxy.close(0);
    await cfg.cleanup();
  });
  return proxy.listeners[0]!.address.port;
}

const call = (s: http2.ClientHttp2Session, path: string, headers: http2.OutgoingHttpHeaders = {}) =>
  h2Request(s, { method: 'POST', path, headers: { ...GRPC, ...headers }, body: MSG });

t.test('method paths, deny reply, forwarded metadata', async (t) => {
  const up = await grpcUpstream();
  t.teardown(() => up.close());
  const port = await withProxy(t, up.url);
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.destroy());
  const cases: [string, string | 'denied' | 400][] = [
    ['/svc.A/Allowed', '/svc.A/Allowed'],
    ['/svc.A//Allowed', '/svc.A/Allowed'],
    ['//svc.A/Allowed', '/svc.A/Allowed'],
    ['/svc.A/./Allowed', '/svc.A/Allowed'],
    ['/svc.A/All%6fwed', '/svc.A/Allowed'],
    ['/svc.A/Allowed/', 'denied'],
    ['/SVC.A/Allowed', 'denied'],
    ['/svc.A/Allowed;x', 'denied'],
    ['/svc.A/Ok/../Denied', 'denied'],
    ['/svc.A/Ok;/../Denied', 'denied'],
    ['/svc.A/Ok%3B/../Denied', 'denied'],
    ['/svc.A/Ok/../../svc.B/X', 'denied'],
    ['/svc.A%2FAllowed', 400],
    ['/svc.A/Ok%2F..%2FDenied', 400],
    ['/svc.A/Ok?x=/svc.A/Denied', '/svc.A/Ok?x=/svc.A/Denied'],
  ];
  for (const [path, expect] of cases) {
    const before = up.seen.length;
    const r = await call(s, path);
    const got = up.seen.slice(before).map((x) => x.path);
    if (expect === 'denied') {
      t.same([r.status, r.headers['grpc-status'], r.headers['grpc-message'], r.body], [200, '7', 'Access%20denied%0D%0A', ''], `${path}: PERMISSION_DENIED, trailers-only`);
      t.same(got, [], `${path}: nothing upstream`);
    } else if (expect === 400) {
      t.equal(r.status, 400, `${path}: 400`);
      t.same(got, [], `${path}: nothing upstream`);
    } else {
      t.same([r.trailers?.['grpc-status'], got], ['0', [expect]], `${path}: forwarded as ${expect}`);
    }
  }
  const before = up.seen.length;
  await call(s, '/svc.A/Allowed', { 'x-forwarded-for': '10.9.9.9', 'x-envoy-original-path': '/svc.A/Denied', 'x-trace-bin': 'AAEC', 'grpc-timeout': '1n', forwarded: 'for=1.2.3.4' });
  const raw = up.seen[before]!.raw;
  const names = raw.filter((_, i) => i % 2 === 0);
  t.equal(raw[raw.indexOf('x-forwarded-for') + 1], '127.0.0.10', 'x-forwarded-for is the proxy\'s view');
  t.notOk(names.includes('x-envoy-original-path') || names.includes('forwarded'), 'provenance headers dropped');
  t.same([raw[raw.indexOf('te') + 1], raw[raw.indexOf('x-trace-bin') + 1], raw[raw.indexOf('grpc-timeout') + 1]], ['trailers', 'AAEC', '1n'], 'gRPC metadata kept');
});

t.test('a cancelled call resets its upstream stream; stalled readers do not stall others', async (t) => {
  const up = await grpcUpstream();
  t.teardown(() => up.close());
  const port = await withProxy(t, up.url, { idleTimeoutMs: 20000 });
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.destroy());
  const st = s.request({ ':method': 'POST', ':path': '/svc.A/Watch', ':authority': 'deathstar', ...GRPC });
  st.on('error', () => {});
  st.write(MSG);
  await new Promise((r) => st.once('data', r));
  st.close(http2.constants.NGHTTP2_CANCEL);
  const watch = up.seen.find((x) => x.path === '/svc.A/Watch')!;
  t.ok(await waitFor(() => watch.rst !== undefined, 3000), 'upstream stream closed');
  t.equal(watch.rst, http2.constants.NGHTTP2_CANCEL, 'with CANCEL');

  const stalled: http2.ClientHttp2Session[] = [];
  for (let c = 0; c < 2; c++) {
    const a = http2.connect(`http://127.0.0.1:${port}`, { localAddress: TIE, settings: { initialWindowSize: 0 } });
    a.on('error', () => {});
    stalled.push(a);
    for (let i = 0; i < 100; i++) {
      const x = a.request({ ':method': 'POST', ':path': '/svc.A/Big', ':authority': 'deathstar', ...GRPC });
      x.on('error', () => {});
      x.end(MSG);
    }
  }
  t.teardown(() => stalled.forEach((a) => a.destroy()));
  t.ok(await waitFor(() => up.seen.filter((x) => x.path === '/svc.A/Big').length === 200, 5000), '200 stalled streams open upstream');
  let ok = 0;
  for (let i = 0; i < 5; i++) {
    const v = await h2Connect(port, TIE);
    const r = await call(v, '/svc.A/OkGet');
    v.destroy();
    if (r.trailers?.['grpc-status'] === '0') ok++;
  }
  t.equal(ok, 5, 'other clients answered');
});

t.test('upstream answers nghttp2 refuses', async (t) => {
  const up = await startRawUpstream();
  t.teardown(() => up.close());
  const port = await withProxy(t, up.url);
  const ok: Behaviour = (w, id) => {
    w(headersFrame(id, [[':status', '200'], ['content-type', 'application/grpc']]));
    w(dataFrame(id, MSG));
    w(headersFrame(id, [['grpc-status', '0']], true));
  };
  const bad: [string, Behaviour][] = [
    ['pseudo-header in trailers', (w, id) => {
      w(headersFrame(id, [[':status', '200'], ['content-type', 'application/grpc']]));
      w(dataFrame(id, MSG));
      w(headersFrame(id, [['grpc-status', '0'], [':path', '/svc.A/Denied']], true));
    }],
    ['connection header in a response', (w, id) => w(headersFrame(id, [[':status', '200'], ['connection', 'close'], ['grpc-status', '0']], true))],
    ['300 response headers', (w, id) => w(headersFrame(id, [[':status', '200'], ...Array.from({ length: 300 }, (_, i): [string, string] => [`x-h${i}`, 'v']), ['grpc-status', '0']], true))],
    ['PUSH_PROMISE', (w, id) => {
      const pp = Buffer.concat([Buffer.from([0, 0, 0, 2]), block([[':method', 'GET'], [':path', '/p'], [':scheme', 'http'], [':authority', 'x']])]);
      w(frame(5, FL.END_HEADERS, id, pp));
      w(headersFrame(id, [[':status', '200'], ['grpc-status', '0']], true));
    }],
  ];
  for (const [name, b] of bad) {
    up.queue.push(b);
    const s = await h2Connect(port, TIE);
    const r = await call(s, '/svc.A/Allowed');
    s.destroy();
    const good = r.trailers?.['grpc-status'] === '0' && r.rstCode === 0;
    t.notOk(good, `${name}: not passed off as a successful call (status ${r.headers['grpc-status'] ?? '-'}, rst ${r.rstCode})`);
    up.queue.length = 0;
    up.queue.push(ok, ok);
    const s2 = await h2Connect(port, TIE);
    const after = [await call(s2, '/svc.A/Allowed'), await call(s2, '/svc.A/Allowed')];
    s2.destroy();
    t.same(after.map((x) => x.trailers?.['grpc-status']), ['0', '0'], `${name}: the next calls are served`);
    up.queue.length = 0;
  }
  void FT;
});
