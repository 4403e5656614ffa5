/**
 * HTTP/2 upstreams (h2c:// prior knowledge, or https:// with ALPN h2 for gRPC)
 * through a small pool of `node:http2` ClientHttp2Sessions — undici 7 loses h2
 * trailers (NODE-NOTES.md §1.1 pitfall 2). Streams are relayed with the core API
 * on both sides so END_STREAM placement, trailers (grpc-status, grpc-message,
 * custom ones) and RST_STREAM codes survive: a trailers-only upstream answer is
 * forwarded trailers-only, a reset upstream stream resets the client stream with
 * the same code, and a client reset cancels the upstream stream.
 */
import * as http2 from 'node:http2';
import { addAbortSignal, Readable } from 'node:stream';
import type { Limits, Upstream } from '../config/proxy-config.js';
import type { Downstream, Trailers } from '../http/downstream.js';
import { filterResponseHeaders } from '../http/downstream.js';
import { WardenError } from '../core/errors.js';
import { classifyUpstreamError } from './errors.js';
import { endedByClose } from '../http/relay-body.js';
import type { ForwardResult } from './h1.js';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

export interface H2UpstreamOptions {
  readonly upstream: Upstream;
  readonly limits: Limits;
  /** TLS options for an https upstream (tls/originate.ts `http2`, ALPN h2). */
  readonly connect?: http2.SecureClientSessionOptions;
  /** Sessions kept open to the upstream (streams are spread round-robin). */
  readonly sessions?: number;
}

interface PooledSession {
  session: http2.ClientHttp2Session;
  connected: boolean;
  /** Streams opened on this session and not yet closed. */
  active: number;
  error?: unknown;
}

/**
 * Sessions the pool may open to one upstream when every session is at the
 * upstream's SETTINGS_MAX_CONCURRENT_STREAMS: the HTTP/1.1 pool's connection count
 * (h1.ts). Past it, streams queue in nghttp2 until one ends (or the upstream timeout).
 */
const MAX_SESSIONS = 128;
/** A peer's stream limit until its SETTINGS arrive (RFC 9113 §6.5.2 advises at least 100; nghttp2 assumes 100). */
const DEFAULT_PEER_STREAMS = 100;

function hasRoom(p: PooledSession): boolean {
  if (p.session.closed || p.session.destroyed) return false;
  return p.active < (p.session.remoteSettings.maxConcurrentStreams ?? DEFAULT_PEER_STREAMS);
}

export class H2Upstream {
  readonly #authority: string;
  readonly #connectOpts: http2.SecureClientSessionOptions;
  readonly #limits: Limits;
  readonly #max: number;
  readonly #scheme: 'http' | 'https';
  #pool: PooledSession[] = [];
  #next = 0;
  #closed = false;

  constructor(opts: H2UpstreamOptions) {
    const u = opts.upstream;
    const tls = u.protocol === 'https';
    this.#scheme = tls ? 'https' : 'http';
    const host = u.host.includes(':') ? `[${u.host}]` : u.host;
    this.#authority = `${this.#scheme}://${host}:${u.port}`;
    this.#limits = opts.limits;
    this.#max = opts.sessions ?? 2;
    const co: http2.SecureClientSessionOptions = {
      settings: { enablePush: false },
      maxSessionMemory: 32,
    };
    this.#connectOpts = tls ? { ...opts.connect, ...co } : co;
  }

  /**
   * Round-robin over the sessions with a free stream slot; open one while below the
   * pool size. Security: with a fixed pool, long-lived calls (watches, bidi streams)
   * that filled the upstream's SETTINGS_MAX_CONCURRENT_STREAMS on every session
   * made nghttp2 queue every other client's stream until the upstream timeout
   * (two connections × 100 held calls against an upstream allowing 100: every other
   * call UNAVAILABLE). Like Envoy's pool, a session at its peer's limit is passed
   * over and another is opened, up to MAX_SESSIONS.
   */
  #session(): PooledSession {
    const n = this.#pool.length;
    if (n < this.#max) return this.#open();
    for (let i = 0; i < n; i++) {
      const p = this.#pool[this.#next++ % n]!;
      if (hasRoom(p)) return p;
    }
    if (n < MAX_SESSIONS) return this.#open();
    return this.#pool[this.#next++ % n]!;
  }

