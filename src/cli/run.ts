/**
 * `l7warden run --config DIR`: load and compile (exit 1 with every error before
 * anything listens — fail closed), then start the admin server, every listener and
 * the flow sink. SIGTERM/SIGINT drain the listeners and exit 0.
 *
 * `startProxy()` is the programmatic form tests use: it returns the bound addresses
 * and `close()`. Listener start-up is a switch on `mode`, so the egress and dns
 * listeners plug in next to ingress.
 */
import type { AddressInfo } from 'node:net';
import { loadConfigDir } from '../config/load.js';
import { formatIssue, type ConfigIssue } from '../config/issues.js';
import { PolicyStore } from '../policy/store.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { ListenerSpec, ProxyConfigSpec } from '../config/proxy-config.js';
import { DEFAULT_LIMITS } from '../config/proxy-config.js';
import { FlowSink, flowLogIssue } from '../observe/sink.js';
import { HttpFlowRecorder } from '../observe/flow.js';
import { Metrics } from '../observe/metrics.js';
import { FlowStream, metricsRoute } from '../observe/admin-routes.js';
import { secretHeaderNames } from '../observe/hubble.js';
import { IngressListenerServer } from '../listeners/ingress.js';
import { startDnsListener, type RunningDnsListener } from '../listeners/dns.js';
import { EgressListenerServer } from '../listeners/egress.js';
import { DnsFlowRecorder } from '../dns/flow.js';
import { AdminServer } from '../admin/server.js';
import { assertVerificationEnv } from '../tls/originate.js';
import { WardenError } from '../core/errors.js';
import { EXIT, parse, type Io } from './args.js';
import type { ListenerCertificates } from '../tls/cert-store.js';
import { ProxyReloader, type ReloadReport } from '../ops/reload.js';
import { ConfigWatcher } from '../ops/config-watch.js';
import { reloadRoute, readinessDetail } from '../ops/admin.js';
import { runWorkers, workerMain, isClusterWorker } from '../ops/workers.js';
import * as path from 'node:path';

export interface StartOptions {
  readonly configDir: string;
  readonly certsDir?: string;
  /** Override the flow log destination ("" off, "-" stdout, or a path). */
  readonly flowLogFile?: string;
  /** Subscribe to flow records as JSON lines (tests, admin stream). */
  readonly onFlow?: (line: string) => void;
  /** Rebind every listener (and admin) on port 0 of its host: tests. */
  readonly ephemeralPorts?: boolean;
  /**
   * Watch the config directory (and the certs directory) and reload on a change
   * (`l7warden run` does; docs/operations.md). Off by default for embedders/tests.
   */
  readonly watch?: boolean | { readonly debounceMs?: number };
  /** Operator log lines (reload outcomes, refused changes): stderr in `l7warden run`. */
  readonly log?: (line: string) => void;
  /** Which listeners this process binds (cluster workers, src/ops/workers.ts); default all. */
  readonly bindListener?: (l: ListenerSpec) => boolean;
  /** Do not serve the admin address here (cluster workers: the primary serves it). */
  readonly noAdmin?: boolean;
  /**
   * Start from this copy of the directory instead (a replacement cluster worker
   * starts from the primary's last good copy); reloads read `configDir`.
   */
  readonly initial?: { readonly configDir: string; readonly certsDir?: string };
}

export interface RunningListener {
  readonly name: string;
  readonly mode: ListenerSpec['mode'];
  readonly address: AddressInfo;
}

export interface RunningProxy {
  readonly listeners: readonly RunningListener[];
  readonly admin?: AddressInfo;
  readonly snapshot: () => PolicySnapshot | undefined;
  /**
   * Force a snapshot compiled elsewhere (tests, embedders); the next successful
   * reload replaces it. Hot reload goes through `store` / `reload()`.
   */
  setSnapshot(s: PolicySnapshot): void;
  /** The policy store: current snapshot, version, shared FQDN overlay, onSwap. */
  readonly store: PolicyStore;
  /** Reload the config directory now (what the watcher, SIGHUP and POST /reload do). */
  reload(trigger?: string): Promise<ReloadReport>;
  readonly reloader: ProxyReloader;
  readonly flows: FlowSink;
  /** Every Prometheus metric (served at the admin address's /metrics). */
  readonly metrics: Metrics;
  close(drainMs?: number): Promise<void>;
}

