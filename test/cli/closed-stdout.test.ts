/**
 * A reader that goes away: `l7warden observe --file f | head` closed the pipe and
 * the next write was an unhandled EPIPE (exit 1, a stack trace on stderr). A printing
 * command now ends quietly with its exit code; `l7warden run` with its flow log on
 * stdout keeps serving when that stdout's reader goes away (the records stop).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { curl } from '../helpers/clients.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LOADER = ['--import=@tapjs/typescript/import', `${ROOT}src/cli/main.ts`];

function cli(args: string[]) {
  const child = spawn(process.execPath, [...LOADER, ...args], { cwd: ROOT, env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void exit.then(() => clearTimeout(timer));
  return { child, exit, stderr: () => stderr };
}

t.test('observe into a pipe closed after the first chunk: exit 0, nothing on stderr', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'flows.json');
  const rec = (i: number) =>
    JSON.stringify({ flow: { time: '2026-11-22T00:00:00.000Z', verdict: 'FORWARDED', IP: { source: '127.0.0.10', destination: '127.0.0.20' }, l4: { TCP: { source_port: 40000 + (i % 20000), destination_port: 80 } }, Type: 'L3_L4' }, node_name: 'n', time: '2026-11-22T00:00:00.000Z' });
  // ~1.2 MB of output: far more than a pipe holds.
  await writeFile(file, Array.from({ length: 5000 }, (_, i) => rec(i)).join('\n') + '\n');
  const run = cli(['observe', '--file', file, '-o', 'json']);
  await once(run.child.stdout, 'data');
  run.child.stdout.destroy();
  t.equal(await run.exit, 0);
  t.equal(run.stderr(), '', 'no stack trace');
});

t.test('run with its flow log on stdout keeps serving after the reader of stdout goes away', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url, flowLogFile: '-' });
  t.teardown(cfg.cleanup);
  const run = cli(['run', '--no-watch', '--config', cfg.dir]);
  t.teardown(() => {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
  });
  let port = 0;
  for (let i = 0; i < 300 && !port; i++) {
    port = Number(/listening: deathstar \(ingress\) on [\d.]+:(\d+)/.exec(run.stderr())?.[1] ?? 0);
    if (!port) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(port > 0, 'listening');
  const land = () => curl(['--interface', '127.0.0.10', '-H', 'Host: deathstar', '-X', 'POST', '-d', 'x', `http://127.0.0.1:${port}/v1/request-landing`, '-w', '%{http_code}', '-o', '/dev/null']);
  t.equal((await land()).stdout, '200');
  await once(run.child.stdout, 'data'); // its flow records
  run.child.stdout.destroy();
  // Enough records to hit the closed pipe (a write fails with EPIPE once the reader is gone).
  for (let i = 0; i < 20; i++) t.equal((await land()).stdout, '200', `request ${i} after stdout closed`);
  t.equal(run.child.exitCode, null, 'still running');
  t.match(run.stderr(), /l7warden: flow log: write EPIPE; no more records are written to it/, 'said once, on stderr');
  t.notMatch(run.stderr(), /\n\s+at |Unhandled|node:events/, 'no stack trace');
  run.child.kill('SIGTERM');
  t.equal(await run.exit, 0);
});
