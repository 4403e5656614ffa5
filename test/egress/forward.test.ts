/**
 * The egress listener as an HTTP forward proxy and CONNECT proxy, through
 * `startProxy`, with curl as the client (`-x`, `--proxytunnel`, `--interface` to act
 * as a pod) and capture servers on 127.0.0.x that prove denied traffic never arrived.
 *
 * Pod `app` (127.0.0.10) may: resolve *.example.test and api.stripe.com; reach
 * api.example.test on HP with GET /allowed.* only (toFQDNs + HTTP rules);
 * api.stripe.com on SP (toFQDNs, L3/L4 — the seed's pattern); 127.0.0.96/28 except
 * 127.0.0.100 on CP (toCIDRSet). Pod `free` (127.0.0.11) has no policy.
 */
import t from 'tap';
import * as net from 'node:net';
import { EgressHarness, KUBE_DNS, capturesOnOnePort, curl, rawExchange, type Capture } from '../helpers/egress-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const FREE = { name: 'free', labels: { app: 'free' }, ip: '127.0.0.11' };

// HTTP captures: api.example.test, other.example.test, an unnamed IP.
const [api, other, unnamed] = await capturesOnOnePort(['127.0.0.60', '127.0.0.61', '127.0.0.64'], { kind: 'http' });
// api.stripe.com on SP, and the same host on another port (never allowed).
const [stripe, cidrOk, cidrExcept] = await capturesOnOnePort(['127.0.0.63', '127.0.0.97', '127.0.0.100'], { kind: 'http' });
const [stripeOther] = await capturesOnOnePort(['127.0.0.63'], { kind: 'http' });
const all: Capture[] = [api!, other!, unnamed!, stripe!, cidrOk!, cidrExcept!, stripeOther!];
const HP = api!.port;
const SP = stripe!.port;
const CP = cidrOk!.port;

const policy = (dnsPort: number) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: app-egress }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules:
        dns:
        - matchPattern: "*.example.test"
        - matchName: "api.stripe.com"
  - toFQDNs: [{ matchName: "api.example.test" }]
    toPorts:
    - ports: [{ port: "${HP}", protocol: TCP }]
      rules:
        http:
        - { method: GET, path: "/allowed.*" }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: allow-egress-to-payment-gateway }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toFQDNs:
    - matchName: "api.stripe.com"
    toPorts:
    - ports:
      - port: "${SP}"
        protocol: TCP
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: cidr-except }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toCIDRSet: [{ cidr: 127.0.0.96/28, except: [127.0.0.100/32] }]
    toPorts: [{ ports: [{ port: "${CP}", protocol: TCP }] }]
`;

const h = await EgressHarness.start((dnsPort) => ({ pods: [KUBE_DNS, APP, FREE], policies: policy(dnsPort) }));
h.dns.setRecord('api.example.test', { a: ['127.0.0.60'] });
h.dns.setRecord('other.example.test', { a: ['127.0.0.61'] });
h.dns.setRecord('api.stripe.com', { a: ['127.0.0.63'] });
h.dns.setRecord('evil.test', { a: ['127.0.0.64'] });
t.teardown(async () => {
  await h.close();
  await Promise.all(all.map((c) => c.close()));
});
const proxyUrl = `http://127.0.0.1:${h.egressPort}`;
const asApp = ['--interface', APP.ip, '-x', proxyUrl];

t.test('toFQDNs: an IP literal is denied before any DNS answer', async (t) => {
  const r = await curl([...asApp, `http://127.0.0.60:${HP}/allowed`]);
  t.equal(r.status, 403);
  t.equal(r.body, 'Access denied\r\n');
  t.equal(api!.connections, 0, 'nothing dialled');
  t.equal(h.dns.queries.length, 0, 'no DNS query for an IP literal');
});