interface Closable {
  close(drainMs?: number): Promise<void>;
  readonly bound: boolean;
}

export class ConfigInvalid extends WardenError {
  constructor(readonly issues: readonly ConfigIssue[]) {
    super('L7W_ERR_CONFIG', `${issues.length} configuration error${issues.length === 1 ? '' : 's'}`);
  }
}

export async function startProxy(opts: StartOptions): Promise<RunningProxy> {
  assertVerificationEnv();
  const loaded = opts.initial
    ? await loadConfigDir(opts.initial.configDir, opts.initial.certsDir !== undefined ? { certsDir: opts.initial.certsDir } : {})
    : await loadConfigDir(opts.configDir, opts.certsDir !== undefined ? { certsDir: opts.certsDir } : {});
  if (loaded.errors.length > 0) throw new ConfigInvalid(loaded.errors);
  const pc = loaded.docs.proxyConfig?.spec;
  // One PolicyStore: the first snapshot and every reload go through it, and its IP
  // overlay (FQDN-learned IPs) is shared by every snapshot it compiles.
  const store = new PolicyStore(opts.certsDir !== undefined ? { certsDir: opts.certsDir } : {});
  const first = store.apply(loaded.docs, loaded.warnings);
  if (!first.ok) throw new ConfigInvalid(first.errors);
  // setSnapshot() forces a snapshot until the store swaps again.
  let forced: PolicySnapshot | undefined;
  store.onSwap(() => {
    forced = undefined;
  });
  const snapshot = (): PolicySnapshot | undefined => forced ?? store.current;
  const spec: ProxyConfigSpec = pc ?? {
    listeners: [],
    enforcement: 'default',
    limits: DEFAULT_LIMITS,
    flowLog: { file: '', format: 'json', nodeName: 'l7warden' },
  };
  if (spec.listeners.length === 0) {
    throw new WardenError('L7W_ERR_CONFIG', `${opts.configDir}: no listeners to run (a ProxyConfig document with spec.listeners is needed)`);
  }
  const flows = new FlowSink({
    file: opts.flowLogFile ?? spec.flowLog.file,
    ...(spec.flowLog.maxBytes !== undefined ? { maxBytes: spec.flowLog.maxBytes } : {}),
    ...(spec.flowLog.maxFiles !== undefined ? { maxFiles: spec.flowLog.maxFiles } : {}),
    // The admin address serves /flows?last=N from this ring.
    recent: spec.admin ? 4096 : 0,
    onError: (err) => opts.log?.(`l7warden: flow log: ${err.message}; no more records are written to it`),
  });
  const flowLogProblem = await flowLogIssue(flows, loaded.docs.proxyConfig?.pos ?? { file: opts.configDir, line: 1, col: 1 });
  if (flowLogProblem) throw new ConfigInvalid([flowLogProblem]);
  if (opts.onFlow) flows.subscribe(opts.onFlow);
  const metrics = new Metrics();
  metrics.policyReload(true);
  metrics.trackGauge(metrics.flowRecordsDropped, () => flows.dropped);
  const nodeName = spec.flowLog.nodeName || 'l7warden';
  const httpFlows = new HttpFlowRecorder(flows, nodeName, { metrics, redactHeaders: secretHeaderNames(loaded.docs) });
  const dnsFlows = new DnsFlowRecorder(flows, nodeName, { metrics });

  const servers: Closable[] = [];
  const dnsByName = new Map<string, RunningDnsListener>();
  const listeners: RunningListener[] = [];
  const certificates = new Map<string, ListenerCertificates>();
  const bindListener = opts.bindListener ?? (() => true);
  // Ingress listeners first: cluster workers that bind only some listeners still
  // listen on port-0 addresses in the same order (cluster keys port 0 by order).
  const toBind = [...spec.listeners.filter((l) => l.mode === 'ingress'), ...spec.listeners.filter((l) => l.mode !== 'ingress')].filter(bindListener);
  let admin: AdminServer | undefined;
  let adminAddr: AddressInfo | undefined;
  let reloader: ProxyReloader | undefined;
  let watcher: ConfigWatcher | undefined;
  let draining = false;
  const readiness = {
    notReadyReason(): string | undefined {
      if (draining) return 'draining';
      if (!snapshot()) return 'no policy snapshot';
      const unbound = servers.length < toBind.length || servers.some((s) => !s.bound);
      return unbound ? 'listeners not bound yet' : undefined;
    },
    detail: () => readinessDetail(reloader?.lastError, store.version),
  };
  const closeAll = async (drainMs?: number) => {
    draining = true;
    watcher?.close();
    await Promise.all(servers.map((s) => s.close(drainMs).catch(() => {})));
    await admin?.close();
    await flows.close();
    await reloader?.close();
  };
  try {
    if (spec.admin && !opts.noAdmin) {
      admin = new AdminServer(readiness);
      admin.routes.set('/reload', reloadRoute((trigger) => doReload(trigger)));
      const stream = new FlowStream(flows, { nodeName });
      metrics.trackGauge(metrics.flowReadersDropped, () => stream.dropped);
      admin.routes.set('/flows', stream.route);
      admin.routes.set('/metrics', metricsRoute(metrics));
      adminAddr = await admin.listen(spec.admin.host, opts.ephemeralPorts ? 0 : spec.admin.port);
    }
    for (const l of toBind) {
      const bindSpec = opts.ephemeralPorts ? { ...l, port: 0 } : l;
      switch (bindSpec.mode) {
        case 'ingress': {
          const srv = new IngressListenerServer(bindSpec, {
            limits: spec.limits,
            snapshot,
            flows: httpFlows,
            secrets: loaded.docs.secrets,
          });
          servers.push(srv);
          if (srv.certificates) certificates.set(l.name, srv.certificates);
          metrics.trackConnections(l.name, l.mode, () => srv.openConnections);
          const address = await srv.listen();
          listeners.push({ name: l.name, mode: l.mode, address });
          break;
        }
        case 'dns': {
          // DNS proxy (src/listeners/dns.ts): UDP + TCP on one address.
          const srv = await startDnsListener({
            spec: bindSpec,
            limits: spec.limits,
            snapshot,
            flows: dnsFlows,
            ipOverlay: store.ipOverlay,
            onSwap: (fn) => store.onSwap(fn),
          });
          servers.push(srv);
          metrics.trackConnections(l.name, l.mode, () => srv.openConnections);
          dnsByName.set(l.name, srv);
          listeners.push({ name: l.name, mode: l.mode, address: srv.address });
          break;
        }
        case 'egress': {
          // Forward proxy + CONNECT + transparent (src/listeners/egress.ts). Names resolve
          // through the named dns listener (or the only one), looked up per request.
          const dnsName = bindSpec.dnsListener ?? spec.listeners.find((x) => x.mode === 'dns')?.name;
          const srv = new EgressListenerServer(bindSpec, {
            limits: spec.limits,
            snapshot,
            flows: httpFlows,
            secrets: loaded.docs.secrets,
            resolver: () => (dnsName !== undefined ? dnsByName.get(dnsName)?.proxy : undefined),
          });
          servers.push(srv);
          const address = await srv.listen();
          listeners.push({ name: l.name, mode: l.mode, address });
          break;
        }
      }
    }
    const certsDir = opts.certsDir ?? path.join(opts.configDir, '..', 'certs');
    reloader = new ProxyReloader({
      store,
      configDir: opts.configDir,
      ...(opts.certsDir !== undefined ? { certsDir: opts.certsDir } : {}),
      running: spec,
      startDocs: loaded.docs,
      certificates,
      count: (ok) => metrics.policyReload(ok),
      ...(opts.log ? { log: opts.log } : {}),
      onApplied: (docs) => httpFlows.addRedactedHeaders(secretHeaderNames(docs)),
    });
    if (opts.watch) {
      const debounceMs = typeof opts.watch === 'object' ? opts.watch.debounceMs : undefined;
      watcher = new ConfigWatcher({
        configDir: opts.configDir,
        certsDir,
        ...(debounceMs !== undefined ? { debounceMs } : {}),
        onChange: () => void doReload('watch'),
        onError: (e) => opts.log?.(`l7warden: config watch: ${e.message}`),
      });
      await watcher.start();
    }
  } catch (err) {
    await closeAll(0);
    throw err;
  }
  const activeReloader = reloader;
  function doReload(trigger: string): Promise<ReloadReport> {
    if (!reloader) return Promise.resolve({ ok: false, trigger, version: store.version, errors: ['not started'], at: new Date() });
    return reloader.reload(trigger);
  }
  return {
    listeners,
    ...(adminAddr ? { admin: adminAddr } : {}),
    snapshot,
    setSnapshot(s: PolicySnapshot) {
      forced = s;
      metrics.policyReload(true);
    },
    store,
    reloader: activeReloader,
    reload: (trigger = 'api') => doReload(trigger),
    flows,
    metrics,
    close: closeAll,
  };
}

