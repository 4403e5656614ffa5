/**
 * Hot reload (SPEC.md "Operations", SECURITY.md §6.3): the config directory is
 * watched; a change is loaded and compiled aside and swapped atomically.
 *
 * - under load: 20 keep-alive clients × 500 requests while the policy file is
 *   rewritten 10 times: no failed request, every verdict is the verdict of a policy
 *   version in force between the request's start and its answer, and the capture
 *   upstream saw exactly the allowed requests;
 * - an in-flight request finishes under the snapshot it started with, and the next
 *   request on the same keep-alive connection (HTTP/1.1 and HTTP/2) sees the new one;
 * - an invalid change is refused whole: the old policy stays enforced, /readyz stays
 *   200 with the located error in its body, l7warden_policy_reload_errors_total
 *   counts it; fixing the file clears it; touch-without-change does not reload;
 * - POST /reload; ProxyConfig changes that need a restart are refused.
 */
import t from 'tap';
import * as http from 'node:http';
import { writeFile, rename, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir, starWarsPolicy, proxyConfig } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request, h2Connect, h2Request } from '../helpers/clients.js';
import type { TestT } from '../helpers/tap.js';

const TIE = '127.0.0.10';
const POLICY_A = starWarsPolicy(['{ method: "GET", path: "/a/.*" }', '{ method: "GET", path: "/slow" }']);
const POLICY_B = starWarsPolicy(['{ method: "GET", path: "/b/.*" }']);
type Pol = 'A' | 'B';

/** What each policy answers for a path (tiefighter, GET). */
function verdict(p: Pol, path: string): number {
  if (path.startsWith('/a/') || path === '/slow') return p === 'A' ? 200 : 403;
  if (path.startsWith('/b/')) return p === 'B' ? 200 : 403;
  return 403;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(10);
  return cond();
}

/** Write a file the way editors and kubectl do: a temp file then a rename. */
async function atomicWrite(file: string, text: string): Promise<void> {
  const tmp = join(file, '..', `.tmp-${process.pid}-${Date.now()}`);
  await writeFile(tmp, text);
  await rename(tmp, file);
}

async function get(port: number, path: string): Promise<http.IncomingMessage & { body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(Object.assign(res, { body })));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

async function setup(t: TestT, policy = POLICY_A) {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url, policy });
  t.teardown(cfg.cleanup);
  const logs: string[] = [];
  const proxy = await startProxy({ configDir: cfg.dir, watch: { debounceMs: 50 }, log: (l) => logs.push(l) });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners[0]!.address.port;
  return { up, cfg, proxy, port, logs, admin: proxy.admin!.port };
}

t.test('reload under load: 20 clients × 500 requests, 10 swaps, zero failures, every verdict explained', async (t) => {
  const { up, cfg, proxy, port } = await setup(t);
  const policyOf = new Map<number, Pol>([[proxy.store.version, 'A']]);
  let lastWritten: Pol = 'A';
  proxy.store.onSwap((s) => policyOf.set(s.version, lastWritten));

  const CLIENTS = 20;
  const PER = 500;
  interface Rec { id: string; path: string; v0: number; v1: number; status: number; error?: string }
  const recs: Rec[] = [];
  let loadDone = false;
  const client = async (c: number) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: TIE });
    try {
      for (let i = 0; i < PER; i++) {
        const path = ['/a/', '/b/', '/c/'][(c + i) % 3]! + `${c}-${i}`;
        const id = `${c}-${i}`;
        const v0 = proxy.store.version;
        const rec: Rec = { id, path, v0, v1: v0, status: 0 };
        try {
          rec.status = await new Promise<number>((resolve, reject) => {
            const req = http.get({ host: '127.0.0.1', port, path, agent, headers: { host: 'deathstar', 'x-req-id': id }, timeout: 10_000 }, (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
              res.on('error', reject);
            });
            req.on('error', reject);
            req.on('timeout', () => req.destroy(new Error('timeout')));
          });
        } catch (e) {
          rec.error = (e as Error).message;
        }
        rec.v1 = proxy.store.version;
        recs.push(rec);
      }
    } finally {
      agent.destroy();
    }
  };
  const swaps: number[] = [];
  const swapper = async () => {
    for (let k = 0; k < 10; k++) {
      await sleep(60);
      const before = proxy.store.version;
      lastWritten = k % 2 === 0 ? 'B' : 'A';
      await atomicWrite(join(cfg.dir, 'policy.yaml'), lastWritten === 'A' ? POLICY_A : POLICY_B);
      const ok = await until(() => proxy.store.version > before, 5000);
      if (!ok) throw new Error(`swap ${k} not seen`);
      if (!loadDone) swaps.push(proxy.store.version);
    }
  };
  const started = Date.now();
  const load = Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c))).then(() => {
    loadDone = true;
  });
  await Promise.all([load, swapper()]);
  const elapsed = Date.now() - started;

  t.equal(recs.length, CLIENTS * PER, 'every request answered');
  const failed = recs.filter((r) => r.error !== undefined || (r.status !== 200 && r.status !== 403));
  t.same(failed.slice(0, 5), [], `no failed requests (${failed.length})`);
  let unexplained = 0;
  let spanning = 0;
  const sample: Rec[] = [];
  for (const r of recs) {
    const allowed = new Set<number>();
    for (let v = r.v0; v <= r.v1; v++) {
      const p = policyOf.get(v);
      if (p) allowed.add(verdict(p, r.path));
    }
    if (r.v1 > r.v0) spanning++;
    if (!allowed.has(r.status)) {
      unexplained++;
      if (sample.length < 5) sample.push(r);
    }
  }
  t.equal(unexplained, 0, `every verdict is one of the policies in force during the request ${JSON.stringify(sample)}`);
  t.ok(swaps.length >= 5, `at least 5 of the 10 swaps happened while the load ran (${swaps.length}, ${elapsed} ms)`);
  t.ok(recs.some((r) => r.status === 200 && r.path.startsWith('/a/')) && recs.some((r) => r.status === 200 && r.path.startsWith('/b/')), 'both policies decided requests');
  // The upstream saw exactly the allowed requests, once each.
  const allowedIds = recs.filter((r) => r.status === 200).map((r) => r.id).sort();
  const seen = up.requests.map((c) => String(c.headers['x-req-id'])).sort();
  t.same(seen, allowedIds, `upstream saw exactly the ${allowedIds.length} allowed requests`);
  t.comment(`${recs.length} requests in ${elapsed} ms; ${spanning} spanned a swap; versions ${[...policyOf.keys()].join(',')}`);
});

