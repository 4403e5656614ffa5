import t from 'tap';
import { connect, createServer, type Server, type TLSSocket, type ConnectionOptions } from 'node:tls';
import { createSecureServer } from 'node:http2';
import { X509Certificate } from 'node:crypto';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import {
  ListenerCertificates, serverOptions, coversHost, certificateOf, selectCertificate, buildCertTable,
  sanEntries, authorityHost,
} from '../../src/tls/cert-store.js';
import type { ListenerTLS } from '../../src/config/proxy-config.js';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { leafSecret, secretDoc, tempDir, rejectsWarden, listenLocal } from '../helpers/tls-pki.js';
import type { TestT } from '../helpers/tap.js';

const ca = makeCA({ commonName: 'Test CA' });
const otherCA = makeCA({ commonName: 'Rogue CA' });
const deathstar = makeLeaf(ca, { dns: ['deathstar.default.svc', 'localhost'], ips: ['127.0.0.1'] });
const wild = makeLeaf(ca, { dns: ['*.empire.test'] });
const rebel = makeLeaf(ca, { dns: ['rebel.test'] });
const client = makeLeaf(ca, { uris: ['spiffe://cluster.local/ns/default/sa/tiefighter'] });
const rogueClient = makeLeaf(otherCA, { uris: ['spiffe://cluster.local/ns/default/sa/tiefighter'] });

const secrets = [
  leafSecret('default/deathstar', deathstar),
  leafSecret('default/wild', wild),
  leafSecret('default/rebel', rebel),
];
const listenerTLS: ListenerTLS = { secret: 'default/deathstar', sni: [{ secret: 'default/wild' }, { secret: 'default/rebel' }] };

type TT = TestT;
const serial = (pem: string) => new X509Certificate(pem).serialNumber;

const listen = listenLocal;

interface Seen { authorized: boolean; san: string; error: string }
const pairs = new Map<number, Seen>();

// hold: write and keep the connection open, so the client is the one that closes it. openssl s_client
// exits 1 in about a quarter of runs when the server's close races its "Q" (measured: 37 of 150 under load).
function tlsServer(t: TT, opts: ReturnType<typeof serverOptions>, hold = false): Server {
  const s = createServer(opts, (sock) => {
    sock.on('error', () => {});
    pairs.set(sock.remotePort ?? -1, {
      authorized: sock.authorized,
      san: sock.getPeerCertificate().subjectaltname ?? '',
      error: String(sock.authorizationError ?? ''),
    });
    if (hold) sock.write('hello'); else sock.end('hello');
  });
  s.on('tlsClientError', () => {});
  return s;
}

interface Conn { serial: string; alpn: string | false | null; authorized: boolean; socket: TLSSocket }

function dial(port: number, opts: ConnectionOptions): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: ca.certPem, ...opts });
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const raw = socket.getPeerCertificate().raw;
      resolve({ serial: new X509Certificate(raw).serialNumber, alpn: socket.alpnProtocol, authorized: socket.authorized, socket });
    });
  });
}

function run(cmd: string, args: string[], input = ''): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr });
    });
    p.stdin?.end(input);
  });
}

t.test('SNI picks the certificate; no or unknown SNI gets the default', async (t) => {
  const port = await listen(t, tlsServer(t, serverOptions(listenerTLS, secrets)));
  const cases: [string | undefined, string][] = [
    ['deathstar.default.svc', deathstar.certPem],
    ['rebel.test', rebel.certPem],
    ['REBEL.TEST', rebel.certPem],
    ['x-wing.empire.test', wild.certPem],
    ['a.b.empire.test', deathstar.certPem], // wildcard covers exactly one label
    ['empire.test', deathstar.certPem],
    ['unknown.test', deathstar.certPem],
    [undefined, deathstar.certPem],
  ];
  for (const [sni, want] of cases) {
    const c = await dial(port, sni ? { servername: sni, rejectUnauthorized: false } : { rejectUnauthorized: false });
    t.equal(c.serial, serial(want), `SNI ${sni ?? '(none)'}`);
    c.socket.destroy();
  }
  // Verified end to end: the chosen certificate is valid for the name asked.
  const v = await dial(port, { servername: 'x-wing.empire.test' });
  t.ok(v.authorized);
  v.socket.destroy();
});

