/**
 * Differential pass against Envoy's authority handling for CONNECT and absolute-form
 * requests, through the running egress listener (forward proxy + CONNECT):
 *
 *  - envoyproxy/envoy test/common/http/utility_test.cc: `Url.ParsingFails`,
 *    `Url.ParsingTest`, `Url.ParsingForConnectTest` (what `hostAndPort()` is), and the
 *    `Utility::parseAuthority` rules (source/common/http/utility.cc: a port must be
 *    1–5 digits ≤ 65535, a bracketed host is an IP literal);
 *  - test/integration/integration_test.cc `IntegrationTest.ConnectWithNoBody`,
 *    `ConnectWithChunkedBody`, `ConnectWithTEChunked` (request-side validation of an
 *    HTTP/1.1 CONNECT), and tcp_tunneling_integration_test.cc
 *    `ConnectTerminationIntegrationTest.Basic` (bytes flow only after the answer).
 *
 * Oracles: a malformed authority gets 400 with nothing dialled and no DNS query sent
 * upstream; a well-formed one is decided on exactly the host and port it names, and
 * the capture on that address:port is the one that receives the tunnel / request.
 * Every client speaks from 127.0.0.10 (pod `app`) or 127.0.0.11 (`app2`).
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { EgressHarness, KUBE_DNS, capturesOnOnePort, type Capture } from '../helpers/egress-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const APP2 = { name: 'app2', labels: { app: 'client2' }, ip: '127.0.0.11' };

const [okCap, deniedCap, loCap, lo6Cap] = await capturesOnOnePort(['127.0.0.80', '127.0.0.81', '127.0.0.1', '::1'], { kind: 'echo' });
const [web] = await capturesOnOnePort(['127.0.0.82'], { kind: 'http' });
const caps: Capture[] = [okCap!, deniedCap!, loCap!, lo6Cap!, web!];
const EP = okCap!.port;
const WP = web!.port;

const policy = (dnsPort: number) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: authority-app }
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
  - toFQDNs: [{ matchName: allowed.test }, { matchName: zero.test }]
    toPorts: [{ ports: [{ port: "${EP}", protocol: TCP }] }]
  # "The internet, not this host": 0.0.0.0 / :: are in it, 127.0.0.1 / ::1 are not.
  - toCIDRSet: [{ cidr: 0.0.0.0/0, except: [127.0.0.0/8] }, { cidr: "::/0", except: ["::1/128"] }]
    toPorts: [{ ports: [{ port: "${EP}", protocol: TCP }] }]
  - toCIDR: [127.0.0.82/32]
    toPorts:
    - ports: [{ port: "${WP}", protocol: TCP }]
      rules: { http: [{ method: GET, path: "/ok.*" }] }
  - toFQDNs: [{ matchName: web.test }]
    toPorts:
    - ports: [{ port: "${WP}", protocol: TCP }]
      rules: { http: [{ method: GET, path: "/ok.*" }] }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: authority-app2 }
spec:
  endpointSelector: { matchLabels: { app: client2 } }
  egress:
  - toCIDR: ["::1/128"]
    toPorts: [{ ports: [{ port: "${EP}", protocol: TCP }] }]
`;

const h = await EgressHarness.start((dnsPort) => ({ pods: [KUBE_DNS, APP, APP2], policies: policy(dnsPort), limits: '{ headersTimeoutMs: 2000 }' }));
h.dns.setRecord('allowed.test', { a: ['127.0.0.80'] });
h.dns.setRecord('denied.test', { a: ['127.0.0.81'] });
h.dns.setRecord('web.test', { a: ['127.0.0.82'] });
h.dns.setRecord('zero.test', { a: ['0.0.0.0'] });
t.teardown(async () => {
  await h.close();
  await Promise.all(caps.map((c) => c.close()));
});
const PX = h.egressPort;

/** Send `bytes` from `from`; read until the proxy closes, `until` matches, or 4 s. */
function exchange(bytes: string, opts: { from?: string; until?: (d: string) => boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: PX, localAddress: opts.from ?? APP.ip, noDelay: true });
    const got: Buffer[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(Buffer.concat(got).toString('latin1'));
    };
    const timer = setTimeout(finish, 4000);
    s.on('data', (d: Buffer) => {
      got.push(d);
      if (opts.until?.(Buffer.concat(got).toString('latin1'))) finish();
    });
    s.on('error', () => {});
    s.on('close', finish);
    s.on('connect', () => s.write(bytes, 'latin1'));
  });
}

