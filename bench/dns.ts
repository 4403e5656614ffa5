/**
 * DNS benchmark: queries/s, mean latency and the forwarder's own CPU per query,
 * with dnsperf (-c1 -T1 -q100, as ANCHORS.md), in one run for:
 *   direct      the test upstream queried directly
 *   node-fwd    a minimal Node UDP forwarder (bench/lib-dns-fwd.ts, no policy)
 *   proxy-off   `l7warden run` with the dns listener, enforcement: never
 *   proxy-1     enforcing a policy of 1 DNS pattern
 *   proxy-1000  enforcing a policy of 1,000 DNS patterns
 * Every target is checked first (the allowed name answers 127.0.0.x; the enforcing
 * ones answer REFUSED outside the patterns). Placement: shared (no pinning).
 * Env: DNS_BENCH_SECONDS (default 5), DNS_BENCH_ROUNDS (default 1).
 * Targets: proxy-off ≥ node-fwd; enforcement ≤ 15% cost; 1,000 patterns ≈ 1.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = resolve(import.meta.dirname, '..');
const SECONDS = Number(process.env.DNS_BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.DNS_BENCH_ROUNDS ?? 1);
const CLIENT_IP = '127.0.0.10';
const TS = ['--import=@tapjs/typescript/import'];

const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
});

/** Start a process and wait (≤ 30 s) for a line matching `re` on stdout or stderr. */
function startProc(cmd: string, args: string[], re: RegExp): Promise<{ proc: ChildProcess; port: number }> {
  return new Promise((resolveP, reject) => {
    const proc = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' } });
    children.push(proc);
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')}: no port in 30 s\n${buf}`)), 30_000);
    const onData = (d: Buffer) => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolveP({ proc, port: Number(m[1]) });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited ${code}\n${buf}`));
    });
  });
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const done = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([done, sleep(5000)]);
  if (proc.exitCode === null) proc.kill('SIGKILL');
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((res) => {
    execFile(cmd, args, { timeout: timeoutMs }, (_err, stdout, stderr) => res(String(stdout) + String(stderr)));
  });
}

/** utime + stime of a process, in µs. */
async function cpuMicros(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1e6) / 100; // clock ticks (USER_HZ = 100)
}

interface Result {
  qps: number;
  meanUs: number;
  lost: number;
  cpuUs?: number;
}

async function dnsperf(port: number, names: string, seconds: number, pid?: number): Promise<Result> {
  const before = pid ? await cpuMicros(pid) : 0;
  const out = await run(
    'dnsperf',
    ['-s', '127.0.0.1', '-p', String(port), '-a', CLIENT_IP, '-d', names, '-c1', '-T1', '-q100', '-l', String(seconds)],
    (seconds + 15) * 1000,
  );
  const after = pid ? await cpuMicros(pid) : 0;
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const mean = Number(/Average Latency \(s\):\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const completed = Number(/Queries completed:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? 0);
  if (!Number.isFinite(qps)) throw new Error(`dnsperf output not understood:\n${out}`);
  const r: Result = { qps, meanUs: mean * 1e6, lost };
  if (pid && completed > 0) r.cpuUs = (after - before) / completed;
  return r;
}

async function check(port: number, enforcing: boolean): Promise<string | undefined> {
  const ok = await run('dig', ['@127.0.0.1', '-p', String(port), '-b', CLIENT_IP, 'h1.example.test', '+short', '+tries=1', '+time=2'], 10_000);
  if (!/^127\.0\.0\.\d+$/m.test(ok)) return `allowed name did not resolve: ${ok.trim()}`;
  if (enforcing) {
    const no = await run('dig', ['@127.0.0.1', '-p', String(port), '-b', CLIENT_IP, 'outside.invalid', '+tries=1', '+time=2'], 10_000);
    if (!no.includes('status: REFUSED')) return `outside.invalid not refused: ${no.trim()}`;
  }
  return undefined;
}

function configFor(upstreamPort: number, mode: 'off' | number): { files: Record<string, string> } {
  const pods = `apiVersion: v1
kind: Pod
metadata: { name: kube-dns, namespace: kube-system, labels: { k8s-app: kube-dns } }
status: { podIP: 127.0.0.53 }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: default, labels: { app: client } }
status: { podIP: ${CLIENT_IP} }
`;
  const rules: string[] = [];
  if (mode !== 'off') {
    for (let i = 1; i < mode; i++) rules.push(`              - matchPattern: "*.zone${i}.example.org"`);
    rules.push(`              - matchPattern: "*.example.test"`);
  }
  const policy =
    mode === 'off'
      ? ''
      : `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-dns, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toEndpoints:
        - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
      toPorts:
        - ports: [{ port: "${upstreamPort}", protocol: ANY }]
          rules:
            dns:
${rules.join('\n')}
`;
  const proxy = `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: bench }
spec:
  enforcement: ${mode === 'off' ? 'never' : 'default'}
  flowLog: { file: "" }
  listeners:
    - name: dns
      mode: dns
      address: 127.0.0.1:0
      upstream: 127.0.0.1:${upstreamPort}
      serverEndpoint: { namespace: kube-system, pod: kube-dns }
  limits:
    dnsMaxInFlight: 1000
`;
  return { files: { 'pods.yaml': pods, 'policy.yaml': policy, 'proxy.yaml': proxy } };
}

interface Target {
  name: string;
  policy: string;
  port: number;
  proc?: ChildProcess;
  enforcing: boolean;
  results: Result[];
  skipped?: string;
}

const median = (xs: number[]) => {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'l7w-bench-dns-'));
  try {
    const names = join(dir, 'names.txt');
    await writeFile(names, Array.from({ length: 5000 }, (_, i) => `h${i + 1}.example.test A`).join('\n') + '\n');
    const up = await startProc('node', [...TS, 'bench/lib-dns-upstream.ts'], /^(\d+)$/m);
    const targets: Target[] = [{ name: 'direct', policy: 'none', port: up.port, enforcing: false, results: [] }];
    const fwd = await startProc('node', [...TS, 'bench/lib-dns-fwd.ts', String(up.port)], /^(\d+)$/m);
    targets.push({ name: 'node-fwd', policy: 'none', port: fwd.port, proc: fwd.proc, enforcing: false, results: [] });
    for (const mode of ['off', 1, 1000] as const) {
      const cdir = join(dir, `cfg-${mode}`);
      await run('mkdir', ['-p', cdir], 5000);
      for (const [f, text] of Object.entries(configFor(up.port, mode).files)) await writeFile(join(cdir, f), text);
      const p = await startProc('node', ['dist/cli/main.js', 'run', '--config', cdir], /listening: dns \(dns\) on [\d.]+:(\d+)/);
      targets.push({
        name: mode === 'off' ? 'proxy-off' : `proxy-${mode}`,
        policy: mode === 'off' ? 'enforcement: never' : `${mode} pattern${mode === 1 ? '' : 's'}`,
        port: p.port,
        proc: p.proc,
        enforcing: mode !== 'off',
        results: [],
      });
    }
    for (const t of targets) {
      const bad = await check(t.port, t.enforcing);
      if (bad) t.skipped = bad;
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        if (t.skipped) continue;
        await dnsperf(t.port, names, 1); // warm-up (JIT), discarded
        t.results.push(await dnsperf(t.port, names, SECONDS, t.proc?.pid ?? up.proc.pid));
      }
    }
    const base = targets.find((t) => t.name === 'node-fwd');
    const baseQps = base ? median(base.results.map((r) => r.qps)) : NaN;
    const offQps = median(targets.find((t) => t.name === 'proxy-off')?.results.map((r) => r.qps) ?? []);
    const lines = [
      `DNS over UDP, dnsperf -c1 -T1 -q100 -l${SECONDS}, 5,000 names under example.test, ${ROUNDS} round(s), shared placement`,
      '',
      '| target | policy | qps | vs node-fwd | vs proxy-off | mean latency | CPU µs/query (target process) | lost |',
      '|---|---|---:|---:|---:|---:|---:|---:|',
    ];
    for (const t of targets) {
      if (t.skipped) {
        lines.push(`| ${t.name} | ${t.policy} | skipped: ${t.skipped} | | | | | |`);
        continue;
      }
      const qps = median(t.results.map((r) => r.qps));
      const mean = median(t.results.map((r) => r.meanUs));
      const cpu = median(t.results.map((r) => r.cpuUs ?? NaN));
      const lost = t.results.reduce((a, r) => a + r.lost, 0);
      lines.push(
        `| ${t.name} | ${t.policy} | ${Math.round(qps).toLocaleString('en-US')} | ${(qps / baseQps).toFixed(2)} | ${
          t.name.startsWith('proxy') ? (qps / offQps).toFixed(2) : '-'
        } | ${Math.round(mean)} µs | ${Number.isFinite(cpu) ? cpu.toFixed(1) : '-'} | ${lost} |`,
      );
    }
    lines.push('', 'CPU µs/query for "direct" is the upstream\'s own; for the others, the forwarder\'s process alone.');
    console.log(lines.join('\n'));
    for (const t of targets) if (t.proc) await stop(t.proc);
    await stop(up.proc);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
