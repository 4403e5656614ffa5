/**
 * serverNames on a tunnel that is not intercepted: the egress listener answers the
 * CONNECT, reads the client's ClientHello without terminating it (as Envoy's TLS
 * inspector does in Cilium) and decides with its SNI. Allowed: the ClientHello and
 * everything after reach the destination untouched (curl verifies the destination's
 * own certificate end to end). Denied, or no SNI: the tunnel is reset and the
 * destination never sees a connection.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { once } from 'node:events';
import { join } from 'node:path';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { EgressHarness, KUBE_DNS, capturesOnOnePort, curl, startCapture } from '../helpers/egress-harness.js';
import { tempDir } from '../helpers/tls-pki.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const ca = makeCA({ commonName: 'destination CA' });
const leaf = makeLeaf(ca, { dns: ['sni.example.test', 'other.example.test', 'tls.example.test'] });
// serverNames with terminatingTLS: the SNI decides, then the tunnel is intercepted.
const interceptCA = makeCA({ commonName: 'intercept CA' });
const interceptLeaf = makeLeaf(interceptCA, { dns: ['tls.example.test'] });
const dir = tempDir(t, 'l7w-egress-sni-');
const caFile = join(dir, 'ca.pem');
await writeFile(caFile, ca.certPem);
const interceptCaFile = join(dir, 'intercept-ca.pem');
await writeFile(interceptCaFile, interceptCA.certPem);

const [dest] = await capturesOnOnePort(['127.0.0.80'], { kind: 'https', cert: leaf.certPem, key: leaf.keyPem });
const PORT = dest!.port;
const inspected = await startCapture('127.0.0.82', PORT, { kind: 'https', cert: leaf.certPem, key: leaf.keyPem });
let accepted = 0;
// Count TCP connections the destination accepts (a denied tunnel must make none).
const countAt = net.createServer((s) => {
  accepted++;
  s.destroy();
});
countAt.listen(PORT, '127.0.0.81');
await once(countAt, 'listening');

const h = await EgressHarness.start((dnsPort) => ({
  pods: [KUBE_DNS, APP],
  policies: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: sni }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules: { dns: [{ matchPattern: "*.example.test" }] }
  - toFQDNs: [{ matchName: sni.example.test }, { matchName: other.example.test }, { matchName: counted.example.test }]
    toPorts:
    - ports: [{ port: "${PORT}", protocol: TCP }]
      serverNames: [sni.example.test]
  - toFQDNs: [{ matchName: tls.example.test }]
    toPorts:
    - ports: [{ port: "${PORT}", protocol: TCP }]
      serverNames: [tls.example.test]
      terminatingTLS: { secret: { namespace: default, name: intercept } }
      originatingTLS: { secret: { namespace: default, name: dest-ca } }
      rules: { http: [{ method: GET, path: "/ok.*" }] }
`,
  secrets: {
    'default/intercept': { 'tls.crt': interceptLeaf.certPem, 'tls.key': interceptLeaf.keyPem },
    'default/dest-ca': { 'ca.crt': ca.certPem },
  },
  extraListeners: `    - name: tproxy
      mode: egress
      address: 127.0.0.1:0
      sourceIdentity: [proxyProtocol]
`,
}));
h.dns.setRecord('sni.example.test', { a: ['127.0.0.80'] });
h.dns.setRecord('other.example.test', { a: ['127.0.0.80'] });
h.dns.setRecord('counted.example.test', { a: ['127.0.0.81'] });
h.dns.setRecord('tls.example.test', { a: ['127.0.0.82'] });
t.teardown(async () => {
  await h.close();
  await dest!.close();
  await inspected.close();
  countAt.close();
});
const proxy = ['--interface', APP.ip, '-x', `http://127.0.0.1:${h.egressPort}`, '--cacert', caFile];

t.test('the allowed SNI: the tunnel reaches the destination, TLS end to end', async (t) => {
  const r = await curl([...proxy, `https://sni.example.test:${PORT}/hello`]);
  t.equal(r.connectStatus, 200, r.stderr);
  t.equal(r.status, 200, r.stderr);
  t.equal(r.body, 'upstream:GET /hello at 127.0.0.80');
  const rec = (await h.flowRecords()).filter((f) => f.l7?.http?.method === 'CONNECT' && f.l7.type === 'REQUEST').at(-1);
  t.equal(rec?.verdict, 'FORWARDED');
});

t.test('another SNI on an allowed IP: reset, nothing reaches the destination', async (t) => {
  const before = dest!.requests.length;
  const r = await curl([...proxy, `https://other.example.test:${PORT}/hello`]);
  t.equal(r.connectStatus, 200, 'the CONNECT is answered before the ClientHello can be read');
  t.not(r.code, 0, 'the TLS handshake fails');
  t.equal(r.status, 0);
  t.equal(dest!.requests.length, before);
  const rec = (await h.flowRecords()).filter((f) => f.l7?.http?.method === 'CONNECT' && f.l7.type === 'REQUEST').at(-1);
  t.equal(rec?.verdict, 'DROPPED');
  t.equal(rec?.drop_reason_desc, 'POLICY_DENIED');
});

t.test('no SNI, or no TLS at all: reset, and no connection is dialled', async (t) => {
  const before = accepted;
  // A TLS client that sends no SNI (connecting by IP).
  const noSni = await tunnel('counted.example.test');
  const c = tls.connect({ socket: noSni, rejectUnauthorized: false });
  const err = await new Promise<string>((resolve) => {
    c.once('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message));
    c.once('secureConnect', () => resolve('connected'));
  });
  t.not(err, 'connected');
  // Plain bytes instead of a ClientHello.
  const plain = await tunnel('counted.example.test');
  plain.write('GET / HTTP/1.1\r\nHost: counted.example.test\r\n\r\n');
  await Promise.race([new Promise((r) => plain.once('close', r)), new Promise((r) => setTimeout(r, 3000))]);
  t.ok(plain.destroyed, 'closed');
  t.equal(accepted, before, 'the destination never saw a connection');
});

t.test('serverNames with terminatingTLS: decided on the SNI, then intercepted and decided per request', async (t) => {
  const via = ['--interface', APP.ip, '-x', `http://127.0.0.1:${h.egressPort}`, '--cacert', interceptCaFile];
  const ok = await curl([...via, `https://tls.example.test:${PORT}/ok/1`]);
  t.equal(ok.connectStatus, 200, ok.stderr);
  t.equal(ok.status, 200, ok.stderr);
  t.equal(ok.body, 'upstream:GET /ok/1 at 127.0.0.82');
  const no = await curl([...via, `https://tls.example.test:${PORT}/nope`]);
  t.equal(no.status, 403, 'the L7 rules apply inside');
  t.same(inspected.requests.map((r) => r.url), ['/ok/1']);
});

t.test('transparent connections are decided on their SNI too', async (t) => {
  // The IP was learned by the CONNECTs above (resolved through the proxy's DNS path).
  const handshake = async (servername: string): Promise<string> => {
    const s = net.connect({ host: '127.0.0.1', port: h.port('tproxy') });
    s.on('error', () => {});
    await once(s, 'connect');
    s.write(`PROXY TCP4 ${APP.ip} 127.0.0.80 40001 ${PORT}\r\n`);
    const c = tls.connect({ socket: s, servername, ca: ca.certPem });
    const out = await new Promise<string>((resolve) => {
      c.once('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message));
      c.once('secureConnect', () => resolve('connected'));
    });
    c.destroy();
    return out;
  };
  t.equal(await handshake('sni.example.test'), 'connected', 'TLS end to end with the destination');
  t.not(await handshake('other.example.test'), 'connected', 'another SNI is reset');
});

/** A CONNECT tunnel from the app's address, answered 200 (the bytes after are ours). */
async function tunnel(host: string): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port: h.egressPort, localAddress: APP.ip });
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(`CONNECT ${host}:${PORT} HTTP/1.1\r\nHost: ${host}:${PORT}\r\n\r\n`);
  const [chunk] = (await once(s, 'data')) as [Buffer];
  if (!chunk.toString('latin1').startsWith('HTTP/1.1 200')) throw new Error(`CONNECT answered ${chunk.toString('latin1')}`);
  return s;
}
