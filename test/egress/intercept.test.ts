/**
 * TLS interception on the egress listener: an egress rule with terminatingTLS (and
 * originatingTLS) makes a CONNECT tunnel inspected — the client's TLS terminated
 * with the rule's certificate, each HTTP request decided with the L7 rules, TLS
 * re-originated to the decided IP and verified (CA from originatingTLS, else the
 * listener's upstreamCA; name = the CONNECT host). Certificates are made with
 * makeCA/makeLeaf into a temp dir; curl is the client.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { join } from 'node:path';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { EgressHarness, KUBE_DNS, capturesOnOnePort, curl, startCapture, type Capture } from '../helpers/egress-harness.js';
import { tempDir } from '../helpers/tls-pki.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };

const interceptCA = makeCA({ commonName: 'egress intercept CA' });
const interceptLeaf = makeLeaf(interceptCA, { dns: ['secure.example.test', 'bad.example.test', 'wrong.example.test', 'listener.example.test'] });
const upstreamCA = makeCA({ commonName: 'upstream CA' });
const rogueCA = makeCA({ commonName: 'rogue CA' });
const secureLeaf = makeLeaf(upstreamCA, { dns: ['secure.example.test'] });
const listenerLeaf = makeLeaf(upstreamCA, { dns: ['listener.example.test'] });
const rogueLeaf = makeLeaf(rogueCA, { dns: ['bad.example.test'] });
const wrongLeaf = makeLeaf(upstreamCA, { dns: ['somewhere-else.test'] });

const dir = tempDir(t, 'l7w-egress-certs-');
const caFile = join(dir, 'intercept-ca.pem');
await writeFile(caFile, interceptCA.certPem);

const https = (leaf: { certPem: string; keyPem: string }) => ({ kind: 'https' as const, cert: leaf.certPem, key: leaf.keyPem });
const [secure] = await capturesOnOnePort(['127.0.0.70'], https(secureLeaf));
const SP = secure!.port;
const rogue = await startCapture('127.0.0.71', SP, https(rogueLeaf));
const wrong = await startCapture('127.0.0.72', SP, https(wrongLeaf));
const viaListenerCA = await startCapture('127.0.0.73', SP, https(listenerLeaf));
const all: Capture[] = [secure!, rogue, wrong, viaListenerCA];

const policy = (dnsPort: number) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: intercept }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules: { dns: [{ matchPattern: "*.example.test" }] }
  - toFQDNs: [{ matchName: secure.example.test }, { matchName: bad.example.test }, { matchName: wrong.example.test }]
    toPorts:
    - ports: [{ port: "${SP}", protocol: TCP }]
      terminatingTLS: { secret: { namespace: default, name: intercept } }
      originatingTLS: { secret: { namespace: default, name: upstream-ca } }
      rules:
        http:
        - { method: GET, path: "/ok.*" }
  - toFQDNs: [{ matchName: listener.example.test }]
    toPorts:
    - ports: [{ port: "${SP}", protocol: TCP }]
      terminatingTLS: { secret: { namespace: default, name: intercept } }
      rules:
        http:
        - { method: GET, path: "/ok.*" }
`;

const h = await EgressHarness.start((dnsPort) => ({
  pods: [KUBE_DNS, APP],
  policies: policy(dnsPort),
  egressExtra: '      upstreamCA: default/listener-ca\n',
  extraListeners: '    - name: tproxy\n      mode: egress\n      address: 127.0.0.1:0\n      sourceIdentity: [proxyProtocol]\n',
  secrets: {
    'default/intercept': { 'tls.crt': interceptLeaf.certPem, 'tls.key': interceptLeaf.keyPem },
    'default/upstream-ca': { 'ca.crt': upstreamCA.certPem },
    'default/listener-ca': { 'ca.crt': upstreamCA.certPem },
  },
}));
h.dns.setRecord('secure.example.test', { a: ['127.0.0.70'] });
h.dns.setRecord('bad.example.test', { a: ['127.0.0.71'] });
h.dns.setRecord('wrong.example.test', { a: ['127.0.0.72'] });
h.dns.setRecord('listener.example.test', { a: ['127.0.0.73'] });
t.teardown(async () => {
  await h.close();
  await Promise.all(all.map((c) => c.close()));
});
const base = ['--interface', APP.ip, '-x', `http://127.0.0.1:${h.egressPort}`, '--cacert', caFile];

t.test('intercepted: allowed request re-originated with verified TLS to the decided IP', async (t) => {
  const r = await curl([...base, `https://secure.example.test:${SP}/ok/1`]);
  t.equal(r.connectStatus, 200, r.stderr);
  t.equal(r.status, 200);
  t.equal(r.body, 'upstream:GET /ok/1 at 127.0.0.70');
  t.equal(secure!.requests.length, 1);
  t.equal(secure!.requests[0]!.headers.host, `secure.example.test:${SP}`);
});

t.test('intercepted: L7 rules apply inside the tunnel', async (t) => {
  const before = secure!.requests.length;
  const r = await curl([...base, `https://secure.example.test:${SP}/admin`]);
  t.equal(r.connectStatus, 200);
  t.equal(r.status, 403);
  t.equal(r.body, 'Access denied\r\n');
  const p = await curl([...base, '-X', 'POST', '-d', 'a', `https://secure.example.test:${SP}/ok`]);
  t.equal(p.status, 403);
  t.equal(secure!.requests.length, before, 'denied requests never reached the destination');
});

t.test('intercepted: several requests on one tunnel are each decided', async (t) => {
  const before = secure!.requests.length;
  const r = await curl([...base, `https://secure.example.test:${SP}/ok/a`, `https://secure.example.test:${SP}/nope`, `https://secure.example.test:${SP}/ok/b`]);
  t.match(r.body, /upstream:GET \/ok\/a at 127\.0\.0\.70/);
  t.match(r.body, /Access denied/);
  t.match(r.body, /upstream:GET \/ok\/b at 127\.0\.0\.70/);
  t.same(secure!.requests.slice(before).map((q) => q.url), ['/ok/a', '/ok/b']);
});

t.test('the client is served the interception certificate', async (t) => {
  const r = await curl(['--interface', APP.ip, '-x', `http://127.0.0.1:${h.egressPort}`, `https://secure.example.test:${SP}/ok`]);
  t.equal(r.code, 60, 'curl refuses a certificate it does not trust (exit 60)');
});

t.test('re-originated TLS is verified: an untrusted destination gets 502 and no request', async (t) => {
  const r = await curl([...base, `https://bad.example.test:${SP}/ok`]);
  t.equal(r.connectStatus, 200);
  t.equal(r.status, 502);
  t.equal(rogue.requests.length, 0);
  const w = await curl([...base, `https://wrong.example.test:${SP}/ok`]);
  t.equal(w.status, 502, 'a certificate for another name');
  t.equal(wrong.requests.length, 0);
});

t.test('without originatingTLS the listener upstreamCA verifies', async (t) => {
  const r = await curl([...base, `https://listener.example.test:${SP}/ok/l`]);
  t.equal(r.status, 200, r.stderr);
  t.equal(r.body, 'upstream:GET /ok/l at 127.0.0.73');
});

t.test('a request inside the tunnel must name the CONNECT host', async (t) => {
  const before = secure!.requests.length;
  const r = await curl([...base, '-H', 'Host: listener.example.test', `https://secure.example.test:${SP}/ok`]);
  t.equal(r.status, 421);
  t.equal(secure!.requests.length, before);
  t.equal(viaListenerCA.requests.filter((q) => q.url === '/ok').length, 0);
});

t.test('flows: the requests inside the tunnel are L7 EGRESS records with https URLs', async (t) => {
  const recs = await h.flowRecords();
  const inner = recs.filter((f) => f.l7?.http && f.l7.type === 'REQUEST' && f.l7.http.url.startsWith('https://secure.example.test'));
  t.ok(inner.length >= 4);
  t.ok(inner.every((f) => f.traffic_direction === 'EGRESS'));
  const ok = inner.find((f) => f.l7.http.url === `https://secure.example.test:${SP}/ok/1`);
  t.equal(ok?.verdict, 'FORWARDED');
  t.equal(ok?.Type, 'L7');
  t.same(ok?.event_type, { type: 129 });
  t.equal(ok?.IP.source, APP.ip);
  t.equal(ok?.IP.destination, '127.0.0.70');
  t.equal(ok?.source.pod_name, 'app');
  t.ok(ok?.destination.labels.includes('fqdn:secure.example.test'));
  t.same(ok?.destination_names, ['secure.example.test']);
  t.same(ok?.egress_allowed_by?.map((p: { name: string }) => p.name), ['intercept']);
  t.equal(ok?.egress_denied_by, undefined);
  t.equal(ok?.drop_reason, undefined);
  const admin = inner.find((f) => f.l7.http.url === `https://secure.example.test:${SP}/admin`);
  t.equal(admin?.verdict, 'DROPPED');
  t.equal(admin?.Type, 'L7');
  t.equal(admin?.drop_reason, 133);
  t.same(admin?.egress_denied_by?.map((p: { name: string }) => p.name), ['intercept']);
  t.equal(admin?.egress_allowed_by, undefined);
  t.same(admin?.destination_names, ['secure.example.test']);
  // The CONNECT that opened the tunnel: L7 (the rule has HTTP rules), 200 on its reply.
  const connect = recs.find((f) => f.l7?.type === 'REQUEST' && f.l7.http?.method === 'CONNECT' && f.l7.http.url === `secure.example.test:${SP}`);
  t.equal(connect?.verdict, 'FORWARDED');
  t.equal(connect?.Type, 'L7');
  t.equal(connect?.traffic_direction, 'EGRESS');
  t.same(connect?.egress_allowed_by?.map((p: { name: string }) => p.name), ['intercept']);
  t.same(connect?.destination_names, ['secure.example.test']);
  const reply = recs.find((f) => f.l7?.type === 'RESPONSE' && f.l7.http?.method === 'CONNECT' && f.l7.http.url === `secure.example.test:${SP}` && f.l7.http.code === 200);
  t.equal(reply?.is_reply, true);
  t.same(reply?.source_names, ['secure.example.test']);
});

/** A transparent client: PROXY v1 header, then TLS (trusting the interception CA), then one request. */
function transparentTls(port: number, dst: string, dport: number, servername: string, path: string, delayMs = 0): Promise<string> {
  return new Promise((resolve) => {
    const raw = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => raw.destroy(), 5000);
    raw.on('error', () => {});
    raw.once('connect', () => {
      raw.write(`PROXY TCP4 ${APP.ip} ${dst} 40100 ${dport}\r\n`);
      // delayMs 0: the ClientHello usually shares a segment with the PROXY header.
      if (delayMs > 0) setTimeout(go, delayMs);
      else go();
      function go() {
      const s = tls.connect({ socket: raw, servername, ca: interceptCA.certPem, ALPNProtocols: ['http/1.1'] });
      s.on('error', (e) => chunks.push(Buffer.from(`ERROR ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('close', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks).toString('latin1'));
      });
      s.once('secureConnect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: ${servername}:${dport}\r\nConnection: close\r\n\r\n`));
      }
    });
  });
}

t.test('transparent mode intercepts too (verified against the client SNI)', async (t) => {
  // The IP carries its fqdn label after the lookups above.
  const before = secure!.requests.length;
  const ok = await transparentTls(h.port('tproxy'), '127.0.0.70', SP, 'secure.example.test', '/ok/transparent');
  t.match(ok, /^HTTP\/1\.1 200/);
  t.match(ok, /upstream:GET \/ok\/transparent at 127\.0\.0\.70/);
  const no = await transparentTls(h.port('tproxy'), '127.0.0.70', SP, 'secure.example.test', '/admin');
  t.match(no, /^HTTP\/1\.1 403/);
  const late = await transparentTls(h.port('tproxy'), '127.0.0.70', SP, 'secure.example.test', '/ok/late', 100);
  t.match(late, /upstream:GET \/ok\/late/, 'ClientHello in a later segment');
  t.same(secure!.requests.slice(before).map((q) => q.url), ['/ok/transparent', '/ok/late']);
});
