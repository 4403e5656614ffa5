/**
 * SPEC.md Outcomes for the upstream side and TLS: refused ⇒ 503, no response in
 * time ⇒ 504, TLS verification failure ⇒ 502 with nothing sent, a cut response is
 * never passed off as complete, a client abort destroys the upstream request; a TLS
 * listener serves ALPN h2 and http/1.1 and answers 421 when the Host is not covered
 * by the certificate.
 */
import t from 'tap';
import * as https from 'node:https';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request, h2Connect, h2Request, rawExchange } from '../helpers/clients.js';
import { newCA, leaf } from '../helpers/tls-pki.js';

const TIE = '127.0.0.10';
const LAND = { method: 'POST', path: '/v1/request-landing', from: TIE, body: 'x' };
const extra = ['{ method: "GET", path: "/slow|/cut|/hang" }'];

function secretYaml(ref: string, data: Record<string, string>): string {
  const [ns, name] = ref.split('/');
  const lines = Object.entries(data).map(([k, v]) => `  ${k}: |\n${v.trim().split('\n').map((l) => '    ' + l).join('\n')}`);
  return `apiVersion: v1\nkind: Secret\nmetadata: { name: ${name}, namespace: ${ns} }\ntype: kubernetes.io/tls\nstringData:\n${lines.join('\n')}\n`;
}

t.test('upstream refused: 503 on HTTP/1.1 and HTTP/2', async (t) => {
  const cfg = await starWarsDir({ upstream: 'http://127.0.0.1:1', admin: false });
  t.teardown(cfg.cleanup);
  const p = await startProxy({ configDir: cfg.dir });
  t.teardown(() => p.close(0));
  const port = p.listeners[0]!.address.port;
  const r = await h1Request(port, LAND);
  t.equal(r.status, 503);
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.close());
  const r2 = await h2Request(s, { method: 'POST', path: '/v1/request-landing', body: 'x' });
  t.equal(r2.status, 503);
  const denied = await h1Request(port, { method: 'PUT', path: '/v1/exhaust-port', from: TIE });
  t.equal(denied.status, 403, 'policy still decides before the upstream is tried');
});

t.test('timeouts, cut responses, client aborts', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  let hangClosed = false;
  up.routes.push((req, res) => {
    if (req.url === '/slow') return true; // never answers
    if (req.url === '/hang') {
      res.on('close', () => {
        hangClosed = true;
      });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      return true;
    }
    if (req.url === '/cut') {
      res.writeHead(200, { 'content-length': '100' });
      res.write('only part');
      setTimeout(() => res.socket?.destroy(), 20);
      return true;
    }
    return false;
  });
  const cfg = await starWarsDir({ upstream: up.url, admin: false, extraHttp: extra, limits: { upstreamTimeoutMs: 300 } });
  t.teardown(cfg.cleanup);
  const p = await startProxy({ configDir: cfg.dir });
  t.teardown(() => p.close(0));
  const port = p.listeners[0]!.address.port;

  const r = await h1Request(port, { path: '/slow', from: TIE });
  t.equal(r.status, 504, 'no response headers in time: 504');
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.close());
  const r2 = await h2Request(s, { path: '/slow' });
  t.equal(r2.status, 504, 'HTTP/2 too');

  const raw = await rawExchange(port, 'GET /cut HTTP/1.1\r\nHost: deathstar\r\n\r\n', { from: TIE, ms: 1000 });
  t.match(raw, /^HTTP\/1\.1 200/);
  t.notMatch(raw, /0\r\n\r\n$/, 'no final chunk: the client can tell the body was cut');
  const r3 = await h2Request(s, { path: '/cut' });
  t.not(r3.rstCode, 0, 'HTTP/2: cut upstream body resets the stream');

  // client abort: the upstream request is destroyed
  const before = up.requests.length;
  await rawExchange(port, 'GET /hang HTTP/1.1\r\nHost: deathstar\r\n\r\n', { from: TIE, ms: 300 });
  const until = Date.now() + 2000;
  while (!hangClosed && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  t.equal(up.requests.length, before + 1);
  t.ok(hangClosed, 'upstream side closed after the client went away');
});

t.test('TLS origination: verification failure is 502 and nothing is sent', async (t) => {
  const goodCA = newCA('upstream CA');
  const otherCA = newCA('other CA');
  const cert = leaf(goodCA, { dns: ['api.internal'] });
  let received = 0;
  const srv = https.createServer({ key: cert.keyPem, cert: cert.certPem }, (req, res) => {
    received++;
    res.end(`tls:${req.url}`);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }));
  const upPort = (srv.address() as AddressInfo).port;
  for (const [ca, servername, expect] of [
    [otherCA.certPem, 'api.internal', 502],
    [goodCA.certPem, 'wrong.internal', 502],
    [goodCA.certPem, 'api.internal', 200],
  ] as const) {
    const cfg = await starWarsDir({
      upstream: `https://127.0.0.1:${upPort}`,
      admin: false,
      extraListenerYaml: `    upstreamTLS: { secret: default/api-ca, servername: ${servername} }\n`,
      extraFiles: { 'secret.yaml': secretYaml('default/api-ca', { 'ca.crt': ca }) },
    });
    t.teardown(cfg.cleanup);
    const p = await startProxy({ configDir: cfg.dir });
    const before = received;
    const r = await h1Request(p.listeners[0]!.address.port, LAND);
    t.equal(r.status, expect, `CA/servername ${servername}: ${expect}`);
    t.equal(received - before, expect === 200 ? 1 : 0, 'upstream received only verified requests');
    await p.close(0);
  }
});

t.test('TLS listener: ALPN h2 and http/1.1, 421 for a name the certificate does not cover', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const ca = newCA('front CA');
  const cert = leaf(ca, { dns: ['deathstar'] });
  const cfg = await starWarsDir({
    upstream: up.url,
    admin: false,
    extraListenerYaml: `    tls: { secret: default/deathstar-tls }\n`,
    extraFiles: { 'secret.yaml': secretYaml('default/deathstar-tls', { 'tls.crt': cert.certPem, 'tls.key': cert.keyPem, 'ca.crt': ca.certPem }) },
  });
  t.teardown(cfg.cleanup);
  const p = await startProxy({ configDir: cfg.dir });
  t.teardown(() => p.close(0));
  const port = p.listeners[0]!.address.port;
  const h1 = (host: string) =>
    new Promise<{ status: number; alpn: string | false }>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/v1/request-landing', servername: 'deathstar', ca: ca.certPem, localAddress: TIE, headers: { host }, agent: false, ALPNProtocols: ['http/1.1'] } as https.RequestOptions, // https hands ALPNProtocols to tls.connect
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, alpn: (res.socket as import('node:tls').TLSSocket).alpnProtocol ?? false }));
        },
      );
      req.on('error', reject);
      req.end('x');
    });
  const a = await h1('deathstar');
  t.equal(a.status, 200);
  t.equal(a.alpn, 'http/1.1');
  const b = await h1('other.example');
  t.equal(b.status, 421, 'Host not covered by the certificate: 421');

  const s = http2.connect(`https://127.0.0.1:${port}`, { ca: ca.certPem, servername: 'deathstar', localAddress: TIE });
  s.on('error', () => {});
  t.teardown(() => s.close());
  const r = await h2Request(s, { method: 'POST', path: '/v1/request-landing', body: 'x' });
  t.equal(r.status, 200, 'h2 over TLS');
  t.equal((s.socket as import('node:tls').TLSSocket).alpnProtocol, 'h2');
  const d = await h2Request(s, { method: 'PUT', path: '/v1/exhaust-port' });
  t.equal(d.status, 403);
});
