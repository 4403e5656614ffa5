/**
 * Differential pass against Envoy's PROXY protocol listener filter
 * (envoyproxy/envoy test/extensions/filters/listener/proxy_protocol/proxy_protocol_test.cc,
 * rules in source/extensions/filters/listener/proxy_protocol/proxy_protocol.cc).
 * Every case is sent with a raw TCP client to a running proxy (`startProxy`):
 *
 *  - `tproxy`: an egress listener with `sourceIdentity: [proxyProtocol]` (transparent
 *    mode: the header's destination is the original destination, its source the
 *    identity);
 *  - `front`: an ingress listener with `sourceIdentity: [proxyProtocol]` in front of
 *    the `web` pod (the header's source is the client identity).
 *
 * Oracles: a refused header closes the connection with nothing written back and
 * nothing dialled (echo captures count TCP connections); an accepted one is decided
 * on exactly the source and destination it names (the flow record says so, the
 * capture on that address received exactly the bytes after the header). Refused
 * cases aim at a destination the source may reach (127.0.0.80), so a header that
 * were wrongly accepted would show as a splice, not as a policy reset.
 *
 * Not ported: the ErrorRecv / DrainError / V2Fragmented4Error / V2Fragmented5Error /
 * V2ParseExtensionsRecvError cases mock syscalls; the allow_requests_without_proxy_protocol
 * and TLV-to-metadata cases configure features l7warden does not have (a header is
 * never sniffed, SPEC.md "Identity"; TLVs are framed and skipped).
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { EgressHarness, KUBE_DNS, capturesOnOnePort, type Capture } from '../helpers/egress-harness.js';
import { V2_SIGNATURE } from '../../src/listeners/proxy-protocol.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const APP6 = { name: 'app6', labels: { app: 'client6' }, ip: 'fd00::10' };
const PROBE = { name: 'probe', labels: { app: 'probe' }, ip: '127.0.0.12' };
const WEB = { name: 'web', labels: { app: 'web' }, ip: '127.0.0.82' };

// Echo captures on one port: .80 allowed, .81 denied, 127.0.0.1 and ::1 inside the
// "internet except loopback" rules (reaching them through 0.0.0.0 / :: is the bypass).
const [okCap, deniedCap, loCap, lo6Cap] = await capturesOnOnePort(['127.0.0.80', '127.0.0.81', '127.0.0.1', '::1'], { kind: 'echo' });
const [web] = await capturesOnOnePort(['127.0.0.82'], { kind: 'http' });
const caps: Capture[] = [okCap!, deniedCap!, loCap!, lo6Cap!, web!];
const EP = okCap!.port;
const WP = web!.port;

const policy = (dnsPort: number) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: pp-client }
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
  - toCIDRSet: [{ cidr: 0.0.0.0/0, except: [127.0.0.0/8] }, { cidr: "::/0", except: ["::1/128"] }]
    toPorts: [{ ports: [{ port: "${EP}", protocol: TCP }] }]
  - toEndpoints: [{ matchLabels: { app: web } }]
    toPorts: [{ ports: [{ port: "${WP}", protocol: TCP }] }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: pp-client6 }
spec:
  endpointSelector: { matchLabels: { app: client6 } }
  egress:
  - toCIDR: ["::1/128"]
    toPorts: [{ ports: [{ port: "${EP}", protocol: TCP }] }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: pp-probe }
spec:
  endpointSelector: { matchLabels: { app: probe } }
  egress: [{}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: pp-web }
spec:
  endpointSelector: { matchLabels: { app: web } }
  ingress:
  - fromEndpoints: [{ matchLabels: { app: client } }]
    toPorts:
    - ports: [{ port: "${WP}", protocol: TCP }]
      rules: { http: [{ method: GET, path: "/.*" }] }
  # The world may GET /world/* only: a header whose source were taken as world would reach it.
  - fromEntities: [world]
    toPorts:
    - ports: [{ port: "${WP}", protocol: TCP }]
      rules: { http: [{ method: GET, path: "/world/.*" }] }
`;

const h = await EgressHarness.start((dnsPort) => ({
  pods: [KUBE_DNS, APP, APP6, PROBE, WEB],
  policies: policy(dnsPort),
  limits: '{ headersTimeoutMs: 1500 }',
  extraListeners: `    - name: tproxy
      mode: egress
      address: 127.0.0.1:0
      sourceIdentity: [proxyProtocol]
    - name: front
      mode: ingress
      address: 127.0.0.1:0
      endpoint: { namespace: default, pod: web }
      upstream: http://127.0.0.82:${WP}
      sourceIdentity: [proxyProtocol]
`,
}));
t.teardown(async () => {
  await h.close();
  await Promise.all(caps.map((c) => c.close()));
});
const TP = h.port('tproxy');
const FRONT = h.port('front');

// ---------------------------------------------------------------------------------
// Clients and header builders

interface Result {
  readonly data: string;
  readonly error?: string;
  /** The proxy closed (or reset) the connection before our deadline. */
  readonly closed: boolean;
}

/**
 * Write `chunks` in order (a pause between chunks so each is its own segment), then
 * read until the proxy closes, `until` matches what came back, or `timeoutMs`.
 */
