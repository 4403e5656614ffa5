/**
 * headerMatches mismatch actions end to end (CILIUM-SEMANTICS.md §1.7; cilium/proxy
 * cilium/network_policy.cc HeaderMatch::allowed): a running proxy in front of a
 * capture upstream, tiefighter (127.0.0.10) as the client. For each action — the
 * default (fail), LOG, ADD, DELETE, REPLACE — and each value source — a plain
 * `value` and a Secret document with a single data entry — a request whose header
 * matches, carries a wrong value, or lacks the header; the test asserts the status,
 * what the upstream received, and the flow verdict.
 *
 *   match      every action: allowed, header untouched
 *   wrong      fail 403 (nothing forwarded) | LOG untouched | ADD both values |
 *              DELETE removed | REPLACE the policy value only
 *   absent     fail 403 | LOG absent | ADD the policy value | DELETE absent |
 *              REPLACE the policy value
 */
import t from 'tap';
import * as net from 'node:net';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream, type Captured } from '../helpers/capture-upstream.js';
import { h1Request, h2Connect, h2Request, rawExchange, statuses } from '../helpers/clients.js';

const TIE = '127.0.0.10';
const PLAIN = 's3cr3t-plain';
const SECRET = 'from-the-secret';

type Action = 'fail' | 'LOG' | 'ADD' | 'DELETE' | 'REPLACE';
const ACTIONS: Action[] = ['fail', 'LOG', 'ADD', 'DELETE', 'REPLACE'];
type Source = 'plain' | 'secret';

function item(action: Action, source: Source): string {
  const value = source === 'plain' ? `value: "${PLAIN}"` : 'secret: { namespace: default, name: token }';
  const mismatch = action === 'fail' ? '' : `, mismatch: ${action}`;
  return `        - method: GET
          path: /${action.toLowerCase()}/${source}
          headerMatches: [{ name: X-Token, ${value}${mismatch} }]`;
}

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: header-matches }
spec:
  endpointSelector: { matchLabels: { org: empire, class: deathstar } }
  ingress:
  - fromEndpoints: [{ matchLabels: { org: empire } }]
    toPorts:
    - ports: [{ port: "80", protocol: TCP }]
      rules:
        http:
${ACTIONS.flatMap((a) => [item(a, 'plain'), item(a, 'secret')]).join('\n')}
        - method: GET
          path: /multi
          headerMatches: [{ name: X-A, value: "a", mismatch: ADD }]
        - method: GET
          path: /multi
          headerMatches: [{ name: X-B, value: "b", mismatch: REPLACE }]
        - method: GET
          path: /present
          headerMatches: [{ name: X-P, mismatch: DELETE }, { name: X-Q, mismatch: ADD }]
        - method: GET
          path: /two-entry-secret
          headerMatches: [{ name: X-Token, secret: { namespace: default, name: two }, mismatch: ADD }]
        - method: GET
          path: /secret-fallback
          headerMatches: [{ name: X-Token, value: "fallback", secret: { namespace: default, name: missing }, mismatch: REPLACE }]
        - method: GET
          path: /joined
          headerMatches: [{ name: X-List, value: "one,two", mismatch: REPLACE }]
        - method: GET
          path: /joined-fail
          headerMatches: [{ name: X-List, value: "one,two" }]
