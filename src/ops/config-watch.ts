/**
 * Watching the config directory (and the certs directory beside it) for changes:
 * `fs.watch` on the directories themselves, recursive (NODE-NOTES.md: watching a
 * file loses its inode after an editor's atomic rename or a Kubernetes ConfigMap
 * `..data` symlink swap; a directory watch sees both), a debounce so a burst of
 * writes gives one reload, and a content hash so an event that changed nothing
 * (touch, chmod, an editor's swap file) does not reload.
 *
 * The hash covers exactly what the loader reads: in the config directory every
 * `.yaml`/`.yml`/`.json` file not under a dot-named entry (symlinks followed), in
 * the certs directory every file; names and contents, read asynchronously.
 */
import { statSync, watch, type FSWatcher } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { createHash } from 'node:crypto';

const CONFIG_EXT = new Set(['.yaml', '.yml', '.json']);
/** Bounds on the tree walk: a runaway directory cannot stall reloads forever. */
const MAX_FILES = 20_000;
/** Files above the loader's size limit (config/load.ts) are not read to be hashed. */
const HASH_MAX_BYTES = 32 * 1024 * 1024;
const MAX_DEPTH = 32;

async function walk(root: string, filter: (name: string) => boolean, out: string[], seen: Set<string>, rel = '', depth = 0): Promise<void> {
  if (depth > MAX_DEPTH || out.length >= MAX_FILES) return;
  const abs = path.join(root, rel);
  let real: string;
  try {
    real = await fsp.realpath(abs);
  } catch {
    return;
  }
  if (seen.has(real)) return;
  seen.add(real);
  let names: string[];
  try {
    names = await fsp.readdir(abs);
  } catch {
    return;
  }
  names.sort();
  for (const name of names) {
    if (out.length >= MAX_FILES) return;
    if (name.startsWith('.')) continue;
    const childRel = rel ? path.join(rel, name) : name;
    let st;
    try {
      st = await fsp.stat(path.join(root, childRel));
    } catch {
      continue;
    }
    if (st.isDirectory()) await walk(root, filter, out, seen, childRel, depth + 1);
    else if (st.isFile() && filter(name)) out.push(childRel);
  }
}

/**
 * The files the loader reads, relative to `root`, sorted: config files (`.yaml`,
 * `.yml`, `.json`) or, for a certs directory, every file. Dot-named entries skipped.
 */
export async function listTree(root: string, kind: 'config' | 'certs'): Promise<string[]> {
  const out: string[] = [];
  await walk(root, kind === 'config' ? (n) => CONFIG_EXT.has(path.extname(n).toLowerCase()) : () => true, out, new Set());
  return out;
}

/** SHA-256 over the names and contents of the files the loader would read. */
export async function hashConfigTree(configDir: string, certsDir?: string): Promise<string> {
  const h = createHash('sha256');
  const roots: [string, (n: string) => boolean][] = [[configDir, (n) => CONFIG_EXT.has(path.extname(n).toLowerCase())]];
  if (certsDir !== undefined) roots.push([certsDir, () => true]);
  for (const [root, filter] of roots) {
    const files: string[] = [];
    await walk(root, filter, files, new Set());
    h.update(`root\0${root}\0${files.length}\0`);
    for (const rel of files) {
      let data: Buffer;
      try {
        const file = path.join(root, rel);
        const st = await fsp.stat(file);
        // The loader refuses a file this large without reading it; reading it whole here
        // on every change would be the memory spike the loader avoids. Size and mtime
        // still show a change.
        data = st.size > HASH_MAX_BYTES ? Buffer.from(`\0large\0${st.size}\0${st.mtimeMs}`) : await fsp.readFile(file);
      } catch {
        data = Buffer.from('\0unreadable');
      }
      h.update(`${rel}\0${data.length}\0`);
      h.update(data);
    }
  }
  return h.digest('hex');
}

export interface ConfigWatcherOptions {
  readonly configDir: string;
  /** The certs directory, watched too when it exists. */
  readonly certsDir?: string;
  /** Quiet time after the last event before the tree is hashed (default 200 ms). */
  readonly debounceMs?: number;
  /** Called when the content hash differs from the last one seen. */
  readonly onChange: () => void;
  /** Watch errors (a directory removed, inotify limits); the watcher keeps trying. */
  readonly onError?: (err: Error) => void;
}

