/**
 * HTTP benchmark (GitHub issue 3): requests/s and latency, in one run, for
 *   direct      the bench upstream (bench/lib-http-upstream.ts: h1 and h2c, 2-byte body)
 *   node-fwd    a minimal Node forwarder on an undici Pool (bench/lib-http-forwarder.ts, no policy)
 *   proxy-off   `l7warden run`, one ingress listener, no policy (pass-through)
 *   proxy-1     the Star Wars L7 policy (POST /v1/request-landing from org=empire)
 *   proxy-1000  the same plus 999 other policies
 * over HTTP/1.1 (wrk, POST with a Lua script) and HTTP/2 cleartext (h2load -c8 -m16;
 * the proxy forwards h2→h1). The load generators connect from 127.0.0.1, which the
 * bench config makes tiefighter's pod IP, so every request is the allowed call and
 * is really matched against the L7 rule (a denied PUT is checked first).
 *
 * Each target/protocol: a saturation run (HTTP_BENCH_SECONDS, default 3 s, after a
 * 1 s warm-up) for req/s, p50/p99 and proxy CPU µs/request; then a fixed-rate run at
 * half of proxy-off's saturated rate (h2load --rps, --h1 for HTTP/1.1, per-request log)
 * for p50/p99 at half load. Placement as ANCHORS.md "pinned": the load generator on
 * cpu0, upstream and target on cpu1 (HTTP_BENCH_PLACEMENT=shared pins nothing).
 * HTTP_BENCH_PROXY_ARGS adds node flags to the proxy processes (--cpu-prof …).
 * HTTP_BENCH_MODE=ab runs only the concurrent A/B below (a quick check while working
 * on the cost); HTTP_BENCH_PROTOCOLS=h1 or h2 runs one protocol. Last, the p99 at half
 * load as an A/B (HTTP_BENCH_HALF_PAIRS alternating back-to-back pairs, default 9,
 * each HTTP_BENCH_HALF_SECONDS long, default 10).
 * HTTP_BENCH_ROUNDS (default 1) repeats everything (the target order rotating each
 * round), medians reported; ratios and p99 differences are medians of per-round pairs.
 * Then, each round, the concurrent A/B (concurrentPair below): proxy-off and proxy-1
 * (then proxy-1000, then node-fwd) under load at the same time on the same core, their
 * req/s ratio being the enforcement cost (or the forwarder's relative speed) with the
 * machine's drift cancelled out; both sides first take HTTP_BENCH_PAIR_WARMUP seconds
 * (default 3) of the same load together, unmeasured.
 * Targets: proxy-off ≥ node-fwd; enforcement costs ≤ 10 % of proxy-off's req/s and
 * ≤ 1 ms p99 at half load.
 */
import type { ChildProcess } from 'node:child_process';
import { ROOT, placed, startProc as spawnReady, stop, run as runRaw, procTicks, parseWrk } from './lib-proc.js';
import { STARWARS_POLICY, deathstarProxy, starWarsPods } from './lib-configs.js';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import * as http from 'node:http';

const SECONDS = Number(process.env.HTTP_BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.HTTP_BENCH_ROUNDS ?? 1);
const ONLY = process.env.HTTP_BENCH_TARGETS ? new Set(process.env.HTTP_BENCH_TARGETS.split(',')) : undefined;
const PINNED = (process.env.HTTP_BENCH_PLACEMENT ?? 'pinned') === 'pinned' && cpus().length >= 2;
const TS = ['--import=@tapjs/typescript/import'];
/** Extra node flags for the proxy processes (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"). */
const PROXY_ARGS = (process.env.HTTP_BENCH_PROXY_ARGS ?? '').split(' ').filter(Boolean);
/** HTTP_BENCH_MODE=ab: only the concurrent A/B (quick checks while working on the cost). */
const AB_ONLY = process.env.HTTP_BENCH_MODE === 'ab';
/** HTTP_BENCH_HALF_PAIRS (default 9, 0 = none): alternating half-load pairs for the p99 A/B. */
const HALF_PAIRS = Number(process.env.HTTP_BENCH_HALF_PAIRS ?? 9);
/**
 * HTTP_BENCH_HALF_SECONDS (default 10): length of each half-load run. A run's p99 is set
 * by the one or two GC pauses that fall in it; a longer window averages more of them.
 */