t.test('in flight keeps its snapshot; the next request on the same connection sees the new one (h1, h2)', async (t) => {
  const { up, cfg, proxy, port } = await setup(t);
  let release: (() => void) | undefined;
  const arrived: string[] = [];
  up.routes.push((req, res) => {
    if (req.url !== '/slow') return false;
    arrived.push(String(req.headers['x-proto']));
    const finish = () => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('slow done');
    };
    if (release) {
      const prev = release;
      release = () => {
        prev();
        finish();
      };
    } else release = finish;
    return true;
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: TIE });
  t.teardown(() => agent.destroy());
  const h1 = (path: string) =>
    new Promise<{ status: number; body: string; socketPort: number }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path, agent, headers: { host: 'deathstar', 'x-proto': 'h1' } }, (res) => {
        let body = '';
        const socketPort = res.socket.localPort ?? 0;
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, socketPort }));
      });
      req.on('error', reject);
    });
  const session = await h2Connect(port, TIE);
  t.teardown(() => session.destroy());

  const v0 = proxy.store.version;
  const slow1 = h1('/slow');
  const slow2 = h2Request(session, { path: '/slow', headers: { 'x-proto': 'h2' } });
  t.ok(await until(() => arrived.length === 2, 5000), 'both slow requests reached the upstream under policy A');
  await atomicWrite(join(cfg.dir, 'policy.yaml'), POLICY_B);
  t.ok(await until(() => proxy.store.version > v0, 5000), 'policy B swapped in while they are in flight');
  release?.();
  const r1 = await slow1;
  const r2 = await slow2;
  t.equal(r1.status, 200, 'h1 in-flight request completes under the snapshot it started with');
  t.equal(r1.body, 'slow done');
  t.equal(r2.status, 200, 'h2 in-flight stream completes too');
  const next1 = await h1('/slow');
  t.equal(next1.status, 403, 'next request on the same keep-alive connection: new policy');
  t.equal(next1.socketPort, r1.socketPort, 'same connection');
  const next2 = await h2Request(session, { path: '/slow' });
  t.equal(next2.status, 403, 'next stream on the same HTTP/2 session: new policy');
  t.equal(arrived.length, 2, 'the denied ones never reached the upstream');
});