function send(port: number, chunks: ReadonlyArray<Buffer | string>, opts: { until?: RegExp | ((data: string) => boolean); timeoutMs?: number; gapMs?: number; endAfter?: boolean } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const got: Buffer[] = [];
    let error: string | undefined;
    let closedByPeer = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ data: Buffer.concat(got).toString('latin1'), ...(error ? { error } : {}), closed: closedByPeer });
    };
    const timer = setTimeout(finish, opts.timeoutMs ?? 3000);
    s.on('data', (d: Buffer) => {
      got.push(d);
      const all = Buffer.concat(got).toString('latin1');
      if (opts.until && (typeof opts.until === 'function' ? opts.until(all) : opts.until.test(all))) finish();
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
      closedByPeer = true;
    });
    s.on('end', () => (closedByPeer = true));
    s.on('close', () => {
      closedByPeer = true;
      finish();
    });
    let i = 0;
    const next = () => {
      if (done || s.destroyed) return;
      if (i >= chunks.length) {
        if (opts.endAfter) s.end();
        return;
      }
      s.write(chunks[i++]!);
      setTimeout(next, opts.gapMs ?? 2);
    };
    s.once('connect', next);
  });
}

/** The bytes one at a time. */
function bytewise(b: Buffer | string): Buffer[] {
  const buf = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
  return [...buf].map((x) => Buffer.from([x]));
}

function ipv4Bytes(a: string): number[] {
  return a.split('.').map(Number);
}

function ipv6Bytes(a: string): Buffer {
  // Expand "::" and an embedded IPv4 tail (test inputs are well formed).
  let s = a;
  const tail = s.slice(s.lastIndexOf(':') + 1);
  if (tail.includes('.')) {
    const [p, q, r, u] = ipv4Bytes(tail) as [number, number, number, number];
    s = `${s.slice(0, s.lastIndexOf(':') + 1)}${((p << 8) | q).toString(16)}:${((r << 8) | u).toString(16)}`;
  }
  const [head, rest] = s.split('::') as [string, string | undefined];
  const hg = head ? head.split(':') : [];
  const tg = rest !== undefined && rest !== '' ? rest.split(':') : [];
  const groups = rest === undefined ? hg : [...hg, ...Array(8 - hg.length - tg.length).fill('0'), ...tg];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** A v2 header: version/command byte, family/transport byte, then `body` (length = body unless given). */
function v2(verCmd: number, fam: number, body: Buffer, len = body.length): Buffer {
  const hdr = Buffer.alloc(16);
  V2_SIGNATURE.copy(hdr, 0);
  hdr[12] = verCmd;
  hdr[13] = fam;
  hdr.writeUInt16BE(len, 14);
  return Buffer.concat([hdr, body]);
}

function inet4(src: string, dst: string, sport: number, dport: number, tlvs: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(ipv4Bytes(src)).copy(b, 0);
  Buffer.from(ipv4Bytes(dst)).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return Buffer.concat([b, tlvs]);
}

function inet6(src: string, dst: string, sport: number, dport: number, tlvs: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(36);
  ipv6Bytes(src).copy(b, 0);
  ipv6Bytes(dst).copy(b, 16);
  b.writeUInt16BE(sport, 32);
  b.writeUInt16BE(dport, 34);
  return Buffer.concat([b, tlvs]);
}

function tlv(type: number, value: Buffer | number[]): Buffer {
  const v = Buffer.from(value);
  const b = Buffer.alloc(3);
  b[0] = type;
  b.writeUInt16BE(v.length, 1);
  return Buffer.concat([b, v]);
}

const connections = () => caps.map((c) => c.connections);

/** Refused: closed with nothing written back, no capture dialled. */
async function refused(t: Test, name: string, chunks: ReadonlyArray<Buffer | string>, port = TP): Promise<void> {
  const before = connections();
  const r = await send(port, chunks, { timeoutMs: 4000 });
  t.equal(r.data, '', `${name}: nothing written back`);
  t.ok(r.closed, `${name}: connection closed by the proxy`);
  t.same(connections(), before, `${name}: nothing dialled`);
}

/** Spliced to `cap` with exactly `payload` after the header (the echo answers it). */
async function spliced(t: Test, name: string, chunks: ReadonlyArray<Buffer | string>, cap: Capture, payload: string, gapMs?: number): Promise<void> {
  const before = cap.connections;
  const rawBefore = cap.raw.length;
  // The echo answers each segment it reads with "echo:" + the segment.
  const r = await send(TP, chunks, { until: (d) => d.startsWith('echo:') && d.replace(/echo:/g, '').length >= payload.length, timeoutMs: 5000, ...(gapMs !== undefined ? { gapMs } : {}) });
  t.ok(r.data.startsWith('echo:'), `${name}: spliced, the echo answered`);
  t.equal(r.data.replace(/echo:/g, ''), payload.replace(/echo:/g, ''), `${name}: the echo got the payload`);
  t.equal(cap.connections, before + 1, `${name}: one connection to ${cap.ip}`);
  t.equal(Buffer.concat(cap.raw.slice(rawBefore)).toString('latin1'), payload, `${name}: exactly the bytes after the header`);
}

/** The L3/L4 flow record of a transparent connection from `srcPort` (unique per case). */
async function flowFrom(srcPort: number, dst: string): Promise<Record<string, any> | undefined> {
  const recs = await h.flowRecords();
  return recs.find((f) => !f.l7 && f.traffic_direction === 'EGRESS' && f.l4?.TCP?.source_port === srcPort && f.IP?.destination === dst);
}

const v1 = (src: string, dst: string, sport: number, dport: number, proto = 'TCP4') => `PROXY ${proto} ${src} ${dst} ${sport} ${dport}\r\n`;

// ---------------------------------------------------------------------------------
// Accepted headers: decided on exactly what they name

t.test('V1Basic / V2Basic: source and original destination from the header; bytes after it spliced', async (t) => {
  // V1Basic: "PROXY TCP4 1.2.3.4 253.253.253.253 65535 1234\r\nmore data"
  await spliced(t, 'v1', [v1(APP.ip, '127.0.0.80', 65535, EP) + 'more data'], okCap!, 'more data');
  let f = await flowFrom(65535, '127.0.0.80');
  t.equal(f?.verdict, 'FORWARDED');
  t.equal(f?.IP.source, APP.ip, 'v1: the header source decided');
  t.equal(f?.source.pod_name, 'app');
  t.equal(f?.l4.TCP.destination_port, EP);
  // V2Basic: 21 11 000c 01020304 01020305 0001 0002 "more data"
  await spliced(t, 'v2', [Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 65534, EP)), Buffer.from('more data')])], okCap!, 'more data');
  f = await flowFrom(65534, '127.0.0.80');
  t.equal(f?.verdict, 'FORWARDED');
  t.equal(f?.source.pod_name, 'app');
  // The same headers naming a denied destination, or a source without the allow.
  const before = deniedCap!.connections;
  const d1 = await send(TP, [v1(APP.ip, '127.0.0.81', 65533, EP) + 'x']);
  t.equal(d1.error, 'ECONNRESET', 'denied destination: reset');
  t.equal(deniedCap!.connections, before, 'denied destination: nothing dialled');
  t.equal((await flowFrom(65533, '127.0.0.81'))?.verdict, 'DROPPED');
  const d2 = await send(TP, [Buffer.concat([v2(0x21, 0x11, inet4(PROBE.ip, '127.0.0.80', 65532, EP)), Buffer.from('x')])]);
  t.equal(d2.error, 'ECONNRESET', 'a source the policy denies (probe): reset');
  t.equal((await flowFrom(65532, '127.0.0.80'))?.source.pod_name, 'probe', 'decided as the header source, not the socket peer');
});