const HALF_SECONDS = Number(process.env.HTTP_BENCH_HALF_SECONDS ?? 10);
/** HTTP_BENCH_PROTOCOLS=h1 or h2: one protocol only. */
const PROTOCOLS = (process.env.HTTP_BENCH_PROTOCOLS ?? 'h1,h2').split(',').filter((p): p is 'h1' | 'h2' => p === 'h1' || p === 'h2');
const HZ = 100;
/** HTTP_BENCH_PAIR_WARMUP (default 3 s): concurrent warm-up of both sides before each A/B pair. */
const PAIR_WARMUP_SECONDS = Number(process.env.HTTP_BENCH_PAIR_WARMUP ?? 3);

function request(port: number, method: string, path: string): Promise<number> {
  return new Promise((res) => {
    const r = http.request({ host: '127.0.0.1', port, method, path, headers: { host: 'deathstar' }, agent: false, timeout: 3000 }, (resp) => {
      resp.resume();
      resp.on('end', () => res(resp.statusCode ?? 0));
    });
    r.on('error', () => res(0));
    r.on('timeout', () => r.destroy());
    r.end(method === 'POST' ? 'x' : undefined);
  });
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function logPercentiles(file: string): Promise<{ p50: number; p99: number; errors: number; n: number }> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const lat: number[] = [];
  let errors = 0;
  for (const line of text.split('\n')) {
    const f = line.split('\t');
    if (f.length < 3) continue;
    if (f[1] !== '200') errors++;
    lat.push(Number(f[2]) / 1000);
  }
  lat.sort((a, b) => a - b);
  return { p50: pct(lat, 50), p99: pct(lat, 99), errors, n: lat.length };
}

interface Result {
  rps: number;
  p50: number;
  p99: number;
  cpuUs: number;
  errors: number;
  halfP50?: number;
  halfP99?: number;
  halfRate?: number;
}

/** The system under test runs on cpu1 (pinned placement). */
function startProc(args: string[], re: RegExp, count = 1): Promise<{ proc: ChildProcess; ports: number[] }> {
  const [cmd, argv] = placed(PINNED, 1, 'node', args);
  return spawnReady(cmd, argv, re, { count });
}

/** Load tools run on cpu0 (pinned placement). */
function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  const [c, a] = placed(PINNED, 0, cmd, args);
  return runRaw(c, a, timeoutMs);
}

async function saturate(proto: 'h1' | 'h2', port: number, dir: string, pid: number | undefined): Promise<Result> {
  const url = `http://127.0.0.1:${port}/v1/request-landing`;
  let r: Result;
  if (proto === 'h1') {
    await run('wrk', ['-t1', '-c32', '-d1s', '-s', join(dir, 'post.lua'), url], 10_000); // warm-up
    const t1 = await procTicks(pid);
    const out = await run('wrk', ['-t1', '-c32', `-d${SECONDS}s`, '--latency', '-s', join(dir, 'post.lua'), url], (SECONDS + 15) * 1000);
    const t2 = await procTicks(pid);
    const w = parseWrk(out);
    r = { rps: w.rps, p50: w.p50, p99: w.p99, cpuUs: w.total > 0 ? (((t2 - t1) / HZ) * 1e6) / w.total : NaN, errors: w.errors };
  } else {
    const log = join(dir, `h2-${port}.log`);
    await rm(log, { force: true }); // h2load appends to an existing log
    const t1 = await procTicks(pid);
    const out = await run(
      'h2load',
      ['-c8', '-m16', `--warm-up-time=1`, `-D${SECONDS}`, '-d', join(dir, 'body'), '--log-file', log, url],
      (SECONDS + 15) * 1000,
    );
    const t2 = await procTicks(pid);
    const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
    const lp = await logPercentiles(log);
    const failed = Number(/(\d+) failed/.exec(out)?.[1] ?? 0) + Number(/(\d+) errored/.exec(out)?.[1] ?? 0);
    // CPU includes the warm-up second; scale by requests completed in the whole run.
    const done = Number(/requests: \d+ total, \d+ started, (\d+) done/.exec(out)?.[1] ?? lp.n);
    r = { rps, p50: lp.p50, p99: lp.p99, cpuUs: done > 0 ? (((t2 - t1) / HZ) * 1e6) / (done + rps) : NaN, errors: failed + lp.errors };
  }
  return r;
}