const status = (raw: string) => Number(/^HTTP\/1\.1 (\d{3}) /.exec(raw)?.[1] ?? 0);
const counts = () => caps.map((c) => c.connections);

/** CONNECT `target`: expect `want` (not 200) with nothing dialled and no DNS query. */
async function connectRefused(t: Test, target: string, want: number, why: string, extra = ''): Promise<void> {
  const before = counts();
  const q = h.dns.queries.length;
  const raw = await exchange(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${extra}\r\npayload`);
  t.equal(status(raw), want, `CONNECT ${JSON.stringify(target)}: ${want} (${why})`);
  t.same(counts(), before, `CONNECT ${JSON.stringify(target)}: nothing dialled`);
  if (want === 400) t.equal(h.dns.queries.length, q, `CONNECT ${JSON.stringify(target)}: no DNS query upstream`);
}

/** CONNECT `target` with early data: 200, then exactly `cap` receives the data. */
async function connectSpliced(t: Test, target: string, cap: Capture, from = APP.ip): Promise<void> {
  const before = cap.connections;
  const rawBefore = cap.raw.length;
  const others = caps.filter((c) => c !== cap).map((c) => c.connections);
  const raw = await exchange(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\npayload`, { from, until: (d) => d.includes('echo:') && d.replace(/^[\s\S]*?\r\n\r\n/, '').replace(/echo:/g, '').length >= 7 });
  t.equal(status(raw), 200, `CONNECT ${target}: 200`);
  t.equal(cap.connections, before + 1, `CONNECT ${target}: dialled ${cap.ip}`);
  t.same(caps.filter((c) => c !== cap).map((c) => c.connections), others, `CONNECT ${target}: nothing else dialled`);
  t.equal(Buffer.concat(cap.raw.slice(rawBefore)).toString('latin1'), 'payload', `CONNECT ${target}: the early data, after the decision`);
}

// ---------------------------------------------------------------------------------
// CONNECT

t.test('Url.ParsingForConnectTest valid forms: host:port, IPv4:port, [IPv6]:port', async (t) => {
  await connectSpliced(t, `127.0.0.80:${EP}`, okCap!);
  await connectSpliced(t, `allowed.test:${EP}`, okCap!);
  await connectSpliced(t, `[::1]:${EP}`, lo6Cap!, APP2.ip);
  await connectSpliced(t, `[0:0:0:0:0:0:0:1]:${EP}`, lo6Cap!, APP2.ip);
  // The decision is on the port named: app2 may reach ::1 on EP only.
  await connectRefused(t, `[::1]:${WP}`, 403, 'another port on an allowed address');
});

t.test('host names: case, a trailing dot; decided on the resolved address', async (t) => {
  // Envoy lowercases nothing in parseAuthority, but DNS names are case-insensitive and a
  // trailing dot is the same name: here both are the name the DNS policy and toFQDNs see.
  const q = h.dns.queriesFor('allowed.test').length;
  await connectSpliced(t, `ALLOWED.Test:${EP}`, okCap!);
  await connectSpliced(t, `allowed.test.:${EP}`, okCap!);
  t.ok(h.dns.queriesFor('allowed.test').length >= q, 'resolved as allowed.test');
  await connectRefused(t, `denied.test:${EP}`, 403, 'a name whose address the policy does not allow');
});

t.test('IPv4-mapped IPv6 literals are the IPv4 address', async (t) => {
  await connectSpliced(t, `[::ffff:127.0.0.80]:${EP}`, okCap!);
  await connectSpliced(t, `[::ffff:7f00:50]:${EP}`, okCap!);
  await connectRefused(t, `[::ffff:127.0.0.81]:${EP}`, 403, 'the mapped form of a denied address');
});