t.test('BasicV6 / V2BasicV6 (and WildcardProxyProtocolTest.BasicV6): IPv6 source and destination', async (t) => {
  // BasicV6: "PROXY TCP6 1:2:3::4 5:6::7:8 65535 1234\r\nmore data"
  await spliced(t, 'v1 TCP6', [v1(APP6.ip, '::1', 65531, EP, 'TCP6') + 'more data'], lo6Cap!, 'more data');
  let f = await flowFrom(65531, '::1');
  t.equal(f?.source.pod_name, 'app6', 'v1 TCP6: the IPv6 source decided');
  // Another spelling of the same addresses (upper case, zero groups written out): one identity.
  await spliced(t, 'v1 TCP6 spelled long', [v1('FD00:0:0:0:0:0:0:10', '0:0:0:0:0:0:0:1', 65530, EP, 'TCP6') + 'long'], lo6Cap!, 'long');
  f = await flowFrom(65530, '::1');
  t.equal(f?.source.pod_name, 'app6', 'the long spelling is the same pod');
  // The longest TCP6 line there is (104 bytes, every group written with four digits).
  const longest = `PROXY TCP6 fd00:0000:0000:0000:0000:0000:0000:0010 0000:0000:0000:0000:0000:0000:0000:0001 65510 ${EP}\r\n`;
  t.ok(longest.length <= 107);
  await spliced(t, 'v1 TCP6 longest line', [longest + 'max'], lo6Cap!, 'max');
  t.equal((await flowFrom(65510, '::1'))?.source.pod_name, 'app6');
  // V2BasicV6: 21 22? Envoy writes 0x22 (INET6, DGRAM); STREAM (0x21) is what a TCP listener takes, see below.
  await spliced(t, 'v2 INET6', [Buffer.concat([v2(0x21, 0x21, inet6(APP6.ip, '::1', 65529, EP)), Buffer.from('more data')])], lo6Cap!, 'more data');
  t.equal((await flowFrom(65529, '::1'))?.source.pod_name, 'app6');
  // app (IPv4 pod) may not reach ::1 ("::/0 except ::1"): reset, nothing dialled.
  const before = lo6Cap!.connections;
  const r = await send(TP, [v1('::ffff:' + APP.ip, '::1', 65528, EP, 'TCP6') + 'x']);
  t.equal(r.error, 'ECONNRESET');
  t.equal(lo6Cap!.connections, before);
  t.equal((await flowFrom(65528, '::1'))?.source.pod_name, 'app', 'an IPv4-mapped TCP6 source is the IPv4 pod');
});

t.test('IPv4-mapped IPv6 destinations are decided and dialled as the IPv4 address', async (t) => {
  // Not an Envoy case: Envoy keeps ::ffff:a.b.c.d as an IPv6 address. Here it is one
  // address with one identity, whichever way it is written (docs/hardening.md "Egress").
  await spliced(t, 'v1 TCP6 mapped', [v1('::ffff:' + APP.ip, '::ffff:127.0.0.80', 65527, EP, 'TCP6') + 'm1'], okCap!, 'm1');
  await spliced(t, 'v2 INET6 mapped', [Buffer.concat([v2(0x21, 0x21, inet6('::ffff:' + APP.ip, '::ffff:127.0.0.80', 65526, EP)), Buffer.from('m2')])], okCap!, 'm2');
  t.equal((await flowFrom(65526, '127.0.0.80'))?.verdict, 'FORWARDED', 'recorded as 127.0.0.80');
  const before = deniedCap!.connections;
  const r = await send(TP, [v1('::ffff:' + APP.ip, '::ffff:127.0.0.81', 65525, EP, 'TCP6') + 'x']);
  t.equal(r.error, 'ECONNRESET', 'mapped form of a denied address: reset');
  t.equal(deniedCap!.connections, before);
});

