/**
 * Hot reload of a running proxy (SPEC.md "Operations", SECURITY.md §6.3).
 *
 *   load the directory aside ─▶ refuse changes that need a restart ─▶ validate every
 *   listener certificate ─▶ compile (PolicyStore.apply: atomic swap) ─▶ swap the
 *   certificate tables
 *
 * Any error refuses the change as a whole: the snapshot in force stays, the
 * certificates in force stay, and the errors are kept (`lastError`, shown on
 * /readyz), logged as `file:line:col: ...` lines and counted in
 * `l7warden_policy_reload_errors_total`. Reloads are serialized.
 *
 * What can change without a restart: every policy, Pod, Namespace and Secret
 * document; `enforcement`; the certificates a listener serves (`tls.secret`, `sni`,
 * and the files/Secrets behind them). Everything else in the ProxyConfig (listeners
 * and their addresses, upstreams, sourceIdentity, limits, admin, flowLog, clientAuth)
 * is built into sockets and servers at start-up: a change to it is refused with
 * "needs a restart", as is a change to a Secret read only at start-up (an ingress
 * listener's `upstreamTLS`, an egress listener's `upstreamCA` and, with an egress
 * listener, the Secrets its TLS interception reads).
 */
import { loadConfigDir, type LoadOptions } from '../config/load.js';
import type { ConfigDocs, LoadResult, SecretDoc } from '../config/documents.js';
import { formatIssue, type ConfigIssue, type SourcePos } from '../config/issues.js';
import type { ListenerSpec, ProxyConfigSpec } from '../config/proxy-config.js';
import type { PolicyStore } from '../policy/store.js';
import type { CertTable, ListenerCertificates } from '../tls/cert-store.js';
import { YamlThread } from '../config/yaml-thread.js';

export interface ReloadReport {
  readonly ok: boolean;
  /** What asked for it: `startup`, `watch`, `SIGHUP`, `POST /reload`, `broadcast`. */
  readonly trigger: string;
  /** Snapshot version in force after the attempt. */
  readonly version: number;
  /** Rendered `file:line:col: path: message` lines (empty when ok). */
  readonly errors: readonly string[];
  readonly at: Date;
}

export interface ReloaderOptions {
  readonly store: PolicyStore;
  readonly configDir: string;
  readonly certsDir?: string;
  /** The ProxyConfig the listeners were built from. */
  readonly running: ProxyConfigSpec;
  /** The documents the running proxy started with (for Secrets read only at start-up). */
  readonly startDocs: ConfigDocs;
  /** Certificate tables of TLS-terminating listeners, by listener name. */
  readonly certificates: ReadonlyMap<string, ListenerCertificates>;
  /** Counts `l7warden_policy_reloads_total` / `_errors_total`. */
  readonly count?: (ok: boolean) => void;
  /** One line per call (stderr in `l7warden run`). */
  readonly log?: (line: string) => void;
  /** After a successful swap (e.g. refresh flow-record redaction). */
  readonly onApplied?: (docs: ConfigDocs) => void;
  readonly load?: (dir: string, opts: LoadOptions) => Promise<LoadResult>;
}

export class ProxyReloader {
  readonly #o: ReloaderOptions;
  #chain: Promise<unknown> = Promise.resolve();
  /** The reload waiting to start, shared by every request made meanwhile. */
  #queued: Promise<ReloadReport> | undefined;
  #last: ReloadReport | undefined;
  #lastError: ReloadReport | undefined;
  /** Secrets only read at start-up, by `namespace/name` → content fingerprint. */
  readonly #frozenSecrets: ReadonlyMap<string, string>;
  /** Files are parsed off the main thread: a large one does not stall traffic while it reloads. */
  readonly #yaml = new YamlThread();

  constructor(o: ReloaderOptions) {
    this.#o = o;
    this.#frozenSecrets = frozenSecrets(o.running, o.startDocs.secrets);
  }

  /** Stop the parsing thread (it is unref'd, so this only frees it sooner). */
  close(): Promise<void> {
    return this.#yaml.close();
  }

