/**
 * Domain fronting through an intercepted CONNECT tunnel whose rule has `serverNames`.
 *
 * The rule allows SNI `secure.example.test` only (with terminatingTLS, so each request
 * is decided too). `other.example.test` resolves to the same IP, which the FQDN rule
 * allows; the interception certificate is a wildcard `*.example.test` (what an
 * interception CA usually issues). The client sent `CONNECT other.example.test`, then a
 * ClientHello with SNI `secure.example.test`, then `Host: other.example.test`:
 *
 *  - the tunnel was decided on the SNI (allowed by serverNames);
 *  - each request was checked against the CONNECT name (other: equal) and the served
 *    certificate (the wildcard covers other), and decided with the SNI (allowed);
 *  - TLS was re-originated with SNI and verification for the CONNECT name.
 *
 * So the destination got a TLS connection for `other.example.test` and the request for
 * it, although the only serverNames allowed is `secure.example.test`. Cilium's network
 * filter hands the downstream SNI to the upstream connection (SNI and SAN to verify),
 * so under Cilium the name that serverNames matched is the name the destination sees.
 * Now a request inside an intercepted tunnel must name the client's SNI as well as the
 * CONNECT host (SECURITY.md §5: SNI, Host and the FQDN allow-list bind to one name):
 * otherwise 421, nothing sent.
 */
import t from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { once } from 'node:events';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { EgressHarness, KUBE_DNS, capturesOnOnePort } from '../helpers/egress-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const interceptCA = makeCA({ commonName: 'intercept CA' });
const wildcard = makeLeaf(interceptCA, { dns: ['*.example.test'] });
const upstreamCA = makeCA({ commonName: 'upstream CA' });
// The destination serves both names (a CDN, a shared ingress).
const destLeaf = makeLeaf(upstreamCA, { dns: ['secure.example.test', 'other.example.test'] });

const [dest] = await capturesOnOnePort(['127.0.0.90'], { kind: 'https', cert: destLeaf.certPem, key: destLeaf.keyPem });
const PORT = dest!.port;

const h = await EgressHarness.start((dnsPort) => ({
  pods: [KUBE_DNS, APP],
  policies: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: fronting }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules: { dns: [{ matchPattern: "*.example.test" }] }
  - toFQDNs: [{ matchName: secure.example.test }, { matchName: other.example.test }]
    toPorts:
    - ports: [{ port: "${PORT}", protocol: TCP }]
      serverNames: [secure.example.test]
      terminatingTLS: { secret: { namespace: default, name: intercept } }
      originatingTLS: { secret: { namespace: default, name: upstream-ca } }
      rules: { http: [{ method: GET, path: "/ok.*" }] }
`,
  secrets: {
    'default/intercept': { 'tls.crt': wildcard.certPem, 'tls.key': wildcard.keyPem },
    'default/upstream-ca': { 'ca.crt': upstreamCA.certPem },
  },
}));
h.dns.setRecord('secure.example.test', { a: ['127.0.0.90'] });
h.dns.setRecord('other.example.test', { a: ['127.0.0.90'] });
t.teardown(async () => {
  await h.close();
  await dest!.close();
});

/** CONNECT `connectHost`, TLS with `sni` (trusting the interception CA), one GET with `Host: hostHeader`. */
async function fronted(connectHost: string, sni: string, hostHeader: string): Promise<string> {
  const s = net.connect({ host: '127.0.0.1', port: h.egressPort, localAddress: APP.ip });
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(`CONNECT ${connectHost}:${PORT} HTTP/1.1\r\nHost: ${connectHost}:${PORT}\r\n\r\n`);
  const [answer] = (await once(s, 'data')) as [Buffer];
  if (!answer.toString('latin1').startsWith('HTTP/1.1 200')) return answer.toString('latin1');
  return new Promise((resolve) => {
    const c = tls.connect({ socket: s, servername: sni, ca: interceptCA.certPem });
    const out: Buffer[] = [];
    const timer = setTimeout(() => c.destroy(), 5000);
    c.on('error', (e) => out.push(Buffer.from(`ERROR ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    c.on('data', (d: Buffer) => out.push(d));
    c.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(out).toString('latin1'));
    });
    c.once('secureConnect', () => c.write(`GET /ok HTTP/1.1\r\nHost: ${hostHeader}:${PORT}\r\nConnection: close\r\n\r\n`));
  });
}

t.test('the allowed name end to end still works', async (t) => {
  const before = dest!.requests.length;
  const r = await fronted('secure.example.test', 'secure.example.test', 'secure.example.test');
  t.match(r, /^HTTP\/1\.1 200/);
  t.match(r, /upstream:GET \/ok at 127\.0\.0\.90/);
  t.equal(dest!.requests.length, before + 1);
});

t.test('CONNECT another name on the same IP with the allowed SNI: 421, nothing sent', async (t) => {
  const before = dest!.requests.length;
  const r = await fronted('other.example.test', 'secure.example.test', 'other.example.test');
  t.match(r, /^HTTP\/1\.1 421/, 'misdirected: the SNI names another host than the request');
  t.equal(dest!.requests.length, before, 'the destination got no request for other.example.test');
});

t.test('the same with Host naming the SNI: the CONNECT name still decides (421)', async (t) => {
  const before = dest!.requests.length;
  const r = await fronted('other.example.test', 'secure.example.test', 'secure.example.test');
  t.match(r, /^HTTP\/1\.1 421/);
  t.equal(dest!.requests.length, before);
});

t.test('an SNI with a trailing dot or in upper case names the same host', async (t) => {
  const before = dest!.requests.length;
  const a = await fronted('secure.example.test', 'secure.example.test.', 'secure.example.test');
  t.match(a, /^HTTP\/1\.1 200/);
  const b = await fronted('secure.example.test', 'SECURE.Example.TEST', 'secure.example.test');
  t.match(b, /^HTTP\/1\.1 200/);
  t.equal(dest!.requests.length, before + 2);
});