t.test('ports: missing, empty, zero, out of range, signed, padded, not decimal', async (t) => {
  // parseAuthority: no port ⇒ no port (CONNECT needs one); "host:" and out-of-range ports
  // are not ports; Url.ParsingFails: "http://1.2.3.4:65536/".
  for (const target of [`127.0.0.80`, `allowed.test`, `127.0.0.80:`, `127.0.0.80:0`, `127.0.0.80:65536`, `127.0.0.80:99999`, `127.0.0.80:-1`, `127.0.0.80:+${EP}`, `127.0.0.80:0x${EP.toString(16)}`, `127.0.0.80:${EP}.0`, `127.0.0.80:${EP}a`, `127.0.0.80:${EP}:${EP}`, `[::1]`, `[::1]:`, `:${EP}`]) {
    await connectRefused(t, target, 400, 'not host:port');
  }
  // Leading zeros: absl::SimpleAtoi (Envoy) reads "0<port>" as the port. Deliberate
  // difference: a port here is at most 5 digits (RFC 3986 allows more, nothing needs them),
  // and an ephemeral port is already 5 digits.
  await connectRefused(t, `127.0.0.80:0${EP}`, 400, 'six digits with a leading zero');
});

t.test('Url.ParsingForConnectTest / ParsingFails invalid IP literals', async (t) => {
  for (const target of [
    `[::12345678]:${EP}`,
    `[1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1:1]:${EP}`,
    `[1:1]:${EP}`,
    `[:::]:${EP}`,
    `[::1::]:${EP}`,
    `[notaddress]:${EP}`,
    `[1::z::2]:${EP}`,
    `[::1:${EP}`,
    `::1]:${EP}`,
    `[]:${EP}`,
  ]) {
    await connectRefused(t, target, 400, 'not an IP literal');
  }
  // Unbracketed IPv6 (Envoy's parseAuthority splits at the last colon: "::1" port EP would
  // be host "::1"): ambiguous, refused.
  await connectRefused(t, `::1:${EP}`, 400, 'IPv6 without brackets');
  // A bracketed IPv4 address: parseAuthority strips the brackets and takes 127.0.0.80 as an
  // IP. RFC 3986 §3.2.2 IP-literal is IPv6 or IPvFuture only; deliberate difference: 400.
  await connectRefused(t, `[127.0.0.80]:${EP}`, 400, 'brackets around an IPv4 address');
});

t.test('zone IDs, userinfo, percent-encoding, whitespace, a path', async (t) => {
  for (const target of [
    `[fe80::1%25lo]:${EP}`,
    `[fe80::1%lo]:${EP}`,
    `user@127.0.0.80:${EP}`,
    `user:pass@allowed.test:${EP}`,
    `@127.0.0.80:${EP}`,
    `allowed%2etest:${EP}`,
    `127.0.0.80%2e:${EP}`,
    `allowed.test:%35${EP}`,
    `127.0.0.80:${EP}/`,
    `127.0.0.80:${EP}/path`,
    `127.0.0.80:${EP}?q`,
    `127.0.0.80:${EP}#f`,
    `http://127.0.0.80:${EP}/`,
    `/127.0.0.80:${EP}`,
    `allowed_test:${EP}`.replace('_', '\\'),
  ]) {
    await connectRefused(t, target, 400, 'not a plain authority');
  }
  // Whitespace inside the request line is refused by the HTTP/1 parser (400 from clientError).
  for (const line of [`CONNECT 127.0.0.80 :${EP} HTTP/1.1`, `CONNECT 127.0.0.80:\t${EP} HTTP/1.1`, `CONNECT  HTTP/1.1`]) {
    const before = counts();
    const raw = await exchange(`${line}\r\nHost: x\r\n\r\n`);
    t.equal(status(raw), 400, `${JSON.stringify(line)}: 400`);
    t.same(counts(), before, `${JSON.stringify(line)}: nothing dialled`);
  }
});

t.test('unspecified addresses are not this host: 0.0.0.0, ::, and a DNS answer of 0.0.0.0', async (t) => {
  // Envoy never dials these in Cilium (the original destination is a real peer); a
  // connect() to 0.0.0.0 / :: reaches this host's loopback, which the policy excludes
  // ("0.0.0.0/0 except 127.0.0.0/8"). Refused as not allowed (403), nothing dialled.
  await connectRefused(t, `0.0.0.0:${EP}`, 403, '0.0.0.0');
  await connectRefused(t, `[::]:${EP}`, 403, '::');
  await connectRefused(t, `[::ffff:0.0.0.0]:${EP}`, 403, '::ffff:0.0.0.0');
  await connectRefused(t, `zero.test:${EP}`, 403, 'a toFQDNs name answered with 0.0.0.0');
  t.equal(loCap!.connections, 0, '127.0.0.1 never reached');
  // Multicast and broadcast are no TCP peers either.
  await connectRefused(t, `224.0.0.1:${EP}`, 403, 'multicast');
  await connectRefused(t, `255.255.255.255:${EP}`, 403, 'broadcast');
});