t.test('a name resolves through the DNS listener and the allowed request is forwarded', async (t) => {
  const r = await curl([...asApp, `http://api.example.test:${HP}/allowed/x?q=1`]);
  t.equal(r.status, 200, r.stderr);
  t.equal(r.body, `upstream:GET /allowed/x?q=1 at 127.0.0.60`);
  t.equal(api!.requests.length, 1);
  t.equal(api!.requests[0]!.headers.host, `api.example.test:${HP}`, 'Host as the client wrote it');
  t.notOk(api!.requests[0]!.headers['x-forwarded-for'], 'no X-Forwarded-For to the destination');
  t.notOk(api!.requests[0]!.headers['proxy-connection'], 'hop-by-hop header dropped');
  t.ok(h.dns.queriesFor('api.example.test').length >= 1, 'the DNS upstream was asked');
  const s = h.proxy.snapshot()!;
  t.ok(s.identityForIP('127.0.0.60').labels.includes('fqdn:api.example.test'), 'learned into the IP cache');
});

t.test('after the allowed answer, the IP literal is allowed too', async (t) => {
  const r = await curl([...asApp, `http://127.0.0.60:${HP}/allowed`]);
  t.equal(r.status, 200);
});

t.test('L7 rules on the forward proxy: path and method', async (t) => {
  const before = api!.requests.length;
  const r1 = await curl([...asApp, `http://api.example.test:${HP}/secret`]);
  t.equal(r1.status, 403);
  const r2 = await curl([...asApp, '-X', 'POST', '-d', 'x=1', `http://api.example.test:${HP}/allowed`]);
  t.equal(r2.status, 403);
  const r3 = await curl([...asApp, `http://api.example.test:${HP}/allowed/../secret`]);
  t.equal(r3.status, 403, 'dot segments are removed before matching');
  t.equal(api!.requests.length, before, 'no denied request reached the destination');
});

t.test('DNS allowed but the name is not in toFQDNs: denied, nothing dialled', async (t) => {
  const r = await curl([...asApp, `http://other.example.test:${HP}/allowed`]);
  t.equal(r.status, 403);
  t.equal(other!.connections, 0);
  t.ok(h.dns.queriesFor('other.example.test').length >= 1, 'the query itself was allowed');
});

t.test('DNS refused by policy: 403, nothing sent upstream, nothing dialled', async (t) => {
  const r = await curl([...asApp, `http://evil.test:${HP}/`]);
  t.equal(r.status, 403);
  t.equal(h.dns.queriesFor('evil.test').length, 0, 'the refused query never left');
  t.equal(unnamed!.connections, 0);
});

t.test('unknown name: 502, nothing dialled', async (t) => {
  const r = await curl([...asApp, `http://nosuch.example.test:${HP}/allowed`]);
  t.equal(r.status, 502);
});

t.test('toCIDRSet with except', async (t) => {
  const ok = await curl([...asApp, `http://127.0.0.97:${CP}/`]);
  t.equal(ok.status, 200);
  t.equal(cidrOk!.requests.length, 1);
  const no = await curl([...asApp, `http://127.0.0.100:${CP}/`]);
  t.equal(no.status, 403);
  t.equal(cidrExcept!.connections, 0, 'the except address was never dialled');
  const port = await curl([...asApp, `http://127.0.0.97:${HP}/`]);
  t.equal(port.status, 403, 'another port of an allowed CIDR');
});

t.test('a pod without egress policy is unrestricted', async (t) => {
  const r = await curl(['--interface', FREE.ip, '-x', proxyUrl, `http://other.example.test:${HP}/anything`]);
  t.equal(r.status, 200);
  t.equal(other!.requests.length, 1);
});

t.test('CONNECT to the seed pattern (api.stripe.com, toFQDNs on its port): spliced', async (t) => {
  const r = await curl([...asApp, '--proxytunnel', `http://api.stripe.com:${SP}/v1/charges`]);
  t.equal(r.connectStatus, 200);
  t.equal(r.status, 200);
  t.equal(r.body, 'upstream:GET /v1/charges at 127.0.0.63');
  t.equal(stripe!.requests.length, 1);
});

