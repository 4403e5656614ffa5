/**
 * Smuggling, path and header vectors as raw bytes (and HTTP/2 frames through
 * node:http2 where the vector is HTTP/2-only). Every request targets the route the
 * policy allows (tiefighter POST /v1/request-landing), so the only reason to refuse
 * it is that it is malformed or ambiguous. Oracles (SECURITY.md §2 recipe): the
 * proxy's status, the capture upstream received nothing for a refused request, and
 * the proxy still answers a fresh well-formed request afterwards.
 */
import t from 'tap';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request, h2Connect, h2Request, rawExchange, statuses } from '../helpers/clients.js';

const TIE = '127.0.0.10';
let proxy: RunningProxy;
let up: CaptureUpstream;
let port = 0;

t.before(async () => {
  up = await startCaptureUpstream();
  const cfg = await starWarsDir({
    upstream: up.url,
    limits: { maxUrlBytes: 2048, maxBodyBytes: 4096, maxHeadersCount: 100 },
    extraHttp: ['{ method: "GET", path: "/public/.*" }'],
  });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
});

const L = 'POST /v1/request-landing HTTP/1.1\r\nHost: deathstar\r\n';

interface RawCase {
  name: string;
  bytes: string;
  /** Expected status of the (first) response; 0 = connection closed without one. */
  status: number;
  forwarded: number;
  /** The path the upstream must have received, when forwarded. */
  upstreamPath?: string;
}

const many = (n: number) => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('');