t.test('V1Minimal / V2LocalConnection*: no addresses, the connection is served as a forward proxy', async (t) => {
  // Envoy keeps the real connection addresses (V1Minimal, V2LocalConnection, V2LocalConnectionExtension,
  // V2LocalConnectionFilterState) and passes "more data" on. Here the rest is HTTP for the forward
  // proxy, so "more data" is a malformed request: 400, nothing dialled.
  const cases: Array<[string, Buffer | string]> = [
    ['V1Minimal: PROXY UNKNOWN', 'PROXY UNKNOWN\r\nmore data\r\n\r\n'],
    ['V2LocalConnection: LOCAL, no address', Buffer.concat([v2(0x20, 0x00, Buffer.alloc(0)), Buffer.from('more data\r\n\r\n')])],
    ['V2LocalConnectionExtension: LOCAL + 1 TLV', Buffer.concat([v2(0x20, 0x00, Buffer.from([0x00, 0x00, 0x01, 0xff])), Buffer.from('more data\r\n\r\n')])],
    ['V2LocalConnectionFilterState: AWS NLB health check', Buffer.concat([v2(0x20, 0x00, Buffer.from([0x00, 0x00, 0x04, 0x0a, 0x0b, 0x0c, 0x0d])), Buffer.from('moredata\r\n\r\n')])],
  ];
  for (const [name, bytes] of cases) {
    const before = connections();
    const r = await send(TP, [bytes], { until: /\r\n\r\n[\s\S]*\r\n$/, timeoutMs: 3000 });
    t.match(r.data, /^HTTP\/1\.1 400 /, `${name}: the bytes after the header are the forward proxy's (400)`);
    t.same(connections(), before, `${name}: nothing dialled`);
  }
  // The header is consumed whole: a forward-proxy request after a LOCAL header is served.
  const r = await send(TP, [Buffer.concat([v2(0x20, 0x00, Buffer.from([0x00, 0x00, 0x01, 0xff])), Buffer.from(`GET http://127.0.0.82:${WP}/local HTTP/1.1\r\nHost: 127.0.0.82:${WP}\r\nConnection: close\r\n\r\n`)])], { timeoutMs: 3000 });
  t.match(r.data, /^HTTP\/1\.1 \d{3} /, 'LOCAL + request: answered as HTTP (the header did not leak into it)');
});

t.test('V2ParseExtensions / V2ParseExtensionsFrag / V2ExtractMultipleTlvsOfInterest: TLVs are skipped', async (t) => {
  const twoTlvs = Buffer.concat([tlv(0x00, [0xff]), tlv(0x00, [0xff])]);
  await spliced(t, 'two TLVs, one segment', [Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 65524, EP, twoTlvs)), Buffer.from('DATA')])], okCap!, 'DATA');
  await spliced(t, 'two TLVs, fragmented', [v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 65523, EP, twoTlvs)).subarray(0, 28), twoTlvs.subarray(0, 4), twoTlvs.subarray(4), 'DATA'], okCap!, 'DATA', 20);
  // An authority TLV (0x02 "foo.com") and a VPC id (0xea) change nothing: the identity is the address.
  const many = Buffer.concat([
    tlv(0x00, [0xff]),
    tlv(0x02, Buffer.from('foo.com')),
    tlv(0x0f, [0xf0, 0x00, 0x0f]),
    tlv(0xea, [0x01, ...Buffer.from('vpc-025test2fa6c63ha7')]),
  ]);
  await spliced(t, 'four TLVs', [Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 65522, EP, many)), Buffer.from('DATA')])], okCap!, 'DATA');
  t.equal((await flowFrom(65522, '127.0.0.80'))?.source.pod_name, 'app');
  // A zero-length TLV ending exactly at the declared length.
  await spliced(t, 'empty TLV at the end', [Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 65521, EP, tlv(0x04, []))), Buffer.from('E')])], okCap!, 'E');
  // Huge TLV lists within the 2,048-byte cap: 600 empty TLVs (1,812 bytes).
  const list = Buffer.concat(Array.from({ length: 600 }, () => tlv(0x05, [])));
  await spliced(t, '600 TLVs', [Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 65520, EP, list)), Buffer.from('L')])], okCap!, 'L');
});