t.test('CONNECT denied: 403 and nothing dialled', async (t) => {
  const r = await curl([...asApp, '--proxytunnel', `http://api.stripe.com:${stripeOther!.port}/`]);
  t.equal(r.connectStatus, 403);
  t.equal(stripeOther!.connections, 0, 'the port not in the rule was never dialled');
  const lit = await curl([...asApp, '--proxytunnel', `http://127.0.0.64:${HP}/`]);
  t.equal(lit.connectStatus, 403);
  t.equal(unnamed!.connections, 0);
  const refused = await curl([...asApp, '--proxytunnel', `http://evil.test:${HP}/`]);
  t.equal(refused.connectStatus, 403);
});

t.test('CONNECT to a port with HTTP rules: the tunnel is inspected request by request', async (t) => {
  const before = api!.requests.length;
  const ok = await curl([...asApp, '--proxytunnel', `http://api.example.test:${HP}/allowed/t`]);
  t.equal(ok.connectStatus, 200);
  t.equal(ok.status, 200);
  t.equal(api!.requests.length, before + 1);
  const no = await curl([...asApp, '--proxytunnel', `http://api.example.test:${HP}/other`]);
  t.equal(no.connectStatus, 200);
  t.equal(no.status, 403);
  t.equal(api!.requests.length, before + 1, 'denied request inside the tunnel never arrived');
});

