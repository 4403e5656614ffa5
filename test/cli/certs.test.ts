import t from 'tap';
import { readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { runCerts, makeCA, makeLeaf } from '../../src/cli/certs.js';
import { tempDir, rejectsWarden } from '../helpers/tls-pki.js';

const io = () => {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
};

t.test('certs writes CA and leaf in the Secret layout, keys 0600, SANs as asked', async (t) => {
  const dir = tempDir(t);
  const c = io();
  const code = await runCerts(['--out', dir, '--ca-name', 'Demo CA', '--name', 'default/deathstar',
    '--dns', 'deathstar.default.svc', '--dns', 'localhost', '--ip', '127.0.0.1', '--ip', '::1'], c.io);
  t.equal(code, 0);
  t.match(c.out[0], /created CA/);
  const leafDir = join(dir, 'default', 'deathstar');
  for (const f of ['tls.crt', 'tls.key', 'ca.crt']) t.ok(existsSync(join(leafDir, f)), f);
  t.equal(statSync(join(leafDir, 'tls.key')).mode & 0o777, 0o600, 'leaf key 0600');
  t.equal(statSync(join(dir, 'ca', 'ca.key')).mode & 0o777, 0o600, 'CA key 0600');
  t.equal(statSync(join(dir, 'ca')).mode & 0o777, 0o700, 'CA dir 0700');

  const ca = new X509Certificate(readFileSync(join(dir, 'ca', 'ca.crt')));
  const x = new X509Certificate(readFileSync(join(leafDir, 'tls.crt')));
  t.ok(ca.ca, 'CA has basicConstraints CA');
  t.match(ca.subject, /CN=Demo CA/);
  t.notOk(x.ca, 'leaf is not a CA');
  t.ok(x.verify(ca.publicKey), 'leaf signed by the CA');
  t.ok(x.checkIssued(ca));
  t.equal(x.checkHost('deathstar.default.svc'), 'deathstar.default.svc');
  t.equal(x.checkHost('localhost'), 'localhost');
  t.equal(x.checkHost('other.svc'), undefined);
  t.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
  t.equal(x.checkIP('::1'), '::1');
  t.equal(x.checkIP('127.0.0.2'), undefined);
  t.ok(x.checkPrivateKey(createPrivateKey(readFileSync(join(leafDir, 'tls.key')))), 'key matches');
  t.equal(x.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  t.same(x.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth only');
  t.equal(readFileSync(join(leafDir, 'ca.crt'), 'utf8'), readFileSync(join(dir, 'ca', 'ca.crt'), 'utf8'));

  // The system openssl agrees the chain is valid for TLS servers.
  const v = execFileSync('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', join(dir, 'ca', 'ca.crt'), join(leafDir, 'tls.crt')], { encoding: 'utf8' });
  t.match(v, /: OK/);
});

t.test('a second run reuses the CA; client certs carry a URI SAN and clientAuth', async (t) => {
  const dir = tempDir(t);
  t.equal(await runCerts(['--out', dir, '--name', 'default/deathstar', '--dns', 'a.test'], io().io), 0);
  const caBefore = readFileSync(join(dir, 'ca', 'ca.crt'), 'utf8');
  const c = io();
  t.equal(await runCerts(['--out', dir, '--name', 'default/tiefighter',
    '--client', 'spiffe://cluster.local/ns/default/sa/tiefighter'], c.io), 0);
  t.match(c.out[0], /reused CA/);
  t.equal(readFileSync(join(dir, 'ca', 'ca.crt'), 'utf8'), caBefore, 'CA unchanged');
  const x = new X509Certificate(readFileSync(join(dir, 'default', 'tiefighter', 'tls.crt')));
  t.equal(x.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/tiefighter');
  t.same(x.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'clientAuth only');
  t.ok(x.verify(new X509Certificate(caBefore).publicKey));
  t.equal(statSync(join(dir, 'default', 'tiefighter', 'tls.key')).mode & 0o777, 0o600);
  // Re-writing an existing key keeps 0600 even if someone loosened it meanwhile.
  const keyPath = join(dir, 'default', 'tiefighter', 'tls.key');
  const { chmodSync } = await import('node:fs');
  chmodSync(keyPath, 0o644);
  t.equal(await runCerts(['--out', dir, '--name', 'default/tiefighter', '--client', 'spiffe://cluster.local/ns/default/sa/tiefighter'], io().io), 0);
  t.equal(statSync(keyPath).mode & 0o777, 0o600);
});

t.test('usage errors and a broken CA', async (t) => {
  const dir = tempDir(t);
  const usage = async (argv: string[], re: RegExp) => {
    await rejectsWarden(t, () => runCerts(argv, io().io), 'L7W_ERR_USAGE', re, argv.join(' '));
  };
  await usage(['--out', dir, '--dns', 'x'], /--name/);
  await usage(['--out', dir, '--name', 'deathstar', '--dns', 'x'], /namespace/);
  await usage(['--out', dir, '--name', 'Default/X', '--dns', 'x'], /namespace/);
  await usage(['--out', dir, '--name', 'default/x'], /at least one/);
  await usage(['--out', dir, '--name', 'default/x', '--ip', '300.1.1.1'], /IP address/);
  await usage(['--out', dir, '--name', 'default/x', '--dns', 'x', '--days', '0'], /--days/);
  await usage(['--out', dir, '--name', 'default/x', '--bogus'], /bogus/i);

  writeFileSync(join(dir, 'ca', 'ca.key'), 'not a key');
  await rejectsWarden(t, () => runCerts(['--out', dir, '--name', 'default/x', '--dns', 'x'], io().io), 'L7W_ERR_TLS', /existing CA/);
});

t.test('makeLeaf validity window and key reuse', async (t) => {
  const ca = makeCA();
  const notBefore = new Date('2020-01-01T00:00:00Z');
  const notAfter = new Date('2020-06-01T00:00:00Z');
  const l = makeLeaf(ca, { dns: ['old.test'], notBefore, notAfter });
  const x = new X509Certificate(l.certPem);
  t.equal(Date.parse(x.validTo), notAfter.getTime());
  t.equal(Date.parse(x.validFrom), notBefore.getTime());
  t.not(new X509Certificate(makeLeaf(ca, { dns: ['a.test'] }).certPem).serialNumber, new X509Certificate(makeLeaf(ca, { dns: ['a.test'] }).certPem).serialNumber, 'serials differ');
});