t.test('Fragmented / PartialRead / V2Fragmented1-3 / V2PartialRead: headers in pieces, and a byte at a time', async (t) => {
  // Fragmented: "PROXY TCP4" " 254.254.2" "54.254 1.2" ".3.4 65535" " 1234\r\n..." (addresses on loopback here)
  const line = v1(APP.ip, '127.0.0.80', 65519, EP) + '...';
  const pieces = [line.slice(0, 10), line.slice(10, 20), line.slice(20, 30), line.slice(30, 40), line.slice(40)];
  await spliced(t, 'v1 in 5 pieces', pieces, okCap!, '...', 20);
  await spliced(t, 'v1 a byte at a time', bytewise(v1(APP.ip, '127.0.0.80', 65518, EP) + 'b'), okCap!, 'b', 1);
  const hdr = Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 65517, EP)), Buffer.from('more data')]);
  // V2Fragmented1: 10 / 10 / 17; V2Fragmented2: 17 / 10 / 10; V2Fragmented3: 16 / 10 / 11; V2PartialRead: 9-byte pieces.
  await spliced(t, 'V2Fragmented1', [hdr.subarray(0, 10), hdr.subarray(10, 20), hdr.subarray(20)], okCap!, 'more data', 20);
  await spliced(t, 'V2Fragmented2', [hdr.subarray(0, 17), hdr.subarray(17, 27), hdr.subarray(27)], okCap!, 'more data', 20);
  await spliced(t, 'V2Fragmented3', [hdr.subarray(0, 16), hdr.subarray(16, 26), hdr.subarray(26)], okCap!, 'more data', 20);
  const nine: Buffer[] = [];
  for (let i = 0; i < hdr.length; i += 9) nine.push(hdr.subarray(i, i + 9));
  await spliced(t, 'V2PartialRead', nine, okCap!, 'more data', 20);
  const withTlvs = Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 65516, EP, Buffer.concat([tlv(0x02, Buffer.from('foo.com')), tlv(0x00, [1])]))), Buffer.from('t')]);
  await spliced(t, 'v2 + TLVs a byte at a time', bytewise(withTlvs), okCap!, 't', 1);
  await spliced(t, 'v2 INET6 a byte at a time', bytewise(Buffer.concat([v2(0x21, 0x21, inet6(APP6.ip, '::1', 65515, EP)), Buffer.from('6')])), lo6Cap!, '6', 1);
  t.equal((await flowFrom(65515, '::1'))?.source.pod_name, 'app6');
});

t.test('bytes after the header: passed on unchanged, a second header is data', async (t) => {
  // Envoy drains exactly wholeHeaderLength() and hands the rest to the filter chain.
  const second = v1(PROBE.ip, '127.0.0.81', 1, EP);
  await spliced(t, 'v1 then a second v1 header', [v1(APP.ip, '127.0.0.80', 65514, EP) + second + 'tail'], okCap!, second + 'tail');
  t.equal((await flowFrom(65514, '127.0.0.80'))?.source.pod_name, 'app', 'the first header decided');
  const bin = Buffer.concat([V2_SIGNATURE, Buffer.from([0x0d, 0x0a, 0x00])]).toString('latin1');
  await spliced(t, 'v2 then signature-like bytes', [Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 65513, EP)), Buffer.from(bin, 'latin1')])], okCap!, bin);
});

// ---------------------------------------------------------------------------------
// Refused headers

t.test('v1 malformed lines are refused (closed, nothing dialled)', async (t) => {
  const S = APP.ip;
  const D = '127.0.0.80';
  const cases: Array<[string, string]> = [
    // MalformedProxyLine: "BOGUS\r" then "\n"
    ['MalformedProxyLine', 'BOGUS\r\n'],
    // ProxyLineTooLarge: 120 digits, no PROXY prefix
    ['ProxyLineTooLarge', '0123456789'.repeat(12)],
    // NotEnoughFields: "PROXY TCP6 1:2:3::4 5:6::7:8 1234\r\n"
    ['NotEnoughFields', `PROXY TCP4 ${S} ${D} 1234\r\nmore data`],
    // UnsupportedProto: "PROXY UDP6 …"
    ['UnsupportedProto UDP6', `PROXY UDP6 ::1 ::1 1234 ${EP}\r\nmore data`],
    ['UnsupportedProto UDP4', `PROXY UDP4 ${S} ${D} 1234 ${EP}\r\nmore data`],
    ['protocol in lower case', `PROXY tcp4 ${S} ${D} 1234 ${EP}\r\nmore data`],
    // BadPort: "… 1234 abc"
    ['BadPort', `PROXY TCP4 ${S} ${D} 1234 abc\r\nmore data`],
    // NegativePort: "… -1 1234"
    ['NegativePort', `PROXY TCP4 ${S} ${D} -1 ${EP}\r\nmore data`],
    // PortOutOfRange: "… 66776 1234"
    ['PortOutOfRange (source)', `PROXY TCP4 ${S} ${D} 66776 ${EP}\r\nmore data`],
    ['PortOutOfRange (destination 65536)', `PROXY TCP4 ${S} ${D} 1234 65536\r\nmore data`],
    ['port with a plus sign', `PROXY TCP4 ${S} ${D} 1234 +${EP}\r\nmore data`],
    ['port in hex', `PROXY TCP4 ${S} ${D} 1234 0x${EP.toString(16)}\r\nmore data`],
    // BadAddress: "PROXY TCP6 1::2:3::4 …"
    ['BadAddress', `PROXY TCP6 1::2:3::4 ::1 1234 ${EP}\r\nmore data`],
    ['IPv4 with a leading zero', `PROXY TCP4 127.0.0.010 ${D} 1234 ${EP}\r\nmore data`],
    ['IPv4 short form', `PROXY TCP4 127.1 ${D} 1234 ${EP}\r\nmore data`],
    ['IPv4 octet over 255', `PROXY TCP4 127.0.0.256 ${D} 1234 ${EP}\r\nmore data`],
    ['IPv6 zone index', `PROXY TCP6 fe80::1%lo ::1 1234 ${EP}\r\nmore data`],
    ['IPv6 in brackets', `PROXY TCP6 [fd00::10] [::1] 1234 ${EP}\r\nmore data`],
    // AddressVersionsNotMatch: "PROXY TCP4 [1:2:3::4] 1.2.3.4 …"; AddressVersionsNotMatch2: "PROXY TCP4 1.2.3.4 [1:2:3: 1234 4]:5678"
    ['AddressVersionsNotMatch', `PROXY TCP4 [fd00::10] ${D} 1234 ${EP}\r\nmore data`],
    ['AddressVersionsNotMatch2', `PROXY TCP4 ${S} [1:2:3: 1234 4]:${EP}\r\nmore data`],
    ['TCP6 with IPv4 addresses', `PROXY TCP6 ${S} ${D} 1234 ${EP}\r\nmore data`],
    ['TCP4 with an IPv4-mapped address', `PROXY TCP4 ::ffff:${S} ${D} 1234 ${EP}\r\nmore data`],
    // Extra and missing spaces (Envoy splits on single spaces keeping empty tokens)
    ['double space', `PROXY TCP4  ${S} ${D} 1234 ${EP}\r\nmore data`],
    ['leading space', ` PROXY TCP4 ${S} ${D} 1234 ${EP}\r\nmore data`],
    ['tab separator', `PROXY\tTCP4 ${S} ${D} 1234 ${EP}\r\nmore data`],
    ['seven fields', `PROXY TCP4 ${S} ${D} 1234 ${EP} 7\r\nmore data`],
    ['"PROXY" in lower case', `proxy TCP4 ${S} ${D} 1234 ${EP}\r\nmore data`],
    ['no space after PROXY', `PROXYTCP4 ${S} ${D} 1234 ${EP}\r\nmore data`],
    // Missing CRLF
    ['bare LF', `PROXY TCP4 ${S} ${D} 1234 ${EP}\nmore data`],
    ['bare CR', `PROXY TCP4 ${S} ${D} 1234 ${EP}\rmore data`],
    ['CR CR LF', `PROXY TCP4 ${S} ${D} 1234 ${EP}\r\r\nmore data`],
    ['NUL in the line', `PROXY TCP4 ${S}\0 ${D} 1234 ${EP}\r\nmore data`],
    ['8-bit byte in the line', `PROXY TCP4 ${S} ${D} 1234 ${EP}\xa0\r\nmore data`],
    // V1TooLong: a valid start, then 256 spaces without CRLF; 108 bytes with UNKNOWN
    ['V1TooLong', `PROXY TCP4 ${S} ${D} 100 100` + ' '.repeat(256)],
    ['empty line', '\r\n'],
  ];
  for (const [name, line] of cases) await refused(t, name, [line]);
  // The same, a byte at a time (the parser refuses as soon as the bytes cannot be a header).
  await refused(t, 'BadPort a byte at a time', bytewise(`PROXY TCP4 ${S} ${D} 1234 abc\r\n`));
});

