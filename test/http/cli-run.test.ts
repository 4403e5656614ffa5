/**
 * `l7warden run` as a user runs it: the built CLI in a child process, the system
 * curl as the client (HTTP/1.1, --http2-prior-knowledge, --interface to act as
 * tiefighter / xwing), admin /healthz and /readyz, exit 1 with located errors on an
 * invalid config before anything listens, SIGTERM ⇒ exit 0. Also WebSocket
 * upgrades (decided on the upgrade request, tunnelled only after a real 101) and
 * `l3DenyAction: reset`.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import * as http from 'node:http';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir, makeConfigDir, STARWARS_PODS } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { curl, rawExchange, statuses } from '../helpers/clients.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LOADER = ['--import=@tapjs/typescript/import', `${ROOT}src/cli/main.ts`];

function runCli(args: string[], onLine?: (l: string) => void) {
  const child = spawn(process.execPath, [...LOADER, ...args], { cwd: ROOT, env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const l of d.toString().split('\n')) if (l) onLine?.(l);
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void exit.then(() => clearTimeout(timer));
  return { child, exit, stderr: () => stderr };
}

t.test('l7warden run with curl', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url });
  t.teardown(cfg.cleanup);
  let proxyPort = 0;
  let adminPort = 0;
  const ready = new Promise<void>((resolve) => {
    const run = runCli(['run', '--config', cfg.dir], (l) => {
      const m = /^listening: deathstar \(ingress\) on [\d.]+:(\d+)/.exec(l);
      if (m) proxyPort = Number(m[1]);
      const a = /^admin: [\d.]+:(\d+)/.exec(l);
      if (a) adminPort = Number(a[1]);
      if (proxyPort && adminPort) resolve();
    });
    t.teardown(async () => {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    });
    (t.context as { run?: typeof run }).run = run;
  });
  await Promise.race([ready, new Promise((r) => setTimeout(r, 30_000))]);
  const run = (t.context as { run: ReturnType<typeof runCli> }).run;
  t.ok(proxyPort > 0 && adminPort > 0, `started: ${run.stderr()}`);

  const base = `http://127.0.0.1:${proxyPort}`;
  const land = await curl(['--interface', '127.0.0.10', '-H', 'Host: deathstar', '-X', 'POST', '-d', 'x', `${base}/v1/request-landing`, '-w', '\n%{http_code}']);
  t.equal(land.stdout, 'upstream:POST /v1/request-landing\n200', 'tiefighter lands (curl HTTP/1.1)');
  const exhaust = await curl(['--interface', '127.0.0.10', '-H', 'Host: deathstar', '-X', 'PUT', `${base}/v1/exhaust-port`, '-w', '%{http_code}']);
  t.equal(exhaust.stdout, 'Access denied\r\n403');
  const h2 = await curl(['--http2-prior-knowledge', '--interface', '127.0.0.10', '-H', 'Host: deathstar', '-X', 'POST', '-d', 'x', `${base}/v1/request-landing`, '-w', '\n%{http_code} %{http_version}']);
  t.equal(h2.stdout, 'upstream:POST /v1/request-landing\n200 2', 'curl --http2-prior-knowledge');
  const h2deny = await curl(['--http2-prior-knowledge', '--interface', '127.0.0.10', '-X', 'PUT', `${base}/v1/exhaust-port`, '-w', '%{http_code}']);
  t.equal(h2deny.stdout, 'Access denied\r\n403');
  const xwing = await curl(['--interface', '127.0.0.11', '-X', 'POST', '-d', 'x', `${base}/v1/request-landing`, '-w', '%{http_code}']);
  t.equal(xwing.stdout, 'Access denied\r\n403', 'xwing is denied');
  const head = await curl(['--interface', '127.0.0.10', '-I', `${base}/v1/exhaust-port`]);
  t.match(head.stdout, /^HTTP\/1\.1 403/);
  t.match(head.stdout, /content-length: 15/i);

  const health = await curl([`http://127.0.0.1:${adminPort}/healthz`, '-w', '%{http_code}']);
  t.equal(health.stdout, 'ok\n200');
  const readyz = await curl([`http://127.0.0.1:${adminPort}/readyz`, '-w', '%{http_code}']);
  t.equal(readyz.stdout, 'ready\n200');

  run.child.kill('SIGTERM');
  t.equal(await run.exit, 0, 'SIGTERM: exit 0');
  const after = await curl([`${base}/v1/request-landing`]);
  t.not(after.code, 0, 'nothing listens after shutdown');
});

t.test('invalid config: exit 1 with located errors, nothing listens', async (t) => {
  const cfg = await makeConfigDir({
    'pods.yaml': STARWARS_PODS,
    'bad.yaml': `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: bad }
spec:
  endpointSelector: { matchLabels: { org: empire } }
  ingress:
  - toPorts:
    - ports: [{ port: "99999", protocol: TCP }]
      rules: { http: [{ method: "GET", path: "((" }] }
`,
  });
  t.teardown(cfg.cleanup);
  const run = runCli(['run', '--config', cfg.dir]);
  t.equal(await run.exit, 1);
  t.match(run.stderr(), /bad\.yaml:\d+:\d+: spec\.ingress\[0\]\.toPorts\[0\]/);
  t.notMatch(run.stderr(), /listening:/);
});

t.test('a flow log that cannot be opened: exit 1 naming spec.flowLog.file, nothing listens', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url, flowLogFile: '/nonexistent-l7w/dir/flows.json' });
  t.teardown(cfg.cleanup);
  const run = runCli(['run', '--config', cfg.dir]);
  t.equal(await run.exit, 1);
  t.match(run.stderr(), /proxy\.yaml:\d+:\d+: spec\.flowLog\.file: cannot open the flow log: ENOENT/);
  t.notMatch(run.stderr(), /listening:/);
  const workers = runCli(['run', '--workers', '2', '--config', cfg.dir]);
  t.equal(await workers.exit, 1, '--workers: the same');
  t.match(workers.stderr(), /spec\.flowLog\.file: cannot open the flow log/);
});

t.test('readyz before a snapshot is impossible: startProxy only returns ready; admin answers', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url });
  t.teardown(cfg.cleanup);
  const p = await startProxy({ configDir: cfg.dir });
  t.teardown(() => p.close(0));
  const r = await curl([`http://127.0.0.1:${p.admin!.port}/readyz`, '-w', '%{http_code}']);
  t.equal(r.stdout, 'ready\n200');
  const nf = await curl([`http://127.0.0.1:${p.admin!.port}/nope`, '-w', '%{http_code}']);
  t.match(nf.stdout, /404$/);
});

t.test('l3DenyAction: reset resets sources without an L3 allow; L7 denies still get 403', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url, l3DenyAction: 'reset', admin: false });
  t.teardown(cfg.cleanup);
  const p = await startProxy({ configDir: cfg.dir });
  t.teardown(() => p.close(0));
  const port = p.listeners[0]!.address.port;
  const x = await curl(['--interface', '127.0.0.11', '-X', 'POST', '-d', 'x', `http://127.0.0.1:${port}/v1/request-landing`]);
  t.not(x.code, 0, 'xwing: connection reset, no HTTP answer');
  t.match(x.stderr, /reset|Empty reply|Recv failure/i);
  const tie = await rawExchange(port, 'PUT /v1/exhaust-port HTTP/1.1\r\nHost: deathstar\r\n\r\n', { from: '127.0.0.10', ms: 500 });
  t.same(statuses(tie), [403]);
  t.equal(up.requests.length, 0);
});

t.test('WebSocket: decided on the upgrade request, tunnelled only after a real 101', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  (up.server as http.Server).on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    if (req.url === '/ws/fake') {
      // A 200 is not an upgrade (Envoy CVE-2024-23326).
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno');
      return;
    }
    const key = String(req.headers['sec-websocket-key']);
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    socket.on('error', () => {});
  });
  const cfg = await starWarsDir({ upstream: up.url, admin: false, extraHttp: ['{ method: "GET", path: "/ws/.*" }'] });
  t.teardown(cfg.cleanup);
  const p = await startProxy({ configDir: cfg.dir });
  t.teardown(() => p.close(0));
  const port = p.listeners[0]!.address.port;
  const upgrade = (path: string, from: string) =>
    `GET ${path} HTTP/1.1\r\nHost: deathstar\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n` +
    (from ? '' : '');
  const ok = await new Promise<string>((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.10' });
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n\r\n') && !buf.includes('echo:')) s.write('hello');
      if (buf.includes('echo:hello')) {
        s.destroy();
        resolve(buf);
      }
    });
    s.on('error', () => resolve(buf));
    setTimeout(() => {
      s.destroy();
      resolve(buf);
    }, 2000);
    s.write(upgrade('/ws/chat', '127.0.0.10'));
  });
  t.match(ok, /^HTTP\/1\.1 101 /);
  t.match(ok, /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
  t.match(ok, /echo:hello/, 'tunnel carries data both ways');

  const denied = await rawExchange(port, upgrade('/v1/exhaust-port', ''), { from: '127.0.0.10', ms: 800 });
  t.same(statuses(denied), [403], 'upgrade to a denied path: 403');
  const xw = await rawExchange(port, upgrade('/ws/chat', ''), { from: '127.0.0.11', ms: 800 });
  t.same(statuses(xw), [403], 'xwing: 403');
  const fake = await rawExchange(port, upgrade('/ws/fake', '') + 'GET /v1/exhaust-port HTTP/1.1\r\nHost: deathstar\r\n\r\n', { from: '127.0.0.10', ms: 800 });
  t.same(statuses(fake), [200], 'a 200 answer is relayed, not tunnelled');
  t.notMatch(fake, /exhaust/, 'bytes after a non-101 answer are not forwarded');
  const upgrades = up.requests.length;
  t.equal(upgrades, 0, 'upgrade requests never went through the pooled request path');
});
