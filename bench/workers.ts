/**
 * `--workers` benchmark (GitHub issue 6): HTTP/1.1 requests/s and latency through
 *   l7warden-1w   `l7warden run` (one process), the Star Wars L7 rule
 *   l7warden-2w   `l7warden run --workers 2`, same config
 *   haproxy-1t    HAProxy (Debian's 2.6) with the equivalent path ACL, nbthread 1
 *   haproxy-2t    the same with nbthread 2
 * in one run, same machine, same load tool (wrk -t1 -c32, POST /v1/request-landing,
 * the allowed call, after a denied PUT is checked to be 403), same upstream
 * (bench/lib-http-upstream.ts, 2-byte body); as references without policy, the minimal
 * Node forwarder (bench/lib-http-forwarder.ts) in one process and in two (node-fwd-2p,
 * node:cluster: the two-process Node ceiling) and the upstream alone (direct). Placement "shared" (ANCHORS.md): nothing
 * pinned, since two workers need both cores. WORKERS_BENCH_SECONDS (default 5),
 * WORKERS_BENCH_ROUNDS (default 3, interleaved, medians), each run after WORKERS_BENCH_WARMUP
 * seconds (default 3) of the same load. Target: l7warden-2w at least
 * 50 % of HAProxy's rate.
 */
import { spawn } from 'node:child_process';
import { ROOT, startProc as spawnReady, stop, run, parseWrk, track } from './lib-proc.js';
import { STARWARS_POLICY, deathstarProxy, starWarsPods } from './lib-configs.js';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as http from 'node:http';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const SECONDS = Number(process.env.WORKERS_BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.WORKERS_BENCH_ROUNDS ?? 3);
/** WORKERS_BENCH_WARMUP (default 3 s): load before each measured run. */
const WARMUP_SECONDS = Number(process.env.WORKERS_BENCH_WARMUP ?? 3);
const TS = ['--import=@tapjs/typescript/import'];
function request(port: number, method: string): Promise<number> {
  return new Promise((res) => {
    const r = http.request({ host: '127.0.0.1', port, method, path: method === 'POST' ? '/v1/request-landing' : '/v1/exhaust-port', headers: { host: 'deathstar' }, agent: false, timeout: 3000 }, (resp) => {
      resp.resume();
      resp.on('end', () => res(resp.statusCode ?? 0));
    });
    r.on('error', () => res(0));
    r.on('timeout', () => r.destroy());
    r.end(method === 'POST' ? 'x' : undefined);
  });
}

/** Start a process and wait (≤ 60 s: cluster workers) for its port. */
async function startProc(cmd: string, args: string[], re: RegExp): Promise<{ proc: ChildProcess; port: number }> {
  const { proc, ports } = await spawnReady(cmd, args, re, { timeoutMs: 60_000 });
  return { proc, port: ports[0]! };
}

interface Result { rps: number; p50: number; p99: number; errors: number }

async function saturate(port: number, lua: string): Promise<Result> {
  const url = `http://127.0.0.1:${port}/v1/request-landing`;
  // Every target starts fresh each round. A new Node process serves 2-4.5k req/s in its
  // first two seconds of load and its steady 6-10k only from the third (1-s wrk slices on
  // fresh l7warden processes, 1 and 2 workers: V8 still tiering up), while HAProxy has no
  // warm-up: so the run is measured after WARMUP_SECONDS of the same load.
  await run('wrk', ['-t1', '-c32', `-d${WARMUP_SECONDS}s`, '-s', lua, url], (WARMUP_SECONDS + 10) * 1000);
  const out = await run('wrk', ['-t1', '-c32', `-d${SECONDS}s`, '--latency', '-s', lua, url], (SECONDS + 15) * 1000);
  const { rps, p50, p99, errors } = parseWrk(out);
  return { rps, p50, p99, errors };
}

// The closest HAProxy analogue of the L7 rule: POST + exact path from the tiefighter's address.
const haproxyCfg = (threads: number, port: number, up: number) => `global
  nbthread ${threads}
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${port}
  acl landing path /v1/request-landing
  acl post method POST
  acl tiefighter src 127.0.0.1
  http-request deny deny_status 403 unless post landing tiefighter
  default_backend be
backend be
  http-reuse always
  server up 127.0.0.1:${up}
`;

function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
}