t.test('ConnectWithNoBody: early data is not forwarded before the decision; a denied CONNECT forwards none', async (t) => {
  // ConnectWithNoBody / ConnectTerminationIntegrationTest.Basic: "CONNECT host.com:80 HTTP/1.1\r\n\r\npayload".
  await connectSpliced(t, `127.0.0.80:${EP}`, okCap!);
  const before = deniedCap!.connections;
  const raw = await exchange(`CONNECT 127.0.0.81:${EP} HTTP/1.1\r\n\r\npayload`);
  t.equal(status(raw), 403);
  t.match(raw, /Access denied\r\n$/);
  t.equal(deniedCap!.connections, before, 'nothing dialled, the payload went nowhere');
});

t.test('ConnectWithTEChunked / ConnectWithChunkedBody: CONNECT with framing headers', async (t) => {
  // Envoy answers a CONNECT carrying Transfer-Encoding with 501 (400 with UHV): the request
  // would have a body and a tunnel at once. l7warden: 400, nothing dialled.
  await connectRefused(t, `127.0.0.80:${EP}`, 400, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked\r\n');
  await connectRefused(t, `127.0.0.80:${EP}`, 400, 'Content-Length: 7', 'Content-Length: 7\r\n');
  // Content-Length: 0 is no body: served.
  const before = okCap!.connections;
  const raw = await exchange(`CONNECT 127.0.0.80:${EP} HTTP/1.1\r\nContent-Length: 0\r\n\r\npayload`, { until: (d) => d.includes('echo:') });
  t.equal(status(raw), 200, 'Content-Length: 0: 200');
  t.equal(okCap!.connections, before + 1);
});

t.test('the CONNECT target decides, not the Host header', async (t) => {
  // HTTP/1.1 CONNECT's authority is the request target (RFC 9110 §9.3.6); Envoy's codec makes
  // it :authority. A Host naming another (denied) destination changes nothing.
  const before = deniedCap!.connections;
  const raw = await exchange(`CONNECT 127.0.0.80:${EP} HTTP/1.1\r\nHost: 127.0.0.81:${EP}\r\n\r\npayload`, { until: (d) => d.includes('echo:') });
  t.equal(status(raw), 200);
  t.equal(deniedCap!.connections, before, 'the Host was not dialled');
  const no = await exchange(`CONNECT 127.0.0.81:${EP} HTTP/1.1\r\nHost: 127.0.0.80:${EP}\r\n\r\n`);
  t.equal(status(no), 403, 'an allowed Host does not allow a denied target');
});

// ---------------------------------------------------------------------------------
// Absolute-form (forward proxy)

/** GET `url` with the Host lines given; returns the status and what the web capture got. */
async function forward(url: string, hostLines: string[], from = APP.ip): Promise<{ status: number; reached: string[] }> {
  const before = web!.requests.length;
  const raw = await exchange(`GET ${url} HTTP/1.1\r\n${hostLines.map((v) => `Host: ${v}\r\n`).join('')}Connection: close\r\n\r\n`, { from });
  return { status: status(raw), reached: web!.requests.slice(before).map((r) => `${r.headers.host} ${r.url}`) };
}

t.test('Url.ParsingTest forms: with and without port, ?, query, IPv4, IPv6, names', async (t) => {
  const A = `127.0.0.82:${WP}`;
  t.same(await forward(`http://${A}/ok`, [A]), { status: 200, reached: [`${A} /ok`] });
  t.same(await forward(`http://${A}?x`, [A]), { status: 403, reached: [] }, '"http://host:port?x" is path "/?x" (Url.ParsingTest), not /ok');
  t.same(await forward(`http://${A}/ok?query=param`, [A]), { status: 200, reached: [`${A} /ok?query=param`] });
  t.same(await forward(`http://web.test:${WP}/ok/name`, [`web.test:${WP}`]), { status: 200, reached: [`web.test:${WP} /ok/name`] });
  t.same(await forward(`http://WEB.TEST:${WP}/ok/upper`, [`web.test:${WP}`]), { status: 200, reached: [`web.test:${WP} /ok/upper`] }, 'host case-insensitive against Host');
  t.same(await forward(`http://[::ffff:127.0.0.82]:${WP}/ok/mapped`, [`[::ffff:127.0.0.82]:${WP}`]), { status: 200, reached: [`[::ffff:127.0.0.82]:${WP} /ok/mapped`] }, 'mapped IPv6 = the IPv4 address');
  t.same(await forward(`http://web.test.:${WP}/ok/dot`, [`web.test.:${WP}`]), { status: 200, reached: [`web.test.:${WP} /ok/dot`] }, 'a trailing dot is the same name (toFQDNs web.test)');
  t.same(await forward(`http://${A}/admin`, [A]), { status: 403, reached: [] }, 'path rule still applies');
  // No port: the scheme's default (80), which the policy does not allow: decided on 80, nothing sent.
  t.same(await forward(`http://127.0.0.82/ok`, ['127.0.0.82']), { status: 403, reached: [] }, 'default port 80 decided');
  t.same(await forward(`http://127.0.0.82:80/ok`, ['127.0.0.82']), { status: 403, reached: [] }, ':80 and Host without port are one authority');
});

t.test('absolute-form whose Host disagrees, duplicate Host, no Host: 400', async (t) => {
  const A = `127.0.0.82:${WP}`;
  const cases: Array<[string, string, string[]]> = [
    ['another host', `http://${A}/ok`, [`web.test:${WP}`]],
    ['another port', `http://${A}/ok`, [`127.0.0.82:${WP + 1}`]],
    ['Host without the port', `http://${A}/ok`, ['127.0.0.82']],
    ['Host with a trailing dot and port', `http://web.test:${WP}/ok`, [`web.test.:${WP}`]],
    ['duplicate Host', `http://${A}/ok`, [A, A]],
    ['two different Hosts', `http://${A}/ok`, [A, `127.0.0.81:${EP}`]],
    ['empty Host', `http://${A}/ok`, ['']],
    ['userinfo in the Host', `http://${A}/ok`, [`u@${A}`]],
  ];
  for (const [name, url, hosts] of cases) {
    const before = counts();
    const r = await forward(url, hosts);
    t.equal(r.status, 400, `${name}: 400`);
    t.same(r.reached, [], `${name}: nothing forwarded`);
    t.same(counts(), before, `${name}: nothing dialled`);
  }
  const before = counts();
  const raw = await exchange(`GET http://${A}/ok HTTP/1.1\r\nConnection: close\r\n\r\n`);
  t.equal(status(raw), 400, 'no Host on HTTP/1.1: 400');
  t.same(counts(), before);
});

t.test('absolute-form authorities that are malformed: 400, nothing dialled, no DNS query', async (t) => {
  const cases: string[] = [
    `u@127.0.0.82:${WP}`,
    `u:p@web.test:${WP}`,
    `127.0.0.82:`,
    `127.0.0.82:0`,
    `127.0.0.82:65536`,
    `127.0.0.82:+${WP}`,
    `127.0.0.82:0${WP}`,
    `[notaddress]:${WP}`,
    `[1::z::2]:${WP}`,
    `[1:1]:${WP}`,
    `[127.0.0.82]:${WP}`,
    `web%2etest:${WP}`,
    `[fe80::1%25lo]:${WP}`,
    `::ffff:127.0.0.82:${WP}`,
    `[::ffff:127.0.0.82]${WP}`,
  ];
  for (const a of cases) {
    const before = counts();
    const q = h.dns.queries.length;
    const r = await forward(`http://${a}/ok`, [a]);
    t.equal(r.status, 400, `http://${a}/ok: 400`);
    t.same(counts(), before, `http://${a}/ok: nothing dialled`);
    t.equal(h.dns.queries.length, q, `http://${a}/ok: no DNS query`);
  }
});

t.test('absolute-form to unspecified addresses: not this host', async (t) => {
  for (const a of [`0.0.0.0:${EP}`, `[::]:${EP}`, `zero.test:${EP}`]) {
    const r = await forward(`http://${a}/`, [a]);
    t.equal(r.status, 403, `http://${a}/: 403`);
  }
  t.equal(loCap!.connections, 0, '127.0.0.1 never reached');
  t.equal(lo6Cap!.connections > 0, true, '(::1 was reached above only by app2)');
});
