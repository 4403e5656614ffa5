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
import { compileSnapshot } from '../policy/compile.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { ListenerSpec, ProxyConfigSpec } from '../config/proxy-config.js';
import { DEFAULT_LIMITS } from '../config/proxy-config.js';
import { FlowSink } from '../observe/sink.js';
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

export interface StartOptions {
  readonly configDir: string;
  readonly certsDir?: string;
  /** Override the flow log destination ("" off, "-" stdout, or a path). */
  readonly flowLogFile?: string;
  /** Subscribe to flow records as JSON lines (tests, admin stream). */
  readonly onFlow?: (line: string) => void;
  /** Rebind every listener (and admin) on port 0 of its host: tests. */
  readonly ephemeralPorts?: boolean;
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
  /** Swap the active snapshot (hot reload calls this). */
  setSnapshot(s: PolicySnapshot): void;
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
  const loaded = await loadConfigDir(opts.configDir, opts.certsDir !== undefined ? { certsDir: opts.certsDir } : {});
  if (loaded.errors.length > 0) throw new ConfigInvalid(loaded.errors);
  const pc = loaded.docs.proxyConfig?.spec;
  const compiled = compileSnapshot(loaded.docs, pc?.enforcement ? { enforcement: pc.enforcement } : {});
  if (!compiled.snapshot || compiled.errors.length > 0) throw new ConfigInvalid(compiled.errors);
  let current: PolicySnapshot | undefined = compiled.snapshot;
  const snapshot = () => current;
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
  });
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
  let admin: AdminServer | undefined;
  let adminAddr: AddressInfo | undefined;
  const readiness = {
    notReadyReason(): string | undefined {
      if (!current) return 'no policy snapshot';
      const unbound = servers.length < spec.listeners.length || servers.some((s) => !s.bound);
      return unbound ? 'listeners not bound yet' : undefined;
    },
  };
  const closeAll = async (drainMs?: number) => {
    await Promise.all(servers.map((s) => s.close(drainMs).catch(() => {})));
    await admin?.close();
    await flows.close();
  };
  try {
    if (spec.admin) {
      admin = new AdminServer(readiness);
      const stream = new FlowStream(flows, { nodeName });
      metrics.trackGauge(metrics.flowReadersDropped, () => stream.dropped);
      admin.routes.set('/flows', stream.route);
      admin.routes.set('/metrics', metricsRoute(metrics));
      adminAddr = await admin.listen(spec.admin.host, opts.ephemeralPorts ? 0 : spec.admin.port);
    }
    for (const l of spec.listeners) {
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
          metrics.trackConnections(l.name, l.mode, () => srv.openConnections);
          const address = await srv.listen();
          listeners.push({ name: l.name, mode: l.mode, address });
          break;
        }
        case 'dns': {
          // DNS proxy (src/listeners/dns.ts): UDP + TCP on one address.
          const srv = await startDnsListener({ spec: bindSpec, limits: spec.limits, snapshot, flows: dnsFlows });
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
            flows,
            nodeName: spec.flowLog.nodeName || 'l7warden',
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
  } catch (err) {
    await closeAll(0);
    throw err;
  }
  return {
    listeners,
    ...(adminAddr ? { admin: adminAddr } : {}),
    snapshot,
    setSnapshot(s: PolicySnapshot) {
      current = s;
      metrics.policyReload(true);
    },
    flows,
    metrics,
    close: closeAll,
  };
}

export async function runRun(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string', short: 'c', default: 'config' },
    certs: { type: 'string' },
  });
  let proxy: RunningProxy;
  try {
    proxy = await startProxy({
      configDir: values.config as string,
      ...(typeof values.certs === 'string' ? { certsDir: values.certs } : {}),
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
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      proxy.close().then(
        () => resolve(EXIT.ok),
        () => resolve(EXIT.ok),
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