t.test('raw: malformed and non-proxy requests never crash and never forward', async (t) => {
  const port = h.egressPort;
  const cases: [string, RegExp][] = [
    ['GET /allowed HTTP/1.1\r\nHost: api.example.test\r\n\r\n', /^HTTP\/1\.1 400/],
    ['CONNECT nohost HTTP/1.1\r\nHost: x\r\n\r\n', /^HTTP\/1\.1 400/],
    ['CONNECT a b:c HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 400/],
    [`GET http://api.example.test:${HP}/allowed HTTP/1.1\r\nHost: other.example.test\r\n\r\n`, /^HTTP\/1\.1 400/],
    [`GET http://api.example.test:${HP}/allowed%2fx HTTP/1.1\r\nHost: api.example.test:${HP}\r\n\r\n`, /^HTTP\/1\.1 400/],
    [`GET http://api.example.test:${HP}/allowed HTTP/1.1\r\nHost: api.example.test:${HP}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n`, /^HTTP\/1\.1 400/],
    ['\x16\x03\x01\x00\x05hello', /^HTTP\/1\.1 400/],
  ];
  const before = api!.requests.length;
  for (const [bytes, re] of cases) {
    const r = await rawExchange(port, bytes, { from: APP.ip });
    t.match(r.data, re, JSON.stringify(bytes.slice(0, 40)));
  }
  t.equal(api!.requests.length, before);
  // The listener still serves.
  const ok = await curl([...asApp, `http://api.example.test:${HP}/allowed`]);
  t.equal(ok.status, 200);
});

t.test('CONNECT early data is not sent before the decision', async (t) => {
  const before = stripeOther!.connections;
  const r = await rawExchange(
    h.egressPort,
    `CONNECT api.stripe.com:${stripeOther!.port} HTTP/1.1\r\nHost: api.stripe.com:${stripeOther!.port}\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n`,
    { from: APP.ip },
  );
  t.match(r.data, /^HTTP\/1\.1 403/);
  t.equal(stripeOther!.connections, before);
});

interface Want {
  method: string;
  url: string;
  verdict: 'FORWARDED' | 'DROPPED';
  type: 'L7' | 'L3_L4';
  code: number;
  allowedBy?: string;
  deniedBy?: string;
  names?: string[];
  dst: string;
  dstLabel?: string;
  pod?: string;
}

t.test('flow records: Hubble shape, EGRESS, verdicts, rule names, destination names (field by field)', async (t) => {
  const recs = await h.flowRecords();
  const want: Want[] = [
    { method: 'GET', url: `http://127.0.0.60:${HP}/allowed`, verdict: 'DROPPED', type: 'L3_L4', code: 403, dst: '127.0.0.60', dstLabel: 'reserved:world' },
    { method: 'GET', url: `http://127.0.0.60:${HP}/allowed`, verdict: 'FORWARDED', type: 'L7', code: 200, allowedBy: 'app-egress', dst: '127.0.0.60', dstLabel: 'fqdn:api.example.test' },
    { method: 'GET', url: `http://api.example.test:${HP}/allowed/x?q=1`, verdict: 'FORWARDED', type: 'L7', code: 200, allowedBy: 'app-egress', names: ['api.example.test'], dst: '127.0.0.60', dstLabel: 'fqdn:api.example.test' },
    { method: 'GET', url: `http://api.example.test:${HP}/secret`, verdict: 'DROPPED', type: 'L7', code: 403, deniedBy: 'app-egress', names: ['api.example.test'], dst: '127.0.0.60' },
    { method: 'POST', url: `http://api.example.test:${HP}/allowed`, verdict: 'DROPPED', type: 'L7', code: 403, deniedBy: 'app-egress', names: ['api.example.test'], dst: '127.0.0.60' },
    { method: 'GET', url: `http://other.example.test:${HP}/allowed`, verdict: 'DROPPED', type: 'L3_L4', code: 403, names: ['other.example.test'], dst: '127.0.0.61' },
    { method: 'GET', url: `http://evil.test:${HP}/`, verdict: 'DROPPED', type: 'L3_L4', code: 403, names: ['evil.test'], dst: '0.0.0.0', dstLabel: 'reserved:world' },
    { method: 'GET', url: `http://127.0.0.97:${CP}/`, verdict: 'FORWARDED', type: 'L3_L4', code: 200, allowedBy: 'cidr-except', dst: '127.0.0.97', dstLabel: 'cidr:127.0.0.96/28' },
    { method: 'GET', url: `http://127.0.0.100:${CP}/`, verdict: 'DROPPED', type: 'L3_L4', code: 403, dst: '127.0.0.100' },
    { method: 'GET', url: `http://other.example.test:${HP}/anything`, verdict: 'FORWARDED', type: 'L3_L4', code: 200, names: ['other.example.test'], dst: '127.0.0.61', pod: 'free' },
    { method: 'CONNECT', url: `api.stripe.com:${SP}`, verdict: 'FORWARDED', type: 'L3_L4', code: 200, allowedBy: 'allow-egress-to-payment-gateway', names: ['api.stripe.com'], dst: '127.0.0.63', dstLabel: 'fqdn:api.stripe.com' },
    { method: 'CONNECT', url: `api.stripe.com:${stripeOther!.port}`, verdict: 'DROPPED', type: 'L3_L4', code: 403, names: ['api.stripe.com'], dst: '127.0.0.63' },
    { method: 'CONNECT', url: `127.0.0.64:${HP}`, verdict: 'DROPPED', type: 'L3_L4', code: 403, dst: '127.0.0.64' },
    { method: 'CONNECT', url: `api.example.test:${HP}`, verdict: 'FORWARDED', type: 'L7', code: 200, allowedBy: 'app-egress', names: ['api.example.test'], dst: '127.0.0.60' },
    { method: 'GET', url: `http://api.example.test:${HP}/other`, verdict: 'DROPPED', type: 'L7', code: 403, deniedBy: 'app-egress', names: ['api.example.test'], dst: '127.0.0.60' },
  ];
  const revision = h.proxy.snapshot()!.version;
  for (const w of want) {
    const name = `${w.method} ${w.url} ${w.verdict}`;
    const req = recs.find((f) => f.l7?.type === 'REQUEST' && f.l7.http?.method === w.method && f.l7.http.url === w.url && f.verdict === w.verdict);
    if (!req) {
      t.fail(`${name}: no REQUEST record`);
      continue;
    }
    t.equal(req.traffic_direction, 'EGRESS', `${name}: traffic_direction`);
    t.equal(req.Type, w.type, `${name}: Type`);
    t.same(req.event_type, { type: 129 }, `${name}: event_type`);
    t.equal(req.is_reply, false);
    t.match(req.uuid, /^[0-9a-f-]{36}$/, `${name}: uuid`);
    t.equal(req.node_name, 'test-node');
    t.equal(req.IP.source, w.pod === 'free' ? FREE.ip : APP.ip, `${name}: IP.source`);
    t.equal(req.IP.destination, w.dst, `${name}: IP.destination`);
    t.equal(req.IP.ipVersion, 'IPv4');
    t.equal(req.source.pod_name, w.pod ?? 'app', `${name}: source pod`);
    t.equal(req.l7.http.protocol, 'HTTP/1.1');
    t.ok(Array.isArray(req.l7.http.headers), `${name}: request headers listed`);
    if (w.dstLabel) t.ok(req.destination.labels.includes(w.dstLabel), `${name}: destination labels ${req.destination.labels}`);
    t.same(req.destination_names, w.names, `${name}: destination_names`);
    t.equal(req.drop_reason, w.verdict === 'DROPPED' ? 133 : undefined, `${name}: drop_reason`);
    t.equal(req.drop_reason_desc, w.verdict === 'DROPPED' ? 'POLICY_DENIED' : undefined, `${name}: drop_reason_desc`);
    t.same(req.egress_allowed_by?.map((p: { name: string }) => p.name), w.allowedBy ? [w.allowedBy] : undefined, `${name}: egress_allowed_by`);
    t.same(req.egress_denied_by?.map((p: { name: string }) => p.name), w.deniedBy ? [w.deniedBy] : undefined, `${name}: egress_denied_by`);
    t.equal(req.ingress_allowed_by, undefined, `${name}: no ingress side`);
    t.equal(req.ingress_denied_by, undefined);
    const by = (req.egress_allowed_by ?? req.egress_denied_by)?.[0];
    if (by) {
      t.equal(by.kind, 'CiliumNetworkPolicy');
      t.equal(by.namespace, 'default');
      t.equal(by.revision, String(revision), `${name}: policy revision (a string, as Hubble prints uint64)`);
    }
    // The matching RESPONSE record: swapped, with the status the client got.
    const res = recs.find(
      (f) => f.l7?.type === 'RESPONSE' && f.l7.http?.method === w.method && f.l7.http.url === w.url && f.l7.http.code === w.code && f.IP.destination === req.IP.source && f.l4.TCP.destination_port === req.l4.TCP.source_port,
    );
    t.ok(res, `${name}: RESPONSE record with ${w.code}`);
    t.equal(res?.is_reply, true);
    t.equal(res?.traffic_direction, 'EGRESS');
    t.equal(res?.verdict, 'FORWARDED');
    t.equal(res?.IP.source, w.dst);
    t.same(res?.source_names, w.names, `${name}: source_names on the reply`);
    t.match(res?.l7.latency_ns, /^\d+$/);
  }
  const dnsRecs = recs.filter((f) => f.l7?.dns);
  t.ok(dnsRecs.some((f) => f.l7.dns.query === 'api.example.test.' && f.source.pod_name === 'app'), 'the lookup shows as the pod\'s DNS query');
  // The shared metrics count egress decisions too.
  const text = await h.proxy.metrics.registry.metrics();
  t.match(text, /hubble_http_requests_total\{method="CONNECT",protocol="HTTP\/1\.1",reporter="client"\} [1-9]/, 'CONNECTs counted');
  t.match(text, /l7warden_policy_decisions_total\{verdict="denied",direction="egress",policy="default\/app-egress"\} [1-9]/, 'egress L7 denials counted');
});

t.test('IP literal of a learned name from a pod that may not reach it', async (t) => {
  // 127.0.0.60 carries the fqdn label now; `free` has no policy, app has; a third
  // source (world, 127.0.0.12) is not a pod: no egress policy applies to it.
  const s = h.proxy.snapshot()!;
  t.ok(net.isIP('127.0.0.60'));
  const v = s.decide({ src: s.identityForIP(APP.ip), dst: s.identityForIP('127.0.0.60'), port: SP, protocol: 'TCP' });
  t.notOk(v.allowed, 'api.example.test is not allowed on the stripe port');
});
