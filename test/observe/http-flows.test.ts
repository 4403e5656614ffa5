/**
 * HTTP flow records from a real proxy (startProxy on a temp Star Wars config) and
 * real clients (curl, node:http2), checked field by field against Hubble's JSON
 * shape (CILIUM-SEMANTICS.md §5.1): the denied request (DROPPED request + 403
 * response), the allowed one, an L3/L4 denial, HTTP/2, header canonicalisation,
 * sorting and redaction (fixed list and a secret-backed headerMatch), and the flow
 * log file holding exactly the records the live subscriber saw.
 */
import t from 'tap';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { curl, h2Connect, h2Request } from '../helpers/clients.js';

const TIE = '127.0.0.10';
const XWING = '127.0.0.11';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const SECRET = `apiVersion: v1
kind: Secret
metadata: { name: apikey, namespace: default }
stringData: { value: s3cret-value }
`;

let proxy: RunningProxy;
let up: CaptureUpstream;
let port = 0;
let logDir = '';
const records: Array<Record<string, any>> = [];

t.before(async () => {
  up = await startCaptureUpstream();
  logDir = await mkdtemp(join(tmpdir(), 'l7w-flows-'));
  const cfg = await starWarsDir({
    upstream: up.url,
    flowLogFile: join(logDir, 'flows.json'),
    extraHttp: ['{ method: "GET", path: "/secret", headerMatches: [{ name: X-Api-Key, secret: { namespace: default, name: apikey } }] }'],
    extraFiles: { 'secret.yaml': SECRET },
  });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true, onFlow: (l) => records.push(JSON.parse(l)) });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
  await rm(logDir, { recursive: true, force: true });
});

/** Wait (≤ 2 s) until `n` more records arrived after `from`. */
async function recordsAfter(from: number, n: number): Promise<Array<Record<string, any>>> {
  for (let i = 0; i < 200 && records.length < from + n; i++) await new Promise((r) => setTimeout(r, 10));
  return records.slice(from, from + n);
}

const url = (path: string) => `http://127.0.0.1:${port}${path}`;