/**
 * Debounced, hash-filtered directory watcher. `start()` records the current hash
 * (the config just loaded), so only later changes fire. A directory that cannot be
 * watched (missing certs dir, watch error) is retried every few seconds.
 */
export class ConfigWatcher {
  readonly #opts: ConfigWatcherOptions;
  readonly #debounceMs: number;
  readonly #watchers = new Map<string, FSWatcher>();
  /** The directory each watcher was opened on (device and inode). */
  readonly #watched = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  #lastHash = '';
  #hashing = false;
  #again = false;
  #closed = false;
  /** Change events received and reloads triggered (tests, diagnostics). */
  readonly stats = { events: 0, hashes: 0, changes: 0 };

  constructor(opts: ConfigWatcherOptions) {
    this.#opts = opts;
    this.#debounceMs = opts.debounceMs ?? 200;
  }

  async start(): Promise<void> {
    this.#lastHash = await hashConfigTree(this.#opts.configDir, this.#opts.certsDir);
    this.#watchAll();
    // A symlinked directory switched to another target (`ln -sfn releases/v2 config`)
    // sends no event to the old target's watch: look at the identities every 2 s.
    this.#poll = setInterval(() => void this.#checkWatched(), 2000);
    this.#poll.unref();
  }

  /** Record the hash of what was just loaded by someone else (SIGHUP, POST /reload). */
  async rebase(): Promise<void> {
    this.#lastHash = await hashConfigTree(this.#opts.configDir, this.#opts.certsDir);
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#retry) clearTimeout(this.#retry);
    if (this.#poll) clearInterval(this.#poll);
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
    this.#watched.clear();
  }

  #unwatch(dir: string): void {
    this.#watchers.get(dir)?.close();
    this.#watchers.delete(dir);
    this.#watched.delete(dir);
  }

  /**
   * Drop watchers whose directory is gone or was replaced (`rm -rf` and re-create,
   * `mv config.new config`, a symlink pointed elsewhere): inotify keeps watching the
   * old directory, which sends no more events, so every later change went unseen.
   * The retry watches the new one and then checks the content.
   */
  async #checkWatched(): Promise<void> {
    for (const [dir, id] of [...this.#watched]) {
      const now = await fsp.stat(dir).then((st) => `${st.dev}:${st.ino}`, () => undefined);
      if (now !== id && this.#watched.get(dir) === id) {
        this.#unwatch(dir);
        this.#scheduleRetry();
      }
    }
  }

  #watchAll(): void {
    if (this.#closed) return;
    let missing = false;
    for (const dir of [this.#opts.configDir, this.#opts.certsDir]) {
      if (dir === undefined || this.#watchers.has(dir)) continue;
      try {
        // Identity first: a directory replaced in between is then re-watched, not missed.
        const st = statSync(dir);
        const w = watch(dir, { recursive: true, persistent: false }, () => this.#event());
        w.on('error', (err) => {
          this.#opts.onError?.(err);
          this.#unwatch(dir);
          this.#scheduleRetry();
          this.#event();
        });
        this.#watchers.set(dir, w);
        this.#watched.set(dir, `${st.dev}:${st.ino}`);
      } catch (err) {
        // The certs directory may not exist yet; the config directory may be re-created.
        if (dir === this.#opts.configDir) this.#opts.onError?.(err as Error);
        missing = true;
      }
    }
    if (missing) this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#retry || this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      const before = this.#watchers.size;
      this.#watchAll();
      if (this.#watchers.size !== before) this.#event();
    }, 2000);
    this.#retry.unref();
  }

  #event(): void {
    if (this.#closed) return;
    this.stats.events++;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#check();
    }, this.#debounceMs);
    this.#timer.unref();
  }

  async #check(): Promise<void> {
    if (this.#hashing) {
      this.#again = true;
      return;
    }
    this.#hashing = true;
    try {
      await this.#checkWatched();
      const h = await hashConfigTree(this.#opts.configDir, this.#opts.certsDir);
      this.stats.hashes++;
      if (!this.#closed && h !== this.#lastHash) {
        this.#lastHash = h;
        this.stats.changes++;
        this.#opts.onChange();
      }
    } finally {
      this.#hashing = false;
      if (this.#again && !this.#closed) {
        this.#again = false;
        this.#event();
      }
    }
  }
}
