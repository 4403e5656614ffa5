/**
 * `l7warden run` in a child process (the TypeScript sources through tap's loader, as
 * test/http/cli-run.test.ts does; cluster workers inherit the loader through
 * execArgv). Waits for the `listening:` and `admin:` lines; killed at teardown.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestT } from './tap.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LOADER = ['--import=@tapjs/typescript/import', `${ROOT}src/cli/main.ts`];

export interface Cli {
  child: import('node:child_process').ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  stderr(): string;
  port: number;
  admin: number;
}

/** Start `l7warden run` and wait for its listening/admin lines. */
export async function startCli(t: TestT, args: string[]): Promise<Cli> {
  const child = spawn(process.execPath, [...LOADER, 'run', ...args], { cwd: ROOT, env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let port = 0;
  let admin = 0;
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const killer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  void exit.then(() => clearTimeout(killer));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 45_000);
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening: deathstar \(ingress\) on [\d.]+:(\d+)/.exec(stderr);
      if (m) port = Number(m[1]);
      const a = /admin: [\d.]+:(\d+)/.exec(stderr);
      if (a) admin = Number(a[1]);
      if (port && admin) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exit.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  return { child, exit, stderr: () => stderr, port, admin };
}

