/**
 * Transparent mode: an egress listener whose sourceIdentity is [proxyProtocol]
 * takes the PROXY header's destination as the original destination (what a
 * TPROXY/REDIRECT front reports). Decided at L3/L4 with the PROXY source's
 * identity: allowed ⇒ spliced to exactly that address; denied ⇒ TCP reset and
 * nothing dialled. A port with HTTP rules is parsed and decided per request.
 * Node `net` clients send hand-built PROXY v1 and v2 headers.
 */
import t from 'tap';
import { EgressHarness, KUBE_DNS, capturesOnOnePort, rawExchange, type Capture } from '../helpers/egress-harness.js';
import { dig } from '../helpers/dns-harness.js';
import { V2_SIGNATURE } from '../../src/listeners/proxy-protocol.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const EMPIRE = { name: 'probe', labels: { app: 'probe' }, ip: '127.0.0.12' };

const [echoOk, echoDenied, echoFqdn] = await capturesOnOnePort(['127.0.0.80', '127.0.0.81', '127.0.0.83'], { kind: 'echo' });
const [web, webFqdn] = await capturesOnOnePort(['127.0.0.82', '127.0.0.84'], { kind: 'http' });
const all: Capture[] = [echoOk!, echoDenied!, echoFqdn!, web!, webFqdn!];
const EP = echoOk!.port;
const WP = web!.port;

const policy = (dnsPort: number) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: transparent }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules: { dns: [{ matchPattern: "*" }] }
  - toCIDR: [127.0.0.80/32]
    toPorts: [{ ports: [{ port: "${EP}", protocol: TCP }] }]
  - toFQDNs: [{ matchName: echo.example.test }]
    toPorts: [{ ports: [{ port: "${EP}", protocol: TCP }] }]
  - toCIDR: [127.0.0.82/32]
    toPorts:
    - ports: [{ port: "${WP}", protocol: TCP }]
      rules: { http: [{ method: GET, path: "/ok.*" }] }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: probe-nothing }
spec:
  endpointSelector: { matchLabels: { app: probe } }
  egress: [{}]
`;

const h = await EgressHarness.start((dnsPort) => ({
  pods: [KUBE_DNS, APP, EMPIRE],
  policies: policy(dnsPort),
  extraListeners: `    - name: tproxy
      mode: egress
      address: 127.0.0.1:0
      sourceIdentity: [proxyProtocol]
