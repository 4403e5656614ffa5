import t from 'tap';
import { createServer, connect, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import {
  parseSpiffeId, spiffeIdOf, identityForServiceAccount, identityFromClientCertificate, clientCertificateOf,
  resolveSourceIdentity, NAMESPACE_LABEL, SERVICE_ACCOUNT_LABEL, type ClientCertificateInput,
} from '../../src/identity/source.js';
import { serverOptions } from '../../src/tls/cert-store.js';
import { parseProxyHeader, type ProxyHeader } from '../../src/listeners/proxy-protocol.js';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { leafSecret, listenLocal } from '../helpers/tls-pki.js';
import { compileOk, pod } from '../helpers/policy-fixtures.js';

const POLICY = `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: empire-only, namespace: default }
spec:
  endpointSelector: { matchLabels: { class: deathstar } }
  ingress:
  - fromEndpoints: [ { matchLabels: { org: empire } } ]
    toPorts: [ { ports: [ { port: "80", protocol: TCP } ] } ]
`;

const snapshotP = compileOk({
  'policy.yaml': POLICY,
  'pods.yaml': [
    pod('deathstar', { org: 'empire', class: 'deathstar' }, '10.0.0.10', { sa: 'deathstar' }),
    pod('tiefighter', { org: 'empire', class: 'tiefighter' }, '10.0.0.11', { sa: 'tiefighter' }),
    pod('tiefighter-2', { org: 'empire', class: 'tiefighter' }, '10.0.0.12', { sa: 'tiefighter' }),
    // Same SA, different labels: two identities for one SPIFFE ID.
    pod('xwing', { org: 'alliance', class: 'xwing' }, '10.0.1.1', { ns: 'rebels', sa: 'pilot' }),
    pod('ywing', { org: 'alliance', class: 'ywing' }, '10.0.1.2', { ns: 'rebels', sa: 'pilot' }),
  ].join(''),
});

const ca = makeCA();
const rogueCA = makeCA({ commonName: 'Rogue' });
const server = makeLeaf(ca, { dns: ['deathstar.default.svc'], ips: ['127.0.0.1'] });
const tie = makeLeaf(ca, { uris: ['spiffe://cluster.local/ns/default/sa/tiefighter'] });
const rogueTie = makeLeaf(rogueCA, { uris: ['spiffe://cluster.local/ns/default/sa/tiefighter'] });
const twoUris = makeLeaf(ca, { uris: ['spiffe://cluster.local/ns/default/sa/tiefighter', 'spiffe://cluster.local/ns/default/sa/deathstar'] });
const dnsOnly = makeLeaf(ca, { dns: ['tiefighter.default.svc'] });

t.test('parseSpiffeId accepts only ns/<ns>/sa/<sa> with valid names', async (t) => {
  t.same(parseSpiffeId('spiffe://cluster.local/ns/default/sa/tiefighter'),
    { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'tiefighter', uri: 'spiffe://cluster.local/ns/default/sa/tiefighter' });
  t.ok(parseSpiffeId('spiffe://td/ns/a-b/sa/my.sa-1'));
  for (const bad of [
    'spiffe://cluster.local/ns/default/sa/', 'spiffe://cluster.local/ns/default/sa/x/', 'spiffe://cluster.local/ns/default/sa/x/y',
    'spiffe://cluster.local/ns/Default/sa/x', 'spiffe://cluster.local/ns/de%66ault/sa/x', 'spiffe://cluster.local/ns/../sa/x',
    'spiffe://cluster.local/sa/x/ns/default', 'spiffe:///ns/default/sa/x', 'spiffe://Cluster.local/ns/default/sa/x',
    'spiffe://cluster.local/ns/default/sa/x?y', 'spiffe://cluster.local/ns/default/sa/x#y', 'https://cluster.local/ns/default/sa/x',
    'spiffe://user@cluster.local/ns/default/sa/x', 'spiffe://cluster.local:8443/ns/default/sa/x', ' spiffe://cluster.local/ns/default/sa/x',
    `spiffe://cluster.local/ns/${'a'.repeat(64)}/sa/x`,
  ]) t.equal(parseSpiffeId(bad), undefined, bad);
});

t.test('spiffeIdOf: exactly one URI SAN', async (t) => {
  t.equal(spiffeIdOf(new X509Certificate(tie.certPem))?.serviceAccount, 'tiefighter');
  t.equal(spiffeIdOf({ raw: new X509Certificate(tie.certPem).raw })?.namespace, 'default');
  t.equal(spiffeIdOf({ subjectaltname: 'URI:spiffe://td/ns/a/sa/b' })?.serviceAccount, 'b');
  t.equal(spiffeIdOf(new X509Certificate(twoUris.certPem)), undefined, 'two URIs: ambiguous, no identity');
  t.equal(spiffeIdOf(new X509Certificate(dnsOnly.certPem)), undefined, 'no URI');
  // A URI that node had to quote (a comma inside) cannot smuggle a second entry.
  t.equal(spiffeIdOf({ subjectaltname: 'URI:"spiffe://td/ns/a/sa/b, URI:spiffe://td/ns/c/sa/d"' }), undefined);
});

t.test('service account → identity from the snapshot', async (t) => {
  const snap = await snapshotP;
  const tieEp = snap.endpointByName('default', 'tiefighter')!;
  const one = identityForServiceAccount(snap, 'default', 'tiefighter');
  t.equal(one.id, tieEp.identity.id, 'both tiefighter pods share one identity: use it');
  t.equal(one.lookup.get('k8s:org'), 'empire');
  t.equal(identityForServiceAccount(snap, 'default', 'tiefighter'), one, 'memoized');
  const ambiguous = identityForServiceAccount(snap, 'rebels', 'pilot');
  t.same(ambiguous.labels, [`${NAMESPACE_LABEL}=rebels`, `${SERVICE_ACCOUNT_LABEL}=pilot`].sort(), 'two identities: just ns + sa');
  t.not(ambiguous.id, snap.endpointByName('rebels', 'xwing')!.identity.id);
  const none = identityForServiceAccount(snap, 'default', 'ghost');
  t.same(none.labels, [`${NAMESPACE_LABEL}=default`, `${SERVICE_ACCOUNT_LABEL}=ghost`].sort(), 'no pods: just ns + sa');
  t.ok(none.id >= 256);
  t.equal(identityForServiceAccount(snap, 'default', 'ghost').id, none.id, 'stable number');
});

t.test('an unverified certificate never yields an identity', async (t) => {
  const snap = await snapshotP;
  const cert = new X509Certificate(tie.certPem);
  t.ok(identityFromClientCertificate(snap, { authorized: true, certificate: cert }));
  t.equal(identityFromClientCertificate(snap, { authorized: false, certificate: cert }), undefined);
  t.equal(identityFromClientCertificate(snap, { authorized: true, certificate: undefined }), undefined);
  t.equal(identityFromClientCertificate(snap, { authorized: true, certificate: cert }, { trustDomain: 'other.domain' }), undefined, 'trust domain pinned');
  t.ok(identityFromClientCertificate(snap, { authorized: true, certificate: cert }, { trustDomain: 'cluster.local' }));
  t.equal(identityFromClientCertificate(snap, { authorized: true, certificate: { raw: Buffer.from('junk') } }), undefined, 'unparsable: none');
});

t.test('resolveSourceIdentity walks the configured order', async (t) => {
  const snap = await snapshotP;
  const tieId = snap.endpointByName('default', 'tiefighter')!.identity;
  const xwingId = snap.endpointByName('rebels', 'xwing')!.identity;
  const proxied = (parseProxyHeader(Buffer.from('PROXY TCP4 10.0.1.1 10.0.0.10 5000 80\r\n')) as { header: ProxyHeader }).header;
  const local = (parseProxyHeader(Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), Buffer.from([0x20, 0x00, 0, 0])])) as { header: ProxyHeader }).header;
  const cert: ClientCertificateInput = { authorized: true, certificate: new X509Certificate(tie.certPem) };
  const all = ['proxyProtocol', 'clientCertificate', 'sourceAddress'] as const;

  let r = resolveSourceIdentity(all, { proxyHeader: proxied, clientCertificate: cert, remoteAddress: '10.0.0.12' }, snap);
  t.equal(r.method, 'proxyProtocol');
  t.equal(r.identity.id, xwingId.id);
  t.equal(r.address, '10.0.1.1');

  r = resolveSourceIdentity(['clientCertificate', 'proxyProtocol'], { proxyHeader: proxied, clientCertificate: cert, remoteAddress: '127.0.0.1' }, snap);
  t.equal(r.method, 'clientCertificate');
  t.equal(r.identity.id, tieId.id);
  t.equal(r.spiffe?.serviceAccount, 'tiefighter');
  t.equal(r.address, '10.0.1.1', 'flow address is still the PROXY source');

  // LOCAL header: skip to the next method.
  r = resolveSourceIdentity(all, { proxyHeader: local, remoteAddress: '10.0.1.2' }, snap);
  t.equal(r.method, 'sourceAddress');
  t.equal(r.identity.id, snap.endpointByName('rebels', 'ywing')!.identity.id);
  t.equal(r.address, '10.0.1.2');

  // Unverified certificate: skipped.
  r = resolveSourceIdentity(['clientCertificate', 'sourceAddress'], { clientCertificate: { ...cert, authorized: false }, remoteAddress: '10.0.0.11' }, snap);
  t.equal(r.method, 'sourceAddress');

  // Nothing yields: world.
  r = resolveSourceIdentity(['clientCertificate'], { remoteAddress: '10.0.0.11' }, snap);
  t.equal(r.method, 'none');
  t.equal(r.identity.id, 2);
  r = resolveSourceIdentity(['sourceAddress'], { remoteAddress: '203.0.113.9' }, snap);
  t.equal(r.identity.id, 2, 'unknown address is world');
  t.equal(r.method, 'sourceAddress');
});

