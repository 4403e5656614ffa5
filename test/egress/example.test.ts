/**
 * examples/egress through `startProxy`, with its bundled upstreams
 * (examples/egress/upstreams.mjs) and curl: Cilium's dns.yaml expectations
 * (CILIUM-SEMANTICS.md §7.2) and the api.stripe.com pattern, over the egress
 * listener. The example's fixed ports (DNS 5300, HTTP 8080, stripe 8443) are
 * rewritten to free ones in a temp copy; everything else is the example as shipped.
 */
import t from 'tap';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startProxy } from '../../src/cli/run.js';
import { curl } from '../helpers/egress-harness.js';
import { dig } from '../helpers/dns-harness.js';

interface Upstreams {
  dnsPort: number;
  httpPort: number;
  stripePort: number;
  requests: { name: string; url: string }[];
  close(): Promise<unknown>;
}

const exampleDir = fileURLToPath(new URL('../../examples/egress/', import.meta.url));
const mod = (await import(pathToFileURL(join(exampleDir, 'upstreams.mjs')).href)) as {
  startUpstreams(o: object): Promise<Upstreams>;
};
const up = await mod.startUpstreams({ dnsPort: 0, httpPort: 0, stripePort: 0 });
const dir = await mkdtemp(join(tmpdir(), 'l7w-egress-example-'));
for (const f of await readdir(exampleDir)) {
  if (!f.endsWith('.yaml')) continue;
  const text = (await readFile(join(exampleDir, f), 'utf8'))
    .replaceAll('127.0.0.1:5300', `127.0.0.1:${up.dnsPort}`)
    .replaceAll('"5300"', `"${up.dnsPort}"`)
    .replaceAll('"8080"', `"${up.httpPort}"`)
    .replaceAll('"8443"', `"${up.stripePort}"`);
  await writeFile(join(dir, f), text);
}
const proxy = await startProxy({ configDir: dir, ephemeralPorts: true, flowLogFile: '' });
t.teardown(async () => {
  await proxy.close(0);
  await up.close();
  await rm(dir, { recursive: true, force: true });
});
const egress = proxy.listeners.find((l) => l.name === 'egress')!.address.port;
const dnsPort = proxy.listeners.find((l) => l.name === 'dns')!.address.port;
const XWING = '127.0.0.30';
const PAYMENT = '127.0.0.31';
const get = (from: string, url: string, extra: string[] = []) => curl(['--interface', from, '-x', `http://127.0.0.1:${egress}`, ...extra, url]);

t.test('dns.yaml: toFQDNs names reachable, the rest denied (xwing)', async (t) => {
  const expect: [string, number][] = [
    ['cilium.io', 200],
    ['sub.cilium.io', 200],
    ['service1.api.cilium.io', 200],
    ['special-region1-service.api.cilium.io', 200],
    ['anothersub.cilium.io', 403], // DNS allowed, connection dropped
    ['region1-service.api.cilium.io', 403], // DNS allowed, not selected by toFQDNs
    ['github.com', 403], // DNS refused
  ];
  for (const [name, status] of expect) {
    const r = await get(XWING, `http://${name}:${up.httpPort}/`);
    t.equal(r.status, status, name);
    if (status === 200) t.match(r.body, new RegExp(`^hello from ${name.replaceAll('.', '\\.')}`));
  }
  const reached = new Set(up.requests.map((q) => q.name));
  t.notOk(reached.has('anothersub.cilium.io') || reached.has('region1-service.api.cilium.io') || reached.has('github.com'), 'denied hosts were never reached');
});

t.test('dig through the DNS listener: outside the patterns is REFUSED', async (t) => {
  const r = await dig(dnsPort, 'github.com', { from: XWING });
  t.equal(r.status, 'REFUSED');
  const ok = await dig(dnsPort, 'anothersub.cilium.io', { from: XWING });
  t.equal(ok.status, 'NOERROR');
});

t.test('api.stripe.com pattern: CONNECT allowed on its port only, everything else denied', async (t) => {
  const r = await get(PAYMENT, `http://api.stripe.com:${up.stripePort}/v1/charges`, ['--proxytunnel']);
  t.equal(r.connectStatus, 200);
  t.match(r.body, /^hello from api\.stripe\.com \(127\.0\.0\.50\) GET \/v1\/charges/);
  const plain = await get(PAYMENT, `http://api.stripe.com:${up.stripePort}/v1/charges`);
  t.equal(plain.status, 200, 'the same port through the forward proxy');
  const other = await get(PAYMENT, `http://cilium.io:${up.httpPort}/`);
  t.equal(other.status, 403, 'DNS allowed (matchPattern *), egress not');
  const tunnel = await get(PAYMENT, `http://cilium.io:${up.httpPort}/`, ['--proxytunnel']);
  t.equal(tunnel.connectStatus, 403);
});