t.test('denied HTTP request: DROPPED REQUEST record and a 403 RESPONSE record', async (t) => {
  const from = records.length;
  const r = await curl([
    '--interface', TIE, '-X', 'PUT', '-H', 'Host: deathstar', '-H', 'Authorization: Bearer abc', '-H', 'Cookie: sid=1',
    '-H', 'x-request-id: req-1', '-H', 'x-custom-HEADER: v', '-o', '/dev/null', '-w', '%{http_code}', url('/v1/exhaust-port'),
  ]);
  t.equal(r.stdout, '403');
  const [req, resp] = await recordsAfter(from, 2);
  t.ok(req && resp, 'two records');
  t.same(Object.keys(req!).sort(), ['flow', 'node_name', 'time']);
  t.equal(req!.node_name, 'test-node');
  const f = req!.flow;
  t.equal(f.time, req!.time);
  t.match(f.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.match(f.uuid, UUID);
  t.equal(f.verdict, 'DROPPED');
  t.equal(f.drop_reason, 133);
  t.equal(f.drop_reason_desc, 'POLICY_DENIED');
  t.same(f.IP, { source: TIE, destination: '127.0.0.20', ipVersion: 'IPv4' });
  t.equal(f.l4.TCP.destination_port, 80, 'the port policy sees');
  t.type(f.l4.TCP.source_port, 'number');
  t.ok(f.l4.TCP.source_port > 0);
  t.equal(f.source.pod_name, 'tiefighter');
  t.equal(f.source.namespace, 'default');
  t.ok(f.source.identity >= 256, 'an allocated identity');
  t.ok(f.source.labels.includes('k8s:class=tiefighter'));
  t.ok(f.source.labels.includes('k8s:io.kubernetes.pod.namespace=default'));
  t.same([...f.source.labels].sort(), f.source.labels, 'labels sorted');
  t.equal(f.destination.pod_name, 'deathstar');
  t.ok(f.destination.labels.includes('k8s:class=deathstar'));
  t.equal(f.Type, 'L7');
  t.equal(f.node_name, 'test-node');
  t.equal(f.l7.type, 'REQUEST');
  t.notOk('latency_ns' in f.l7, 'no latency on requests');
  t.equal(f.l7.http.method, 'PUT');
  t.equal(f.l7.http.url, 'http://deathstar/v1/exhaust-port');
  t.equal(f.l7.http.protocol, 'HTTP/1.1');
  t.notOk('code' in f.l7.http, 'requests carry no code');
  const headers = f.l7.http.headers as { key: string; value: string }[];
  const keys = headers.map((h) => h.key);
  t.same(keys, [...keys].sort(), 'headers sorted by key');
  t.same(
    headers.filter((h) => ['Authorization', 'Cookie', 'X-Request-Id', 'X-Custom-Header'].includes(h.key)),
    [
      { key: 'Authorization', value: 'HUBBLE_REDACTED' },
      { key: 'Cookie', value: 'HUBBLE_REDACTED' },
      { key: 'X-Custom-Header', value: 'v' },
      { key: 'X-Request-Id', value: 'req-1' },
    ],
  );
  t.ok(keys.includes('User-Agent') && keys.includes('Accept'), 'Go-canonical keys');
  t.notOk(keys.includes('Host'), 'Host is the URL, not a header');
  t.same(f.event_type, { type: 129 });
  t.equal(f.traffic_direction, 'INGRESS');
  t.equal(f.is_reply, false);
  t.equal(f.Summary, 'HTTP/1.1 PUT http://deathstar/v1/exhaust-port');
  t.equal(f.ingress_denied_by.length, 1);
  const p = f.ingress_denied_by[0];
  t.equal(p.name, 'rule1');
  t.equal(p.namespace, 'default');
  t.equal(p.kind, 'CiliumNetworkPolicy');
  t.ok(p.labels.includes('k8s:io.cilium.k8s.policy.name=rule1'));
  t.match(p.revision, /^\d+$/);
  t.notOk(f.ingress_allowed_by);

  const g = resp!.flow;
  t.equal(g.verdict, 'FORWARDED', 'Cilium logs the 403 response as forwarded');
  t.notOk('drop_reason' in g);
  t.equal(g.is_reply, true);
  t.equal(g.l7.type, 'RESPONSE');
  t.equal(g.l7.http.code, 403);
  t.equal(g.l7.http.method, 'PUT');
  t.match(g.l7.latency_ns, /^\d+$/);
  t.type(g.l7.latency_ns, 'string');
  t.same(g.IP, { source: '127.0.0.20', destination: TIE, ipVersion: 'IPv4' }, 'swapped');
  t.equal(g.l4.TCP.source_port, 80);
  t.equal(g.l4.TCP.destination_port, f.l4.TCP.source_port);
  t.equal(g.source.pod_name, 'deathstar');
  t.equal(g.destination.pod_name, 'tiefighter');
  t.notOk(g.l7.http.headers, 'response records carry no request headers');
  t.match(g.Summary, /^HTTP\/1\.1 403 \d+ms \(PUT http:\/\/deathstar\/v1\/exhaust-port\)$/);
  t.not(g.uuid, f.uuid);
});

t.test('allowed request: FORWARDED with ingress_allowed_by, 200 response', async (t) => {
  const from = records.length;
  const r = await curl(['--interface', TIE, '-X', 'POST', '-H', 'Host: deathstar', '-d', 'x', '-o', '/dev/null', '-w', '%{http_code}', url('/v1/request-landing')]);
  t.equal(r.stdout, '200');
  const [req, resp] = await recordsAfter(from, 2);
  t.equal(req!.flow.verdict, 'FORWARDED');
  t.notOk('drop_reason_desc' in req!.flow);
  t.equal(req!.flow.ingress_allowed_by[0].name, 'rule1');
  t.equal(resp!.flow.l7.http.code, 200);
});

t.test('secret-backed headerMatches value is redacted', async (t) => {
  const from = records.length;
  const r = await curl(['--interface', TIE, '-H', 'Host: deathstar', '-H', 'X-Api-Key: s3cret-value', '-o', '/dev/null', '-w', '%{http_code}', url('/secret')]);
  t.equal(r.stdout, '200', 'the secret value matched');
  const [req] = await recordsAfter(from, 2);
  const h = (req!.flow.l7.http.headers as { key: string; value: string }[]).find((x) => x.key === 'X-Api-Key');
  t.same(h, { key: 'X-Api-Key', value: 'HUBBLE_REDACTED' });
  t.notOk(JSON.stringify(records.slice(from)).includes('s3cret-value'), 'the value appears nowhere');
});

t.test('L3/L4 denial (xwing): Type L3_L4, DROPPED, 403 response', async (t) => {
  const from = records.length;
  const r = await curl(['--interface', XWING, '-X', 'POST', '-H', 'Host: deathstar', '-o', '/dev/null', '-w', '%{http_code}', url('/v1/request-landing')]);
  t.equal(r.stdout, '403');
  const [req, resp] = await recordsAfter(from, 2);
  t.equal(req!.flow.Type, 'L3_L4');
  t.equal(req!.flow.verdict, 'DROPPED');
  t.equal(req!.flow.drop_reason_desc, 'POLICY_DENIED');
  t.equal(req!.flow.source.pod_name, 'xwing');
  t.same(req!.flow.event_type, { type: 129 }, 'answered in HTTP: still an access-log event');
  t.equal(resp!.flow.l7.http.code, 403);
  t.equal(resp!.flow.Type, 'L3_L4');
});

t.test('HTTP/2: protocol HTTP/2, no pseudo-headers in the list', async (t) => {
  const from = records.length;
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.close());
  const r = await h2Request(s, { method: 'POST', path: '/v1/request-landing', body: 'x', headers: { 'x-trace': 't1' } });
  t.equal(r.status, 200);
  const [req, resp] = await recordsAfter(from, 2);
  t.equal(req!.flow.l7.http.protocol, 'HTTP/2');
  t.equal(req!.flow.l7.http.url, 'http://deathstar/v1/request-landing');
  const keys = (req!.flow.l7.http.headers as { key: string }[]).map((h) => h.key);
  t.ok(keys.includes('X-Trace'));
  t.notOk(keys.some((k) => k.startsWith(':')), 'no pseudo-headers');
  t.equal(resp!.flow.l7.http.protocol, 'HTTP/2');
});

t.test('the flow log file holds the same records as JSON lines', async (t) => {
  // The sink writes in batches off the request path; give it a moment.
  const want = new Set(records.map((r) => r.flow.uuid as string));
  let lines: string[] = [];
  for (let i = 0; i < 100; i++) {
    lines = (await readFile(join(logDir, 'flows.json'), 'utf8')).split('\n').filter(Boolean);
    if (lines.length >= want.size) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const got = new Set(lines.map((l) => JSON.parse(l).flow.uuid as string));
  t.same([...got].sort(), [...want].sort());
});