t.test('ALPN h2 / http/1.1, TLS 1.2 minimum', async (t) => {
  const port = await listen(t, tlsServer(t, serverOptions(listenerTLS, secrets)));
  const h2 = await dial(port, { servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] });
  t.equal(h2.alpn, 'h2');
  h2.socket.destroy();
  const h1 = await dial(port, { servername: 'localhost', ALPNProtocols: ['http/1.1'] });
  t.equal(h1.alpn, 'http/1.1');
  h1.socket.destroy();
  const v12 = await dial(port, { servername: 'localhost', maxVersion: 'TLSv1.2' });
  t.equal(v12.socket.getProtocol(), 'TLSv1.2', 'TLS 1.2 accepted');
  v12.socket.destroy();
  // A TLS 1.1-only client (cipher security level lowered so it can offer 1.1 at all):
  // the *server* refuses with a protocol_version alert.
  const err = await dial(port, { servername: 'localhost', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })
    .then((c) => { c.socket.destroy(); return undefined; }, (e: NodeJS.ErrnoException) => e);
  t.equal(err?.code, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'TLS 1.1 refused by the server');
});

t.test('openssl s_client: SNI, ALPN h2, chain verified; TLS 1.1 refused', async (t) => {
  const dir = tempDir(t);
  const caFile = join(dir, 'ca.crt');
  writeFileSync(caFile, ca.certPem);
  const port = await listen(t, tlsServer(t, serverOptions(listenerTLS, secrets), true));
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'rebel.test', '-alpn', 'h2',
    '-CAfile', caFile, '-verify_hostname', 'rebel.test', '-verify_return_error'], 'Q\n');
  // "Q" is s_client's own clean quit; the server holds the connection so nothing races it.
  t.equal(r.code, 0, 's_client exit 0');
  t.match(r.out, /ALPN protocol: h2/);
  t.match(r.out, /Verify return code: 0 \(ok\)/);
  t.match(r.out, /subject=CN ?= ?rebel\.test/);
  const bad = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0']);
  t.not(bad.code, 0, 'TLS 1.1 handshake fails');
  t.match(bad.out, /protocol version|alert/i);
});

t.test('curl --cacert over HTTP/2 and HTTP/1.1; Host outside the certificate gets 421', async (t) => {
  const dir = tempDir(t);
  const caFile = join(dir, 'ca.crt');
  writeFileSync(caFile, ca.certPem);
  const certs = ListenerCertificates.load(listenerTLS, secrets);
  const server = createSecureServer({ ...certs.serverOptions(), allowHTTP1: true }, (req, res) => {
    // How the data path uses the store: the connection's certificate must cover the authority.
    const authority = req.headers[':authority'] ?? req.headers.host ?? '';
    const cert = certificateOf(req.socket as TLSSocket);
    if (!coversHost(cert, String(authority))) { res.writeHead(421); res.end('misdirected\n'); return; }
    res.end(`ok ${req.httpVersion}\n`);
  });
  certs.attach(server);
  const port = await listen(t, server);
  const resolve = ['--resolve', `deathstar.default.svc:${port}:127.0.0.1`, '--resolve', `rebel.test:${port}:127.0.0.1`];
  const curl = (url: string, ...extra: string[]) =>
    run('curl', ['-sS', '--max-time', '5', '--cacert', caFile, ...resolve, '-o', '-', '-w', ' %{http_code} %{http_version}', ...extra, url]);

  const h2 = await curl(`https://deathstar.default.svc:${port}/`, '--http2');
  t.equal(h2.code, 0, h2.out);
  t.match(h2.out, /ok 2\.0\n 200 2/);
  const h1 = await curl(`https://rebel.test:${port}/`, '--http1.1');
  t.match(h1.out, /ok 1\.1\n 200 1\.1/);
  // SNI rebel.test, Host deathstar: domain fronting → 421.
  const fronted = await curl(`https://rebel.test:${port}/`, '--http1.1', '-H', 'Host: deathstar.default.svc');
  t.match(fronted.out, / 421 1\.1/);
  // Host another name on the same certificate: allowed (connection coalescing).
  const sameCert = await curl(`https://deathstar.default.svc:${port}/`, '--http1.1', '-H', `Host: localhost:${port}`);
  t.match(sameCert.out, / 200 1\.1/);
  // An untrusted CA is rejected by curl (the store serves a real chain, not a bypass).
  const wrong = await run('curl', ['-sS', '--max-time', '5', '--cacert', join(dir, 'nope.crt'), ...resolve, `https://rebel.test:${port}/`]);
  t.not(wrong.code, 0);
});

