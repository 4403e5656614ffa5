/**
 * Attacks on TLS interception and SNI inspection that held (docs/hardening.md, TLS).
 * Kept as regression cases for what test/egress and test/tls do not already cover:
 *
 *  - re-originated TLS to a destination with a self-signed or expired certificate,
 *    one that speaks plaintext, only TLS 1.0/1.1, or only h2: 502, no request reaches it
 *    (never a retry in plaintext or an older TLS); one that never answers the
 *    ClientHello: 503 at the connect timeout;
 *  - the client's side of an interception: TLS 1.0/1.1 offers (openssl s_client
 *    through CONNECT), an h2-only ALPN offer, an h2 preface after http/1.1 was agreed,
 *    a silent or dribbling client (closed at tlsHandshakeTimeoutMs), garbage instead
 *    of a ClientHello, NUL in the SNI, absolute-form targets naming another host or
 *    scheme;
 *  - a `serverNames` tunnel that is not intercepted: an SNI with NUL, 8-bit bytes or
 *    no SNI, and a ClientHello spread over several records (64 KB) are reset with
 *    nothing dialled; trailing dot and upper case name the allowed host;
 *  - an ingress certificate rotated while a handshake is half done: the handshake
 *    completes (with the certificate it started with) and the request is served.
 */
import t from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as http2 from 'node:http2';
import { once } from 'node:events';
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { startProxy } from '../../src/cli/run.js';
import { EgressHarness, KUBE_DNS, capturesOnOnePort, startCapture, type Capture } from '../helpers/egress-harness.js';
import { startRelay } from '../helpers/relay.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { tempDir } from '../helpers/tls-pki.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const interceptCA = makeCA({ commonName: 'intercept CA' });
const wildcard = makeLeaf(interceptCA, { dns: ['*.example.test', 'deathstar'] });
const upstreamCA = makeCA({ commonName: 'upstream CA' });
const good = makeLeaf(upstreamCA, { dns: ['secure.example.test'] });
const expired = makeLeaf(upstreamCA, { dns: ['expired.example.test'], notBefore: new Date(Date.now() - 10 * 86400_000), notAfter: new Date(Date.now() - 86400_000) });
const h2Leaf = makeLeaf(upstreamCA, { dns: ['h2only.example.test'] });
const dir = tempDir(t, 'l7w-tls-held-');
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'ss.key'), '-out', join(dir, 'ss.crt'), '-days', '2', '-subj', '/CN=selfsigned.example.test', '-addext', 'subjectAltName=DNS:selfsigned.example.test'], { stdio: 'ignore' });
const selfSigned = { certPem: await readFile(join(dir, 'ss.crt'), 'utf8'), keyPem: await readFile(join(dir, 'ss.key'), 'utf8') };

const https = (l: { certPem: string; keyPem: string }) => ({ kind: 'https' as const, cert: l.certPem, key: l.keyPem });
const [secure] = await capturesOnOnePort(['127.0.0.90'], https(good));
const PORT = secure!.port;
const caps: Record<string, Capture> = {
  secure: secure!,
  selfsigned: await startCapture('127.0.0.92', PORT, https(selfSigned)),
  expired: await startCapture('127.0.0.93', PORT, https(expired)),
  plain: await startCapture('127.0.0.94', PORT, { kind: 'http' }),
};
let h2Streams = 0;
const h2only = http2.createSecureServer({ cert: h2Leaf.certPem, key: h2Leaf.keyPem, allowHTTP1: false });
h2only.on('stream', (s) => {
  h2Streams++;
  s.respond({ ':status': 200 });
  s.end();
});
h2only.listen(PORT, '127.0.0.95');
await once(h2only, 'listening');
// A destination that speaks only TLS 1.0/1.1.
const oldLeaf = makeLeaf(upstreamCA, { dns: ['oldtls.example.test'] });
let oldRequests = 0;
const oldTls = (await import('node:https')).createServer({ cert: oldLeaf.certPem, key: oldLeaf.keyPem, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' }, (_req, res) => {
  oldRequests++;
  res.end();
});
oldTls.on('tlsClientError', () => {});
oldTls.listen(PORT, '127.0.0.91');
await once(oldTls, 'listening');
// A destination that accepts TCP and never answers the ClientHello.
let silentBytes = 0;
const silentDest = net.createServer((c) => {
  c.on('error', () => {});
  c.on('data', (d: Buffer) => (silentBytes += d.length));
});
silentDest.listen(PORT, '127.0.0.96');
await once(silentDest, 'listening');
// The serverNames tunnel (not intercepted): a raw TCP destination on its own port.
const passthrough = await startCapture('127.0.0.97', 0, { kind: 'echo' });
const SNI_PORT = passthrough.port;