`,
}));
h.dns.setRecord('echo.example.test', { a: ['127.0.0.83'] });
t.teardown(async () => {
  await h.close();
  await Promise.all(all.map((c) => c.close()));
});
const TP = h.port('tproxy');

function v1(src: string, dst: string, dport: number): string {
  return `PROXY TCP4 ${src} ${dst} 40001 ${dport}\r\n`;
}

function v2(src: string, dst: string, dport: number): Buffer {
  const b = Buffer.alloc(16 + 12);
  V2_SIGNATURE.copy(b, 0);
  b[12] = 0x21; // v2, PROXY
  b[13] = 0x11; // INET, STREAM
  b.writeUInt16BE(12, 14);
  src.split('.').forEach((o, i) => (b[16 + i] = Number(o)));
  dst.split('.').forEach((o, i) => (b[20 + i] = Number(o)));
  b.writeUInt16BE(40002, 24);
  b.writeUInt16BE(dport, 26);
  return b;
}

t.test('PROXY v1: allowed destination is spliced, the header is not forwarded', async (t) => {
  const r = await rawExchange(TP, v1(APP.ip, '127.0.0.80', EP) + 'hello', { timeoutMs: 1500 });
  t.equal(r.data, 'echo:hello');
  t.equal(echoOk!.connections, 1);
  t.equal(Buffer.concat(echoOk!.raw).toString(), 'hello', 'exactly the bytes after the header');
});

t.test('PROXY v1: denied destination is reset, nothing dialled', async (t) => {
  const r = await rawExchange(TP, v1(APP.ip, '127.0.0.81', EP) + 'hello');
  t.equal(r.data, '');
  t.equal(r.error, 'ECONNRESET');
  t.equal(echoDenied!.connections, 0);
});

t.test('PROXY v2: allowed spliced, denied reset', async (t) => {
  const ok = await rawExchange(TP, Buffer.concat([v2(APP.ip, '127.0.0.80', EP), Buffer.from('v2data')]), { timeoutMs: 1500 });
  t.equal(ok.data, 'echo:v2data');
  const no = await rawExchange(TP, Buffer.concat([v2(APP.ip, '127.0.0.81', EP), Buffer.from('v2data')]));
  t.equal(no.error, 'ECONNRESET');
  t.equal(echoDenied!.connections, 0);
  const port = await rawExchange(TP, Buffer.concat([v2(APP.ip, '127.0.0.80', EP + 1), Buffer.from('x')]));
  t.equal(port.error, 'ECONNRESET', 'another port on an allowed address');
});

t.test('the identity is the PROXY source, not the socket peer', async (t) => {
  const before = echoOk!.connections;
  const r = await rawExchange(TP, v1(EMPIRE.ip, '127.0.0.80', EP) + 'x', { from: APP.ip });
  t.equal(r.error, 'ECONNRESET', 'probe (default deny egress) is reset even when the socket comes from app');
  t.equal(echoOk!.connections, before);
});

t.test('toFQDNs in transparent mode: the IP is allowed only after an allowed DNS answer', async (t) => {
  const before = await rawExchange(TP, v1(APP.ip, '127.0.0.83', EP) + 'f');
  t.equal(before.error, 'ECONNRESET');
  t.equal(echoFqdn!.connections, 0);
  const d = await dig(h.port('dns'), 'echo.example.test', { from: APP.ip });
  t.equal(d.status, 'NOERROR');
  const after = await rawExchange(TP, v1(APP.ip, '127.0.0.83', EP) + 'f', { timeoutMs: 1500 });
  t.equal(after.data, 'echo:f');
  t.equal(echoFqdn!.connections, 1);
});

t.test('a port with HTTP rules is parsed: each request decided', async (t) => {
  const ok = await rawExchange(TP, v1(APP.ip, '127.0.0.82', WP) + 'GET /ok/1 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n');
  t.match(ok.data, /^HTTP\/1\.1 200/);
  t.match(ok.data, /upstream:GET \/ok\/1 at 127\.0\.0\.82/);
  const no = await rawExchange(TP, v1(APP.ip, '127.0.0.82', WP) + 'GET /admin HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n');
  t.match(no.data, /^HTTP\/1\.1 403/);
  t.match(no.data, /Access denied\r\n$/);
  const two = await rawExchange(
    TP,
    Buffer.concat([
      v2(APP.ip, '127.0.0.82', WP),
      Buffer.from('GET /ok/2 HTTP/1.1\r\nHost: web\r\n\r\nGET /admin/2 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n'),
    ]),
  );
  t.match(two.data, /upstream:GET \/ok\/2/);
  t.match(two.data, /HTTP\/1\.1 403/);
  t.same(web!.requests.map((q) => q.url), ['/ok/1', '/ok/2'], 'denied requests never arrived');
});

t.test('a PROXY header naming the listener itself makes a forward-proxy connection', async (t) => {
  const r = await rawExchange(
    TP,
    v1(APP.ip, '127.0.0.1', TP) + `GET http://127.0.0.82:${WP}/ok/fwd HTTP/1.1\r\nHost: 127.0.0.82:${WP}\r\nConnection: close\r\n\r\n`,
  );
  t.match(r.data, /^HTTP\/1\.1 200/);
  t.match(r.data, /upstream:GET \/ok\/fwd/);
});

