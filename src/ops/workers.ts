/**
 * `l7warden run --workers N` (node:cluster). docs/operations.md has the choices:
 *
 * - The **primary** validates the configuration first (exit 1 with every error
 *   before anything listens), serves the admin address (/healthz, /readyz,
 *   /metrics aggregated over the workers with prom-client's AggregatorRegistry,
 *   /flows and the flow log fed by the workers' records over IPC, POST /reload),
 *   watches the config directory, handles SIGHUP/SIGTERM/SIGINT, and replaces a
 *   worker that dies.
 * - **Workers** load the same directory and run the listeners. Ingress listeners are
 *   shared by every worker (cluster's round-robin accept). DNS and egress listeners
 *   run in worker 0 only: the FQDN-learned IPs must be in the IP cache of the
 *   process that enforces the connection *before* the DNS answer is released, which
 *   one process guarantees and an IPC broadcast cannot. (Node 20's dgram has no
 *   usable reusePort either: `reusePort` arrived in Node 22.12/23.1.)
 * - A reload is triggered in the primary (watch, SIGHUP, POST /reload) and sent to
 *   every worker; each loads and compiles the directory itself and answers with its
 *   outcome. Refused in any worker ⇒ reported as refused. A write landing between
 *   two workers' loads fires the watcher again, so the workers converge on the
 *   newest content. Identities agree without coordination (deterministic numbers).
 */
import cluster, { type Worker } from 'node:cluster';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { tmpdir } from 'node:os';
import { copyFile, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { AggregatorRegistry } from 'prom-client';
import { loadConfigDir } from '../config/load.js';
import { formatIssue } from '../config/issues.js';
import type { ListenerSpec, ProxyConfigSpec } from '../config/proxy-config.js';
import { PolicyStore } from '../policy/store.js';
import { AdminServer } from '../admin/server.js';
import { FlowSink, flowLogIssue } from '../observe/sink.js';
import { FlowStream } from '../observe/admin-routes.js';
import { EXIT, type Io } from '../cli/args.js';
import type { ReloadReport } from './reload.js';
import { readinessDetail, reloadRoute } from './admin.js';
import { ConfigWatcher, listTree } from './config-watch.js';

const ENV_INDEX = 'L7W_WORKER_INDEX';
const ENV_SHIP = 'L7W_WORKER_SHIP_FLOWS';
const ENV_START_CONFIG = 'L7W_WORKER_START_CONFIG';
const ENV_START_CERTS = 'L7W_WORKER_START_CERTS';

type ToWorker = { l7w: 'reload'; id: number; trigger: string } | { l7w: 'shutdown' };
type ToPrimary =
  | { l7w: 'ready'; listeners: { name: string; mode: string; address: AddressInfo }[] }
  | { l7w: 'flows'; lines: string[] }
  | { l7w: 'reloaded'; id: number; report: { ok: boolean; version: number; errors: string[]; trigger: string } }
  | { l7w: 'failed'; message: string };

export function isClusterWorker(): boolean {
  return cluster.isWorker && process.env[ENV_INDEX] !== undefined;
}

/** Which listeners a worker binds: ingress everywhere, dns/egress in worker 0. */
export function workerBinds(index: number): (l: ListenerSpec) => boolean {
  return (l) => l.mode === 'ingress' || index === 0;
}

function send(msg: ToPrimary): void {
  if (process.connected) process.send?.(msg);
}

export interface WorkerRunOptions {
  readonly configDir: string;
  readonly certsDir?: string;
  readonly io: Io;
}

/** The worker side: run the listeners, answer the primary. Resolves with the exit code. */
export async function workerMain(o: WorkerRunOptions): Promise<number> {
  // Imported here: run.ts imports this module.
  const { startProxy } = await import('../cli/run.js');
  const index = Number(process.env[ENV_INDEX] ?? '0');
  const ship = process.env[ENV_SHIP] === '1';
  const startConfig = process.env[ENV_START_CONFIG];
  const startCerts = process.env[ENV_START_CERTS];
  let batch: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    if (batch.length === 0) return;
    const lines = batch;
    batch = [];
    send({ l7w: 'flows', lines });
  };
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  try {
    proxy = await startProxy({
      configDir: o.configDir,
      ...(o.certsDir !== undefined ? { certsDir: o.certsDir } : {}),
      noAdmin: true,
      flowLogFile: '',
      ...(startConfig ? { initial: { configDir: startConfig, ...(startCerts ? { certsDir: startCerts } : {}) } } : {}),
      bindListener: workerBinds(index),
      log: (l) => o.io.err(`[worker ${index}] ${l}`),
      ...(ship
        ? {
            onFlow: (line: string) => {
              batch.push(line);
              if (batch.length >= 512) flush();
              else timer ??= setTimeout(flush, 50);
            },
          }
        : {}),
    });
  } catch (err) {
    send({ l7w: 'failed', message: err instanceof Error ? err.message : String(err) });
    return EXIT.invalid;
  }
  // Constructing one installs prom-client's worker-side listener (answers the primary).
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([proxy.metrics.registry]);
  send({ l7w: 'ready', listeners: proxy.listeners.map((l) => ({ name: l.name, mode: l.mode, address: l.address })) });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      proxy.close().finally(() => {
        if (timer) clearTimeout(timer);
        flush();
        resolve(EXIT.ok);
      });
    };
    process.on('message', (m: ToWorker) => {
      if (!m || typeof m !== 'object') return;
      if (m.l7w === 'shutdown') stop();
      else if (m.l7w === 'reload') {
        void proxy.reload(m.trigger).then((r) =>
          send({ l7w: 'reloaded', id: m.id, report: { ok: r.ok, version: r.version, errors: [...r.errors], trigger: r.trigger } }),
        );
      }
    });
    // The primary owns these: a terminal's Ctrl-C reaches the whole group, so drain too.
    process.on('SIGHUP', () => {});
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    // Orphaned (the primary died): drain and exit.
    process.once('disconnect', stop);
  });
}