async function main(): Promise<void> {
  for (const tool of ['wrk', 'haproxy']) {
    if (!(await run('sh', ['-c', `command -v ${tool}`], 5000)).trim()) throw new Error(`${tool} missing: L7W_BENCH_DEPS=1 bash scripts/system-deps.sh`);
  }
  const base = await mkdtemp(join(tmpdir(), 'l7w-bench-workers-'));
  try {
    const lua = join(base, 'post.lua');
    await writeFile(lua, 'wrk.method = "POST"\nwrk.body = "x"\nwrk.headers["Host"] = "deathstar"\n');
    const upstream = await startProc('node', [...TS, join(ROOT, 'bench/lib-http-upstream.ts')], /h1 (\d+)/);
    const up = upstream.port;
    const cfg = join(base, 'config');
    await mkdir(cfg, { recursive: true });
    await writeFile(join(cfg, 'pods.yaml'), starWarsPods('127.0.0.1'));
    await writeFile(join(cfg, 'policy.yaml'), STARWARS_POLICY);
    await writeFile(join(cfg, 'proxy.yaml'), deathstarProxy(up));
    const haVersion = (await run('haproxy', ['-v'], 5000)).split('\n')[0] ?? '';

    /** `open`: no policy (the PUT is not refused). */
    type Target = { name: string; open?: boolean; start: () => Promise<{ proc: ChildProcess | undefined; port: number }> };
    const l7w = (workers: number) => () =>
      startProc('node', [join(ROOT, 'dist/cli/main.js'), 'run', '--no-watch', '--workers', String(workers), '--config', cfg], /listening: deathstar \(ingress\) on [\d.]+:(\d+)/);
    const ha = (threads: number) => async () => {
      const port = await freePort();
      const file = join(base, `haproxy-${threads}.cfg`);
      await writeFile(file, haproxyCfg(threads, port, up));
      const proc = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      track(proc);
      for (let i = 0; i < 100; i++) {
        if ((await request(port, 'PUT')) !== 0) break;
        await sleep(50);
      }
      return { proc, port };
    };
    const targets: Target[] = [
      { name: 'l7warden-1w', start: l7w(1) },
      { name: 'l7warden-2w', start: l7w(2) },
      { name: 'haproxy-1t', start: ha(1) },
      { name: 'haproxy-2t', start: ha(2) },
      // References, no policy: the minimal Node forwarder (one process; the Node ceiling
      // on this machine) and the upstream on its own.
      { name: 'node-fwd', open: true, start: () => startProc('node', [...TS, join(ROOT, 'bench/lib-http-forwarder.ts'), `http://127.0.0.1:${up}`], /h1 (\d+)/) },
      // The same forwarder in two processes sharing the port (node:cluster, like --workers 2):
      // the most any two-process Node proxy on node:http + undici can do here.
      { name: 'node-fwd-2p', open: true, start: () => startProc('node', [...TS, join(ROOT, 'bench/lib-http-forwarder.ts'), `http://127.0.0.1:${up}`, '2'], /h1 (\d+)/) },
      { name: 'direct', open: true, start: async () => ({ proc: undefined, port: up }) },
    ];
    const results = new Map<string, Result[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        const { proc, port } = await t.start();
        const deny = await request(port, 'PUT');
        const allow = await request(port, 'POST');
        if (deny !== (t.open ? 200 : 403) || allow !== 200) throw new Error(`${t.name}: PUT → ${deny}, POST → ${allow} (want ${t.open ? 200 : 403}, 200)`);
        const r = await saturate(port, lua);
        if (proc) await stop(proc);
        const list = results.get(t.name) ?? [];
        list.push(r);
        results.set(t.name, list);
        process.stderr.write(`round ${round + 1} ${t.name}: ${r.rps.toFixed(0)} req/s p99 ${r.p99.toFixed(2)} ms errors ${r.errors}\n`);
      }
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const rows = targets.map((t) => {
      const rs = results.get(t.name)!;
      return { name: t.name, rps: med(rs.map((r) => r.rps)), min: Math.min(...rs.map((r) => r.rps)), max: Math.max(...rs.map((r) => r.rps)), p50: med(rs.map((r) => r.p50)), p99: med(rs.map((r) => r.p99)), errors: rs.reduce((a, r) => a + r.errors, 0) };
    });
    const haBest = Math.max(...rows.filter((r) => r.name.startsWith('haproxy')).map((r) => r.rps));
    const ha2 = rows.find((r) => r.name === 'haproxy-2t')!.rps;
    console.log(`\nworkers benchmark: wrk -t1 -c32 -d${SECONDS}s POST /v1/request-landing (allowed by the L7 rule), 2-byte upstream body,`);
    console.log(`shared placement (nothing pinned), ${ROUNDS} interleaved rounds, medians. ${haVersion}; node ${process.version}.\n`);
    console.log('| target | req/s median | min–max | p50 | p99 | vs haproxy-2t | vs best haproxy | errors |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.min.toFixed(0)}–${r.max.toFixed(0)} | ${r.p50.toFixed(2)} ms | ${r.p99.toFixed(2)} ms | ${(r.rps / ha2).toFixed(2)} | ${(r.rps / haBest).toFixed(2)} | ${r.errors} |`);
    }
    const w2 = rows.find((r) => r.name === 'l7warden-2w')!.rps;
    const w1 = rows.find((r) => r.name === 'l7warden-1w')!.rps;
    const fwd2 = rows.find((r) => r.name === 'node-fwd-2p')!.rps;
    console.log(`\nNode ceiling: the policy-free forwarder in two processes reaches ${((100 * fwd2) / haBest).toFixed(0)} % of HAProxy's best; l7warden-2w is ${(w2 / fwd2).toFixed(2)}× that forwarder.`);
    console.log(`--workers 2 vs 1: ${(w2 / w1).toFixed(2)}×; target (2 workers ≥ 50 % of HAProxy's best): ${w2 / haBest >= 0.5 ? 'met' : 'NOT met'} (${((100 * w2) / haBest).toFixed(0)} %)`);
    await stop(upstream.proc);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