t.test('client certificates: request verifies when sent, require refuses without', async (t) => {
  const withCA = [...secrets];
  const req = await listen(t, tlsServer(t, serverOptions({ ...listenerTLS, clientAuth: 'request' }, withCA)));
  const good = await dial(req, { servername: 'localhost', cert: client.certPem, key: client.keyPem });
  const sGood = await serverSide(good);
  t.equal(sGood.authorized, true, 'trusted client cert verified');
  t.match(sGood.san, /URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/tiefighter/);
  // Verified through an SNI-chosen context too (each context carries the client CA).
  const viaSni = await serverSide(await dial(req, { servername: 'x.empire.test', cert: client.certPem, key: client.keyPem }));
  t.equal(viaSni.authorized, true, 'verified with SNI context');
  const rogue = await serverSide(await dial(req, { servername: 'localhost', cert: rogueClient.certPem, key: rogueClient.keyPem }));
  t.equal(rogue.authorized, false, 'untrusted client cert accepted but not authorized');
  t.match(rogue.error, /UNABLE_TO_VERIFY|unable to (get|verify)/i);
  const none = await serverSide(await dial(req, { servername: 'localhost' }));
  t.equal(none.authorized, false);

  const reqd = await listen(t, tlsServer(t, serverOptions({ ...listenerTLS, clientAuth: 'require' }, withCA)));
  const ok = await serverSide(await dial(reqd, { servername: 'localhost', cert: client.certPem, key: client.keyPem }));
  t.equal(ok.authorized, true);
  for (const [name, opts] of [['no cert', {}], ['rogue cert', { cert: rogueClient.certPem, key: rogueClient.keyPem }]] as const) {
    const r = await dial(reqd, { servername: 'localhost', ...opts }).then(
      (c) => new Promise<string>((resolve) => {
        // TLS 1.3: the client learns of the rejection after its Finished, on first read.
        c.socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        c.socket.once('end', () => resolve('closed'));
        c.socket.once('data', () => resolve('data'));
      }),
      (e: NodeJS.ErrnoException) => e.code ?? e.message,
    );
    t.match(r, /ALERT|closed|ECONNRESET/, `require: ${name} refused (${r})`);
    t.not(r, 'data', `require: ${name} got no data`);
  }
  // clientCA names another secret's ca.crt.
  const caOnly = secretDoc('default/client-ca', { 'ca.crt': otherCA.certPem });
  const other = await listen(t, tlsServer(t, serverOptions({ ...listenerTLS, clientAuth: 'request', clientCA: 'default/client-ca' }, [...secrets, caOnly])));
  t.equal((await serverSide(await dial(other, { servername: 'localhost', cert: rogueClient.certPem, key: rogueClient.keyPem }))).authorized, true);
  t.equal((await serverSide(await dial(other, { servername: 'localhost', cert: client.certPem, key: client.keyPem }))).authorized, false);
});