async function halfLoad(proto: 'h1' | 'h2', port: number, dir: string, rate: number): Promise<{ p50: number; p99: number; errors: number }> {
  const url = `http://127.0.0.1:${port}/v1/request-landing`;
  const log = join(dir, `half-${proto}-${port}.log`);
  // h2load appends to an existing log: without this, every run's percentiles would
  // include all earlier runs on the port (the cold first one too).
  await rm(log, { force: true });
  const clients = 8;
  const perClient = Math.max(1, Math.round(rate / clients));
  await run(
    'h2load',
    [...(proto === 'h1' ? ['--h1'] : []), `-c${clients}`, '-m1', `--rps=${perClient}`, `-D${HALF_SECONDS}`, '-d', join(dir, 'body'), '--log-file', log, url],
    (HALF_SECONDS + 15) * 1000,
  );
  const lp = await logPercentiles(log);
  return { p50: lp.p50, p99: lp.p99, errors: lp.errors };
}

/**
 * Concurrent A/B: proxy-off and an enforcing proxy loaded at the same time, both on
 * cpu1 with the upstream, each by its own load generator on cpu0 (half the
 * connections each). The scheduler shares cpu1 between them, so whatever slows the
 * machine at that moment slows both alike, and the req/s ratio is the ratio of what
 * one request costs each: the enforcement cost without the ±20 % drift between runs
 * that a sequential comparison on this shared VM suffers.
 */
async function concurrentPair(proto: 'h1' | 'h2', a: number, b: number, dir: string, pids: [number | undefined, number | undefined] = [undefined, undefined]): Promise<[number, number, string]> {
  const one = async (port: number, seconds = SECONDS): Promise<number> => {
    const url = `http://127.0.0.1:${port}/v1/request-landing`;
    if (proto === 'h1') {
      return parseWrk(await run('wrk', ['-t1', '-c16', `-d${seconds}s`, '-s', join(dir, 'post.lua'), url], (seconds + 15) * 1000)).rps;
    }
    const out = await run('h2load', ['-c4', '-m16', `-D${seconds}`, '-d', join(dir, 'body'), url], (seconds + 15) * 1000);
    return Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  };
  // Both sides warm up together first. proxy-off comes to each pair warm from the one
  // before, the other side after ~30 s idle and another protocol's traffic; a perf
  // profile of the sides that "dipped" (docs/http.md) showed V8 re-optimising the
  // request path for the first ~2 s of load (TurboFan threads at up to 40 % of the
  // process's samples), then nothing. Without this the pair measured that transient.
  if (PAIR_WARMUP_SECONDS > 0) await Promise.all([one(a, PAIR_WARMUP_SECONDS), one(b, PAIR_WARMUP_SECONDS)]);
  // CPU time each side got during the pair: tells a side that was slower per request
  // from one that got less of the shared core (a dip in one round, docs/http.md).
  const ticks = (pid: number | undefined) => (pid ? procTicks(pid) : Promise.resolve(NaN));
  const t0 = await Promise.all(pids.map(ticks));
  const [ra, rb] = await Promise.all([one(a), one(b)]);
  const t1 = await Promise.all(pids.map(ticks));
  const cpu = (i: number, rps: number) => {
    const s = (t1[i]! - t0[i]!) / HZ;
    return `${(100 * s / SECONDS).toFixed(0)} % of a core, ${((s * 1e6) / (rps * SECONDS)).toFixed(0)} µs/req`;
  };
  return [ra, rb, `proxy-off ${cpu(0, ra)}; target ${cpu(1, rb)}`];
}

