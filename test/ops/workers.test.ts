/**
 * `l7warden run --workers 2` (node:cluster), the CLI in a child process:
 * - the same verdicts as one process for the same requests, and both workers serve
 *   (which process owns each upstream connection is read from /proc);
 * - a reload started in the primary (file watch) reaches every worker; an invalid
 *   change is refused in all, shown on the primary's /readyz and counted once;
 * - /metrics aggregates the workers, /flows carries their records;
 * - a killed worker is replaced and the listener keeps serving;
 * - SIGTERM drains the workers and the primary exits 0.
 */
import t from 'tap';
import * as http from 'node:http';
import { readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir, starWarsPolicy } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request } from '../helpers/clients.js';
import { startCli } from '../helpers/ops-cli.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const REQUESTS: { from: string; method: string; path: string }[] = [
  { from: '127.0.0.10', method: 'POST', path: '/v1/request-landing' },
  { from: '127.0.0.10', method: 'PUT', path: '/v1/exhaust-port' },
  { from: '127.0.0.11', method: 'POST', path: '/v1/request-landing' },
  { from: '127.0.0.10', method: 'GET', path: '/b/1' },
  { from: '127.0.0.12', method: 'POST', path: '/v1/request-landing' },
  { from: '127.0.0.10', method: 'POST', path: '/v1/request-landing?x=1' },
  // Two allowed requests per round, an odd count: round-robin gives each worker some.
  { from: '127.0.0.10', method: 'POST', path: '/v1/request-landing' },
];

