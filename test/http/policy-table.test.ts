/**
 * The Star Wars policy table (CILIUM-SEMANTICS.md §7.1) through `l7warden run`
 * (startProxy), the same cases over HTTP/1.1 (node:http) and HTTP/2 cleartext
 * prior knowledge (node:http2) on the same port. Clients bind 127.0.0.10
 * (tiefighter), 127.0.0.11 (xwing) or 127.0.0.1 (world). A capture upstream
 * proves what was forwarded: denied requests never arrive, allowed ones arrive
 * with exactly the canonical path that was matched.
 */
import t from 'tap';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request, h2Connect, h2Request, type Reply } from '../helpers/clients.js';
import type { TestT } from '../helpers/tap.js';

const TIE = '127.0.0.10';
const XWING = '127.0.0.11';
const WORLD = '127.0.0.1';

interface Case {
  name: string;
  from: string;
  method: string;
  path: string;
  status: number;
  /** Path the upstream must see (allowed cases). */
  upstreamPath?: string;
  type?: 'L7' | 'L3_L4';
}

const CASES: Case[] = [
  { name: 'tiefighter lands', from: TIE, method: 'POST', path: '/v1/request-landing', status: 200, upstreamPath: '/v1/request-landing' },
  { name: 'tiefighter exhaust-port', from: TIE, method: 'PUT', path: '/v1/exhaust-port', status: 403, type: 'L7' },
  { name: 'GET is not POST', from: TIE, method: 'GET', path: '/v1/request-landing', status: 403, type: 'L7' },
  { name: 'query string is part of the path', from: TIE, method: 'POST', path: '/v1/request-landing?x=1', status: 403, type: 'L7' },
  { name: 'xwing has no L3 allow', from: XWING, method: 'POST', path: '/v1/request-landing', status: 403, type: 'L3_L4' },
  { name: 'world has no L3 allow', from: WORLD, method: 'POST', path: '/v1/request-landing', status: 403, type: 'L3_L4' },
  { name: 'duplicate slashes merged', from: TIE, method: 'POST', path: '//v1//request-landing', status: 200, upstreamPath: '/v1/request-landing' },
  { name: 'dot segments removed', from: TIE, method: 'POST', path: '/v1/x/../request-landing', status: 200, upstreamPath: '/v1/request-landing' },
  { name: 'unreserved escapes decoded', from: TIE, method: 'POST', path: '/v1/%72equest-landing', status: 200, upstreamPath: '/v1/request-landing' },
  { name: 'encoded dots decoded then removed', from: TIE, method: 'POST', path: '/v1/%2e%2E/v1/request-landing', status: 200, upstreamPath: '/v1/request-landing' },
  { name: 'traversal out of an allowed prefix', from: TIE, method: 'GET', path: '/public/../v1/exhaust-port', status: 403, type: 'L7' },
  { name: 'allowed prefix', from: TIE, method: 'GET', path: '/public/a?b=1', status: 200, upstreamPath: '/public/a?b=1' },
  { name: 'encoded slash rejected', from: TIE, method: 'GET', path: '/public/a%2F..%2F..%2Fv1', status: 400 },
  { name: 'encoded backslash rejected', from: TIE, method: 'GET', path: '/public/a%5c..', status: 400 },
  { name: 'encoded NUL rejected', from: TIE, method: 'GET', path: '/public/a%00', status: 400 },
  { name: 'invalid escape rejected', from: TIE, method: 'GET', path: '/public/a%zz', status: 400 },
  { name: 'dot-dot with params rejected', from: TIE, method: 'GET', path: '/public/..;x=1/v1/exhaust-port', status: 400 },
  { name: 'HEAD denied without body', from: TIE, method: 'HEAD', path: '/v1/exhaust-port', status: 403, type: 'L7' },
];

let proxy: RunningProxy;
let up: CaptureUpstream;
let port = 0;
const flows: Array<Record<string, any>> = [];

t.before(async () => {
  up = await startCaptureUpstream();
  const cfg = await starWarsDir({ upstream: up.url, extraHttp: ['{ method: "GET", path: "/public/.*" }'] });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir, onFlow: (l) => flows.push(JSON.parse(l)) });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
});