t.test('v1 trailing space before CRLF: refused (Envoy rtrims it)', async (t) => {
  // Deliberate difference: Envoy's parseV1Header rtrims the line, so "… 1234 5678 \r\n" parses.
  // haproxy's proxy-protocol.txt allows exactly one space between fields; l7warden keeps to it
  // (docs/hardening.md "Egress").
  await refused(t, 'trailing space', [v1(APP.ip, '127.0.0.80', 1234, EP).replace('\r\n', ' \r\n') + 'more data']);
  await refused(t, 'leading zero in the port', [`PROXY TCP4 ${APP.ip} 127.0.0.80 01234 ${EP}\r\nmore data`]);
  // Envoy's MAX_PROXY_PROTO_LEN_V1 is 108 (it accepts a 108-byte line); the spec's maximum,
  // kept here, is 107 bytes including the CRLF.
  await refused(t, '108-byte UNKNOWN line', [`PROXY UNKNOWN ${'x'.repeat(108 - 16)}\r\n`]);
});

t.test('InvalidSrcAddress / InvalidDstAddress: non-unicast addresses are refused', async (t) => {
  // InvalidSrcAddress: "PROXY TCP4 230.0.0.1 10.1.1.3 1234 5678"; InvalidDstAddress: "PROXY TCP4 10.1.1.2 0.0.0.0 1234 5678".
  // Envoy refuses any address that is not unicast (isUnicastAddress: not 0.0.0.0/::, not
  // multicast, not 255.255.255.255). Here a destination 0.0.0.0 (or ::) passed as "world"
  // and the dial went to this host's own loopback: with "0.0.0.0/0 except 127.0.0.0/8"
  // a PROXY header naming 0.0.0.0 reached 127.0.0.1.
  const cases: Array<[string, Buffer | string]> = [
    ['v1 multicast source', `PROXY TCP4 230.0.0.1 127.0.0.80 1234 ${EP}\r\nmore data`],
    ['v1 0.0.0.0 source', `PROXY TCP4 0.0.0.0 127.0.0.80 1234 ${EP}\r\nmore data`],
    ['v1 broadcast source', `PROXY TCP4 255.255.255.255 127.0.0.80 1234 ${EP}\r\nmore data`],
    ['v1 0.0.0.0 destination', `PROXY TCP4 ${APP.ip} 0.0.0.0 1234 ${EP}\r\nmore data`],
    ['v1 multicast destination', `PROXY TCP4 ${APP.ip} 224.0.0.1 1234 ${EP}\r\nmore data`],
    ['v1 :: destination', `PROXY TCP6 ::ffff:${APP.ip} :: 1234 ${EP}\r\nmore data`],
    ['v1 ::ffff:0.0.0.0 destination', `PROXY TCP6 ::ffff:${APP.ip} ::ffff:0.0.0.0 1234 ${EP}\r\nmore data`],
    ['v1 ff02::1 destination', `PROXY TCP6 ::ffff:${APP.ip} ff02::1 1234 ${EP}\r\nmore data`],
    ['v1 multicast IPv6 source', `PROXY TCP6 ff05::2 ::1 1234 ${EP}\r\nmore data`],
    ['v2 0.0.0.0 destination', Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '0.0.0.0', 1234, EP)), Buffer.from('more data')])],
    ['v2 multicast source', Buffer.concat([v2(0x21, 0x11, inet4('230.0.0.1', '127.0.0.80', 1234, EP)), Buffer.from('more data')])],
    ['v2 :: destination', Buffer.concat([v2(0x21, 0x21, inet6('::ffff:' + APP.ip, '::', 1234, EP)), Buffer.from('more data')])],
  ];
  for (const [name, bytes] of cases) await refused(t, name, [bytes]);
  t.equal(loCap!.connections, 0, '127.0.0.1 was never reached through 0.0.0.0');
  t.equal(lo6Cap!.connections > 0, true, '(::1 is reachable for app6, above)');
});