t.test('invalid change refused whole: old policy enforced, /readyz body, metric, log; fix clears it', async (t) => {
  const { cfg, proxy, port, admin, logs } = await setup(t);
  const metric = async (name: string) => {
    const m = await get(admin, '/metrics');
    const line = m.body.split('\n').find((l) => l.startsWith(`${name} `));
    return Number(line?.split(' ')[1] ?? NaN);
  };
  const errs0 = await metric('l7warden_policy_reload_errors_total');
  const ok0 = await metric('l7warden_policy_reloads_total');
  const v0 = proxy.store.version;
  // Valid YAML, invalid policy: an RE2-incompatible regex (backreference) in the new rule,
  // plus a valid-looking change that must not slip in alone.
  const bad = starWarsPolicy(['{ method: "GET", path: "/b/.*" }', '{ method: "GET", path: "/(x)\\\\1" }']);
  await writeFile(join(cfg.dir, 'policy.yaml'), bad);
  t.ok(await until(() => proxy.reloader.lastError !== undefined, 5000), 'the change was refused');
  t.equal(proxy.store.version, v0, 'version unchanged');
  t.equal((await h1Request(port, { from: TIE, path: '/a/1' })).status, 200, 'policy A still allows /a/');
  t.equal((await h1Request(port, { from: TIE, path: '/b/1' })).status, 403, 'the refused file\'s /b/ rule did not slip in');
  const ready = await get(admin, '/readyz');
  t.equal(ready.statusCode, 200, '/readyz stays 200: the last good policy is enforced');
  t.match(ready.body, /^ready\nlast reload refused \(watch at [^)]+\); policy version 1 stays in force:\n  .*policy\.yaml:\d+:\d+: /, 'error located file:line:col in the body');
  t.equal(await metric('l7warden_policy_reload_errors_total'), errs0 + 1, 'reload error counted');
  t.equal(await metric('l7warden_policy_reloads_total'), ok0, 'no successful reload counted');
  t.ok(logs.some((l) => /policy\.yaml:\d+:\d+: /.test(l)), 'located error logged');
  t.ok(logs.some((l) => /refused: 1 error; policy version 1 stays in force/.test(l)), 'refusal logged');

  // Fix it: the error clears and the new policy is in force.
  await writeFile(join(cfg.dir, 'policy.yaml'), POLICY_B);
  t.ok(await until(() => proxy.store.version > v0, 5000), 'fixed file swapped in');
  t.equal((await get(admin, '/readyz')).body, 'ready\n', 'readyz body clean again');
  t.equal((await h1Request(port, { from: TIE, path: '/b/1' })).status, 200);
  t.equal(await metric('l7warden_policy_reloads_total'), ok0 + 1);

  // touch without change: events but no reload.
  const v1 = proxy.store.version;
  const now = new Date();
  await utimes(join(cfg.dir, 'policy.yaml'), now, now);
  await writeFile(join(cfg.dir, 'policy.yaml'), POLICY_B);
  await sleep(400);
  t.equal(proxy.store.version, v1, 'touch / rewrite with identical content does not reload');
  // A non-config file is not read and does not reload either.
  await writeFile(join(cfg.dir, 'README.txt'), 'notes');
  await sleep(300);
  t.equal(proxy.store.version, v1, 'a .txt file changes nothing');
});

t.test('POST /reload and changes that need a restart', async (t) => {
  const { up, cfg, proxy, port, admin } = await setup(t);
  const post = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: admin, path, method: 'POST' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  t.equal((await get(admin, '/reload')).statusCode, 405, 'GET /reload: 405');
  for (const path of ['/flows', '/metrics', '/healthz', '/readyz']) {
    t.equal((await post(path)).status, 405, `POST ${path}: 405 (read-only endpoints)`);
  }
  t.equal((await post('/nope')).status, 404);
  const r = await post('/reload');
  t.equal(r.status, 200);
  t.match(r.body, /^reloaded: policy version 2\n$/);

  // A changed listener address (and limits) would need a restart: refused, old config kept.
  const v = proxy.store.version;
  await writeFile(join(cfg.dir, 'proxy.yaml'), proxyConfig({ upstream: up.url, limits: { maxHeadersCount: 50 } }).replace('address: 127.0.0.1:0\n    endpoint', 'address: 127.0.0.1:1\n    endpoint'));
  const refused = await post('/reload');
  t.equal(refused.status, 422);
  t.match(refused.body, /listener deathstar address changed \(127\.0\.0\.1:0 → 127\.0\.0\.1:1\): needs a restart/);
  t.match(refused.body, /spec\.limits: limits changed: needs a restart/);
  t.match(refused.body, /proxy\.yaml:\d+:\d+: /);
  t.equal(proxy.store.version, v, 'nothing swapped');
  t.equal((await h1Request(port, { from: TIE, path: '/a/1' })).status, 200, 'still serving on the old address');
  // enforcement is live: `never` allows everything.
  await writeFile(join(cfg.dir, 'proxy.yaml'), proxyConfig({ upstream: up.url }).replace('spec:\n', 'spec:\n  enforcement: never\n'));
  const ok = await post('/reload');
  t.equal(ok.status, 200, ok.body);
  t.equal((await h1Request(port, { from: TIE, path: '/c/1' })).status, 200, 'enforcement: never applied live');
});
