import t from 'tap';
import { connect, createServer, type Server } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import {
  ListenerCertificates, serverOptions, coversHost, buildCertTable, selectCertificate, sanEntries, authorityHost,
} from '../../src/tls/cert-store.js';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { leafSecret, secretDoc, rejectsWarden, listenLocal } from '../helpers/tls-pki.js';

const ca = makeCA();
const deathstar = makeLeaf(ca, { dns: ['deathstar.default.svc', 'localhost'], ips: ['127.0.0.1'] });
const wild = makeLeaf(ca, { dns: ['*.empire.test'] });

t.test('startup errors name the secret and never echo key material', async (t) => {
  const other = makeLeaf(ca, { dns: ['x.test'] });
  const expired = makeLeaf(ca, { dns: ['old.test'], notBefore: new Date('2020-01-01'), notAfter: new Date('2020-02-01') });
  const future = makeLeaf(ca, { dns: ['new.test'], notBefore: new Date(Date.now() + 86400_000), notAfter: new Date(Date.now() + 10 * 86400_000) });
  const cases: [string, Parameters<typeof buildCertTable>[0], Parameters<typeof buildCertTable>[1], RegExp][] = [
    ['missing secret', { secret: 'default/nope' }, [], /secret default\/nope: not found/],
    ['malformed ref', { secret: 'nope' }, [], /secret nope: reference must be/],
    ['missing SNI secret', { secret: 'default/d', sni: [{ secret: 'default/gone' }] }, [leafSecret('default/d', deathstar)], /default\/gone: not found/],
    ['missing key', { secret: 'default/d' }, [secretDoc('default/d', { 'tls.crt': deathstar.certPem })], /default\/d: tls\.key is missing/],
    ['missing cert', { secret: 'default/d' }, [secretDoc('default/d', { 'tls.key': deathstar.keyPem })], /default\/d: tls\.crt is missing/],
    ['garbage cert', { secret: 'default/d' }, [secretDoc('default/d', { 'tls.crt': 'hello', 'tls.key': deathstar.keyPem })], /tls\.crt is not a valid PEM/],
    ['garbage key', { secret: 'default/d' }, [secretDoc('default/d', { 'tls.crt': deathstar.certPem, 'tls.key': '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' })], /tls\.key is not a valid PEM private key/],
    ['key mismatch', { secret: 'default/d' }, [secretDoc('default/d', { 'tls.crt': deathstar.certPem, 'tls.key': other.keyPem })], /does not match/],
    ['expired', { secret: 'default/d' }, [leafSecret('default/d', expired)], /default\/d: certificate expired/],
    ['not yet valid', { secret: 'default/d' }, [leafSecret('default/d', future)], /not valid before/],
    ['client auth without ca.crt', { secret: 'default/d', clientAuth: 'require' }, [secretDoc('default/d', { 'tls.crt': deathstar.certPem, 'tls.key': deathstar.keyPem })], /default\/d: ca\.crt is missing/],
    ['clientCA secret missing', { secret: 'default/d', clientAuth: 'request', clientCA: 'default/ca' }, [leafSecret('default/d', deathstar)], /default\/ca: not found/],
  ];
  for (const [name, tls, secrets, re] of cases) {
    await rejectsWarden(t, () => buildCertTable(tls, secrets), 'L7W_ERR_TLS', re, name);
    try { buildCertTable(tls, secrets); } catch (e) {
      t.notMatch((e as Error).message, /BEGIN|PRIVATE KEY/, `${name}: no key material in message`);
    }
  }
  // A Map of secrets works as well as an array.
  const m = new Map([['default/d', leafSecret('default/d', deathstar)]]);
  t.equal(buildCertTable({ secret: 'default/d' }, m).defaultCert.secret, 'default/d');
});