/**
 * What the server saw on a connection: recorded by tlsServer's handler before it
 * writes its greeting, keyed by the client's port. The client waits for the
 * greeting, so the record exists (in TLS 1.3 the client's secureConnect can
 * precede the server's secureConnection).
 */
async function serverSide(c: Conn): Promise<Seen> {
  await new Promise<void>((resolve, reject) => {
    c.socket.once('data', () => resolve());
    c.socket.once('error', reject);
    c.socket.once('end', () => reject(new Error('closed before greeting')));
  });
  const srv = pairs.get(c.socket.localPort ?? -1);
  c.socket.destroy();
  if (!srv) throw new Error('server socket not found');
  return srv;
}

t.test('terminator (the ingress pattern): SNI, client auth, reload; a bare TLSSocket never verifies', async (t) => {
  const { createServer: createNetServer } = await import('node:net');
  const { TLSSocket } = await import('node:tls');
  const certs = ListenerCertificates.load({ ...listenerTLS, clientAuth: 'request' }, secrets);
  const terminator = certs.terminator({ handshakeTimeout: 5000 });
  terminator.on('tlsClientError', () => {});
  terminator.on('secureConnection', (s: TLSSocket) => {
    s.on('error', () => {});
    pairs.set(s.remotePort ?? -1, { authorized: s.authorized, san: s.getPeerCertificate().subjectaltname ?? '', error: String(s.authorizationError ?? '') });
    s.end('hello');
  });
  const front = createNetServer((raw) => { raw.on('error', () => {}); terminator.emit('connection', raw); });
  const port = await listen(t, front);
  for (const [sni, want] of [['rebel.test', rebel.certPem], ['x.empire.test', wild.certPem], [undefined, deathstar.certPem]] as const) {
    const c = await dial(port, { ...(sni ? { servername: sni } : {}), rejectUnauthorized: sni !== undefined, cert: client.certPem, key: client.keyPem });
    t.equal(c.serial, serial(want), `SNI ${sni ?? '(none)'}`);
    t.equal((await serverSide(c)).authorized, true, `client verified (SNI ${sni ?? 'none'})`);
  }
  const rogue = await serverSide(await dial(port, { servername: 'rebel.test', cert: rogueClient.certPem, key: rogueClient.keyPem }));
  t.equal(rogue.authorized, false);
  const rebel2 = makeLeaf(ca, { dns: ['rebel.test'] });
  const deathstar2 = makeLeaf(ca, { dns: ['deathstar.default.svc', 'localhost'], ips: ['127.0.0.1'] });
  certs.reload({ ...listenerTLS, clientAuth: 'request' }, [leafSecret('default/deathstar', deathstar2), leafSecret('default/wild', wild), leafSecret('default/rebel', rebel2)]);
  const after = await dial(port, { servername: 'rebel.test' });
  t.equal(after.serial, serial(rebel2.certPem), 'SNI cert reloaded');
  after.socket.destroy();
  const afterDefault = await dial(port, { rejectUnauthorized: false });
  t.equal(afterDefault.serial, serial(deathstar2.certPem), 'default reloaded (terminator attached)');
  afterDefault.socket.destroy();

  // Why the terminator exists: a bare server-side TLSSocket with the same options
  // never sets `authorized`, even for a trusted certificate.
  const bare = createNetServer((raw) => {
    raw.on('error', () => {});
    const s = new TLSSocket(raw, { isServer: true, ...certs.serverOptions() } as import('node:tls').TLSSocketOptions);
    s.on('error', () => raw.destroy());
    s.once('secure', () => {
      pairs.set(s.remotePort ?? -1, { authorized: s.authorized, san: '', error: '' });
      s.end('hello');
    });
  });
  const barePort = await listen(t, bare);
  t.equal((await serverSide(await dial(barePort, { servername: 'rebel.test', cert: client.certPem, key: client.keyPem }))).authorized, false,
    'bare TLSSocket: authorized stays false (use terminator())');
});
