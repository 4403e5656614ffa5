/** dnsMaxInFlight, upstream timeout, TCP idle timeout and policy swaps, end to end. */
import t from 'tap';
import net from 'node:net';
import { DnsHarness, dig, dnsPolicy } from '../helpers/dns-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.12' };
const h = await DnsHarness.start({
  pods: [APP],
  policies: dnsPolicy('app-dns', { app: 'client' }, ['matchPattern: "*.example"']),
  limitsExtra: '    dnsMaxInFlight: 2\n    idleTimeoutMs: 300\n',
});
t.teardown(() => h.close());

t.test('over dnsMaxInFlight: SERVFAIL at once; upstream timeout: SERVFAIL', async (t) => {
  h.upstream.misbehave('slow1.example', 'silent');
  h.upstream.misbehave('slow2.example', 'silent');
  const s1 = dig(h.port, 'slow1.example', { from: APP.ip });
  const s2 = dig(h.port, 'slow2.example', { from: APP.ip });
  await new Promise((r) => setTimeout(r, 100));
  t.equal(h.listener.proxy.inFlight, 2);
  const t0 = Date.now();
  const over = await dig(h.port, 'fast.example', { from: APP.ip });
  t.equal(over.status, 'SERVFAIL', 'third query refused with SERVFAIL');
  t.ok(Date.now() - t0 < 300, 'answered before the upstream timeout (400 ms)');
  t.equal(h.upstream.queriesFor('fast.example').length, 0, 'not forwarded');
  const [r1, r2] = await Promise.all([s1, s2]);
  t.equal(r1.status, 'SERVFAIL', 'upstream timeout ⇒ SERVFAIL');
  t.equal(r2.status, 'SERVFAIL');
  t.equal(h.listener.proxy.inFlight, 0);
  const after = await dig(h.port, 'fast.example', { from: APP.ip });
  t.equal(after.status, 'NOERROR', 'capacity back');
});

t.test('TCP idle connections are closed', async (t) => {
  const closed = await new Promise<number>((resolve) => {
    const t0 = Date.now();
    const s = net.connect({ port: h.port, host: '127.0.0.1', localAddress: APP.ip });
    s.on('close', () => resolve(Date.now() - t0));
    s.on('error', () => {});
    setTimeout(() => {
      s.destroy();
      resolve(-1);
    }, 5000);
  });
  t.ok(closed > 0 && closed < 3000, `closed after ${closed} ms`);
});

t.test('policy swap: a new snapshot decides the next query', async (t) => {
  t.equal((await dig(h.port, 'a.example', { from: APP.ip })).status, 'NOERROR');
  const old = h.snapshot;
  // Recompile with a policy that no longer allows *.example.
  const { loadConfigDir } = await import('../../src/config/load.js');
  const { compileSnapshot } = await import('../../src/policy/compile.js');
  const { writeFile, mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { podYaml, KUBE_DNS } = await import('../helpers/dns-harness.js');
  const dir = await mkdtemp(join(tmpdir(), 'l7w-dns-swap-'));
  await writeFile(join(dir, 'p.yaml'), [KUBE_DNS, APP].map(podYaml).join('---\n') + '---\n' +
    dnsPolicy('app-dns', { app: 'client' }, ['matchName: only.other']).replaceAll('PORT', String(h.upstream.port)));
  const loaded = await loadConfigDir(dir);
  const c = compileSnapshot(loaded.docs, { version: old.version + 1, ipOverlay: h.overlay });
  t.ok(c.snapshot);
  h.snapshot = c.snapshot!;
  t.equal((await dig(h.port, 'a.example', { from: APP.ip })).status, 'REFUSED');
  t.equal((await dig(h.port, 'only.other', { from: APP.ip })).status, 'NOERROR');
});