function filler(n: number): string {
  const docs: string[] = [];
  for (let i = 0; i < n; i++) {
    docs.push(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: filler-${i} }
spec:
  endpointSelector: { matchLabels: { app: filler-${i % 50} } }
  ingress:
  - fromEndpoints: [{ matchLabels: { team: t${i} } }]
    toPorts:
    - ports: [{ port: "${1000 + i}", protocol: TCP }]
      rules: { http: [{ method: "GET", path: "/filler/${i}/.*" }] }
`);
  }
  return docs.join('---\n');
}

async function configDir(base: string, name: string, upstreamPort: number, policies: number): Promise<string> {
  const dir = join(base, name);
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'pods.yaml'), starWarsPods('127.0.0.1'));
  await writeFile(join(dir, 'proxy.yaml'), deathstarProxy(upstreamPort, process.env.HTTP_BENCH_FLOW_LOG ?? ''));
  if (policies >= 1) await writeFile(join(dir, 'policy.yaml'), STARWARS_POLICY);
  if (policies > 1) await writeFile(join(dir, 'filler.yaml'), filler(policies - 1));
  return dir;
}

function signed(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  const us = Math.round(ms * 1000);
  return `${us >= 0 ? '+' : '−'}${Math.abs(us) >= 1000 ? (Math.abs(us) / 1000).toFixed(2) + ' ms' : Math.abs(us) + ' µs'}`;
}

/** The median (of an even count, the mean of the two middle values). */
function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  for (const tool of ['wrk', 'h2load']) {
    const r = await run('sh', ['-c', `command -v ${tool}`], 5000);
    if (!r.trim()) throw new Error(`${tool} missing: run L7W_BENCH_DEPS=1 bash scripts/system-deps.sh`);
  }
  const base = await mkdtemp(join(tmpdir(), 'l7w-http-bench-'));
  await writeFile(join(base, 'body'), 'x');
  await writeFile(join(base, 'post.lua'), 'wrk.method = "POST"\nwrk.body = "x"\nwrk.headers["Host"] = "deathstar"\n');
  // The compiled CLI when it is at least as new as the sources it runs (bench/run.sh builds it first).
  const useDist =
    existsSync(join(ROOT, 'dist/cli/main.js')) &&
    statSync(join(ROOT, 'dist/http/enforce.js'), { throwIfNoEntry: false })!?.mtimeMs >= statSync(join(ROOT, 'src/http/enforce.ts')).mtimeMs;
  process.stderr.write(`proxy from ${useDist ? 'dist/' : 'src/ (TypeScript loader)'}\n`);
  const cli = useDist ? [join(ROOT, 'dist/cli/main.js')] : [...TS, join(ROOT, 'src/cli/main.ts')];
  const upstream = await startProc([...TS, join(ROOT, 'bench/lib-http-upstream.ts')], /h[12] (\d+)/g, 2);
  const [upH1, upH2] = upstream.ports as [number, number];
  const fwd = await startProc([...TS, join(ROOT, 'bench/lib-http-forwarder.ts'), `http://127.0.0.1:${upH1}`], /h[12] (\d+)/g, 2);
  const targets: Array<{ name: string; h1: number; h2: number; pid?: number; proc?: ChildProcess }> = [
    { name: 'direct', h1: upH1, h2: upH2 },
    { name: 'node-fwd', h1: fwd.ports[0]!, h2: fwd.ports[1]!, pid: fwd.proc.pid! },
  ];
  for (const [name, n] of [['proxy-off', 0], ['proxy-1', 1], ['proxy-1000', 1000]] as const) {
    if (ONLY && !ONLY.has(name)) continue;
    const dir = await configDir(base, name, upH1, n);
    const p = await startProc([...PROXY_ARGS, ...cli, 'run', '--config', dir], /listening: deathstar \(ingress\) on [\d.]+:(\d+)/);
    const port = p.ports[0]!;
    targets.push({ name, h1: port, h2: port, pid: p.proc.pid!, proc: p.proc });
    // Check: allowed call answers 200; with a policy a PUT is denied (403) — enforcement is really on.
    const ok = await request(port, 'POST', '/v1/request-landing');
    const denied = await request(port, 'PUT', '/v1/exhaust-port');
    if (ok !== 200 || denied !== (n > 0 ? 403 : 200)) throw new Error(`${name}: check failed (POST ${ok}, PUT ${denied})`);
  }
  const active = targets.filter((t) => !ONLY || ONLY.has(t.name));
  const results = new Map<string, Result[]>();
  /** Concurrent A/B ratios (enforcing / proxy-off) per round. */
  const pairs = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    // The order rotates each round, so no target always runs right after another
    // (a slow period then falls on different targets in different rounds).
    const order = active.map((_, i) => active[(i + round) % active.length]!);
    for (const proto of PROTOCOLS) {
      for (const t of AB_ONLY ? [] : order) {
        const r = await saturate(proto, proto === 'h1' ? t.h1 : t.h2, base, t.pid);
        const key = `${t.name}/${proto}`;
        (results.get(key) ?? results.set(key, []).get(key)!).push(r);
        process.stderr.write(`  ${key}: ${r.rps.toFixed(0)} req/s p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms errors ${r.errors}\n`);
      }
      // Half load: half of proxy-off's saturated rate (or the slowest target's when proxy-off is absent).
      const ref = AB_ONLY ? 0 : results.get(`proxy-off/${proto}`)?.at(-1)?.rps ?? Math.min(...active.map((t) => results.get(`${t.name}/${proto}`)!.at(-1)!.rps));
      const rate = Math.max(100, Math.floor(ref / 2));
      for (const t of AB_ONLY ? [] : order) {
        const h = await halfLoad(proto, proto === 'h1' ? t.h1 : t.h2, base, rate);
        const r = results.get(`${t.name}/${proto}`)!.at(-1)!;
        r.halfP50 = h.p50;
        r.halfP99 = h.p99;
        r.halfRate = rate;
        r.errors += h.errors;
      }
      const off = active.find((t) => t.name === 'proxy-off');
      if (off) {
        for (const t of order) {
          if (t.name !== 'proxy-1' && t.name !== 'proxy-1000' && t.name !== 'node-fwd') continue;
          const [ro, rt, cpu] = await concurrentPair(proto, proto === 'h1' ? off.h1 : off.h2, proto === 'h1' ? t.h1 : t.h2, base, [off.pid, t.pid]);
          const key = `${t.name}/${proto}`;
          (pairs.get(key) ?? pairs.set(key, []).get(key)!).push(rt / ro);
          process.stderr.write(`  concurrent ${key}: ${rt.toFixed(0)} vs proxy-off ${ro.toFixed(0)} req/s (${cpu})\n`);
        }
      }
    }
  }
  // p99 at half load, A/B: proxy-off and an enforcing proxy in alternating back-to-back
  // runs at the same rate (the order flips each pair), median of the paired
  // differences. The per-round column above compares runs taken minutes apart, after
  // other targets' saturation runs, and drifts by ±2 ms on this VM.
  const halfPairs = new Map<string, number[]>();
  const offT = active.find((t) => t.name === 'proxy-off');
  for (const proto of offT && HALF_PAIRS > 0 ? PROTOCOLS : []) {
    const saturated = results.get(`proxy-off/${proto}`)?.map((r) => r.rps) ?? [(await saturate(proto, proto === 'h1' ? offT!.h1 : offT!.h2, base, offT!.pid)).rps];
    const rate = Math.max(100, Math.floor(median(saturated) / 2));
    for (const t of active) {
      if (t.name !== 'proxy-1' && t.name !== 'proxy-1000') continue;
      const key = `${t.name}/${proto}`;
      for (let k = 0; k < HALF_PAIRS; k++) {
        const portOf = (x: typeof t) => (proto === 'h1' ? x.h1 : x.h2);
        const first = k % 2 === 0 ? offT! : t;
        const second = k % 2 === 0 ? t : offT!;
        const a = await halfLoad(proto, portOf(first), base, rate);
        const b = await halfLoad(proto, portOf(second), base, rate);
        const [off, enf] = k % 2 === 0 ? [a, b] : [b, a];
        (halfPairs.get(key) ?? halfPairs.set(key, []).get(key)!).push(enf.p99 - off.p99);
        process.stderr.write(`  half-load A/B ${key} @${rate}/s: p99 ${enf.p99.toFixed(2)} vs proxy-off ${off.p99.toFixed(2)} ms\n`);
      }
    }
  }
  for (const t of targets) if (t.proc) await stop(t.proc);
  await stop(fwd.proc);
  await stop(upstream.proc);
  await rm(base, { recursive: true, force: true });

  const fmt = (ms: number) => (Number.isFinite(ms) ? (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`) : '–');
  console.log(`\nHTTP through l7warden (${PINNED ? 'pinned: load on cpu0, upstream+target on cpu1' : 'shared'}; ${SECONDS} s runs, ${ROUNDS} round(s), medians)\n`);
  // "vs proxy-off" and "Δp99" are medians of per-round pairs (each round's value
  // against proxy-off's in the same round): a slow minute on a shared machine then
  // moves both sides of a pair instead of one median.
  console.log('| target | protocol | req/s | vs proxy-off (per-round pairs) | p50 / p99 saturated | half-load rate | p50 / p99 at half load | Δp99 at half load vs proxy-off | target CPU µs/req | errors |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const proto of AB_ONLY ? [] : PROTOCOLS) {
    const offs = results.get(`proxy-off/${proto}`) ?? [];
    for (const t of active) {
      const rs = results.get(`${t.name}/${proto}`) ?? [];
      const rps = median(rs.map((r) => r.rps));
      const ratios = rs.map((r, i) => (offs[i] ? r.rps / offs[i]!.rps : NaN));
      const dP99 = rs.map((r, i) => (offs[i] ? (r.halfP99 ?? NaN) - (offs[i]!.halfP99 ?? NaN) : NaN));
      const spread = ratios.length > 1 ? ` (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})` : '';
      console.log(
        `| ${t.name} | ${proto === 'h1' ? 'HTTP/1.1' : 'h2c'} | ${rps.toFixed(0)} | ${offs.length ? median(ratios).toFixed(2) + spread : '–'} | ` +
          `${fmt(median(rs.map((r) => r.p50)))} / ${fmt(median(rs.map((r) => r.p99)))} | ${rs[0]?.halfRate ?? '–'} | ` +
          `${fmt(median(rs.map((r) => r.halfP50 ?? NaN)))} / ${fmt(median(rs.map((r) => r.halfP99 ?? NaN)))} | ` +
          `${offs.length ? signed(median(dP99)) : '–'} | ` +
          `${t.pid ? median(rs.map((r) => r.cpuUs)).toFixed(1) : '–'} | ${rs.reduce((a, r) => a + r.errors, 0)} |`,
      );
    }
  }
  if (halfPairs.size > 0) {
    console.log(`\np99 at half load, A/B: proxy-off and the enforcing proxy in ${HALF_PAIRS} alternating back-to-back pairs at the same rate (target ≤ +1 ms)\n`);
    console.log('| target | protocol | Δp99 vs proxy-off (median of pairs) | per pair | target |');
    console.log('|---|---|---:|---|---|');
    for (const [key, xs] of halfPairs) {
      const [name, proto] = key.split('/');
      const m = median(xs);
      console.log(`| ${name} | ${proto === 'h1' ? 'HTTP/1.1' : 'h2c'} | ${signed(m)} | ${xs.map((x) => signed(x)).join(', ')} | ${m <= 1 ? 'met' : 'NOT met'} |`);
    }
  }
  if (pairs.size > 0) {
    console.log(`\nConcurrent A/B against proxy-off (both loaded at once on the same core; ${ROUNDS} round(s)): the enforcement cost, and the minimal forwarder's speed relative to the pass-through\n`);
    console.log('| target | protocol | req/s ratio to proxy-off (median) | per round | reading |');
    console.log('|---|---|---:|---|---|');
    for (const proto of ['h1', 'h2'] as const) {
      for (const name of ['node-fwd', 'proxy-1', 'proxy-1000']) {
        const xs = pairs.get(`${name}/${proto}`);
        if (!xs) continue;
        const m = median(xs);
        const reading = name === 'node-fwd' ? `proxy-off is ${(1 / m).toFixed(2)}× the minimal forwarder` : `enforcement cost ${((1 - m) * 100).toFixed(1)} %`;
        console.log(`| ${name} | ${proto === 'h1' ? 'HTTP/1.1' : 'h2c'} | ${m.toFixed(3)} | ${xs.map((x) => x.toFixed(2)).join(', ')} | ${reading} |`);
      }
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
