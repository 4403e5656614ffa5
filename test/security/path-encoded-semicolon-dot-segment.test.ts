/**
 * `..%3B` (an encoded `;` in a dot segment). The literal form `/public/..;/admin` is
 * refused (400): servlet containers strip `;params` from a segment and then see `..`.
 * The encoded form was kept as-is by the canonicalizer (`%3B` is not an unreserved
 * escape), so `/public/..%3B/admin` matched the rule `/public/.*` and was forwarded
 * verbatim — to a backend that decodes `%3B` before it strips parameters and resolves
 * dot segments, that is `/admin`. Envoy's normalize_path (Chromium's canonicalizer)
 * forwards it unchanged too; we refuse it, as Spring Security's StrictHttpFirewall
 * refuses an encoded semicolon, because no legitimate API path needs one at the start
 * of a dot segment. Any segment that starts with `.` and has `;` or `%3B` is refused.
 *
 * Oracle: 400, and the capture upstream receives nothing; a `%3B` elsewhere in a
 * path is still forwarded (with its hex upper-cased).
 */
import t from 'tap';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { canonicalizeTarget } from '../../src/http/canonical-path.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { rawExchange, statuses, h2Connect, h2Request } from '../helpers/clients.js';

const TIE = '127.0.0.10';
const REFUSED = [
  '/public/..%3B/admin',
  '/public/..%3b/admin',
  '/public/..%3Bx=1/admin',
  '/public/%2e%2e%3B/admin',
  '/public/.%2e%3b/admin',
  '/public/.%3B/admin',
  '/public/..%3B',
];

t.test('canonicalizer: a dot segment with an encoded ";" is refused like the literal one', async (t) => {
  for (const p of REFUSED) t.same(canonicalizeTarget(p), { ok: false, reason: 'dot segment with parameters' }, p);
  t.same(canonicalizeTarget('/public/..;/admin'), { ok: false, reason: 'dot segment with parameters' }, 'literal form (unchanged)');
  t.same(canonicalizeTarget('/public/a%3bb/c'), { ok: true, path: '/public/a%3Bb/c' }, '%3B not in a dot segment is kept');
  t.same(canonicalizeTarget('/public/x?a=..%3B'), { ok: true, path: '/public/x?a=..%3B' }, 'in the query it is data');
});

let proxy: RunningProxy;
let up: CaptureUpstream;
let port = 0;
t.before(async () => {
  up = await startCaptureUpstream();
  const cfg = await starWarsDir({ upstream: up.url, extraHttp: ['{ method: "GET", path: "/public/.*" }'], admin: false });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
});

t.test('HTTP/1.1: 400 and nothing forwarded', async (t) => {
  for (const p of REFUSED) {
    const before = up.requests.length;
    const out = await rawExchange(port, `GET ${p} HTTP/1.1\r\nHost: deathstar\r\n\r\n`, { from: TIE, ms: 800 });
    t.same(statuses(out), [400], p);
    t.equal(up.requests.length, before, `${p}: the upstream saw nothing`);
  }
});

t.test('HTTP/2: 400 and nothing forwarded', async (t) => {
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.close());
  for (const p of REFUSED) {
    const before = up.requests.length;
    const r = await h2Request(s, { path: p });
    t.equal(r.status, 400, p);
    t.equal(up.requests.length, before, `${p}: the upstream saw nothing`);
  }
});

t.test('control: %3B elsewhere in an allowed path is forwarded', async (t) => {
  const before = up.requests.length;
  const out = await rawExchange(port, 'GET /public/a%3bb HTTP/1.1\r\nHost: deathstar\r\n\r\n', { from: TIE, ms: 800 });
  t.same(statuses(out), [200]);
  t.same(up.requests.slice(before).map((r) => r.url), ['/public/a%3Bb']);
});