`;

const SECRETS = `apiVersion: v1
kind: Secret
metadata: { name: token, namespace: default }
type: Opaque
data: { token: ${Buffer.from(SECRET).toString('base64')} }
---
apiVersion: v1
kind: Secret
metadata: { name: two, namespace: default }
type: Opaque
stringData: { a: one, b: two }
`;

let up: CaptureUpstream;
let proxy: RunningProxy;
let port = 0;
const flows: Array<Record<string, any>> = [];

t.before(async () => {
  up = await startCaptureUpstream();
  const cfg = await starWarsDir({ upstream: up.url, policy: POLICY, extraFiles: { 'secrets.yaml': SECRETS } });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir, onFlow: (l) => flows.push(JSON.parse(l)) });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
});

/** Every value of a header as the upstream received it, in order (raw, not joined). */
function values(c: Captured | undefined, name: string): string[] {
  if (!c) return ['<not received>'];
  const out: string[] = [];
  for (let i = 0; i < c.rawHeaders.length; i += 2) if (c.rawHeaders[i]!.toLowerCase() === name) out.push(c.rawHeaders[i + 1]!);
  return out;
}

async function flowFor(path: string, sourcePort: number): Promise<Record<string, any> | undefined> {
  for (let i = 0; i < 40; i++) {
    const f = flows.find((r) => r.flow?.l7?.type === 'REQUEST' && r.flow.l4?.TCP?.source_port === sourcePort && String(r.flow.l7.http?.url).endsWith(path));
    if (f) return f.flow;
    await new Promise((r) => setTimeout(r, 25));
  }
  return undefined;
}

/** One GET from tiefighter with `token` as X-Token (undefined: no header); the client's port for the flow lookup. */
function get(path: string, headers: Record<string, string>): Promise<{ status: number; body: string; srcPort: number }> {
  return new Promise((resolve, reject) => {
    const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    const s = net.connect({ host: '127.0.0.1', port, localAddress: TIE });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => s.destroy(new Error('timeout')), 5000);
    s.on('error', reject);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      resolve({ status: statuses(raw)[0] ?? 0, body: raw.slice(raw.indexOf('\r\n\r\n') + 4), srcPort });
    });
    let srcPort = 0;
    s.once('connect', () => {
      srcPort = s.localPort ?? 0;
      s.write(`GET ${path} HTTP/1.1\r\nHost: deathstar\r\n${lines}Connection: close\r\n\r\n`);
    });
  });
}

const expected: Record<Action, Record<'match' | 'wrong' | 'absent', { status: number; upstream?: (v: string) => string[] }>> = {
  fail: { match: { status: 200, upstream: (v) => [v] }, wrong: { status: 403 }, absent: { status: 403 } },
  LOG: { match: { status: 200, upstream: (v) => [v] }, wrong: { status: 200, upstream: () => ['wrong'] }, absent: { status: 200, upstream: () => [] } },
  ADD: { match: { status: 200, upstream: (v) => [v] }, wrong: { status: 200, upstream: (v) => ['wrong', v] }, absent: { status: 200, upstream: (v) => [v] } },
  DELETE: { match: { status: 200, upstream: (v) => [v] }, wrong: { status: 200, upstream: () => [] }, absent: { status: 200, upstream: () => [] } },
  REPLACE: { match: { status: 200, upstream: (v) => [v] }, wrong: { status: 200, upstream: (v) => [v] }, absent: { status: 200, upstream: (v) => [v] } },
};

for (const action of ACTIONS) {
  for (const source of ['plain', 'secret'] as const) {
    t.test(`${action} with a ${source} value`, async (t) => {
      const v = source === 'plain' ? PLAIN : SECRET;
      const path = `/${action.toLowerCase()}/${source}`;
      for (const kase of ['match', 'wrong', 'absent'] as const) {
        const headers: Record<string, string> = kase === 'match' ? { 'X-Token': v } : kase === 'wrong' ? { 'X-Token': 'wrong' } : {};
        const want = expected[action][kase];
        const before = up.requests.length;
        const r = await get(path, headers);
        t.equal(r.status, want.status, `${kase}: status`);
        const flow = await flowFor(path, r.srcPort);
        t.ok(flow, `${kase}: a flow record`);
        if (want.status === 403) {
          t.equal(r.body, 'Access denied\r\n', `${kase}: deny body`);
          t.equal(up.requests.length, before, `${kase}: nothing reached the upstream`);
          t.equal(flow?.verdict, 'DROPPED', `${kase}: DROPPED`);
          t.equal(flow?.Type, 'L7');
        } else {
          t.equal(up.requests.length, before + 1, `${kase}: forwarded once`);
          t.same(values(up.requests[before], 'x-token'), want.upstream!(v), `${kase}: X-Token as the upstream received it`);
          t.equal(flow?.verdict, 'FORWARDED', `${kase}: FORWARDED`);
        }
        // A secret-backed header's value never shows in the flow record.
        if (source === 'secret' && kase !== 'absent') {
          const h = (flow?.l7?.http?.headers ?? []) as Array<{ key: string; value: string }>;
          t.same(h.filter((x) => x.key === 'X-Token').map((x) => x.value), ['HUBBLE_REDACTED'], `${kase}: redacted in the flow`);
        }
      }
      // The other matchers of the item still apply: a POST is denied whatever the header.
      const before = up.requests.length;
      const post = await rawExchange(port, `POST ${path} HTTP/1.1\r\nHost: deathstar\r\nX-Token: ${v}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, { from: TIE, ms: 3000 });
      t.same(statuses(post), [403], 'another method: 403');
      t.equal(up.requests.length, before);
    });
  }
}