t.test('selectCertificate: exact before wildcard, one label, trailing dot', async (t) => {
  const exactInWild = makeLeaf(ca, { dns: ['tie.empire.test'] });
  const table = buildCertTable({ secret: 'default/d', sni: [{ secret: 'default/w' }, { secret: 'default/e' }] },
    [leafSecret('default/d', deathstar), leafSecret('default/w', wild), leafSecret('default/e', exactInWild)]);
  t.equal(selectCertificate(table, 'tie.empire.test').secret, 'default/e', 'exact beats an earlier wildcard');
  t.equal(selectCertificate(table, 'xwing.empire.test.').secret, 'default/w', 'trailing dot');
  t.equal(selectCertificate(table, '.empire.test').secret, 'default/d');
  t.equal(selectCertificate(table, '').secret, 'default/d');
  t.equal(selectCertificate(table, undefined).secret, 'default/d');
  t.same(table.all.map((c) => c.secret), ['default/d', 'default/w', 'default/e']);
});

t.test('coversHost decides 421', async (t) => {
  const d = new X509Certificate(deathstar.certPem);
  const w = new X509Certificate(wild.certPem);
  const yes: [X509Certificate, string][] = [
    [d, 'deathstar.default.svc'], [d, 'deathstar.default.svc:8443'], [d, 'DEATHSTAR.Default.SVC'], [d, 'localhost.'],
    [d, '127.0.0.1'], [d, '127.0.0.1:443'], [w, 'tie.empire.test'], [w, 'TIE.EMPIRE.TEST:1'],
  ];
  const no: [X509Certificate, string][] = [
    [d, 'evil.test'], [d, 'deathstar.default'], [d, '127.0.0.2'], [d, '[::1]'], [d, ''], [d, ':443'],
    [d, 'localhost:abc'], [d, 'local host'], [d, 'localhost\u0000.evil.test'], [d, 'localhost:443:1'],
    [w, 'empire.test'], [w, 'a.b.empire.test'], [w, '*.empire.test'], [w, '.empire.test'],
  ];
  for (const [c, h] of yes) t.ok(coversHost(c, h), `covers ${JSON.stringify(h)}`);
  for (const [c, h] of no) t.notOk(coversHost(c, h), `does not cover ${JSON.stringify(h)}`);
  t.ok(coversHost({ raw: d.raw }, 'localhost'), 'accepts getCertificate() shape');
  t.notOk(coversHost(undefined, 'localhost'), 'no certificate covers nothing');
  const v6 = new X509Certificate(makeLeaf(ca, { ips: ['::1'] }).certPem);
  t.ok(coversHost(v6, '[::1]:8443'));
  t.ok(coversHost(v6, '[0:0::1]'));
  t.notOk(coversHost(v6, '::1'), 'unbracketed IPv6 authority is malformed');
  // The subject CN is never used (RFC 6125): a cert whose CN is a name but SANs are not.
  const cnOnly = new X509Certificate(makeLeaf(ca, { commonName: 'cn.test', dns: ['san.test'] }).certPem);
  t.notOk(coversHost(cnOnly, 'cn.test'));
  t.equal(authorityHost('[::1]:80'), '::1');
  t.equal(authorityHost('a.test:80'), 'a.test');
  t.equal(authorityHost('[::1]x'), undefined);
});

t.test('sanEntries decodes node\'s quoted values, so a value cannot forge an entry', async (t) => {
  t.same(sanEntries('DNS:a.test, IP Address:127.0.0.1, URI:spiffe://x/ns/a/sa/b'), ['DNS:a.test', 'IP Address:127.0.0.1', 'URI:spiffe://x/ns/a/sa/b']);
  t.same(sanEntries('DNS:"a.test, DNS:evil.test", DNS:b.test'), ['DNS:a.test, DNS:evil.test', 'DNS:b.test']);
  t.same(sanEntries(undefined), []);
  // Through a real certificate: forge writes the comma into one dNSName; node quotes it.
  const forged = new X509Certificate(makeLeaf(ca, { dns: ['a.test, DNS:evil.test'] }).certPem);
  t.same(sanEntries(forged.subjectAltName), ['DNS:a.test, DNS:evil.test']);
  // …and that certificate covers neither name on its own.
  t.notOk(coversHost(forged, 'evil.test'));
  t.notOk(coversHost(forged, 'a.test'));
});

const listen = listenLocal;

function peerSerial(port: number, servername?: string): Promise<{ serial: string; close: () => void }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca: [ca.certPem, ca2.certPem], ...(servername ? { servername } : {}) });
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    s.once('error', reject);
    s.once('secureConnect', () => resolve({ serial: new X509Certificate(s.getPeerCertificate().raw).serialNumber, close: () => s.destroy() }));
  });
}
const ca2 = makeCA({ commonName: 'Rotated CA' });

