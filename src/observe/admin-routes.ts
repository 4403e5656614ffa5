/**
 * The observability endpoints of the admin address:
 *
 *   GET /metrics                 Prometheus exposition (prom-client registry)
 *   GET /flows?last=N            the last N records from the in-memory ring, then end
 *                                (N defaults to 20, as `hubble observe` does)
 *   GET /flows?follow=1[&last=N] the last N (default 0), then every new record as it
 *                                is written, newline-delimited JSON, until the client goes
 *                                (&marker=1: a `{"backlog_end":true}` line after the last N)
 *
 * Many readers can follow at once. A reader that does not keep up never slows the
 * data path or the other readers: each has its own bounded buffer; while its socket
 * is not draining, new records are dropped for that reader only and counted, and
 * once it drains it gets one `{"lost_events": …}` line (Hubble's GetFlowsResponse
 * field) saying how many it missed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AdminRoute } from '../admin/server.js';
import type { FlowSink } from './sink.js';
import type { Metrics } from './metrics.js';

export interface FlowStreamOptions {
  /** Lines buffered per reader while its socket is not draining. */
  readonly readerBuffer?: number;
  /** Concurrent readers: followers, and `?last=N` answers still being written (503 beyond). */
  readonly maxReaders?: number;
  readonly nodeName?: string;
}

/** Live readers of /flows, with per-reader bounded buffers. */
export class FlowStream {
  readonly #sink: FlowSink;
  readonly #bufferMax: number;
  readonly #maxReaders: number;
  readonly #node: string;
  readonly #readers = new Set<Reader>();
  /** `?last=N` answers (no follow) still being written. */
  #backlogs = 0;
  #unsubscribe: (() => void) | undefined;
  /** Lines dropped for slow readers, all readers, since start. */
  dropped = 0;

  constructor(sink: FlowSink, opts: FlowStreamOptions = {}) {
    this.#sink = sink;
    this.#bufferMax = opts.readerBuffer ?? 4096;
    this.#maxReaders = opts.maxReaders ?? 64;
    this.#node = opts.nodeName ?? 'l7warden';
  }

  get readers(): number {
    return this.#readers.size;
  }

  /** The `/flows` route. */
  readonly route: AdminRoute = (req, res) => {
    const q = new URL(req.url ?? '/', 'http://admin').searchParams;
    const follow = q.get('follow') === '1' || q.get('follow') === 'true';
    const lastRaw = q.get('last');
    const last = lastRaw === null ? (follow ? 0 : 20) : Number(lastRaw);
    if (!Number.isInteger(last) || last < 0) {
      plain(res, 400, 'last must be a non-negative integer\n');
      return;
    }
    // A backlog answer is up to the whole ring (MBs), queued on the socket whether the
    // client reads or not: it counts against maxReaders until it ends or the client
    // goes, or clients that never read pile those up until the heap runs out.
    if (this.#readers.size + this.#backlogs >= this.#maxReaders) {
      plain(res, 503, 'too many flow readers\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const backlog = this.#sink.recent(last);
    if (!follow) {
      this.#backlogs++;
      res.once('close', () => this.#backlogs--);
      res.end(backlog.length ? backlog.join('\n') + '\n' : '');
      return;
    }
    res.flushHeaders();
    const reader = new Reader(req, res, this.#bufferMax, this.#node, (n) => {
      this.dropped += n;
    });
    this.#readers.add(reader);
    if (!this.#unsubscribe) this.#unsubscribe = this.#sink.subscribeBatch((lines) => this.#fanOut(lines));
    // marker=1: a `{"backlog_end":true}` line separates the ring's records from live ones
    // (l7warden observe uses it for --last with --follow).
    if (q.get('marker') === '1') backlog.push('{"backlog_end":true}');
    if (backlog.length) reader.push(backlog);
    const done = () => {
      this.#readers.delete(reader);
      if (this.#readers.size === 0 && this.#unsubscribe) {
        this.#unsubscribe();
        this.#unsubscribe = undefined;
      }
    };
    res.once('close', done);
    req.once('close', done);
  };

  #fanOut(lines: readonly string[]): void {
    for (const r of this.#readers) r.push(lines);
  }
}

class Reader {
  #queue: string[] = [];
  #waiting = false;
  #lost = 0;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly max: number,
    private readonly node: string,
    private readonly onDrop: (n: number) => void,
  ) {
    res.on('drain', () => this.#drain());
    res.on('error', () => {});
  }

  push(lines: readonly string[]): void {
    if (this.res.destroyed || this.req.destroyed) return;
    if (this.#waiting) {
      const room = this.max - this.#queue.length;
      const take = Math.min(room, lines.length);
      for (let i = 0; i < take; i++) this.#queue.push(lines[i]!);
      const lost = lines.length - take;
      if (lost > 0) {
        this.#lost += lost;
        this.onDrop(lost);
      }
      return;
    }
    this.#write(lines);
  }

  #write(lines: readonly string[]): void {
    let chunk = '';
    if (this.#lost > 0) {
      chunk += JSON.stringify({
        lost_events: { source: 'OBSERVER_EVENTS_QUEUE', num_events_lost: String(this.#lost) },
        node_name: this.node,
        time: new Date().toISOString(),
      }) + '\n';
      this.#lost = 0;
    }
    if (lines.length) chunk += lines.join('\n') + '\n';
    if (!chunk) return;
    if (!this.res.write(chunk)) this.#waiting = true;
  }

  #drain(): void {
    this.#waiting = false;
    if (this.#queue.length === 0 && this.#lost === 0) return;
    const q = this.#queue;
    this.#queue = [];
    this.#write(q);
  }
}

function plain(res: ServerResponse, code: number, body: string): void {
  res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** The `/metrics` route. */
export function metricsRoute(metrics: Metrics): AdminRoute {
  return (_req, res) => {
    metrics.text().then(
      (body) => {
        res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      },
      () => plain(res, 500, 'metrics unavailable\n'),
    );
  };
}