  #open(): PooledSession {
    const session = http2.connect(this.#authority, this.#connectOpts);
    const entry: PooledSession = { session, connected: false, active: 0 };
    this.#pool.push(entry);
    const drop = () => {
      const i = this.#pool.indexOf(entry);
      if (i >= 0) this.#pool.splice(i, 1);
    };
    const timer = setTimeout(() => {
      if (!entry.connected) session.destroy(new WardenError('L7W_ERR_UPSTREAM_CONNECT', 'upstream connect timeout'));
    }, this.#limits.upstreamConnectTimeoutMs);
    timer.unref();
    session.once('connect', () => {
      entry.connected = true;
      clearTimeout(timer);
    });
    session.on('error', (err) => {
      entry.error = err;
      drop();
    });
    session.once('goaway', drop);
    session.once('close', () => {
      clearTimeout(timer);
      drop();
    });
    session.setTimeout(this.#limits.idleTimeoutMs, () => session.close());
    return entry;
  }

  forward(
    ds: Downstream,
    method: string,
    path: string,
    authority: string,
    headers: string[],
    cb: ForwardResult,
  ): void {
    const h = Object.create(null) as http2.OutgoingHttpHeaders;
    h[':method'] = method;
    h[':path'] = path;
    h[':authority'] = authority;
    h[':scheme'] = this.#scheme;
    for (let i = 0; i < headers.length; i += 2) {
      const k = headers[i]!;
      const v = headers[i + 1]!;
      const prev = h[k];
      if (prev === undefined) h[k] = v;
      else if (Array.isArray(prev)) prev.push(v);
      else h[k] = [String(prev), v];
    }
    let up!: UpStream;
    let entry: PooledSession;
    try {
      entry = this.#session();
      up = entry.session.request(h, { endStream: ds.body === null });
      up.push = pushMarkingEndStream;
    } catch (err) {
      cb.onFailure(classifyUpstreamError(err), err);
      return;
    }
    entry.active++;
    let status = 0;
    let finished = false;
    let gotResponse = false;
    let trailers: Trailers | undefined;
    const finish = (s: number, f?: Parameters<ForwardResult['onDone']>[1]) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      cb.onDone(s, f);
    };
    const timer = setTimeout(() => {
      if (gotResponse || finished) return;
      finished = true;
      resetUpstream(up, NGHTTP2_CANCEL);
      cb.onFailure('timeout', new WardenError('L7W_ERR_UPSTREAM_TIMEOUT', 'no response headers in time'));
    }, this.#limits.upstreamTimeoutMs);
    timer.unref();

    ds.onAbort({
      clientAborted(code) {
        if (!up.destroyed) resetUpstream(up, code && code !== NGHTTP2_NO_ERROR ? code : NGHTTP2_CANCEL);
        finish(0);
      },
    });

    const relay = ds.body ? new BodyRelay(ds.body, up) : undefined;

    up.on('response', (headers, flags: number) => {
      gotResponse = true;
      clearTimeout(timer);
      status = Number(headers[':status']) || 502;
      if (status < 200) return;
      if (status > 599) {
        // nghttp2 takes any three digits; no client may be sent these, and the
        // failed respond() left the client with no answer at all.
        finished = true;
        resetUpstream(up, NGHTTP2_CANCEL);
        cb.onFailure('protocol', new WardenError('L7W_ERR_UPSTREAM_PROTOCOL', `upstream answered :status ${status}`));
        return;
      }
      const out = filterResponseHeaders(headers as Record<string, string | string[] | undefined>);
      try {
        if ((flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 || up.endAfterHeaders) {
          // Trailers-only (gRPC error): keep it one HEADERS frame with END_STREAM.
          ds.respond(status, out, true);
          finish(status);
          return;
        }
        ds.respond(status, out, false, ds.protocol === 'HTTP/2');
      } catch (err) {
        resetUpstream(up, NGHTTP2_CANCEL);
        if (ds.headersSent) finish(status);
        else {
          // Not even a head went out: answer the failure, never leave the client waiting.
          finished = true;
          cb.onFailure('protocol', err);
        }
      }
    });
    up.on('trailers', (t) => {
      trailers = filterResponseHeaders(t as Record<string, string | string[] | undefined>) as Trailers;
    });
    up.on('data', (chunk: Buffer) => {
      if (ds.closed || ds.isHead) return;
      if (!ds.write(chunk)) {
        up.pause();
        ds.onceDrain(() => up.resume());
      }
    });
    up.on('end', () => {
      if (finished || !gotResponse) return;
      // Ended by a reset or a lost session, not END_STREAM: a cut response, which the
      // 'close' handler resets on the client side.
      if (up[END_STREAM] !== true) return;
      ds.end(trailers);
      finish(status);
    });
    let streamError: unknown;
    up.on('error', (err) => {
      streamError = err;
    });
    up.on('close', () => {
      entry.active--;
      clearTimeout(timer);
      relay?.stop();
      if (finished) return;
      const code = up.rstCode;
      if (!gotResponse) {
        finished = true;
        const err = entry.error ?? streamError;
        let f = classifyUpstreamError(err);
        if (f === 'protocol' && (code === NGHTTP2_REFUSED_STREAM || !entry.connected)) f = 'connect';
        cb.onFailure(f, err ?? new Error(`upstream reset ${code}`));
        return;
      }
      if (code !== undefined && code !== NGHTTP2_NO_ERROR) {
        ds.abort(code);
        finish(status, 'protocol');
        return;
      }
      // Closed without 'end' (session went away): do not let a cut body look complete.
      if (!ds.closed) ds.abort(http2.constants.NGHTTP2_INTERNAL_ERROR);
      finish(status, 'protocol');
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const p of this.#pool) p.session.destroy();
    this.#pool = [];
  }
}

const END_STREAM: unique symbol = Symbol('l7warden.h2EndStream');
type UpStream = http2.ClientHttp2Stream & { [END_STREAM]?: boolean };
const readablePush = Readable.prototype.push;

/**
 * Security: Node ends a client stream's readable side ('end', as for END_STREAM)
 * when the stream is closed under it: the upstream's RST_STREAM(NO_ERROR) in the
 * middle of a response, or the upstream session going away. Relayed as the end of
 * the response, a cut body reached the client as complete (END_STREAM, or a
 * terminated chunked body on HTTP/1.1). A real END_STREAM is pushed while the
 * stream is still open; Node's close handler pushes its end after marking the
 * stream closed, and 'end' alone cannot tell them apart: a complete response still
 * buffered (the client reads slowly) also emits 'end' after the stream closed.
 */
function pushMarkingEndStream(this: UpStream, chunk: unknown, encoding?: BufferEncoding): boolean {
  if (chunk === null && !this.closed && !this.destroyed) this[END_STREAM] = true;
  return readablePush.call(this, chunk, encoding);
}

/** Already aborted: `addAbortSignal(ABORTED, stream)` destroys the stream at once with Node's AbortError. */
const ABORTED = AbortSignal.abort();

/**
 * Reset an upstream stream. Security: `Http2Stream.close(code)` on a stream whose
 * writable side is still open ends it first — an empty DATA frame with END_STREAM
 * goes out before the RST_STREAM (measured on Node 20.20.2) — so the upstream saw a
 * cut request body as complete. Destroyed with Node's AbortError (what the public
 * `addAbortSignal` does), the stream sends RST_STREAM(CANCEL) alone. A stream whose
 * request already ended is closed with `code` as before.
 */
function resetUpstream(up: http2.ClientHttp2Stream, code: number): void {
  if (up.destroyed) return;
  if (!up.writableEnded) addAbortSignal(ABORTED, up);
  else up.close(code);
}

const RELAY: unique symbol = Symbol('l7warden.h2relay');
type RelaySource = Readable & { [RELAY]?: BodyRelay | undefined };
type RelaySink = http2.ClientHttp2Stream & { [RELAY]?: BodyRelay | undefined };

/**
 * The request body relayed into the upstream stream, in place of `pipeline(body,
 * up)` (an AbortController and a DOMException per request). Listeners are shared
 * functions (`this` is the emitting stream), so a request costs one object.
 *  - backpressure: the body is paused while the upstream stream's buffer is full;
 *  - the body's end ends the upstream request (END_STREAM);
 *  - the body failing or closing before its end (client reset, maxBodyBytes)
 *    cancels the upstream stream: a cut body never looks complete upstream;
 *  - the upstream stream closing first stops the relay; the forwarder's 'close'
 *    handler answers the client (failure reply or RST with the upstream's code), and
 *    what the client still sends is discarded (bounded by maxBodyBytes when set).
 */
class BodyRelay {
  #done = false;

  constructor(
    readonly src: RelaySource,
    readonly up: RelaySink,
  ) {
    src[RELAY] = this;
    up[RELAY] = this;
    src.on('data', onBodyData);
    src.on('end', onBodyEnd);
    src.on('error', onBodyCut);
    src.on('close', onBodyCut);
    up.on('drain', onUpDrain);
  }

  data(chunk: Buffer): void {
    const up = this.up;
    if (up.destroyed) {
      this.stop();
      return;
    }
    if (!up.write(chunk)) this.src.pause();
  }

  end(): void {
    if (this.#done) return;
    // A stream closed under us (RST_STREAM NO_ERROR, session gone) also ends: a cut
    // body, never END_STREAM upstream (http/relay-body.ts endedByClose).
    if (endedByClose(this.src)) {
      this.cut();
      return;
    }
    this.#detach();
    if (!this.up.destroyed) this.up.end();
  }

  cut(): void {
    if (this.#done) return;
    this.#detach();
    const up = this.up;
    if (!up.destroyed && !up.closed) resetUpstream(up, NGHTTP2_CANCEL);
  }

  drain(): void {
    if (!this.#done && this.src.isPaused()) this.src.resume();
  }

  /** The upstream stream closed: stop relaying and discard the rest of the body. */
  stop(): void {
    if (this.#done) return;
    this.#detach();
    const src = this.src;
    if (!src.destroyed && !src.readableEnded) src.resume();
  }

  #detach(): void {
    this.#done = true;
    const { src, up } = this;
    src[RELAY] = undefined;
    up[RELAY] = undefined;
    src.off('data', onBodyData);
    src.off('end', onBodyEnd);
    src.off('close', onBodyCut);
    up.off('drain', onUpDrain);
    // The body's 'error' listener stays (a no-op once detached): a late error must not be unhandled.
  }
}

function onBodyData(this: RelaySource, chunk: Buffer): void {
  this[RELAY]?.data(chunk);
}
function onBodyEnd(this: RelaySource): void {
  this[RELAY]?.end();
}
function onBodyCut(this: RelaySource): void {
  this[RELAY]?.cut();
}
function onUpDrain(this: RelaySink): void {
  this[RELAY]?.drain();
}