async function verdicts(port: number, rounds: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < rounds; i++) {
    for (const r of REQUESTS) {
      // A new connection per request, so cluster's round-robin spreads them.
      const res = await h1Request(port, { from: r.from, method: r.method, path: r.path, body: r.method === 'POST' ? 'x' : undefined });
      out.push(`${r.from} ${r.method} ${r.path} ${res.status}`);
    }
  }
  return out;
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** pid owning the local TCP port `localPort` (Linux /proc), among `pids`. */
async function ownerOfPort(localPort: number, pids: number[]): Promise<number | undefined> {
  const hex = localPort.toString(16).toUpperCase().padStart(4, '0');
  const tcp = await readFile('/proc/net/tcp', 'utf8');
  let inode: string | undefined;
  for (const line of tcp.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex}`)) inode = f[9];
  }
  if (!inode) return undefined;
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if ((await readlink(`/proc/${pid}/fd/${fd}`)) === `socket:[${inode}]`) return pid;
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return undefined;
}

function workerPids(stderr: string): Map<number, number> {
  const m = new Map<number, number>();
  for (const x of stderr.matchAll(/worker (\d+) ready \(pid (\d+)\)/g)) m.set(Number(x[1]), Number(x[2]));
  return m;
}

t.test('--workers 2: same verdicts as one process, both serve, reload broadcast, metrics, flows, replacement, drain', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  // Upstream connections, by the proxy side's port, as they are accepted.
  const upstreamPeers: number[] = [];
  up.server.on('connection', (s: import('node:net').Socket) => upstreamPeers.push(s.remotePort ?? 0));
  const cfg = await starWarsDir({ upstream: up.url, flowLogFile: '' });
  t.teardown(cfg.cleanup);

  // The reference: one process, in-process.
  const single = await startProxy({ configDir: cfg.dir });
  const expected = await verdicts(single.listeners[0]!.address.port, 1);
  await single.close(0);
  t.same(
    expected.map((l) => l.split(' ').pop()),
    ['200', '403', '403', '403', '403', '403', '200'],
    'reference verdicts (tiefighter lands; exhaust-port, xwing, unknown source, a query string denied)',
  );

  const cli = await startCli(t, ['--workers', '2', '--config', cfg.dir]);
  t.ok(cli.port > 0 && cli.admin > 0, `started: ${cli.stderr()}`);
  let pids = workerPids(cli.stderr());
  t.equal(pids.size, 2, 'two workers ready');

  const before = upstreamPeers.length;
  const got = await verdicts(cli.port, 8);
  t.same(got, Array.from({ length: 8 }, () => expected).flat(), 'same verdicts as one process (56 requests)');
  // Which processes held the upstream connections of these requests?
  const owners = new Set<number>();
  for (const p of upstreamPeers.slice(before)) {
    const o = await ownerOfPort(p, [...pids.values()]);
    if (o) owners.add(o);
  }
  t.equal(owners.size, 2, `both workers forwarded requests (${[...owners].join(', ')})`);

  // Metrics from both workers, added up on the primary's admin address.
  const metrics = (await get(cli.admin, '/metrics')).body;
  let decisions = 0;
  for (const line of metrics.split('\n')) if (line.startsWith('l7warden_policy_decisions_total{')) decisions += Number(line.split(' ').pop());
  t.equal(decisions, 56, 'l7warden_policy_decisions_total sums both workers');
  t.match(metrics, /^l7warden_policy_reloads_total 1$/m, 'reload counter is one per cluster, not per worker');
  // Flow records from the workers, on the primary's /flows.
  await sleep(300);
  const flows = (await get(cli.admin, '/flows?last=4096')).body.split('\n').filter(Boolean);
  t.ok(flows.length >= 56, `/flows has the workers' records (${flows.length})`);
  t.ok(flows.some((l) => l.includes('"verdict":"DROPPED"')) && flows.some((l) => l.includes('"verdict":"FORWARDED"')));
  t.equal((await get(cli.admin, '/readyz')).body, 'ready\n');

  // Reload: a policy change on disk reaches every worker.
  await writeFile(join(cfg.dir, 'policy.yaml'), starWarsPolicy(['{ method: "GET", path: "/b/.*" }']));
  let swapped = false;
  for (let i = 0; i < 100 && !swapped; i++) {
    await sleep(50);
    swapped = /reload \(watch\): policy version 2 in force in 2 workers/.test(cli.stderr());
  }
  t.ok(swapped, 'primary: both workers swapped');
  const after = await verdicts(cli.port, 4);
  t.same(after.filter((l) => l.includes('/b/1')), Array.from({ length: 4 }, () => '127.0.0.10 GET /b/1 200'), 'every worker enforces the new policy');

  // Invalid change: refused everywhere, visible on the primary.
  await writeFile(join(cfg.dir, 'policy.yaml'), starWarsPolicy(['{ method: "GET", path: "/(x)\\\\1" }']));
  let ready = '';
  for (let i = 0; i < 100 && !/refused/.test(ready); i++) {
    await sleep(50);
    ready = (await get(cli.admin, '/readyz')).body;
  }
  t.match(ready, /^ready\nlast reload refused \(watch at [^)]+\); policy version 2 stays in force:\n  .*policy\.yaml:\d+:\d+: /, '/readyz body names the error');
  t.match((await get(cli.admin, '/metrics')).body, /^l7warden_policy_reload_errors_total 1$/m, 'counted once');
  const still = await verdicts(cli.port, 2);
  t.same(still.filter((l) => l.includes('/b/1')), ['127.0.0.10 GET /b/1 200', '127.0.0.10 GET /b/1 200'], 'old (valid) policy still enforced');

  // A worker dies: replaced; the listener keeps serving meanwhile. (A connection the
  // primary handed to the worker just as it died is lost with it, as in any crash;
  // once the primary saw the exit, new connections go to the live worker.)
  const victim = pids.get(1)!;
  process.kill(victim, 'SIGKILL');
  for (let i = 0; i < 100 && !/worker 1 exited/.test(cli.stderr()); i++) await sleep(20);
  const during = await verdicts(cli.port, 2);
  t.same(during, [...expected, ...expected].map((l) => (l.includes('/b/1') ? l.replace(/403$/, '200') : l)), 'served by the other worker during the replacement');
  // Up to 30 s: a fresh worker loads and compiles the policy before it logs its pid,
  // which took over 10 s on a loaded CI machine (2 cores, the suite running beside it).
  let replaced = false;
  for (let i = 0; i < 600 && !replaced; i++) {
    await sleep(50);
    const p = workerPids(cli.stderr()).get(1);
    replaced = p !== undefined && p !== victim;
  }
  t.ok(replaced, 'worker 1 replaced');
  t.match(cli.stderr(), /worker 1 exited \(SIGKILL\); starting a new one/);
  pids = workerPids(cli.stderr());
  const fresh = await verdicts(cli.port, 4);
  t.same(fresh.filter((l) => l.includes('/b/1')), Array.from({ length: 4 }, () => '127.0.0.10 GET /b/1 200'), 'the replacement loaded the last good policy');

  cli.child.kill('SIGTERM');
  const ex = await cli.exit;
  t.equal(ex.code, 0, 'primary exits 0 after draining the workers');
  await sleep(200);
  for (const pid of pids.values()) {
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    t.notOk(alive, `worker ${pid} is gone`);
  }
});