const h = await EgressHarness.start((dnsPort) => ({
  pods: [KUBE_DNS, APP],
  limits: '{ tlsHandshakeTimeoutMs: 1000, headersTimeoutMs: 1000 }',
  policies: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: held }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules: { dns: [{ matchPattern: "*.example.test" }] }
  - toFQDNs: [{ matchPattern: "*.example.test" }]
    toPorts:
    - ports: [{ port: "${PORT}", protocol: TCP }]
      terminatingTLS: { secret: { namespace: default, name: intercept } }
      originatingTLS: { secret: { namespace: default, name: upstream-ca } }
      rules: { http: [{ method: GET, path: "/ok.*" }] }
  - toFQDNs: [{ matchName: sni.example.test }]
    toPorts:
    - ports: [{ port: "${SNI_PORT}", protocol: TCP }]
      serverNames: [sni.example.test]
`,
  secrets: {
    'default/intercept': { 'tls.crt': wildcard.certPem, 'tls.key': wildcard.keyPem },
    'default/upstream-ca': { 'ca.crt': upstreamCA.certPem },
  },
}));
const ips: Record<string, string> = { secure: '127.0.0.90', oldtls: '127.0.0.91', selfsigned: '127.0.0.92', expired: '127.0.0.93', plain: '127.0.0.94', h2only: '127.0.0.95', silent: '127.0.0.96', sni: '127.0.0.97' };
for (const [name, ip] of Object.entries(ips)) h.dns.setRecord(`${name}.example.test`, { a: [ip] });
// openssl s_client cannot choose its source address: a relay from the app's.
const relay = await startRelay(h.egressPort, { from: APP.ip });
t.teardown(async () => {
  await relay.close();
  await h.close();
  await Promise.all([...Object.values(caps), passthrough].map((c) => c.close()));
  h2only.close();
  silentDest.close();
  oldTls.close();
});

/** A CONNECT tunnel from the app, answered 200. */
async function tunnel(host: string, port = PORT): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port: h.egressPort, localAddress: APP.ip });
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`);
  const [answer] = (await once(s, 'data')) as [Buffer];
  if (!answer.toString('latin1').startsWith('HTTP/1.1 200')) throw new Error(`CONNECT answered ${answer.toString('latin1')}`);
  return s;
}