export async function runRun(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string', short: 'c', default: 'config' },
    certs: { type: 'string' },
    workers: { type: 'string', default: '1' },
    'no-watch': { type: 'boolean', default: false },
  });
  const configDir = values.config as string;
  const certsDir = typeof values.certs === 'string' ? values.certs : undefined;
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    io.err(`l7warden run: --workers must be an integer from 1 to 64, got ${String(values.workers)}`);
    return EXIT.usage;
  }
  if (isClusterWorker()) return workerMain({ configDir, ...(certsDir !== undefined ? { certsDir } : {}), io });
  if (workers > 1) {
    return runWorkers({ configDir, ...(certsDir !== undefined ? { certsDir } : {}), workers, watch: values['no-watch'] !== true, io });
  }
  let proxy: RunningProxy;
  try {
    proxy = await startProxy({
      configDir,
      ...(certsDir !== undefined ? { certsDir } : {}),
      watch: values['no-watch'] !== true,
      log: (l) => io.err(l),
    });
  } catch (err) {
    if (err instanceof ConfigInvalid) {
      for (const e of err.issues) io.err(formatIssue(e));
      io.err(`${values.config as string}: ${err.issues.length} error${err.issues.length === 1 ? '' : 's'}; nothing started`);
      return EXIT.invalid;
    }
    if (err instanceof WardenError) {
      io.err(`l7warden run: ${err.message}`);
      return EXIT.invalid;
    }
    io.err(`l7warden run: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT.invalid;
  }
  for (const l of proxy.listeners) io.err(`listening: ${l.name} (${l.mode}) on ${l.address.address}:${l.address.port}`);
  if (proxy.admin) io.err(`admin: ${proxy.admin.address}:${proxy.admin.port}`);
  // SIGHUP reloads the config directory (as the watcher and POST /reload do).
  const onHup = () => void proxy.reload('SIGHUP');
  process.on('SIGHUP', onHup);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      process.off('SIGHUP', onHup);
      // Drain (docs/operations.md): stop accepting, GOAWAY, Connection: close, wait
      // up to limits.drainTimeoutMs for in-flight requests, then exit 0.
      proxy.close().then(
        () => resolve(EXIT.ok),
        () => resolve(EXIT.ok),
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
