/**
 * PolicyStore: holds the current snapshot. A reload loads and compiles the config
 * directory off to the side and swaps one reference only when everything is valid;
 * on any error the previous snapshot stays in force and the errors are returned
 * (SPEC.md "Operations": an invalid change is refused as a whole).
 *
 * Each request reads `store.current` once and keeps that snapshot; nothing in a
 * snapshot changes after the swap, so a request finishes under the policy it
 * started with. The IP-cache overlay (FQDN-learned IPs) is owned by the store and
 * handed to every snapshot, so learned IPs survive reloads.
 */
import { loadConfigDir, type LoadOptions } from '../config/load.js';
import type { ConfigDocs, LoadResult } from '../config/documents.js';
import type { ConfigIssue } from '../config/issues.js';
import { IPCacheOverlay } from '../identity/ipcache.js';
import { compileSnapshot } from './compile.js';
import type { PolicySnapshotImpl } from './snapshot.js';

export interface ReloadResult {
  readonly ok: boolean;
  /** The version in force after the call. */
  readonly version: number;
  readonly errors: readonly ConfigIssue[];
  readonly warnings: readonly ConfigIssue[];
}

export interface PolicyStoreOptions {
  /** Override the loader (tests); defaults to loadConfigDir. */
  readonly load?: (dir: string, opts: LoadOptions) => Promise<LoadResult>;
  readonly certsDir?: string;
  /** Forced enforcement mode; otherwise the ProxyConfig's, otherwise `default`. */
  readonly enforcement?: 'default' | 'always' | 'never';
}

export class PolicyStore {
  readonly ipOverlay = new IPCacheOverlay();
  #current: PolicySnapshotImpl | undefined;
  #version = 0;
  #docs: ConfigDocs | undefined;
  #listeners = new Set<(s: PolicySnapshotImpl) => void>();
  // Reloads are serialized so two overlapping reloads cannot swap out of order.
  #chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: PolicyStoreOptions = {}) {}

  /** The snapshot in force, or undefined before the first successful reload. */
  get current(): PolicySnapshotImpl | undefined {
    return this.#current;
  }

  /** Version of the snapshot in force (0 before the first). */
  get version(): number {
    return this.#version;
  }

  /** The documents the current snapshot was compiled from (ProxyConfig, Secrets, ...). */
  get docs(): ConfigDocs | undefined {
    return this.#docs;
  }

  /** Called after every successful swap. Returns an unsubscribe function. */
  onSwap(fn: (s: PolicySnapshotImpl) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Load `dir`, compile aside, swap atomically. Never throws for config problems. */
  reload(dir: string): Promise<ReloadResult> {
    const run = this.#chain.then(() => this.#reload(dir));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** Compile already-loaded documents and swap them in (same rules as reload). */
  apply(docs: ConfigDocs, warnings: readonly ConfigIssue[] = []): ReloadResult {
    const enforcement = this.opts.enforcement ?? docs.proxyConfig?.spec.enforcement ?? 'default';
    const { snapshot, errors } = compileSnapshot(docs, {
      version: this.#version + 1,
      enforcement,
      ipOverlay: this.ipOverlay,
    });
    if (!snapshot || errors.length > 0) return { ok: false, version: this.#version, errors, warnings };
    this.#current = snapshot;
    this.#version = snapshot.version;
    this.#docs = docs;
    for (const fn of this.#listeners) fn(snapshot);
    return { ok: true, version: this.#version, errors: [], warnings };
  }

  async #reload(dir: string): Promise<ReloadResult> {
    const load = this.opts.load ?? loadConfigDir;
    let loaded: LoadResult;
    try {
      loaded = await load(dir, this.opts.certsDir !== undefined ? { certsDir: this.opts.certsDir } : {});
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      return { ok: false, version: this.#version, errors: [{ file: dir, line: 1, col: 1, path: '', message }], warnings: [] };
    }
    if (loaded.errors.length > 0) {
      return { ok: false, version: this.#version, errors: loaded.errors, warnings: loaded.warnings };
    }
    return this.apply(loaded.docs, loaded.warnings);
  }
}
