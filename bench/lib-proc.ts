/**
 * Process plumbing the benchmarks share: start a server and wait for its port,
 * stop it, run a load tool, read a process's CPU time from /proc, parse wrk.
 * (bench/run.sh skips lib-* files: this is not a benchmark of its own.)
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const ROOT = resolve(import.meta.dirname, '..');

const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Kill `proc` too if the benchmark exits while it still runs. */
export function track(proc: ChildProcess): ChildProcess {
  children.push(proc);
  return proc;
}

/** `cmd args` pinned to `cpu` with taskset when `pinned`, else unchanged. */
export function placed(pinned: boolean, cpu: number, cmd: string, args: string[]): [string, string[]] {
  return pinned ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

export interface Started {
  readonly proc: ChildProcess;
  /** Every capture of `re`'s first group seen so far, as numbers (ports). */
  readonly ports: number[];
}

/**
 * Spawn a process (killed when the benchmark exits) and wait until `re` has matched
 * its stdout/stderr `count` times; rejects on exit or after `timeoutMs`.
 */
export function startProc(
  cmd: string,
  args: string[],
  re: RegExp,
  opts: { count?: number; timeoutMs?: number } = {},
): Promise<Started> {
  const count = opts.count ?? 1;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const global = new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`);
  return new Promise((resolveP, reject) => {
    const proc = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' } });
    track(proc);
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')}: not ready in ${timeoutMs / 1000} s\n${buf}`)), timeoutMs);
    // BENCH_PROC_LOG_DIR: each process's output also goes to <dir>/<pid>.log (--trace-gc …),
    // each line prefixed with the epoch time it arrived, to tie V8 traces to the rounds.
    const log = process.env.BENCH_PROC_LOG_DIR ? createWriteStream(join(process.env.BENCH_PROC_LOG_DIR, `${proc.pid}.log`)) : undefined;
    let partial = '';
    const onData = (d: Buffer) => {
      const text = d.toString();
      if (log) {
        const lines = (partial + text).split('\n');
        partial = lines.pop()!;
        const t = (Date.now() / 1000).toFixed(3);
        if (lines.length > 0) log.write(lines.map((l) => `${t} ${l}\n`).join(''));
      }
      if (buf.length > 65_536) return; // ready long since: keep no more
      buf += text;
      const ports = [...buf.matchAll(global)].map((m) => Number(m[1]));
      if (ports.length >= count) {
        clearTimeout(timer);
        resolveP({ proc, ports });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      if (log && partial) log.write(`${(Date.now() / 1000).toFixed(3)} ${partial}\n`);
      reject(new Error(`${args.join(' ')} exited ${code}\n${buf}`));
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(proc: ChildProcess, graceMs = 5000): Promise<void> {
  if (proc.exitCode !== null) return;
  const done = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([done, sleep(graceMs)]);
  if (proc.exitCode === null) proc.kill('SIGKILL');
}

/** Run a command to completion (bounded by `timeoutMs`) and return stdout + stderr. */
export function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((res) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 256 << 20 }, (_err, stdout, stderr) => res(String(stdout) + String(stderr)));
  });
}

/** utime + stime of a process in clock ticks (plus reaped children's with `withChildren`); 0 if gone. */
export async function procTicks(pid: number | 'self' | undefined, withChildren = false): Promise<number> {
  if (pid === undefined) return 0;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const own = Number(f[11]) + Number(f[12]);
    return withChildren ? own + Number(f[13]) + Number(f[14]) : own;
  } catch {
    return 0;
  }
}

/** wrk's latency text (`889.00us`, `4.83ms`, `1.02s`) in milliseconds. */
export function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

export interface WrkResult {
  readonly rps: number;
  readonly total: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
}

/**
 * Parse `wrk --latency` output. Percentiles are read from the "Latency
 * Distribution" lines only (anchored at line start): the Thread Stats line's
 * `+/- Stdev` column can also end in "50%" and must not be taken for p50.
 */
export function parseWrk(out: string): WrkResult {
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sockErr = /Socket errors: (.*)/.exec(out)?.[1] ?? '';
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    total: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
    p50: toMs(/^\s*50%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    p99: toMs(/^\s*99%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    errors: non2xx + [...sockErr.matchAll(/\d+/g)].reduce((a, m) => a + Number(m[0]), 0),
  };
}
