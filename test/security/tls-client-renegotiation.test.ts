/**
 * Client-initiated TLS 1.2 renegotiation against the proxy's terminating TLS.
 *
 * Egress interception terminates the client's TLS with a bare server-side
 * `tls.TLSSocket` (no tls.Server). Node's renegotiation limit (tls.CLIENT_RENEG_LIMIT,
 * 3 per 10 minutes) reports ERR_TLS_SESSION_ATTACK through `_emitTLSError`, which on
 * such a socket only emits the internal '_tlsError' event: nothing closed the
 * connection. One intercepted tunnel renegotiated without limit (426 full handshakes
 * in 2 s, each a private-key operation on the proxy's event loop; 8 in a row and the
 * request after them still went through). On the ingress listener (a tls.Server)
 * Node's limit applied: the 4th renegotiation left the connection stalled until a
 * timeout.
 *
 * Envoy (BoringSSL) never accepts a renegotiation as a server. Now neither does
 * l7warden: every terminating context carries SSL_OP_NO_RENEGOTIATION, so OpenSSL
 * answers the first attempt with a no_renegotiation alert and the client sees
 * ERR_SSL_NO_RENEGOTIATION. TLS 1.3 has no renegotiation at all.
 */
import t from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { startProxy } from '../../src/cli/run.js';
import { EgressHarness, KUBE_DNS, capturesOnOnePort } from '../helpers/egress-harness.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { tempDir } from '../helpers/tls-pki.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const interceptCA = makeCA({ commonName: 'intercept CA' });
const interceptLeaf = makeLeaf(interceptCA, { dns: ['secure.example.test', 'deathstar'] });
const upstreamCA = makeCA({ commonName: 'upstream CA' });
const destLeaf = makeLeaf(upstreamCA, { dns: ['secure.example.test'] });

/**
 * Renegotiate up to `max` times on an established TLS 1.2 client socket; the count
 * that succeeded and the first error. Bounded: 4 s in all.
 */
function renegotiate(c: tls.TLSSocket, max: number): Promise<{ done: number; error?: string }> {
  return new Promise((resolve) => {
    let done = 0;
    let settled = false;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ done, ...(error ? { error } : {}) });
    };
    const timer = setTimeout(() => finish('stalled'), 4000);
    c.on('error', (e) => finish((e as NodeJS.ErrnoException).code ?? e.message));
    c.on('close', () => finish('closed'));
    const again = () => {
      if (done >= max) return finish();
      const started = c.renegotiate({ rejectUnauthorized: false }, (err) => {
        if (err) return finish((err as NodeJS.ErrnoException).code ?? err.message);
        done++;
        again();
      });
      if (!started) finish('not started');
    };
    again();
  });
}

t.test('egress interception: renegotiation is refused', async (t) => {
  const [dest] = await capturesOnOnePort(['127.0.0.90'], { kind: 'https', cert: destLeaf.certPem, key: destLeaf.keyPem });
  const PORT = dest!.port;
  const h = await EgressHarness.start((dnsPort) => ({
    pods: [KUBE_DNS, APP],
    policies: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: reneg }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules: { dns: [{ matchPattern: "*.example.test" }] }
  - toFQDNs: [{ matchName: secure.example.test }]
    toPorts:
    - ports: [{ port: "${PORT}", protocol: TCP }]
      terminatingTLS: { secret: { namespace: default, name: intercept } }
      originatingTLS: { secret: { namespace: default, name: upstream-ca } }
      rules: { http: [{ method: GET, path: "/ok.*" }] }
`,
    secrets: {
      'default/intercept': { 'tls.crt': interceptLeaf.certPem, 'tls.key': interceptLeaf.keyPem },
      'default/upstream-ca': { 'ca.crt': upstreamCA.certPem },
    },
  }));
  h.dns.setRecord('secure.example.test', { a: ['127.0.0.90'] });
  t.teardown(async () => {
    await h.close();
    await dest!.close();
  });

  const intercepted = async (): Promise<tls.TLSSocket> => {
    const s = net.connect({ host: '127.0.0.1', port: h.egressPort, localAddress: APP.ip });
    s.on('error', () => {});
    await once(s, 'connect');
    s.write(`CONNECT secure.example.test:${PORT} HTTP/1.1\r\nHost: secure.example.test:${PORT}\r\n\r\n`);
    const [answer] = (await once(s, 'data')) as [Buffer];
    t.match(answer.toString('latin1'), /^HTTP\/1\.1 200/);
    const c = tls.connect({ socket: s, servername: 'secure.example.test', ca: interceptCA.certPem, maxVersion: 'TLSv1.2' });
    c.on('error', () => {});
    await once(c, 'secureConnect');
    return c;
  };

  const c = await intercepted();
  const r = await renegotiate(c, 8);
  c.destroy();
  t.equal(r.done, 0, 'no renegotiation completed');
  t.equal(r.error, 'ERR_SSL_NO_RENEGOTIATION', 'the proxy answered with a no_renegotiation alert');

  // The proxy still serves a fresh tunnel.
  const again = await intercepted();
  const reply = await new Promise<string>((resolve) => {
    const out: Buffer[] = [];
    again.on('data', (d: Buffer) => out.push(d));
    again.on('close', () => resolve(Buffer.concat(out).toString('latin1')));
    again.write(`GET /ok HTTP/1.1\r\nHost: secure.example.test:${PORT}\r\nConnection: close\r\n\r\n`);
  });
  t.match(reply, /^HTTP\/1\.1 200/);
  t.same(dest!.requests.map((q) => q.url), ['/ok']);
});

t.test('ingress TLS listener: renegotiation is refused', async (t) => {
  const certs = tempDir(t);
  const dir = join(certs, 'default', 'd');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'tls.crt'), interceptLeaf.certPem);
  await writeFile(join(dir, 'tls.key'), interceptLeaf.keyPem);
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url, extraListenerYaml: '    tls: { secret: default/d }\n' });
  t.teardown(cfg.cleanup);
  const proxy = await startProxy({ configDir: cfg.dir, certsDir: certs });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners[0]!.address.port;

  const attempt = async (servername: string | undefined) => {
    const c = tls.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.10', ...(servername ? { servername } : {}), ca: interceptCA.certPem, checkServerIdentity: () => undefined, maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] });
    c.on('error', () => {});
    await once(c, 'secureConnect');
    const r = await renegotiate(c, 5);
    c.destroy();
    return r;
  };
  // With an SNI the certificate table's context serves; without, the server's default.
  t.same(await attempt('deathstar'), { done: 0, error: 'ERR_SSL_NO_RENEGOTIATION' }, 'SNI context');
  t.same(await attempt(undefined), { done: 0, error: 'ERR_SSL_NO_RENEGOTIATION' }, 'default context');

  // After a certificate rotation (the default context is replaced with setSecureContext).
  const rotated = makeLeaf(interceptCA, { dns: ['deathstar'] });
  await writeFile(join(dir, 'tls.crt'), rotated.certPem);
  await writeFile(join(dir, 'tls.key'), rotated.keyPem);
  const report = await proxy.reload('test');
  t.ok(report.ok, 'reloaded');
  t.same(await attempt('deathstar'), { done: 0, error: 'ERR_SSL_NO_RENEGOTIATION' }, 'SNI context after the rotation');
  t.same(await attempt(undefined), { done: 0, error: 'ERR_SSL_NO_RENEGOTIATION' }, 'default context after the rotation');
});