async function check(t: TestT, c: Case, send: () => Promise<Reply>): Promise<void> {
  const before = up.requests.length;
  const r = await send();
  t.equal(r.status, c.status, `${c.name}: status`);
  if (c.status === 200) {
    t.equal(up.requests.length, before + 1, `${c.name}: forwarded once`);
    t.equal(up.requests[before]?.url, c.upstreamPath, `${c.name}: upstream got the matched path`);
    t.equal(up.requests[before]?.method, c.method);
  } else {
    t.equal(up.requests.length, before, `${c.name}: never reached the upstream`);
  }
  if (c.status === 403) {
    t.equal(String(r.headers['content-type']), 'text/plain');
    t.equal(r.body, c.method === 'HEAD' ? '' : 'Access denied\r\n', `${c.name}: deny body`);
    if (c.method !== 'HEAD') t.equal(Buffer.byteLength(r.body), 15);
  }
}

t.test('HTTP/1.1', async (t) => {
  for (const c of CASES) {
    await check(t, c, () => h1Request(port, { method: c.method, path: c.path, from: c.from, ...(c.method === 'POST' ? { body: 'ship' } : {}) }));
  }
});

t.test('HTTP/2 prior knowledge on the same port', async (t) => {
  const sessions = new Map<string, Awaited<ReturnType<typeof h2Connect>>>();
  t.teardown(() => {
    for (const s of sessions.values()) s.close();
  });
  for (const c of CASES) {
    let s = sessions.get(c.from);
    if (!s) {
      s = await h2Connect(port, c.from);
      sessions.set(c.from, s);
    }
    const sess = s;
    await check(t, c, () => h2Request(sess, { method: c.method, path: c.path, ...(c.method === 'POST' ? { body: 'ship' } : {}) }));
  }
});

t.test('request body reaches the upstream intact', async (t) => {
  const body = Buffer.alloc(256 * 1024, 'x');
  const before = up.requests.length;
  const r = await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body });
  t.equal(r.status, 200);
  t.equal(up.requests[before]?.body.length, body.length);
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.close());
  const r2 = await h2Request(s, { method: 'POST', path: '/v1/request-landing', body });
  t.equal(r2.status, 200);
  t.equal(up.requests[before + 1]?.body.length, body.length);
});

t.test('flow records: REQUEST and RESPONSE per decision', async (t) => {
  flows.length = 0;
  await h1Request(port, { method: 'PUT', path: '/v1/exhaust-port', from: TIE });
  await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body: 'x' });
  await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: XWING, body: 'x' });
  await new Promise((r) => setTimeout(r, 50));
  t.equal(flows.length, 6, 'two records per request');
  const [dReq, dResp, aReq, aResp, lReq] = flows.map((f) => f.flow);
  t.equal(dReq.verdict, 'DROPPED');
  t.equal(dReq.Type, 'L7');
  t.equal(dReq.drop_reason_desc, 'POLICY_DENIED');
  t.equal(dReq.l7.type, 'REQUEST');
  t.equal(dReq.l7.http.method, 'PUT');
  t.equal(dReq.l7.http.url, 'http://deathstar/v1/exhaust-port');
  t.equal(dReq.l7.http.protocol, 'HTTP/1.1');
  t.equal(dReq.source.pod_name, 'tiefighter');
  t.equal(dReq.destination.pod_name, 'deathstar');
  t.equal(dReq.IP.source, TIE);
  t.equal(dReq.event_type.type, 129);
  t.equal(dReq.traffic_direction, 'INGRESS');
  t.ok(dReq.source.labels.includes('k8s:org=empire'));
  t.equal(dResp.l7.type, 'RESPONSE');
  t.equal(dResp.l7.http.code, 403);
  t.equal(dResp.is_reply, true);
  t.equal(dResp.source.pod_name, 'deathstar', 'response swaps source and destination');
  t.match(dResp.l7.latency_ns, /^\d+$/);
  t.equal(aReq.verdict, 'FORWARDED');
  t.same(aReq.ingress_allowed_by?.[0]?.name, 'rule1');
  t.equal(aResp.l7.http.code, 200);
  t.equal(lReq.Type, 'L3_L4', 'no L3 allow: flow type L3_L4');
  t.equal(lReq.verdict, 'DROPPED');
  t.equal(flows[0]!.node_name, 'test-node');
});