t.test('every matching item runs its action (no first-match short-circuit)', async (t) => {
  const before = up.requests.length;
  const r = await h1Request(port, { from: TIE, path: '/multi', headers: { 'X-B': 'old' } });
  t.equal(r.status, 200);
  const got = up.requests[before];
  t.same(values(got, 'x-a'), ['a'], 'the first item added X-A');
  t.same(values(got, 'x-b'), ['b'], 'the second item replaced X-B');
});

t.test('presence-only headerMatches (no value)', async (t) => {
  let before = up.requests.length;
  // X-P present: a match, kept. X-Q absent: ADD adds it with an empty value.
  let r = await h1Request(port, { from: TIE, path: '/present', headers: { 'X-P': 'anything' } });
  t.equal(r.status, 200);
  t.same(values(up.requests[before], 'x-p'), ['anything']);
  t.same(values(up.requests[before], 'x-q'), ['']);
  before = up.requests.length;
  // X-P absent: a failed presence match has nothing to delete. X-Q present: kept.
  r = await h1Request(port, { from: TIE, path: '/present', headers: { 'X-Q': 'q' } });
  t.equal(r.status, 200);
  t.same(values(up.requests[before], 'x-p'), []);
  t.same(values(up.requests[before], 'x-q'), ['q']);
});

t.test('a Secret with two entries has no usable value: the item never matches', async (t) => {
  const before = up.requests.length;
  const r = await h1Request(port, { from: TIE, path: '/two-entry-secret', headers: { 'X-Token': 'one' } });
  t.equal(r.status, 403);
  t.equal(up.requests.length, before);
});

t.test('a missing Secret falls back to the inline value', async (t) => {
  const before = up.requests.length;
  const r = await h1Request(port, { from: TIE, path: '/secret-fallback', headers: { 'X-Token': 'wrong' } });
  t.equal(r.status, 200);
  t.same(values(up.requests[before], 'x-token'), ['fallback']);
});

t.test('a multi-valued header is compared as its values joined with "," (Envoy getAllOfHeaderAsString)', async (t) => {
  const send = (path: string, fields: string[]) =>
    rawExchange(port, `GET ${path} HTTP/1.1\r\nHost: deathstar\r\n${fields.map((f) => `X-List: ${f}\r\n`).join('')}Connection: close\r\n\r\n`, { from: TIE, ms: 3000 });
  let before = up.requests.length;
  // "one" + "two" is "one,two": a match, both fields forwarded untouched.
  t.same(statuses(await send('/joined', ['one', 'two'])), [200]);
  t.same(values(up.requests[before], 'x-list'), ['one', 'two'], 'REPLACE: a match leaves the fields alone');
  before = up.requests.length;
  t.same(statuses(await send('/joined-fail', ['one', 'two'])), [200], 'fail: two fields joined match');
  t.same(values(up.requests[before], 'x-list'), ['one', 'two']);
  // "one" + "TWO" is not the policy value (values compare case-sensitively).
  before = up.requests.length;
  t.same(statuses(await send('/joined', ['one', 'TWO'])), [200]);
  t.same(values(up.requests[before], 'x-list'), ['one,two'], 'REPLACE: a mismatch sets the policy value');
  before = up.requests.length;
  t.same(statuses(await send('/joined-fail', ['one', 'three'])), [403], 'fail: a wrong joined value is denied');
  t.equal(up.requests.length, before);
});

t.test('HTTP/2 prior knowledge: the same actions', async (t) => {
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.close());
  const cases: Array<[string, Record<string, string>, number, string[]]> = [
    ['/replace/secret', { 'x-token': 'wrong' }, 200, [SECRET]],
    ['/add/plain', { 'x-token': 'wrong' }, 200, ['wrong', PLAIN]],
    ['/delete/secret', { 'x-token': 'wrong' }, 200, []],
    ['/log/plain', {}, 200, []],
    ['/fail/secret', { 'x-token': 'wrong' }, 403, []],
  ];
  for (const [path, headers, status, upstream] of cases) {
    const before = up.requests.length;
    const r = await h2Request(s, { path, headers });
    t.equal(r.status, status, `${path}: status`);
    if (status === 403) t.equal(up.requests.length, before, `${path}: nothing forwarded`);
    else t.same(values(up.requests[before], 'x-token'), upstream, `${path}: X-Token upstream`);
  }
});