const RAW: RawCase[] = [
  { name: 'well-formed', bytes: `${L}Content-Length: 4\r\n\r\nship`, status: 200, forwarded: 1, upstreamPath: '/v1/request-landing' },
  { name: 'CL + TE', bytes: `${L}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nship\r\n0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'duplicate Content-Length', bytes: `${L}Content-Length: 4\r\nContent-Length: 4\r\n\r\nship`, status: 400, forwarded: 0 },
  { name: 'TE ,chunked (Node accepts it)', bytes: `${L}Transfer-Encoding: ,chunked\r\n\r\n4\r\nship\r\n0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'TE gzip, chunked (Node accepts it)', bytes: `${L}Transfer-Encoding: gzip, chunked\r\n\r\n4\r\nship\r\n0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'TE identity', bytes: `${L}Transfer-Encoding: identity\r\n\r\nship`, status: 400, forwarded: 0 },
  { name: 'TE chunked is fine', bytes: `${L}Transfer-Encoding: chunked\r\n\r\n4\r\nship\r\n0\r\n\r\n`, status: 200, forwarded: 1, upstreamPath: '/v1/request-landing' },
  { name: 'HTTP/1.0 with TE', bytes: `POST /v1/request-landing HTTP/1.0\r\nHost: deathstar\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nship\r\n0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'obs-fold', bytes: `${L}X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'duplicate Host', bytes: `${L}Host: deathstar\r\nContent-Length: 0\r\n\r\n`, status: 400, forwarded: 0 },
  // Brackets hold only an IPv6 address (RFC 3986 IP-literal; Envoy Url.ParsingForConnectTest).
  { name: 'Host [IPv4] in brackets', bytes: 'POST /v1/request-landing HTTP/1.1\r\nHost: [127.0.0.1]:80\r\nContent-Length: 0\r\n\r\n', status: 400, forwarded: 0 },
  { name: 'Host [1:1] in brackets', bytes: 'POST /v1/request-landing HTTP/1.1\r\nHost: [1:1]\r\nContent-Length: 0\r\n\r\n', status: 400, forwarded: 0 },
  { name: 'Host with userinfo', bytes: `POST /v1/request-landing HTTP/1.1\r\nHost: empire@deathstar\r\nContent-Length: 0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'Host with a path', bytes: `POST /v1/request-landing HTTP/1.1\r\nHost: deathstar/admin\r\nContent-Length: 0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'absolute-form, other host', bytes: `POST http://evil.example/v1/request-landing HTTP/1.1\r\nHost: deathstar\r\nContent-Length: 0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'absolute-form, same host', bytes: `POST http://DeathStar:80/v1/../v1/request-landing HTTP/1.1\r\nHost: deathstar\r\nContent-Length: 0\r\n\r\n`, status: 200, forwarded: 1, upstreamPath: '/v1/request-landing' },
  { name: 'fragment', bytes: `POST /v1/request-landing#x HTTP/1.1\r\nHost: deathstar\r\nContent-Length: 0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'fragment hiding traversal', bytes: `GET /public#/../v1/exhaust-port HTTP/1.1\r\nHost: deathstar\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'encoded slash', bytes: `POST /v1%2frequest-landing HTTP/1.1\r\nHost: deathstar\r\nContent-Length: 0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'raw backslash', bytes: `GET /public\\..\\v1 HTTP/1.1\r\nHost: deathstar\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'dot segments normalised before matching', bytes: `POST /public/../v1/./request-landing HTTP/1.1\r\nHost: deathstar\r\nContent-Length: 0\r\n\r\n`, status: 200, forwarded: 1, upstreamPath: '/v1/request-landing' },
  { name: 'lowercase method', bytes: `post /v1/request-landing HTTP/1.1\r\nHost: deathstar\r\nContent-Length: 0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'CONNECT', bytes: `CONNECT deathstar:80 HTTP/1.1\r\nHost: deathstar:80\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'Upgrade: h2c', bytes: `GET /public/a HTTP/1.1\r\nHost: deathstar\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'Upgrade: h2c without Connection', bytes: `GET /public/a HTTP/1.1\r\nHost: deathstar\r\nUpgrade: h2c\r\n\r\n`, status: 400, forwarded: 0 },
  { name: 'underscore in a header name', bytes: `${L}X_Role: admin\r\nContent-Length: 0\r\n\r\n`, status: 400, forwarded: 0 },
  { name: '100 headers are fine', bytes: `${L}${many(97)}Content-Length: 0\r\n\r\n`, status: 200, forwarded: 1, upstreamPath: '/v1/request-landing' },
  { name: '101 headers: 431', bytes: `${L}${many(99)}Content-Length: 0\r\n\r\n`, status: 431, forwarded: 0 },
  { name: 'a header after 1000 junk headers: 431, never truncated', bytes: `${L}${many(1000)}X-Deny: 1\r\nContent-Length: 0\r\n\r\n`, status: 431, forwarded: 0 },
  { name: 'URL over maxUrlBytes: 414', bytes: `GET /public/${'a'.repeat(2100)} HTTP/1.1\r\nHost: deathstar\r\n\r\n`, status: 414, forwarded: 0 },
  { name: 'Content-Length over maxBodyBytes: 413', bytes: `${L}Content-Length: 5000\r\n\r\n${'x'.repeat(5000)}`, status: 413, forwarded: 0 },
];

t.test('raw HTTP/1.1 vectors', async (t) => {
  for (const c of RAW) {
    const before = up.requests.length;
    const out = await rawExchange(port, c.bytes, { from: TIE, ms: 1000 });
    const st = statuses(out);
    t.equal(st[0] ?? 0, c.status, `${c.name}: status (${JSON.stringify(out.slice(0, 40))})`);
    t.equal(up.requests.length - before, c.forwarded, `${c.name}: forwarded ${c.forwarded}`);
    if (c.upstreamPath) t.equal(up.requests[before]?.url, c.upstreamPath, `${c.name}: upstream path`);
    if (c.status >= 400 && c.status !== 403) t.equal(st.length, 1, `${c.name}: one response, then the connection is closed`);
  }
});

t.test('chunked body over maxBodyBytes: 413, nothing complete reaches the upstream', async (t) => {
  const before = up.requests.length;
  const body = `1388\r\n${'x'.repeat(5000)}\r\n0\r\n\r\n`;
  const out = await rawExchange(port, `${L}Transfer-Encoding: chunked\r\n\r\n${body}`, { from: TIE, ms: 1000 });
  t.equal(statuses(out)[0], 413);
  const got = up.requests.slice(before);
  t.ok(got.every((r) => r.body.length <= 4096), 'upstream never saw more than the limit');
});

t.test('pipelined: each request decided on its own; the denied one never reaches the upstream', async (t) => {
  const before = up.requests.length;
  const bytes =
    `${L}Content-Length: 4\r\n\r\nship` +
    `PUT /v1/exhaust-port HTTP/1.1\r\nHost: deathstar\r\nContent-Length: 4\r\n\r\nboom` +
    `${L}Content-Length: 4\r\n\r\nship` +
    `GET /v1/exhaust-port HTTP/1.1\r\nHost: deathstar\r\nConnection: close\r\n\r\n`;
  const out = await rawExchange(port, bytes, { from: TIE, ms: 1500 });
  t.same(statuses(out), [200, 403, 200, 403]);
  t.equal(up.requests.length - before, 2);
  t.same(up.requests.slice(before).map((r) => `${r.method} ${r.url}`), ['POST /v1/request-landing', 'POST /v1/request-landing']);
  t.equal((out.match(/Access denied\r\n/g) ?? []).length, 2);
});

t.test('smuggled second request inside a body is not a request', async (t) => {
  const before = up.requests.length;
  // Node would accept `,chunked` as chunked framing; we refuse it, so the PUT hidden in it never runs.
  const smuggle = `${L}Transfer-Encoding: ,chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\nPUT /v1/exhaust-port HTTP/1.1\r\nHost: deathstar\r\n\r\n`;
  const out = await rawExchange(port, smuggle, { from: TIE, ms: 1000 });
  t.equal(statuses(out)[0], 400);
  t.equal(up.requests.length, before);
});

t.test('hop-by-hop and identity headers are not forwarded; X-Forwarded-For is the proxy view', async (t) => {
  const before = up.requests.length;
  const out = await rawExchange(
    port,
    `${L}Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic x\r\nTE: trailers\r\n` +
      `X-Forwarded-For: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\nX-Real-IP: 10.0.0.1\r\nX-Envoy-Original-Path: /admin\r\nX-Keep: yes\r\nContent-Length: 0\r\n\r\n`,
    { from: TIE, ms: 800 },
  );
  t.equal(statuses(out)[0], 200);
  const h = up.requests[before]!.headers;
  for (const n of ['x-secret', 'keep-alive', 'proxy-authorization', 'te', 'forwarded', 'x-real-ip', 'x-envoy-original-path'])
    t.equal(h[n], undefined, `${n} dropped`);
  t.equal(h['x-forwarded-for'], TIE, 'X-Forwarded-For replaced with the real peer');
  t.equal(h['x-forwarded-proto'], 'http');
  t.equal(h['x-keep'], 'yes', 'end-to-end headers kept');
  t.equal(h['host'], 'deathstar', 'Host forwarded as sent');
});

t.test('X-Forwarded-For never changes identity', async (t) => {
  const before = up.requests.length;
  const r = await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: '127.0.0.11', headers: { 'x-forwarded-for': TIE }, body: 'x' });
  t.equal(r.status, 403);
  t.equal(up.requests.length, before);
});

t.test('HTTP/2 vectors', async (t) => {
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.close());
  await new Promise<void>((r) => (s.remoteSettings.maxConcurrentStreams !== undefined && s.remoteSettings.maxConcurrentStreams < 2 ** 32 - 1 ? r() : s.once('remoteSettings', () => r())));
  t.equal(s.remoteSettings.maxConcurrentStreams, 100, 'HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS from limits');
  const cases: Array<{ name: string; req: Parameters<typeof h2Request>[1]; status: number }> = [
    { name: 'lowercase :method (nghttp2 accepts it)', req: { method: 'post', path: '/v1/request-landing' }, status: 400 },
    { name: 'host differs from :authority', req: { method: 'POST', path: '/v1/request-landing', headers: { host: 'other' } }, status: 400 },
    { name: 'fragment in :path (nghttp2 accepts it)', req: { method: 'POST', path: '/v1/request-landing#x' }, status: 400 },
    { name: 'backslash in :path', req: { method: 'GET', path: '/public\\..\\v1' }, status: 400 },
    { name: 'userinfo in :authority', req: { method: 'POST', path: '/v1/request-landing', authority: 'x@deathstar' }, status: 400 },
    { name: '101 headers: 431', req: { method: 'POST', path: '/v1/request-landing', headers: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`x-h${i}`, 'v'])) }, status: 431 },
    { name: 'underscore header', req: { method: 'POST', path: '/v1/request-landing', headers: { x_role: 'admin' } }, status: 400 },
  ];
  for (const c of cases) {
    const before = up.requests.length;
    const r = await h2Request(s, c.req);
    t.equal(r.status, c.status, c.name);
    t.equal(up.requests.length, before, `${c.name}: not forwarded`);
  }
  const ok = await h2Request(s, { method: 'POST', path: '/v1/request-landing', headers: { te: 'trailers' }, body: 'x' });
  t.equal(ok.status, 200, 'session still serves');
});

t.test('still alive', async (t) => {
  const r = await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body: 'x' });
  t.equal(r.status, 200);
});