t.test('v2 signature, version, command, family and length errors are refused', async (t) => {
  const addr = inet4(APP.ip, '127.0.0.80', 1234, EP);
  const more = Buffer.from('more data');
  const cases: Array<[string, Buffer]> = [
    // V2UnsupportedAF: 21 41 (family 4)
    ['V2UnsupportedAF', Buffer.concat([v2(0x21, 0x41, addr), more])],
    // V2NotLocalOrOnBehalf: 23 1f
    ['V2NotLocalOrOnBehalf', Buffer.concat([v2(0x23, 0x1f, addr), more])],
    // V2BadCommand: 29 32, length 0x14
    ['V2BadCommand', Buffer.concat([v2(0x29, 0x32, Buffer.alloc(20)), more])],
    // V2WrongVersion: 21 93 (Envoy's comment says version; byte 13 is the family: 9)
    ['V2WrongVersion (family 9)', Buffer.concat([v2(0x21, 0x93, Buffer.alloc(20)), more])],
    ['version 1 in a v2 header', Buffer.concat([v2(0x11, 0x11, addr), more])],
    ['version 3', Buffer.concat([v2(0x31, 0x11, addr), more])],
    // V2AF_UNIX: 21 32 (UNIX, DGRAM), length 0x14
    ['V2AF_UNIX (UNIX DGRAM, short)', Buffer.concat([v2(0x21, 0x32, Buffer.alloc(20)), more])],
    // V2ShortV4: 21 21 (INET6) with length 4; V2ShortAddrV4: 21 11 with length 11
    ['V2ShortV4', Buffer.concat([v2(0x21, 0x21, Buffer.from([0x00, 0x08, 0x00, 0x02])), more])],
    ['V2ShortAddrV4', Buffer.concat([v2(0x21, 0x11, addr.subarray(0, 11)), addr.subarray(11), more])],
    // V2ShortV6: 21 22 length 0x14; V2ShortAddrV6: 21 22 length 0x23
    ['V2ShortV6', Buffer.concat([v2(0x21, 0x22, Buffer.alloc(20)), more])],
    ['V2ShortAddrV6', Buffer.concat([v2(0x21, 0x21, inet6('::ffff:' + APP.ip, '::1', 1, EP).subarray(0, 35)), more])],
    ['INET + transport UNSPEC', Buffer.concat([v2(0x21, 0x10, addr), more])],
    ['INET + transport DGRAM', Buffer.concat([v2(0x21, 0x12, addr), more])],
    ['transport 3', Buffer.concat([v2(0x21, 0x13, addr), more])],
    ['signature with one byte changed', Buffer.concat([Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0b, 0x21, 0x11, 0x00, 0x0c]), addr, more])],
    // V2WrongTLVLength: length 16, TLV says 2 bytes, 1 follows
    ['V2WrongTLVLength', Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 1234, EP, Buffer.from([0x00, 0x00, 0x02, 0xff]))), more])],
    // V2IncompleteTLV: length 17 (12 + 5), two 4-byte TLVs follow: the second overruns
    ['V2IncompleteTLV', Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 1234, EP, Buffer.from([0x00, 0x00, 0x01, 0xff, 0x01]))), Buffer.from([0x00, 0x01, 0xff]), more])],
    ['TLV header cut (2 bytes left)', Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 1234, EP, Buffer.from([0x02, 0x00]))), more])],
  ];
  for (const [name, bytes] of cases) await refused(t, name, [bytes]);
});

t.test('V2ParseExtensionsLargeThanInitMaxReadBytes: a 64 KiB header is refused (2,048-byte cap)', async (t) => {
  // Deliberate difference: Envoy reads up to 16 + 65,535 bytes (one 65,520-byte TLV) before
  // deciding; l7warden caps a v2 header at 2,048 bytes (DEFAULT_V2_MAX_BYTES, room for the AWS,
  // GCP and Azure TLVs) and refuses as soon as the declared length says more.
  const big = Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 1234, EP), 0xffff)]);
  await refused(t, 'declared 65,535', [big, Buffer.concat([Buffer.from([0x02, 0xff, 0xf0]), Buffer.alloc(4000, 0x61)])]);
  const over = Buffer.concat([tlv(0x05, Buffer.alloc(2049 - 16 - 12 - 3))]);
  await refused(t, 'one byte over 2,048', [Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 1234, EP, over)), Buffer.from('x')])]);
  const fits = Buffer.concat([tlv(0x05, Buffer.alloc(2048 - 16 - 12 - 3))]);
  await spliced(t, 'exactly 2,048', [Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 65512, EP, fits)), Buffer.from('fit')])], okCap!, 'fit');
});