/** Intercepted: TLS to the proxy (trusting the interception CA), one request line; what came back. */
async function intercepted(host: string, request: string, opts: tls.ConnectionOptions = {}): Promise<string> {
  const s = await tunnel(host);
  return new Promise((resolve) => {
    const c = tls.connect({ socket: s, servername: host, ca: interceptCA.certPem, ...opts });
    const out: Buffer[] = [];
    const timer = setTimeout(() => c.destroy(), 5000);
    c.on('error', (e) => out.push(Buffer.from(`ERROR ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    c.on('data', (d: Buffer) => out.push(d));
    c.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(out).toString('latin1'));
    });
    c.once('secureConnect', () => c.write(request));
  });
}

const get = (host: string, target = '/ok') => `GET ${target} HTTP/1.1\r\nHost: ${host}:${PORT}\r\nConnection: close\r\n\r\n`;

/** How long until the socket closes (bounded), and the first bytes it got. */
function closed(s: net.Socket, boundMs = 4000): Promise<{ ms: number; data: Buffer }> {
  const t0 = Date.now();
  const out: Buffer[] = [];
  s.on('data', (d: Buffer) => out.push(d));
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ ms: -1, data: Buffer.concat(out) }), boundMs);
    s.once('close', () => {
      clearTimeout(timer);
      resolve({ ms: Date.now() - t0, data: Buffer.concat(out) });
    });
  });
}

/** The ClientHello a node client sends (captured by a raw server). */
async function clientHello(servername: string | undefined, extra: tls.ConnectionOptions = {}): Promise<Buffer> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const got = new Promise<Buffer>((resolve) =>
    srv.once('connection', (s) => {
      let b = Buffer.alloc(0);
      const want = () => (b.length >= 5 ? 5 + b.readUInt16BE(3) : Infinity);
      // Everything the client sends at once (a hello can span several records).
      s.on('data', (d: Buffer) => {
        b = Buffer.concat([b, d]);
        if (b.length >= want()) setTimeout(() => resolve(b), 50);
      });
    }),
  );
  const c = tls.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', ...(servername ? { servername } : {}), ...extra });
  c.on('error', () => {});
  const b = await got;
  c.destroy();
  srv.close();
  return b;
}

t.test('re-originated TLS: bad destination certificates, plaintext, h2 only: 502, nothing sent', async (t) => {
  t.match(await intercepted('secure.example.test', get('secure.example.test')), /^HTTP\/1\.1 200/, 'control');
  for (const name of ['selfsigned', 'expired', 'plain'] as const) {
    const r = await intercepted(`${name}.example.test`, get(`${name}.example.test`));
    t.match(r, /^HTTP\/1\.1 502 /, `${name}: 502`);
    t.equal(caps[name]!.connections, 1, `${name}: dialled once (the handshake), no plaintext retry`);
    t.equal(caps[name]!.requests.length, 0, `${name}: no request reached it`);
  }
  const r = await intercepted('h2only.example.test', get('h2only.example.test'));
  t.match(r, /^HTTP\/1\.1 502 /, 'h2-only destination (ALPN http/1.1 offered): 502');
  t.equal(h2Streams, 0);
  t.match(await intercepted('oldtls.example.test', get('oldtls.example.test')), /^HTTP\/1\.1 502 /, 'a TLS 1.0/1.1-only destination: 502 (TLS 1.2 minimum)');
  t.equal(oldRequests, 0);
  // A destination silent after the TCP accept: the connect timeout (2 s) covers the handshake.
  const t0 = Date.now();
  const silent = await intercepted('silent.example.test', get('silent.example.test'));
  t.match(silent, /^HTTP\/1\.1 50[34] /, 'silent destination: 503/504');
  t.ok(Date.now() - t0 < 5000, `answered after ${Date.now() - t0} ms`);
  t.ok(silentBytes > 0 && silentBytes < 2000, 'it got the ClientHello and nothing more');
});

t.test('the client side of an interception', async (t) => {
  const before = secure!.requests.length;
  t.match(await intercepted('secure.example.test', get('secure.example.test'), { minVersion: 'TLSv1', maxVersion: 'TLSv1.1' }), /ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION/, 'TLS 1.0/1.1 refused');
  for (const v of ['-tls1', '-tls1_1']) {
    const out = await new Promise<string>((resolve) => {
      const p = execFile('openssl', ['s_client', '-proxy', `127.0.0.1:${relay.port}`, '-connect', `secure.example.test:${PORT}`, '-servername', 'secure.example.test', v], { timeout: 8000 }, (_e, so, se) => resolve(`${so}\n${se}`));
      p.stdin?.on('error', () => {});
      p.stdin?.end();
    });
    t.match(out, /alert protocol version/, `openssl s_client ${v}: protocol_version alert`);
  }
  t.match(await intercepted('secure.example.test', get('secure.example.test'), { ALPNProtocols: ['h2'] }), /ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL/, 'an h2-only client: no_application_protocol');
  t.match(await intercepted('secure.example.test', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', { ALPNProtocols: ['http/1.1'] }), /^HTTP\/1\.1 400/, 'an h2 preface after http/1.1 was agreed');
  t.match(await intercepted('secure.example.test', get('secure.example.test', `https://other.example.test:${PORT}/ok`)), /^HTTP\/1\.1 400/, 'absolute-form naming another host');
  t.match(await intercepted('secure.example.test', get('secure.example.test', `http://secure.example.test:${PORT}/ok`)), /^HTTP\/1\.1 400/, 'absolute-form with the http scheme in a TLS tunnel');
  t.match(await intercepted('secure.example.test', get('secure.example.test', `https://secure.example.test:${PORT}/ok/abs`)), /^HTTP\/1\.1 200/, 'absolute-form naming the tunnel host');
  t.same(secure!.requests.slice(before).map((q) => q.url), ['/ok/abs']);

  // A silent client and one that dribbles its ClientHello: closed at tlsHandshakeTimeoutMs (1 s).
  const hello = await clientHello('secure.example.test');
  const silent = await closed(await tunnel('secure.example.test'));
  t.ok(silent.ms >= 900 && silent.ms < 3000, `silent: closed after ${silent.ms} ms`);
  const slow = await tunnel('secure.example.test');
  let i = 0;
  const drip = setInterval(() => {
    if (i < hello.length && !slow.destroyed) slow.write(hello.subarray(i, ++i));
  }, 50);
  const dribbled = await closed(slow);
  clearInterval(drip);
  t.ok(dribbled.ms >= 900 && dribbled.ms < 3000, `dribbling: closed after ${dribbled.ms} ms`);

  // Garbage, and NUL in the SNI: an alert, closed.
  const garbage = await tunnel('secure.example.test');
  const g = closed(garbage);
  garbage.write(Buffer.concat([Buffer.from('16030100ff01', 'hex'), Buffer.alloc(300, 0x41)]));
  const gr = await g;
  t.ok(gr.ms >= 0, 'garbage: closed');
  t.equal(gr.data[0], 0x15, 'with a TLS alert');
  const nul = Buffer.from(hello);
  nul.write('secure\0example.test', nul.indexOf('secure.example.test'), 'latin1');
  const ns = await tunnel('secure.example.test');
  const n = closed(ns);
  ns.write(nul);
  const nr = await n;
  t.ok(nr.ms >= 0, 'NUL in SNI: closed');
  t.equal(nr.data[0], 0x15, 'with a TLS alert');
  t.equal(secure!.requests.length, before + 1, 'nothing more reached the destination');
});

t.test('serverNames without interception: odd ClientHellos are reset, nothing dialled', async (t) => {
  const allowed = await clientHello('sni.example.test');
  const at = allowed.indexOf('sni.example.test');
  const withNul = Buffer.from(allowed);
  withNul[at + 3] = 0;
  const eightBit = Buffer.from(allowed);
  eightBit[at + 3] = 0xc3;
  const cases: [string, Buffer][] = [
    ['NUL in the SNI', withNul],
    ['an 8-bit byte in the SNI', eightBit],
    ['no SNI', await clientHello(undefined)],
    ['a ClientHello over several records (64 KB of ALPN)', await clientHello('sni.example.test', { ALPNProtocols: Array.from({ length: 300 }, (_, k) => `p${k}-${'x'.repeat(200)}`) })],
  ];
  for (const [what, bytes] of cases) {
    const before = passthrough.connections;
    const s = await tunnel('sni.example.test', SNI_PORT);
    const c = closed(s, 3000);
    s.write(bytes);
    const r = await c;
    t.ok(r.ms >= 0 && r.ms < 500, `${what}: reset (${r.ms} ms)`);
    t.equal(passthrough.connections, before, `${what}: nothing dialled`);
  }
  for (const sni of ['sni.example.test.', 'SNI.Example.TEST']) {
    const before = passthrough.raw.length;
    const s = await tunnel('sni.example.test', SNI_PORT);
    s.write(await clientHello(sni));
    await new Promise((r) => setTimeout(r, 200));
    t.notOk(s.destroyed, `${sni}: allowed`);
    t.equal(passthrough.raw.length, before + 1, `${sni}: the ClientHello reached the destination`);
    s.destroy();
  }
});

t.test('ingress: a certificate rotated during a handshake', async (t) => {
  const certs = tempDir(t);
  const cdir = join(certs, 'default', 'd');
  await mkdir(cdir, { recursive: true });
  const l1 = makeLeaf(interceptCA, { dns: ['deathstar'] });
  const l2 = makeLeaf(interceptCA, { dns: ['deathstar'] });
  await writeFile(join(cdir, 'tls.crt'), l1.certPem);
  await writeFile(join(cdir, 'tls.key'), l1.keyPem);
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url, extraListenerYaml: '    tls: { secret: default/d }\n' });
  t.teardown(cfg.cleanup);
  const proxy = await startProxy({ configDir: cfg.dir, certsDir: certs });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners[0]!.address.port;

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    // A relay that passes the ClientHello and holds the client's second flight.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const mitm = net.createServer((c) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.10' });
      let first = true;
      c.on('data', (d: Buffer) => {
        if (first) {
          first = false;
          s.write(d);
          return;
        }
        c.pause();
        void held.then(() => {
          s.write(d);
          c.resume();
        });
      });
      s.pipe(c);
      for (const [a, b] of [[c, s], [s, c]] as const) {
        a.on('error', () => b.destroy());
        a.on('close', () => b.destroy());
      }
    });
    mitm.listen(0, '127.0.0.1');
    await once(mitm, 'listening');
    t.teardown(() => mitm.close());
    const client = tls.connect({ host: '127.0.0.1', port: (mitm.address() as net.AddressInfo).port, servername: 'deathstar', ca: interceptCA.certPem, minVersion: version, maxVersion: version, ALPNProtocols: ['http/1.1'] });
    client.on('error', () => {});
    const secured = once(client, 'secureConnect');
    await new Promise((r) => setTimeout(r, 200)); // the server's flight has gone out
    const [before, after] = version === 'TLSv1.3' ? [l1, l2] : [l2, l1];
    await writeFile(join(cdir, 'tls.crt'), after.certPem);
    await writeFile(join(cdir, 'tls.key'), after.keyPem);
    t.ok((await proxy.reload('test')).ok, `${version}: rotated mid-handshake`);
    release();
    await secured;
    t.equal(new X509Certificate(client.getPeerCertificate(false).raw).fingerprint256, new X509Certificate(before.certPem).fingerprint256, `${version}: completed with the certificate it started with`);
    const reply = await new Promise<string>((resolve) => {
      const out: Buffer[] = [];
      client.on('data', (d: Buffer) => out.push(d));
      client.on('close', () => resolve(Buffer.concat(out).toString('latin1')));
      client.write('GET /v1 HTTP/1.1\r\nHost: deathstar\r\nConnection: close\r\n\r\n');
    });
    t.match(reply, /^HTTP\/1\.1 \d{3} /, `${version}: the request on it is answered`);
  }
});
