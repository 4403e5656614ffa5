/**
 * The security-relevant rows of the Envoy path differential
 * (test/http/envoy-path-utility.test.ts) through the running proxy, with three
 * clients: raw HTTP/1.1 bytes, node:http2, and `curl --path-as-is`.
 *
 * Policy: Cilium's Star Wars rule plus `GET /public/.*` and `GET /q\?x=%2f` (a rule
 * written with a lowercase escape, which matches in Cilium because Envoy leaves the
 * query untouched). Oracle, per spelling: either the capture upstream receives exactly
 * the canonical path the row names (what Envoy as Cilium configures it would forward),
 * or the client gets 403 / 400 and the upstream receives nothing. A denied path must
 * never arrive in any spelling.
 */
import t from 'tap';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { rawExchange, statuses, h2Connect, h2Request, curl } from '../helpers/clients.js';

const TIE = '127.0.0.10';

// [spelling, forwarded path | 403 | 400, curl can send it as is]
const CASES: ReadonlyArray<readonly [string, string | 403 | 400, boolean]> = [
  ['/public/x', '/public/x', true],
  ['/admin', 403, true],
  ['/public/../admin', 403, true],
  ['/public/%2e%2e/admin', 403, true],
  ['/public/%2E./admin', 403, true],
  ['/public/.%2e/admin', 403, true],
  ['//public/../admin', 403, true],
  ['/public/%61dmin', '/public/admin', true],
  // Envoy's order (canonicalPath, then mergeSlashes): an empty segment is removed by `..`
  ['/public//../admin', '/public/admin', true],
  ['/public/a/..//../admin', '/public/admin', true],
  ['/public/a//../../admin', '/public/admin', true],
  // Envoy: 307 to the unescaped path; here 400 (SPEC: rejected or redirected)
  ['/public/..%2Fadmin', 400, true],
  ['/public%2F..%2Fadmin', 400, true],
  ['/public/..%5cadmin', 400, true],
  ['/public/..\\admin', 400, false],
  // Envoy rejects these too
  ['/public/.%00./admin', 400, true],
  ['/public/x#/../../admin', 400, false],
  // `..;` (servlet dot segment): refused here, stricter than Envoy
  ['/public/..;/admin', 400, true],
  // The query is forwarded byte for byte, as Envoy does
  ['/public/x?q=%2f', '/public/x?q=%2f', true],
  ['/q?x=%2f', '/q?x=%2f', true],
  ['/q?x=%2F', 403, true],
];

let proxy: RunningProxy;
let up: CaptureUpstream;
let port = 0;
t.before(async () => {
  up = await startCaptureUpstream();
  const cfg = await starWarsDir({
    upstream: up.url,
    extraHttp: ['{ method: "GET", path: "/public/.*" }', '{ method: "GET", path: "/q\\\\?x=%2f" }'],
    admin: false,
  });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
});

const arrived = (before: number) => up.requests.slice(before).map((r) => r.url);
const expectedArrivals = (want: string | 403 | 400) => (typeof want === 'string' ? [want] : []);
const expectedStatus = (want: string | 403 | 400) => (typeof want === 'string' ? 200 : want);

t.test('HTTP/1.1 raw bytes', async (t) => {
  for (const [p, want] of CASES) {
    const before = up.requests.length;
    const out = await rawExchange(port, `GET ${p} HTTP/1.1\r\nHost: deathstar\r\nConnection: close\r\n\r\n`, { from: TIE, ms: 2000 });
    t.same(statuses(out), [expectedStatus(want)], `${p}: status`);
    t.same(arrived(before), expectedArrivals(want), `${p}: what the upstream received`);
  }
});

t.test('HTTP/2', async (t) => {
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.close());
  for (const [p, want] of CASES) {
    const before = up.requests.length;
    const r = await h2Request(s, { path: p });
    t.equal(r.status, expectedStatus(want), `${p}: status`);
    t.same(arrived(before), expectedArrivals(want), `${p}: what the upstream received`);
  }
});

t.test('curl --path-as-is', async (t) => {
  for (const [p, want, viaCurl] of CASES) {
    if (!viaCurl) continue;
    const before = up.requests.length;
    const r = await curl(['--path-as-is', '--interface', TIE, '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${port}${p}`]);
    t.equal(r.stdout, String(expectedStatus(want)), `${p}: status (${r.stderr.trim()})`);
    t.same(arrived(before), expectedArrivals(want), `${p}: what the upstream received`);
  }
});
