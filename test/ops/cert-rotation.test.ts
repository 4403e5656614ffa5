/**
 * Certificates rotate without a restart: the files under certs/<ns>/<name>/ change,
 * the watcher reloads, new handshakes get the new certificate, a connection opened
 * before keeps working. A broken rotation (certificate without its key) is refused
 * whole: handshakes keep the last good certificate and the error is on /readyz.
 */
import t from 'tap';
import * as tls from 'node:tls';
import * as https from 'node:https';
import { X509Certificate } from 'node:crypto';
import { mkdir, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { newCA, leaf, tempDir } from '../helpers/tls-pki.js';

const TIE = '127.0.0.10';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('rotate the served certificate by rewriting its files', async (t) => {
  const certs = tempDir(t);
  const ca = newCA();
  const mk = () => leaf(ca, { dns: ['deathstar'], ips: ['127.0.0.1'] });
  const [l1, l2, l3] = [mk(), mk(), mk()];
  const dir = join(certs, 'default', 'd');
  await mkdir(dir, { recursive: true });
  const put = async (name: string, text: string) => {
    await writeFile(join(dir, `.${name}.tmp`), text);
    await rename(join(dir, `.${name}.tmp`), join(dir, name));
  };
  await put('tls.crt', l1.certPem);
  await put('tls.key', l1.keyPem);

  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url, extraListenerYaml: '    tls: { secret: default/d }\n' });
  t.teardown(cfg.cleanup);
  const proxy = await startProxy({ configDir: cfg.dir, certsDir: certs, watch: { debounceMs: 50 } });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners[0]!.address.port;

  const fingerprint = () =>
    new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: ca.certPem, servername: 'deathstar', localAddress: TIE, ALPNProtocols: ['http/1.1'] }, () => {
        const fp = new X509Certificate(s.getPeerCertificate(false).raw).fingerprint256;
        s.destroy();
        resolve(fp);
      });
      s.on('error', reject);
    });
  const fp = (l: { certPem: string }) => new X509Certificate(l.certPem).fingerprint256;
  const waitFor = async (want: string) => {
    for (let i = 0; i < 100; i++) {
      if ((await fingerprint()) === want) return true;
      await sleep(50);
    }
    return false;
  };

  t.equal(await fingerprint(), fp(l1), 'serves the first certificate');
  // A keep-alive HTTPS connection opened before the rotation.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca.certPem, servername: 'deathstar', localAddress: TIE });
  t.teardown(() => agent.destroy());
  const post = () =>
    new Promise<{ status: number; peer: string }>((resolve, reject) => {
      const r = https.request({ host: '127.0.0.1', port, path: '/v1/request-landing', method: 'POST', agent, headers: { host: 'deathstar' } }, (res) => {
        const peer = new X509Certificate((res.socket as tls.TLSSocket).getPeerCertificate(false).raw).fingerprint256;
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, peer }));
      });
      r.on('error', reject);
      r.end('x');
    });
  const before = await post();
  t.same(before, { status: 200, peer: fp(l1) });

  await put('tls.crt', l2.certPem);
  await put('tls.key', l2.keyPem);
  t.ok(await waitFor(fp(l2)), 'new handshakes get the rotated certificate');
  const after = await post();
  t.same(after, { status: 200, peer: fp(l1) }, 'the connection opened before keeps working (old certificate, same connection)');

  // Broken rotation: a new certificate whose key is not there.
  const errs = proxy.reloader.last;
  await put('tls.crt', l3.certPem);
  for (let i = 0; i < 100 && proxy.reloader.last === errs; i++) await sleep(50);
  t.ok(proxy.reloader.lastError, 'refused');
  t.match(proxy.reloader.lastError?.errors.join('\n') ?? '', /default\/d: .*(does not match|key)/, 'names the Secret');
  t.equal(await fingerprint(), fp(l2), 'handshakes keep the last good certificate');
  await put('tls.key', l3.keyPem);
  t.ok(await waitFor(fp(l3)), 'the completed rotation is taken');
  t.equal(proxy.reloader.lastError, undefined, 'error cleared');
});