export interface PrimaryRunOptions {
  readonly configDir: string;
  readonly certsDir?: string;
  readonly workers: number;
  readonly watch: boolean;
  readonly io: Io;
}

interface WorkerState {
  readonly index: number;
  worker: Worker;
  ready: boolean;
}

/**
 * The last configuration every worker accepted, copied aside. Workers start from it
 * (all the same bytes), and a replacement worker starts from it even when the
 * directory now holds a refused change: it joins with the policy the others enforce.
 */
class LastGood {
  #base: string | undefined;
  #gen = 0;
  current: { configDir: string; certsDir?: string } | undefined;

  constructor(
    private readonly configDir: string,
    private readonly certsDir: string | undefined,
  ) {}

  /** Copy the directory now; keep the copy only if it loads and compiles. */
  async capture(): Promise<boolean> {
    this.#base ??= await mkdtemp(path.join(tmpdir(), 'l7w-lastgood-'));
    const dir = path.join(this.#base, `gen-${++this.#gen}`);
    const certsSrc = this.certsDir ?? path.join(this.configDir, '..', 'certs');
    const copy = async (src: string, dst: string, kind: 'config' | 'certs') => {
      for (const rel of await listTree(src, kind)) {
        await mkdir(path.dirname(path.join(dst, rel)), { recursive: true });
        await copyFile(path.join(src, rel), path.join(dst, rel));
      }
    };
    try {
      await mkdir(path.join(dir, 'config'), { recursive: true });
      await copy(this.configDir, path.join(dir, 'config'), 'config');
      const hasCerts = await stat(certsSrc).then((st) => st.isDirectory(), () => false);
      if (hasCerts) await copy(certsSrc, path.join(dir, 'certs'), 'certs');
      const next = { configDir: path.join(dir, 'config'), ...(hasCerts ? { certsDir: path.join(dir, 'certs') } : {}) };
      const loaded = await loadConfigDir(next.configDir, next.certsDir !== undefined ? { certsDir: next.certsDir } : {});
      if (loaded.errors.length > 0 || !new PolicyStore().apply(loaded.docs).ok) throw new Error('copy does not load');
      const old = this.current;
      this.current = next;
      if (old) await rm(path.dirname(old.configDir), { recursive: true, force: true });
      return true;
    } catch {
      await rm(dir, { recursive: true, force: true });
      return false;
    }
  }

  async dispose(): Promise<void> {
    if (this.#base) await rm(this.#base, { recursive: true, force: true });
  }
}

/** The primary: validate, fork, admin, reload broadcast, replace dead workers, drain. */
export async function runWorkers(o: PrimaryRunOptions): Promise<number> {
  const { io } = o;
  const loaded = await loadConfigDir(o.configDir, o.certsDir !== undefined ? { certsDir: o.certsDir } : {});
  const store = new PolicyStore(o.certsDir !== undefined ? { certsDir: o.certsDir } : {});
  const errors = loaded.errors.length > 0 ? loaded.errors : store.apply(loaded.docs, loaded.warnings).errors;
  if (errors.length > 0) {
    for (const e of errors) io.err(formatIssue(e));
    io.err(`${o.configDir}: ${errors.length} error${errors.length === 1 ? '' : 's'}; nothing started`);
    return EXIT.invalid;
  }
  const spec: ProxyConfigSpec | undefined = loaded.docs.proxyConfig?.spec;
  if (!spec || spec.listeners.length === 0) {
    io.err(`l7warden run: ${o.configDir}: no listeners to run (a ProxyConfig document with spec.listeners is needed)`);
    return EXIT.invalid;
  }
  const lastGood = new LastGood(o.configDir, o.certsDir);
  if (!(await lastGood.capture())) {
    io.err(`l7warden run: ${o.configDir}: changed while starting; try again`);
    return EXIT.invalid;
  }
  const nodeName = spec.flowLog.nodeName || 'l7warden';
  const flows = new FlowSink({
    file: spec.flowLog.file,
    ...(spec.flowLog.maxBytes !== undefined ? { maxBytes: spec.flowLog.maxBytes } : {}),
    ...(spec.flowLog.maxFiles !== undefined ? { maxFiles: spec.flowLog.maxFiles } : {}),
    recent: spec.admin ? 4096 : 0,
    onError: (err) => io.err(`l7warden: flow log: ${err.message}; no more records are written to it`),
  });
  const flowLogProblem = await flowLogIssue(flows, loaded.docs.proxyConfig?.pos ?? { file: o.configDir, line: 1, col: 1 });
  if (flowLogProblem) {
    io.err(formatIssue(flowLogProblem));
    io.err(`${o.configDir}: 1 error; nothing started`);
    await lastGood.dispose();
    return EXIT.invalid;
  }
  const ship = flows.active;
  const aggregator = new AggregatorRegistry();
  const states: WorkerState[] = [];
  let stopping = false;
  let lastError: ReloadReport | undefined;
  let version = 1;
  let reloadId = 0;
  const pending = new Map<number, { want: number; got: ReloadReport[]; done: (r: ReloadReport) => void }>();

  const readiness = {
    notReadyReason(): string | undefined {
      if (stopping) return 'draining';
      const notReady = states.filter((s) => !s.ready).length;
      return notReady > 0 ? `${notReady} of ${states.length} workers not ready` : undefined;
    },
    detail: () => readinessDetail(lastError, version),
  };

  const broadcastReload = (trigger: string): Promise<ReloadReport> => {
    const live = states.filter((s) => s.ready && s.worker.isConnected());
    if (live.length === 0) return Promise.resolve({ ok: false, trigger, version, errors: ['no worker running'], at: new Date() });
    const id = ++reloadId;
    return new Promise<ReloadReport>((resolve) => {
      const timer = setTimeout(() => finish(), 30_000);
      const entry = { want: live.length, got: [] as ReloadReport[], done: () => finish() };
      const finish = () => {
        clearTimeout(timer);
        pending.delete(id);
        const bad = entry.got.find((r) => !r.ok);
        const errs = bad ? bad.errors : entry.got.length < entry.want ? ['a worker did not answer the reload'] : [];
        const v = entry.got.reduce((m, r) => Math.max(m, r.version), 0) || version;
        const report: ReloadReport = { ok: errs.length === 0, trigger, version: v, errors: errs, at: new Date() };
        if (report.ok) {
          lastError = undefined;
          version = v;
          void lastGood.capture();
          io.err(`l7warden: reload (${trigger}): policy version ${v} in force in ${entry.got.length} workers`);
        } else {
          lastError = report;
          for (const e of errs) io.err(e);
          io.err(`l7warden: reload (${trigger}) refused; the previous policy stays in force`);
        }
        resolve(report);
      };
      pending.set(id, entry);
      for (const s of live) s.worker.send({ l7w: 'reload', id, trigger } satisfies ToWorker);
    });
  };

  let announced = false;
  let resolveStarted!: (ok: boolean) => void;
  const started = new Promise<boolean>((r) => (resolveStarted = r));

  const fork = (index: number, st?: WorkerState): WorkerState => {
    const start = lastGood.current;
    const worker = cluster.fork({
      [ENV_INDEX]: String(index),
      [ENV_SHIP]: ship ? '1' : '0',
      ...(start ? { [ENV_START_CONFIG]: start.configDir, ...(start.certsDir ? { [ENV_START_CERTS]: start.certsDir } : {}) } : {}),
    });
    const state: WorkerState = st ?? { index, worker, ready: false };
    state.worker = worker;
    state.ready = false;
    worker.on('message', (m: ToPrimary) => {
      if (!m || typeof m !== 'object') return;
      switch (m.l7w) {
        case 'ready':
          state.ready = true;
          io.err(`worker ${index} ready (pid ${worker.process.pid ?? '?'})`);
          if (!announced && index === 0) {
            announced = true;
            for (const l of m.listeners) io.err(`listening: ${l.name} (${l.mode}) on ${l.address.address}:${l.address.port}`);
          }
          if (states.every((s) => s.ready)) resolveStarted(true);
          break;
        case 'flows':
          // Worker lines are already serialised: hand them on as they are (no parse and re-stringify).
          for (const line of m.lines) flows.emit({ toLine: () => line, toJSON: () => JSON.parse(line) as unknown });
          break;
        case 'reloaded': {
          const p = pending.get(m.id);
          if (p) {
            p.got.push({ ...m.report, at: new Date() });
            if (p.got.length >= p.want) p.done(p.got[0]!);
          }
          break;
        }
        case 'failed':
          io.err(`l7warden run: worker ${index}: ${m.message}`);
          resolveStarted(false);
          break;
      }
    });
    worker.on('exit', (code, signal) => {
      state.ready = false;
      if (stopping) return;
      io.err(`l7warden: worker ${index} exited (${signal ?? code}); starting a new one`);
      // A worker that keeps dying at start-up is not restarted in a tight loop.
      setTimeout(() => {
        if (!stopping) fork(index, state);
      }, 500).unref();
    });
    return state;
  };

  cluster.setupPrimary({ silent: false });
  for (let i = 0; i < o.workers; i++) states.push(fork(i));
  const startTimer = setTimeout(() => resolveStarted(false), 60_000);
  const ok = await started;
  clearTimeout(startTimer);
  const killAll = () => {
    for (const s of states) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL');
  };
  if (!ok) {
    stopping = true;
    killAll();
    await flows.close();
    await lastGood.dispose();
    return EXIT.invalid;
  }

  let admin: AdminServer | undefined;
  try {
    if (spec.admin) {
      admin = new AdminServer(readiness);
      const stream = new FlowStream(flows, { nodeName });
      admin.routes.set('/flows', stream.route);
      admin.routes.set('/reload', reloadRoute((t) => broadcastReload(t)));
      admin.routes.set('/metrics', (_req, res) => {
        aggregator.clusterMetrics().then(
          (body) => {
            res.writeHead(200, { 'content-type': aggregator.contentType, 'content-length': Buffer.byteLength(body) });
            res.end(body);
          },
          () => {
            res.writeHead(500, { 'content-type': 'text/plain' });
            res.end('metrics unavailable\n');
          },
        );
      });
      const a = await admin.listen(spec.admin.host, spec.admin.port);
      io.err(`admin: ${a.address}:${a.port}`);
    }
  } catch (err) {
    stopping = true;
    killAll();
    io.err(`l7warden run: admin: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT.invalid;
  }
  io.err(`workers: ${o.workers}`);

  let watcher: ConfigWatcher | undefined;
  if (o.watch) {
    watcher = new ConfigWatcher({
      configDir: o.configDir,
      certsDir: o.certsDir ?? path.join(o.configDir, '..', 'certs'),
      onChange: () => void broadcastReload('watch'),
      onError: (e) => io.err(`l7warden: config watch: ${e.message}`),
    });
    await watcher.start();
  }
  const onHup = () => void broadcastReload('SIGHUP');
  process.on('SIGHUP', onHup);

  return new Promise<number>((resolve) => {
    const stop = () => {
      if (stopping) return;
      stopping = true;
      watcher?.close();
      process.off('SIGHUP', onHup);
      const exits = states.map(
        (s) => new Promise<void>((r) => (s.worker.isDead() ? r() : s.worker.once('exit', () => r()))),
      );
      for (const s of states) if (s.worker.isConnected()) s.worker.send({ l7w: 'shutdown' } satisfies ToWorker);
      // Workers drain within drainTimeoutMs; a stuck one is killed a little after.
      const hard = setTimeout(killAll, spec.limits.drainTimeoutMs + 2_000);
      void Promise.all(exits).then(async () => {
        clearTimeout(hard);
        await admin?.close();
        await flows.close();
        await lastGood.dispose();
        resolve(EXIT.ok);
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