t.test('end to end: real mTLS handshake → identity → policy decision', async (t) => {
  const snap = await snapshotP;
  const results: ReturnType<typeof resolveSourceIdentity>[] = [];
  const srv = createServer(serverOptions({ secret: 'default/deathstar', clientAuth: 'request' }, [leafSecret('default/deathstar', server)]), (sock: TLSSocket) => {
    sock.on('error', () => {});
    const r = resolveSourceIdentity(['clientCertificate', 'sourceAddress'], { clientCertificate: clientCertificateOf(sock), remoteAddress: sock.remoteAddress ?? '' }, snap);
    results.push(r);
    const deathstar = snap.endpointByName('default', 'deathstar')!;
    const v = snap.decide({ src: r.identity, dst: deathstar.identity, port: 80, protocol: 'TCP' });
    sock.end(`${r.method} ${r.identity.id} ${v.allowed ? 'ALLOWED' : 'DENIED'}`);
  });
  srv.on('tlsClientError', () => {});
  const port = await listenLocal(t, srv);
  const ask = (opts: object) => new Promise<string>((resolve, reject) => {
    const c = connect({ host: '127.0.0.1', port, ca: ca.certPem, ...opts });
    let d = '';
    c.on('data', (x) => { d += x; });
    c.on('end', () => resolve(d));
    c.on('error', reject);
  });
  const tieId = snap.endpointByName('default', 'tiefighter')!.identity.id;
  t.equal(await ask({ cert: tie.certPem, key: tie.keyPem }), `clientCertificate ${tieId} ALLOWED`, 'SPIFFE client cert verified and mapped');
  const rogue = await ask({ cert: rogueTie.certPem, key: rogueTie.keyPem });
  t.match(rogue, /^sourceAddress \d+ DENIED$/, 'same SPIFFE ID from an untrusted CA is ignored');
  t.notMatch(rogue, new RegExp(` ${tieId} `));
  t.match(await ask({}), /^sourceAddress \d+ DENIED$/, 'no certificate: source address');
  t.equal(results[0]?.spiffe?.uri, 'spiffe://cluster.local/ns/default/sa/tiefighter');
});
