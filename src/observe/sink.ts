/**
 * Flow records leave the request path through this sink: `emit()` only pushes onto
 * a bounded in-memory queue; serialisation and writing happen in batches on a
 * later tick. When the queue is full (a slow disk or a stuck stdout), records are
 * dropped and counted instead of slowing the data path.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Writable } from 'node:stream';

export interface FlowSinkOptions {
  /** "-" = stdout, "" = off, else a file path (appended). */
  readonly file: string;
  /** Records held before dropping. */
  readonly maxQueue?: number;
}

export type FlowListener = (line: string) => void;

export class FlowSink {
  #queue: object[] = [];
  #scheduled = false;
  #out: Writable | undefined;
  #ownsOut = false;
  #blocked = false;
  readonly #maxQueue: number;
  readonly #listeners = new Set<FlowListener>();
  /** Records dropped because the queue was full. */
  dropped = 0;
  /** Records written (or handed to listeners). */
  written = 0;

  constructor(opts: FlowSinkOptions) {
    this.#maxQueue = opts.maxQueue ?? 65_536;
    if (opts.file === '-') this.#out = process.stdout;
    else if (opts.file) {
      const ws: WriteStream = createWriteStream(opts.file, { flags: 'a' });
      ws.on('error', () => { this.#out = undefined; });
      this.#out = ws;
      this.#ownsOut = true;
    }
    this.#out?.on('drain', () => { this.#blocked = false; this.#schedule(); });
  }

  /** Is anybody going to read records? Callers may skip building them when not. */
  get active(): boolean {
    return this.#out !== undefined || this.#listeners.size > 0;
  }

  emit(record: object): void {
    if (!this.active) return;
    if (this.#queue.length >= this.#maxQueue) {
      this.dropped++;
      return;
    }
    this.#queue.push(record);
    this.#schedule();
  }

  /** Follow every record as a JSON line (admin live stream, tests). */
  subscribe(fn: FlowListener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #schedule(): void {
    if (this.#scheduled || this.#blocked || this.#queue.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#queue;
    this.#queue = [];
    let chunk = '';
    for (const rec of batch) {
      const line = JSON.stringify(rec);
      chunk += line + '\n';
      for (const fn of this.#listeners) fn(line);
    }
    this.written += batch.length;
    if (this.#out && chunk) {
      if (!this.#out.write(chunk)) this.#blocked = true;
    }
  }

  /** Write what is queued and close an owned file. */
  async close(): Promise<void> {
    this.#flush();
    const out = this.#out;
    if (out && this.#ownsOut) await new Promise<void>((resolve) => out.end(resolve));
    this.#out = undefined;
  }
}