t.test('v2 PROXY with family UNSPEC or UNIX STREAM: accepted without addresses (Envoy refuses)', async (t) => {
  // Deliberate difference, kept: Envoy's lenV2Address refuses any family but INET/INET6
  // (V2AF_UNIX). haproxy's proxy-protocol.txt lets a receiver accept UNSPEC / UNIX "and use
  // the real connection endpoints"; l7warden then has no PROXY source (as for LOCAL) and
  // serves the connection as a forward proxy. test/listeners/proxy-protocol.test.ts pins it.
  for (const [name, hdr] of [
    ['UNSPEC', v2(0x21, 0x00, Buffer.alloc(0))],
    ['UNIX STREAM', v2(0x21, 0x31, Buffer.alloc(216))],
  ] as const) {
    const before = connections();
    const r = await send(TP, [Buffer.concat([hdr, Buffer.from('more data\r\n\r\n')])], { until: /\r\n\r\n[\s\S]*\r\n$/ });
    t.match(r.data, /^HTTP\/1\.1 400 /, `${name}: the rest is served as HTTP`);
    t.same(connections(), before, `${name}: nothing dialled`);
  }
});

t.test('no header, a partial header, a closed or silent client: nothing dialled', async (t) => {
  // AllowTinyNoProxyProtocol & co: allow_requests_without_proxy_protocol does not exist here.
  await refused(t, 'no header ("data")', ['data']);
  await refused(t, 'no header (HTTP request)', ['GET / HTTP/1.1\r\nHost: x\r\n\r\n']);
  // Truncated / Closed: the client closes inside the header.
  const before = connections();
  const tr = await send(TP, [`PROXY TCP4 ${APP.ip} 127.0.0.80 1234 ${EP}`], { endAfter: true });
  t.equal(tr.data, '', 'Truncated: nothing back');
  const cl = await send(TP, ['PROXY TCP4 1.2.3'], { endAfter: true });
  t.equal(cl.data, '', 'Closed: nothing back');
  const v2cut = await send(TP, [v2(0x21, 0x11, inet4(APP.ip, '127.0.0.80', 1234, EP)).subarray(0, 20)], { endAfter: true });
  t.equal(v2cut.data, '', 'v2 cut: nothing back');
  // A partial header and then silence: closed at headersTimeoutMs (1.5 s here).
  const silent = await send(TP, [`PROXY TCP4 ${APP.ip} 127.0.0.80`], { timeoutMs: 6000 });
  t.ok(silent.closed, 'silent client: closed by the proxy');
  t.equal(silent.data, '');
  t.same(connections(), before, 'nothing dialled');
});

t.test('destination port 0: decided and reset, nothing dialled', async (t) => {
  // Envoy accepts port 0 in a header (it is a unicast address); nothing allows port 0 here.
  const before = connections();
  const r = await send(TP, [v1(APP.ip, '127.0.0.80', 65511, 0) + 'x']);
  t.equal(r.error, 'ECONNRESET');
  t.same(connections(), before);
  t.equal((await flowFrom(65511, '127.0.0.80'))?.verdict, 'DROPPED');
});

// ---------------------------------------------------------------------------------
// Ingress listener (the header's source is the client identity)

t.test('ingress: V1Basic / V2Basic source identities, InvalidSrcAddress refused', async (t) => {
  const GET = (p: string) => `GET ${p} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n`;
  const ok = await send(FRONT, [v1(APP.ip, '127.0.0.1', 40001, FRONT) + GET('/ingress-v1')], { timeoutMs: 3000 });
  t.match(ok.data, /^HTTP\/1\.1 200 /, 'client (app) allowed');
  const ok2 = await send(FRONT, [Buffer.concat([v2(0x21, 0x11, inet4(APP.ip, '127.0.0.1', 40002, FRONT)), Buffer.from(GET('/ingress-v2'))])], { timeoutMs: 3000 });
  t.match(ok2.data, /^HTTP\/1\.1 200 /);
  const no = await send(FRONT, [v1(PROBE.ip, '127.0.0.1', 40003, FRONT) + GET('/ingress-probe')], { timeoutMs: 3000 });
  t.match(no.data, /^HTTP\/1\.1 403 /, 'probe: denied by the header source');
  const frag = await send(FRONT, bytewise(v1(APP.ip, '127.0.0.1', 40004, FRONT) + GET('/ingress-bytes')), { timeoutMs: 8000, gapMs: 1 });
  t.match(frag.data, /^HTTP\/1\.1 200 /, 'header and request a byte at a time');
  for (const [name, bytes] of [
    // The paths are ones the world may GET: only the header's refusal keeps them out.
    ['multicast source', v1('230.0.0.1', '127.0.0.1', 40005, FRONT) + GET('/world/mc')],
    ['0.0.0.0 source', v1('0.0.0.0', '127.0.0.1', 40006, FRONT) + GET('/world/any')],
    ['broadcast source (v2)', Buffer.concat([v2(0x21, 0x11, inet4('255.255.255.255', '127.0.0.1', 40007, FRONT)), Buffer.from(GET('/world/bc'))])],
    ['BadPort', `PROXY TCP4 ${APP.ip} 127.0.0.1 40008 abc\r\n` + GET('/world/badport')],
  ] as const) {
    await refused(t, `ingress ${name}`, [bytes], FRONT);
  }
  // A world source may reach /world/* (the oracle for the refusals above is live).
  const world = await send(FRONT, [v1('198.51.100.7', '127.0.0.1', 40009, FRONT) + GET('/world/ok')], { timeoutMs: 3000 });
  t.match(world.data, /^HTTP\/1\.1 200 /, 'a unicast world source: allowed on /world/*');
  t.same(web!.requests.map((r) => r.url), ['/ingress-v1', '/ingress-v2', '/ingress-bytes', '/world/ok'], 'only the allowed requests reached web');
});