t.test('reload swaps certificates for new handshakes; a bad reload keeps the old ones', async (t) => {
  const tls = { secret: 'default/d', sni: [{ secret: 'default/w' }] };
  const certs = ListenerCertificates.load(tls, [leafSecret('default/d', deathstar), leafSecret('default/w', wild)]);
  const server = createServer(certs.serverOptions(), (sock) => { sock.on('error', () => {}); });
  certs.attach(server);
  const port = await listen(t, server);
  const serial = (pem: string) => new X509Certificate(pem).serialNumber;

  const before = await peerSerial(port, 'tie.empire.test');
  t.equal(before.serial, serial(wild.certPem));
  const noSni = await peerSerial(port);
  t.equal(noSni.serial, serial(deathstar.certPem));
  noSni.close();

  const deathstar2 = makeLeaf(ca2, { dns: ['deathstar.default.svc', 'localhost'], ips: ['127.0.0.1'] });
  const wild2 = makeLeaf(ca2, { dns: ['*.empire.test'] });
  certs.reload(tls, [leafSecret('default/d', deathstar2), leafSecret('default/w', wild2)]);
  t.equal((await peerSerial(port, 'tie.empire.test').then((c) => { c.close(); return c.serial; })), serial(wild2.certPem), 'SNI cert swapped');
  t.equal((await peerSerial(port).then((c) => { c.close(); return c.serial; })), serial(deathstar2.certPem), 'default (no SNI) swapped via attach');
  before.close();

  // Invalid new material: refused as a whole, old table keeps serving.
  await rejectsWarden(t, () => certs.reload(tls, [leafSecret('default/d', deathstar2)]), 'L7W_ERR_TLS', /default\/w: not found/);
  t.equal((await peerSerial(port, 'tie.empire.test').then((c) => { c.close(); return c.serial; })), serial(wild2.certPem), 'still the previous good table');
  await rejectsWarden(t, () => certs.reload({ ...tls, clientAuth: 'require' }, [leafSecret('default/d', deathstar2), leafSecret('default/w', wild2)]), 'L7W_ERR_TLS', /clientAuth changed/);

  // A hot reload prepares the table before the policy swap and installs it after:
  // preparing serves nothing new, installing serves exactly what was prepared.
  const deathstar3 = makeLeaf(ca2, { dns: ['deathstar.default.svc', 'localhost'], ips: ['127.0.0.1'] });
  const table = certs.prepare(tls, [leafSecret('default/d', deathstar3), leafSecret('default/w', wild2)]);
  t.equal((await peerSerial(port).then((c) => { c.close(); return c.serial; })), serial(deathstar2.certPem), 'prepared, not yet served');
  certs.install(table);
  t.equal(certs.table, table);
  t.equal((await peerSerial(port).then((c) => { c.close(); return c.serial; })), serial(deathstar3.certPem), 'installed');
});

t.test('serverOptions shape', async (t) => {
  const o = serverOptions({ secret: 'default/d', clientAuth: 'require' }, [leafSecret('default/d', deathstar)]);
  t.same(o.ALPNProtocols, ['h2', 'http/1.1']);
  t.equal(o.minVersion, 'TLSv1.2');
  t.equal(o.requestCert, true);
  t.equal(o.rejectUnauthorized, true);
  t.equal(o.ca, ca.certPem);
  const n = serverOptions({ secret: 'default/d' }, [leafSecret('default/d', deathstar)]);
  t.equal(n.requestCert, false);
  t.equal(n.rejectUnauthorized, false);
  t.equal(n.ca, undefined);
  const r = serverOptions({ secret: 'default/d', clientAuth: 'request' }, [leafSecret('default/d', deathstar)]);
  t.equal(r.requestCert, true);
  t.equal(r.rejectUnauthorized, false);
  // SNICallback never throws, even when handed nonsense.
  await new Promise<void>((resolve) => n.SNICallback(undefined as unknown as string, (err, ctx) => { t.equal(err, null); t.ok(ctx); resolve(); }));
});