  /** The last attempt (ok or not). */
  get last(): ReloadReport | undefined {
    return this.#last;
  }

  /** The last refused attempt, until a later one succeeds. */
  get lastError(): ReloadReport | undefined {
    return this.#lastError;
  }

  reload(trigger: string): Promise<ReloadReport> {
    // A reload that waits for the running one and has not started yet reads the files
    // as they are when it starts: a later request is served by it too. A flood of
    // POST /reload or SIGHUPs then costs at most one reload running and one queued,
    // not one full load and compile each.
    if (this.#queued) return this.#queued;
    // Never rejects: the watcher, SIGHUP and the workers' IPC start reloads with
    // `void`, and a rejection there would be unhandled and end the process. A throw
    // (a bug, not a config problem) is reported like a refused reload, with the
    // version actually in force.
    const run = this.#chain
      .then(() => {
        this.#queued = undefined;
        return this.#reload(trigger);
      })
      .catch((err: unknown) => this.#failed(trigger, err));
    this.#queued = run;
    this.#chain = run;
    return run;
  }

  #failed(trigger: string, err: unknown): ReloadReport {
    const o = this.#o;
    const message = `internal error during reload: ${err instanceof Error ? err.message : String(err)}`;
    const report: ReloadReport = { ok: false, trigger, version: o.store.version, errors: [message], at: new Date() };
    this.#last = report;
    this.#lastError = report;
    o.count?.(false);
    o.log?.(`l7warden: reload (${trigger}) failed: ${message}; policy version ${report.version} in force`);
    return report;
  }

  async #reload(trigger: string): Promise<ReloadReport> {
    const o = this.#o;
    const load = o.load ?? loadConfigDir;
    let issues: ConfigIssue[] = [];
    let loaded: LoadResult | undefined;
    try {
      const parse = (text: string) => this.#yaml.parse(text);
      loaded = await load(o.configDir, o.certsDir !== undefined ? { certsDir: o.certsDir, parse } : { parse });
      issues = [...loaded.errors];
    } catch (err) {
      issues = [{ file: o.configDir, line: 1, col: 1, path: '', message: err instanceof Error ? err.message : String(err) }];
    }
    const pending: { certs: ListenerCertificates; table: CertTable }[] = [];
    if (loaded && issues.length === 0) {
      issues = restartIssues(o.running, loaded.docs, this.#frozenSecrets, o.configDir);
      if (issues.length === 0) {
        const pc = loaded.docs.proxyConfig!.spec;
        for (const l of pc.listeners) {
          if (l.mode !== 'ingress' || !l.tls) continue;
          const certs = o.certificates.get(l.name);
          if (!certs) continue;
          try {
            pending.push({ certs, table: certs.prepare(l.tls, loaded.docs.secrets) });
          } catch (err) {
            const at = loaded.docs.proxyConfig!.pos;
            issues.push({ ...at, path: `spec.listeners[${l.name}].tls`, message: err instanceof Error ? err.message : String(err) });
          }
        }
      }
    }
    if (loaded && issues.length === 0) {
      const r = o.store.apply(loaded.docs, loaded.warnings);
      if (!r.ok) issues = [...r.errors];
      else {
        // Prepared (validated) before the swap: installing cannot fail half-way.
        for (const p of pending) p.certs.install(p.table);
        o.onApplied?.(loaded.docs);
      }
    }
    const ok = issues.length === 0;
    const report: ReloadReport = { ok, trigger, version: o.store.version, errors: issues.map(formatIssue), at: new Date() };
    this.#last = report;
    o.count?.(ok);
    if (ok) {
      this.#lastError = undefined;
      o.log?.(`l7warden: reload (${trigger}): policy version ${report.version} in force`);
    } else {
      this.#lastError = report;
      for (const e of report.errors) o.log?.(e);
      o.log?.(`l7warden: reload (${trigger}) refused: ${issues.length} error${issues.length === 1 ? '' : 's'}; policy version ${report.version} stays in force`);
    }
    return report;
  }
}

/** Listener spec without what a reload may change (the served certificates). */
function restartShape(l: ListenerSpec): string {
  if (l.mode === 'ingress' && l.tls) {
    const { tls, ...rest } = l;
    return JSON.stringify({ ...rest, clientAuth: tls.clientAuth ?? 'none', clientCA: tls.clientCA ?? null });
  }
  return JSON.stringify(l);
}

function secretPrint(s: SecretDoc | undefined): string {
  if (!s) return 'absent';
  const keys = Object.keys(s.data).sort();
  return keys.map((k) => `${k}=${s.data[k]!.toString('base64')}`).join(';');
}

/** Secrets the listeners read once at start-up, fingerprinted. */
function frozenSecrets(pc: ProxyConfigSpec, secrets: readonly SecretDoc[]): Map<string, string> {
  const index = new Map(secrets.map((s) => [`${s.namespace}/${s.name}`, s]));
  const out = new Map<string, string>();
  const hasEgress = pc.listeners.some((l) => l.mode === 'egress');
  const liveTls = new Set<string>();
  for (const l of pc.listeners) {
    if (l.mode === 'ingress') {
      if (l.upstreamTLS?.secret) out.set(l.upstreamTLS.secret, '');
      if (l.tls) for (const r of [l.tls.secret, ...(l.tls.sni ?? []).map((s) => s.secret)]) liveTls.add(r);
    } else if (l.mode === 'egress' && l.upstreamCA) out.set(l.upstreamCA, '');
  }
  // The egress listener's interception reads every Secret at start-up.
  if (hasEgress) for (const k of index.keys()) if (!liveTls.has(k)) out.set(k, '');
  for (const k of out.keys()) out.set(k, secretPrint(index.get(k)));
  return out;
}

function restartIssues(running: ProxyConfigSpec, docs: ConfigDocs, frozen: ReadonlyMap<string, string>, dir: string): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const pcDoc = docs.proxyConfig;
  const at: SourcePos = pcDoc?.pos ?? { file: dir, line: 1, col: 1 };
  const need = (path: string, what: string) => out.push({ ...at, path, message: `${what}: needs a restart (kept the running configuration)` });
  if (!pcDoc) {
    need('', 'the ProxyConfig document was removed');
    return out;
  }
  const next = pcDoc.spec;
  const prevByName = new Map(running.listeners.map((l) => [l.name, l]));
  const nextByName = new Map(next.listeners.map((l) => [l.name, l]));
  for (const [name, l] of prevByName) {
    const n = nextByName.get(name);
    if (!n) need(`spec.listeners[${name}]`, `listener ${name} was removed`);
    else if (n.address !== l.address || n.host !== l.host || n.port !== l.port) need(`spec.listeners[${name}].address`, `listener ${name} address changed (${l.address} → ${n.address})`);
    else if (restartShape(n) !== restartShape(l)) need(`spec.listeners[${name}]`, `listener ${name} changed (only tls.secret / tls.sni certificates reload live)`);
  }
  for (const name of nextByName.keys()) if (!prevByName.has(name)) need(`spec.listeners[${name}]`, `listener ${name} was added`);
  if (JSON.stringify(next.limits) !== JSON.stringify(running.limits)) need('spec.limits', 'limits changed');
  if (JSON.stringify(next.admin ?? null) !== JSON.stringify(running.admin ?? null)) need('spec.admin', 'admin address changed');
  if (JSON.stringify(next.flowLog) !== JSON.stringify(running.flowLog)) need('spec.flowLog', 'flowLog changed');
  const index = new Map(docs.secrets.map((s) => [`${s.namespace}/${s.name}`, s]));
  for (const [ref, print] of frozen) {
    if (secretPrint(index.get(ref)) !== print) {
      const s = index.get(ref);
      out.push({ ...(s?.pos ?? at), path: '', message: `Secret ${ref} is read only at start-up (upstream TLS / egress interception) and changed: needs a restart (kept the running configuration)` });
    }
  }
  return out;
}
