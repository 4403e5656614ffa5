/**
 * YAML parsing for hot reloads, on a worker thread. Lexing and composing a file is
 * the bulk of loading it (a 1 MB file of 2,000 policies: ~1 s on this VM) and on the
 * main thread it stalls every request and DNS answer for that long. The thread hands
 * back the located tree (plain objects), which costs the main thread a structured
 * clone instead. Validation and compilation stay on the main thread: they build the
 * policy objects the snapshot is made of.
 *
 * The thread has its own heap limit: a file that exhausts it ends the thread, not
 * the proxy, and that file's reload is refused. It is started on first use, unref'd
 * (it never keeps the process alive) and stopped after a while unused.
 */
import { Worker } from 'node:worker_threads';
import { parseYaml, type ParsedYaml, type YamlDocument } from './yaml-tree.js';

/** A parked thread costs ~10 MB; reloads come in bursts. */
const IDLE_MS = 10_000;
/** Well above what the YAML bounds let a 32 MB file build (yaml-tree.ts). */
const HEAP_MB = 1024;
/**
 * Files smaller than this are parsed inline: ~30 ms of main thread at most on this
 * VM (~1 MB/s), less than starting the thread and the round trips cost a reload.
 */
const INLINE_BELOW = 32 * 1024;

interface Pending {
  readonly resolve: (p: ParsedYaml) => void;
  readonly reject: (e: Error) => void;
  /** Documents received so far (they come in parts: yaml-worker.ts). */
  readonly documents: YamlDocument[];
}

/** A part of a file's documents; the last part also has the file's errors and warnings. */
interface Answer {
  readonly id: number;
  readonly documents: readonly YamlDocument[];
  readonly errors?: ParsedYaml['errors'];
  readonly warnings?: ParsedYaml['warnings'];
}

export class YamlThread {
  #worker: Worker | undefined;
  #next = 0;
  readonly #pending = new Map<number, Pending>();
  #idle: NodeJS.Timeout | undefined;
  /** Threads started (tests: a crashed thread is replaced). */
  started = 0;
  readonly #inlineBelow: number;

  /** `inlineBelow`: text shorter than this (UTF-16 units) is parsed on the calling thread. */
  constructor(opts: { readonly inlineBelow?: number } = {}) {
    this.#inlineBelow = opts.inlineBelow ?? INLINE_BELOW;
  }

  /** `parseYaml(text)`, on the thread for large text. Rejects only when the thread itself fails. */
  parse(text: string): Promise<ParsedYaml> {
    if (text.length < this.#inlineBelow) return Promise.resolve(parseYaml(text));
    const w = this.#worker ?? this.#start();
    if (this.#idle !== undefined) {
      clearTimeout(this.#idle);
      this.#idle = undefined;
    }
    const id = ++this.#next;
    return new Promise<ParsedYaml>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, documents: [] });
      w.postMessage({ id, text });
    });
  }

  #start(): Worker {
    // The entry sits beside this module: .js when built, .ts under a TypeScript loader (tests).
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const w = new Worker(new URL(`./yaml-worker${ext}`, import.meta.url), { resourceLimits: { maxOldGenerationSizeMb: HEAP_MB } });
    this.started++;
    w.unref();
    w.on('message', (m: Answer) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      for (const d of m.documents) p.documents.push(d);
      if (m.errors === undefined) {
        // Ask for the next part on a later turn: requests run between parts.
        setImmediate(() => {
          if (this.#worker === w && this.#pending.has(m.id)) w.postMessage({ id: m.id });
        });
        return;
      }
      this.#pending.delete(m.id);
      p.resolve({ documents: p.documents, errors: m.errors, warnings: m.warnings ?? [] });
      if (this.#pending.size === 0) this.#park(w);
    });
    const fail = (err: Error) => {
      if (this.#worker !== w) return;
      this.#worker = undefined;
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`YAML parsing thread exited (code ${code})`)));
    this.#worker = w;
    return w;
  }

  #park(w: Worker): void {
    this.#idle = setTimeout(() => {
      this.#idle = undefined;
      if (this.#worker === w && this.#pending.size === 0) void this.close();
    }, IDLE_MS);
    this.#idle.unref();
  }

  /** Stop the thread (a later parse starts another). */
  async close(): Promise<void> {
    if (this.#idle !== undefined) clearTimeout(this.#idle);
    this.#idle = undefined;
    const w = this.#worker;
    if (!w) return;
    this.#worker = undefined;
    for (const p of this.#pending.values()) p.reject(new Error('YAML parsing thread stopped'));
    this.#pending.clear();
    await w.terminate();
  }
}
