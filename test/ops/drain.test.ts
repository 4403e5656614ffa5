/**
 * Graceful drain of `l7warden run` (the CLI in a child process): SIGTERM / SIGINT
 * stop accepting (new connections refused), HTTP/2 sessions get GOAWAY, idle
 * HTTP/1.1 keep-alive connections are closed, in-flight HTTP/1.1 responses carry
 * `Connection: close`, slow in-flight requests on both protocols complete, and the
 * process exits 0 within limits.drainTimeoutMs. A request slower than the drain
 * bound is cut at the deadline and the exit is still 0, on time. SIGHUP reloads.
 */
import t from 'tap';
import * as net from 'node:net';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startCli } from '../helpers/ops-cli.js';
import { starWarsDir, starWarsPolicy } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request } from '../helpers/clients.js';

const TIE = '127.0.0.10';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(10);
  return cond();
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal}: slow in-flight h1 and h2 requests finish, new connections refused, exit 0 in time`, async (t) => {
    const up = await startCaptureUpstream();
    t.teardown(() => up.close());
    let held = 0;
    up.routes.push((req, res) => {
      if (req.url !== '/slow') return false;
      held++;
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('slow done');
      }, 1200);
      return true;
    });
    const cfg = await starWarsDir({ upstream: up.url, extraHttp: ['{ method: "GET", path: "/slow" }'], limits: { drainTimeoutMs: 6000 } });
    t.teardown(cfg.cleanup);
    const cli = await startCli(t, ['--config', cfg.dir]);
    t.ok(cli.port > 0, `started: ${cli.stderr()}`);

    // An idle keep-alive HTTP/1.1 connection: closed at once by the drain.
    const idle = net.connect({ host: '127.0.0.1', port: cli.port, localAddress: TIE });
    idle.on('error', () => {});
    let idleClosedAt = 0;
    idle.on('close', () => (idleClosedAt = Date.now()));
    idle.write('GET /slow-not-allowed HTTP/1.1\r\nhost: deathstar\r\n\r\n');
    await new Promise((r) => idle.once('data', r));

    // In flight on HTTP/1.1 (keep-alive) and HTTP/2.
    const agent = new http.Agent({ keepAlive: true, localAddress: TIE });
    t.teardown(() => agent.destroy());
    const h1 = new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: cli.port, path: '/slow', agent, headers: { host: 'deathstar' } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }));
      });
      req.on('error', reject);
    });
    const session = http2.connect(`http://127.0.0.1:${cli.port}`, { localAddress: TIE });
    session.on('error', () => {});
    t.teardown(() => session.destroy());
    let goaway = false;
    session.on('goaway', () => (goaway = true));
    const h2 = new Promise<{ status: number; body: string }>((resolve) => {
      const st = session.request({ ':path': '/slow', ':authority': 'deathstar' });
      let status = 0;
      let body = '';
      st.on('response', (h) => (status = Number(h[':status'])));
      st.on('data', (d: Buffer) => (body += d.toString()));
      st.on('error', () => {});
      st.on('close', () => resolve({ status, body }));
    });
    t.ok(await until(() => held === 2, 10_000), 'both slow requests reached the upstream');

    const sentAt = Date.now();
    cli.child.kill(signal);
    t.ok(await until(() => idleClosedAt > 0, 2000), `idle keep-alive connection closed (${idleClosedAt - sentAt} ms)`);
    let refused = false;
    for (let i = 0; i < 50 && !refused; i++) {
      refused = await connectRefused(cli.port);
      if (!refused) await sleep(20);
    }
    t.ok(refused, 'new connections are refused while draining');
    t.ok(await until(() => goaway, 2000), 'HTTP/2 session got GOAWAY');
    const r1 = await h1;
    const r2 = await h2;
    t.same(r1, { status: 200, connection: 'close', body: 'slow done' }, 'h1 in-flight completes with Connection: close');
    t.same(r2, { status: 200, body: 'slow done' }, 'h2 in-flight stream completes');
    const ex = await cli.exit;
    t.equal(ex.code, 0, 'exit 0');
    t.ok(ex.at - sentAt < 6000 + 1500, `exited within the drain bound (${ex.at - sentAt} ms)`);
    t.ok(ex.at - sentAt >= 900, 'it did wait for the in-flight requests');
  });
}

t.test('a request slower than drainTimeoutMs is cut at the deadline; exit 0 on time', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  let held = 0;
  const pending: http.ServerResponse[] = [];
  up.routes.push((req, res) => {
    if (req.url !== '/slow') return false;
    held++;
    pending.push(res);
    return true;
  });
  t.teardown(() => {
    for (const r of pending) r.destroy();
  });
  const cfg = await starWarsDir({ upstream: up.url, extraHttp: ['{ method: "GET", path: "/slow" }'], limits: { drainTimeoutMs: 1500 } });
  t.teardown(cfg.cleanup);
  const cli = await startCli(t, ['--config', cfg.dir]);
  const h1 = h1Request(cli.port, { from: TIE, path: '/slow' }).then(
    (r) => `status ${r.status}`,
    (e: Error) => `error ${e.message}`,
  );
  t.ok(await until(() => held === 1, 10_000));
  const sentAt = Date.now();
  cli.child.kill('SIGTERM');
  const ex = await cli.exit;
  t.equal(ex.code, 0);
  const took = ex.at - sentAt;
  t.ok(took >= 1400 && took < 1500 + 1500, `exit after the 1.5 s drain bound, not before (${took} ms)`);
  t.match(await h1, /^error /, 'the unfinished request was cut (never answered as if complete)');
});

t.test('SIGHUP reloads the config directory', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url });
  t.teardown(cfg.cleanup);
  const cli = await startCli(t, ['--config', cfg.dir, '--no-watch']);
  t.equal((await h1Request(cli.port, { from: TIE, path: '/b/1' })).status, 403);
  await writeFile(join(cfg.dir, 'policy.yaml'), starWarsPolicy(['{ method: "GET", path: "/b/.*" }']));
  await sleep(300);
  t.equal((await h1Request(cli.port, { from: TIE, path: '/b/1' })).status, 403, '--no-watch: the file change alone does nothing');
  cli.child.kill('SIGHUP');
  t.ok(await until(() => /reload \(SIGHUP\): policy version 2 in force/.test(cli.stderr()), 5000), 'SIGHUP reload logged');
  t.equal((await h1Request(cli.port, { from: TIE, path: '/b/1' })).status, 200, 'new policy in force');
  cli.child.kill('SIGTERM');
  t.equal((await cli.exit).code, 0);
});
