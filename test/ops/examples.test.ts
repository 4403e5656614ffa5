/**
 * The deployment examples work as documented (ports moved to 0, upstreams replaced by
 * a capture server): examples/node-local through HAProxy `send-proxy-v2` (tiefighter
 * lands, exhaust-port 403, xwing reset, a direct connection without a PROXY header
 * refused), examples/api-front over TLS (world reads the catalogue, world cannot
 * order, the billing client certificate can, over HTTP/2).
 */
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { cp, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { startProxy } from '../../src/cli/run.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { curl } from '../helpers/clients.js';
import { tempDir } from '../helpers/tls-pki.js';
import type { TestT } from '../helpers/tap.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function exampleCopy(t: TestT, name: string, upstreamUrl: string): Promise<string> {
  const dir = join(tempDir(t), name);
  await cp(join(ROOT, 'examples', name), dir, { recursive: true });
  const p = join(dir, 'proxy.yaml');
  const text = (await readFile(p, 'utf8'))
    .replace(/address: 127\.0\.0\.1:\d+/g, 'address: 127.0.0.1:0')
    .replace(/upstream: http:\/\/127\.0\.0\.1:\d+/, `upstream: ${upstreamUrl}`)
    .replace(/file: "-"/, 'file: ""');
  await writeFile(p, text);
  return dir;
}

// HAProxy is a test dependency: `npm test` installs it (scripts/system-deps.sh), so a
// missing binary fails here instead of skipping.
t.test('examples/node-local through HAProxy send-proxy-v2', async (t) => {
  t.doesNotThrow(() => execFileSync('haproxy', ['-v'], { stdio: 'ignore' }), 'haproxy is installed');
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const dir = await exampleCopy(t, 'node-local', up.url);
  const proxy = await startProxy({ configDir: dir });
  t.teardown(() => proxy.close(0));
  const l7w = proxy.listeners[0]!.address.port;
  const front = await new Promise<number>((r) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => r(p));
    });
  });
  const cfg = (await readFile(join(dir, 'haproxy.cfg'), 'utf8')).replace('bind 127.0.0.1:8080', `bind 127.0.0.1:${front}`).replace('127.0.0.1:8100', `127.0.0.1:${l7w}`);
  await writeFile(join(dir, 'haproxy.cfg'), cfg);
  const ha = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
  t.teardown(() => {
    ha.kill('SIGKILL');
  });
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(front, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) break;
    await sleep(50);
  }
  const base = `http://127.0.0.1:${front}`;
  const land = await curl(['--interface', '127.0.0.10', '-H', 'Host: deathstar', '-X', 'POST', '-d', 'x', `${base}/v1/request-landing`, '-w', ' %{http_code}']);
  t.equal(land.stdout, 'upstream:POST /v1/request-landing 200', 'tiefighter lands (identity from the PROXY header)');
  const port = await curl(['--interface', '127.0.0.10', '-X', 'PUT', `${base}/v1/exhaust-port`, '-w', ' %{http_code}']);
  t.equal(port.stdout, 'Access denied\r\n 403');
  const xwing = await curl(['--interface', '127.0.0.11', '-X', 'POST', `${base}/v1/request-landing`, '-w', '%{http_code}']);
  t.equal(xwing.stdout, '000', 'xwing: reset (no L3 allow, l3DenyAction: reset)');
  const direct = await curl(['--interface', '127.0.0.10', '-X', 'POST', `http://127.0.0.1:${l7w}/v1/request-landing`, '-w', '%{http_code}']);
  t.equal(direct.stdout, '000', 'straight to l7warden without a PROXY header: refused');
  t.equal(up.requests.length, 1, 'only the allowed request reached the upstream');
});

t.test('examples/api-front over TLS with client-certificate identity', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const dir = await exampleCopy(t, 'api-front', up.url);
  const certs = join(dir, 'certs');
  await mkdir(certs, { recursive: true });
  const cli = (args: string[]) => execFileSync(process.execPath, ['--import=@tapjs/typescript/import', join(ROOT, 'src/cli/main.ts'), 'certs', '--out', certs, ...args], { cwd: ROOT, env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }, stdio: 'ignore' });
  cli(['--name', 'shop/orders-tls', '--dns', 'orders.example.test', '--ip', '127.0.0.1']);
  cli(['--name', 'shop/billing-client', '--client', 'spiffe://cluster.local/ns/shop/sa/billing']);
  const proxy = await startProxy({ configDir: dir, certsDir: certs });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners[0]!.address.port;
  const r = ['--resolve', `orders.example.test:${port}:127.0.0.1`, '--cacert', join(certs, 'ca', 'ca.crt')];
  const url = `https://orders.example.test:${port}`;
  t.equal((await curl([...r, `${url}/v1/catalogue/shoes`, '-w', ' %{http_code}'])).stdout, 'upstream:GET /v1/catalogue/shoes 200', 'world reads the catalogue');
  t.equal((await curl([...r, '-X', 'POST', `${url}/v1/orders`, '-w', ' %{http_code}'])).stdout, 'Access denied\r\n 403', 'world cannot order');
  const billing = await curl([...r, '--http2', '--cert', join(certs, 'shop/billing-client/tls.crt'), '--key', join(certs, 'shop/billing-client/tls.key'), '-X', 'POST', `${url}/v1/orders`, '-w', ' %{http_code} %{http_version}']);
  t.equal(billing.stdout, 'upstream:POST /v1/orders 200 2', 'billing (client certificate) orders over HTTP/2');
});