t.test('no PROXY header: closed, nothing dialled', async (t) => {
  const before = echoOk!.connections;
  const r = await rawExchange(TP, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  t.equal(r.data, '');
  t.equal(echoOk!.connections, before);
});

t.test('flows: Hubble L3/L4 records for spliced and reset transparent connections (field by field)', async (t) => {
  const recs = await h.flowRecords();
  const l4 = recs.filter((f) => !f.l7 && f.traffic_direction === 'EGRESS');
  const revision = String(h.proxy.snapshot()!.version);
  const want: Array<{ name: string; src: string; srcPort: number; dst: string; dport: number; verdict: 'FORWARDED' | 'DROPPED'; allowedBy?: string; dstLabel?: string; names?: string[]; pod: string }> = [
    { name: 'v1 spliced', src: APP.ip, srcPort: 40001, dst: '127.0.0.80', dport: EP, verdict: 'FORWARDED', allowedBy: 'transparent', dstLabel: 'cidr:127.0.0.80/32', pod: 'app' },
    { name: 'v2 spliced', src: APP.ip, srcPort: 40002, dst: '127.0.0.80', dport: EP, verdict: 'FORWARDED', allowedBy: 'transparent', dstLabel: 'cidr:127.0.0.80/32', pod: 'app' },
    { name: 'v1 reset', src: APP.ip, srcPort: 40001, dst: '127.0.0.81', dport: EP, verdict: 'DROPPED', pod: 'app' },
    { name: 'v2 other port reset', src: APP.ip, srcPort: 40002, dst: '127.0.0.80', dport: EP + 1, verdict: 'DROPPED', pod: 'app' },
    { name: 'the PROXY source decides', src: EMPIRE.ip, srcPort: 40001, dst: '127.0.0.80', dport: EP, verdict: 'DROPPED', pod: 'probe' },
    { name: 'fqdn before the answer', src: APP.ip, srcPort: 40001, dst: '127.0.0.83', dport: EP, verdict: 'DROPPED', dstLabel: 'reserved:world', pod: 'app' },
    {
      name: 'fqdn after the answer',
      src: APP.ip, srcPort: 40001, dst: '127.0.0.83', dport: EP, verdict: 'FORWARDED', allowedBy: 'transparent',
      dstLabel: 'fqdn:echo.example.test', names: ['echo.example.test'], pod: 'app',
    },
  ];
  for (const w of want) {
    const f = l4.find((r) => r.IP.source === w.src && r.IP.destination === w.dst && r.l4?.TCP?.destination_port === w.dport && r.l4.TCP.source_port === w.srcPort && r.verdict === w.verdict);
    if (!f) {
      t.fail(`${w.name}: no record`);
      continue;
    }
    t.equal(f.Type, 'L3_L4', `${w.name}: Type`);
    t.equal(f.traffic_direction, 'EGRESS');
    // Hubble's drop events have no is_reply (threefour/parser.go decodeIsReply).
    t.equal(f.is_reply, w.verdict === 'FORWARDED' ? false : undefined);
    t.match(f.uuid, /^[0-9a-f-]{36}$/);
    t.same(f.l4.TCP.flags, { SYN: true }, `${w.name}: SYN`);
    t.equal(f.Summary, 'TCP Flags: SYN');
    t.equal(f.source.pod_name, w.pod, `${w.name}: source pod`);
    if (w.dstLabel) t.ok(f.destination.labels.includes(w.dstLabel), `${w.name}: destination labels ${f.destination.labels}`);
    t.same(f.destination_names, w.names, `${w.name}: destination_names`);
    if (w.verdict === 'FORWARDED') {
      t.same(f.event_type, { type: 5 }, `${w.name}: policy-verdict event`);
      t.equal(f.drop_reason, undefined);
      t.same(f.egress_allowed_by?.map((p: { name: string }) => p.name), [w.allowedBy], `${w.name}: egress_allowed_by`);
      t.equal(f.egress_allowed_by?.[0]?.revision, revision);
    } else {
      t.same(f.event_type, { type: 1, sub_type: 133 }, `${w.name}: drop event`);
      t.equal(f.drop_reason, 133);
      t.equal(f.drop_reason_desc, 'POLICY_DENIED');
      t.equal(f.egress_allowed_by, undefined, `${w.name}: nothing allowed it`);
      t.equal(f.egress_denied_by, undefined, `${w.name}: no deny rule, default deny`);
    }
  }
  // Requests parsed on a transparent HTTP port are L7 EGRESS records naming the rule.
  const l7 = recs.filter((f) => f.l7?.type === 'REQUEST' && f.traffic_direction === 'EGRESS' && f.IP.destination === '127.0.0.82');
  const ok = l7.find((f) => f.l7.http.url === 'http://web/ok/1');
  t.equal(ok?.verdict, 'FORWARDED');
  t.equal(ok?.Type, 'L7');
  t.same(ok?.egress_allowed_by?.map((p: { name: string }) => p.name), ['transparent']);
  const no = l7.find((f) => f.l7.http.url === 'http://web/admin');
  t.equal(no?.verdict, 'DROPPED');
  t.equal(no?.Type, 'L7');
  t.same(no?.egress_denied_by?.map((p: { name: string }) => p.name), ['transparent']);
});
