/**
 * One client-side exchange (an HTTP/1 request/response pair or an HTTP/2 stream)
 * behind one small interface, so the deny replies and the upstream forwarders are
 * written once for both protocols. HTTP/2 uses the core stream API throughout
 * (never the compat writeHead+end, which breaks gRPC trailers-only replies —
 * NODE-NOTES.md §1.3).
 */
import type { IncomingMessage, ServerResponse, OutgoingHttpHeaders } from 'node:http';
import { constants as h2c, type ServerHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import { RESPONSE_HOP_BY_HOP } from './request-guard.js';

export type Trailers = Record<string, string | string[]>;

/** Told once when the client side closes before the response ended. */
export interface AbortListener {
  clientAborted(h2code?: number): void;
}

export interface Downstream {
  readonly protocol: 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2';
  readonly isHead: boolean;
  /** Request body, or null when the request has none (replaceable by a counting stream). */
  body: Readable | null;
  readonly headersSent: boolean;
  /** The client went away (or the exchange was aborted) before the response ended. */
  readonly closed: boolean;
  /** Send the response head. `headers` are already filtered (no hop-by-hop, no pseudo). */
  respond(status: number, headers: OutgoingHttpHeaders, end: boolean, expectTrailers?: boolean): void;
  write(chunk: Buffer): boolean;
  onceDrain(fn: () => void): void;
  end(trailers?: Trailers): void;
  /** Abort: HTTP/1 destroys the connection, HTTP/2 sends RST_STREAM with `code`. */
  abort(h2code?: number): void;
  /** Close the connection after this response (HTTP/1: Connection: close; HTTP/2: nothing). */
  closeAfter(): void;
  /** `l.clientAborted()` is called once if the client side closes before `end()`. */
  onAbort(l: AbortListener): void;
  /** Reset the whole connection (l3DenyAction: reset). */
  resetConnection(): void;
}

/**
 * Security: set on an HTTP/1 connection once a request on it was answered with
 * "Connection: close" because it was malformed or its framing ambiguous (400, 413,
 * …). Node's parser has already read and dispatched the requests pipelined behind
 * it (their 'request' / 'upgrade' / 'connect' events still fire), but the bytes they
 * came from are exactly what the refused request made untrustworthy (a request
 * hidden in a `Transfer-Encoding: gzip, chunked` body): none of them may be
 * forwarded. Checked first by every HTTP/1 request, upgrade and CONNECT handler.
 */
const REFUSED_CONN: unique symbol = Symbol('l7warden.refused');

export function markConnectionRefused(socket: unknown): void {
  if (socket) (socket as { [REFUSED_CONN]?: boolean })[REFUSED_CONN] = true;
}

export function connectionRefused(socket: unknown): boolean {
  return (socket as { [REFUSED_CONN]?: boolean } | null)?.[REFUSED_CONN] === true;
}

const EMPTY: OutgoingHttpHeaders = {};
const EMPTY_BODY = Buffer.alloc(0);

const DS: unique symbol = Symbol('l7warden.downstream');

/** The response's 'close' listener, shared (`this` is the response): no closure per request. */
function onH1ResponseClose(this: ServerResponse & { [DS]?: H1Downstream }): void {
  this[DS]?.responseClosed();
}

export class H1Downstream implements Downstream {
  readonly protocol: 'HTTP/1.0' | 'HTTP/1.1';
  readonly isHead: boolean;
  body: Readable | null;
  #ended = false;
  #abortL: AbortListener | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    hasBody: boolean,
  ) {
    this.protocol = req.httpVersion === '1.0' ? 'HTTP/1.0' : 'HTTP/1.1';
    this.isHead = req.method === 'HEAD';
    this.body = hasBody ? req : null;
    (res as ServerResponse & { [DS]?: H1Downstream })[DS] = this;
    res.on('close', onH1ResponseClose);
  }
  /**
   * The request's whole body as one Buffer, taken out of the request, if it has all
   * arrived and nothing has read it yet (`body` becomes null); else undefined and the
   * stream stays. Whole: the message is complete, or as many bytes as its
   * Content-Length are buffered (the parser never hands over more than declared;
   * `complete` is only set by the next parser callback).
   */
  takeArrivedBody(contentLength: number | undefined): Buffer | undefined {
    const req = this.req;
    if (this.body !== req || req.readableFlowing !== null) return undefined;
    if (!req.complete && (contentLength === undefined || req.readableLength !== contentLength)) return undefined;
    this.body = null;
    return (req.read() as Buffer | null) ?? EMPTY_BODY;
  }
  /** @internal */
  responseClosed(): void {
    const l = this.#abortL;
    this.#abortL = undefined;
    if (l && !this.res.writableFinished) l.clientAborted();
  }
  get headersSent(): boolean {
    return this.res.headersSent;
  }
  get closed(): boolean {
    return this.res.destroyed || (this.res.closed && !this.res.writableFinished);
  }
  respond(status: number, headers: OutgoingHttpHeaders, end: boolean): void {
    this.res.writeHead(status, headers);
    if (end) this.end();
  }
  write(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }
  onceDrain(fn: () => void): void {
    this.res.once('drain', fn);
  }
  end(trailers?: Trailers): void {
    this.#ended = true;
    if (trailers) this.res.addTrailers(trailers);
    this.res.end();
    // Ended: no abort to report any more, and the response (kept by its socket until
    // the next request) no longer reaches this exchange (see Forwarded, http/enforce.ts).
    this.#abortL = undefined;
    (this.res as ServerResponse & { [DS]?: H1Downstream })[DS] = undefined;
    this.res.removeListener('close', onH1ResponseClose);
  }
  abort(): void {
    this.#ended = true;
    this.#abortL = undefined;
    this.res.destroy();
    this.req.socket.destroy();
  }
  closeAfter(): void {
    if (!this.res.headersSent) this.res.setHeader('connection', 'close');
    this.res.shouldKeepAlive = false;
    markConnectionRefused(this.req.socket);
  }
  onAbort(l: AbortListener): void {
    this.#abortL = l;
  }
  resetConnection(): void {
    this.#ended = true;
    this.#abortL = undefined;
    const s = this.req.socket as { resetAndDestroy?: () => void; destroy(): void };
    if (typeof s.resetAndDestroy === 'function') {
      try {
        s.resetAndDestroy();
        return;
      } catch {
        /* not a TCP socket (TLS): fall through */
      }
    }
    s.destroy();
  }
}

export class H2Downstream implements Downstream {
  readonly protocol = 'HTTP/2' as const;
  readonly isHead: boolean;
  body: Readable | null;
  #ended = false;
  #abortL: AbortListener | undefined;
  #trailers: Trailers | undefined;
  /** Body writes not yet completed, and an end() waiting for them (see end()). */
  #writing = 0;
  #endWhenWritten = false;
  readonly #written = (): void => {
    if (--this.#writing === 0 && this.#endWhenWritten) {
      this.#endWhenWritten = false;
      if (!this.stream.destroyed) this.stream.end();
    }
  };

  /** See onceDrain(): the longest a response may wait for the client to take more of it. */
  readonly #stallMs: number;
  #stallTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly stream: ServerHttp2Stream,
    method: string,
    stallMs = 0,
  ) {
    this.#stallMs = stallMs;
    this.isHead = method === 'HEAD';
    this.body = stream.endAfterHeaders ? null : stream;
    stream.once('close', () => {
      if (this.#stallTimer !== undefined) clearTimeout(this.#stallTimer);
      const l = this.#abortL;
      this.#abortL = undefined;
      if (l && (!this.#ended || stream.rstCode !== h2c.NGHTTP2_NO_ERROR)) l.clientAborted(stream.rstCode);
    });
  }
  get headersSent(): boolean {
    return this.stream.headersSent;
  }
  get closed(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }
  respond(status: number, headers: OutgoingHttpHeaders, end: boolean, expectTrailers = false): void {
    if (this.stream.destroyed || this.stream.closed) return;
    const h: OutgoingHttpHeaders = Object.create(null) as OutgoingHttpHeaders;
    h[':status'] = status;
    for (const k in headers) if (!RESPONSE_HOP_BY_HOP.has(k)) h[k] = headers[k];
    if (end) this.#ended = true;
    if (expectTrailers) {
      this.stream.respond(h, { endStream: end, waitForTrailers: true });
      this.stream.once('wantTrailers', () => {
        try {
          this.stream.sendTrailers(this.#trailers ?? EMPTY);
        } catch {
          this.stream.close();
        }
      });
    } else {
      this.stream.respond(h, { endStream: end });
    }
  }
  write(chunk: Buffer): boolean {
    this.#writing++;
    return this.stream.write(chunk, this.#written);
  }
  /**
   * Security: a client that opens streams with a flow-control window of 0 (or
   * never sends WINDOW_UPDATE) and keeps its session alive with PINGs holds each
   * forwarded request open upstream for as long as it likes; 128 such streams (two
   * connections) took every connection of the HTTP/1.1 upstream pool, and every
   * other client of the listener waited without end. A response that cannot move
   * for `stallMs` (the listener's idle timeout) is reset with CANCEL, which cancels
   * the upstream request through the abort listener.
   */
  onceDrain(fn: () => void): void {
    if (this.#stallMs > 0 && this.#stallTimer === undefined) {
      this.#stallTimer = setTimeout(onStalled, this.#stallMs, this);
      this.#stallTimer.unref();
    }
    this.stream.once('drain', () => {
      if (this.#stallTimer !== undefined) {
        clearTimeout(this.#stallTimer);
        this.#stallTimer = undefined;
      }
      fn();
    });
  }
  /** @internal The response waited `stallMs` for the client: reset, and the upstream is told (the 'close' listener). */
  stalled(): void {
    this.#stallTimer = undefined;
    if (!this.stream.destroyed) this.stream.close(h2c.NGHTTP2_CANCEL);
  }
  /**
   * End the stream once every body write has completed. Ended at once, END_STREAM
   * closes the stream while the last write is still in flight; Node 20 then
   * destroys the stream first and, when the write completes, builds an
   * ERR_STREAM_DESTROYED that nobody sees (stack trace and message formatting
   * included): ~19 µs per response, 20 % of a minimal HTTP/2 server's CPU (measured
   * with `stream.write(); stream.end()` against `stream.write(cb → end)`).
   */
  end(trailers?: Trailers): void {
    this.#ended = true;
    if (trailers) {
      const t = Object.create(null) as Trailers;
      for (const k in trailers) if (k.charCodeAt(0) !== 58 && !RESPONSE_HOP_BY_HOP.has(k)) t[k] = trailers[k]!;
      this.#trailers = t;
    }
    if (this.#writing > 0) this.#endWhenWritten = true;
    else if (!this.stream.destroyed) this.stream.end();
  }
  abort(h2code: number = h2c.NGHTTP2_INTERNAL_ERROR): void {
    this.#ended = true;
    this.#endWhenWritten = false;
    this.#abortL = undefined;
    if (!this.stream.destroyed) this.stream.close(h2code);
  }
  closeAfter(): void {
    /* streams are independent; the session stays */
  }
  onAbort(l: AbortListener): void {
    this.#abortL = l;
  }
  resetConnection(): void {
    this.#ended = true;
    this.#abortL = undefined;
    this.stream.session?.destroy();
  }
}

function onStalled(ds: H2Downstream): void {
  ds.stalled();
}

/**
 * Copy upstream response headers, dropping hop-by-hop and pseudo-headers. A plain
 * object, not `Object.create(null)`: a prototype-less object is a V8 dictionary,
 * which made `writeHead()` (its for-in in `_storeHeader`) several times slower; a
 * `__proto__` field, which a plain object cannot hold, is dropped.
 */
export function filterResponseHeaders(h: Record<string, string | string[] | number | undefined>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const k in h) {
    if (k.charCodeAt(0) === 58 || RESPONSE_HOP_BY_HOP.has(k) || k === '__proto__') continue;
    const v = h[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}
