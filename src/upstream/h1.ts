/**
 * HTTP/1.1 upstreams (http:// and https://) through one undici Pool per listener
 * (NODE-NOTES.md §1.1). The request is forwarded with `dispatch()` and a handler
 * that writes straight into the client's response with backpressure
 * (`controller.pause()` on a full socket); nothing is buffered whole. TLS origination
 * passes `servername` on every dispatch (pitfall 1), verification is never off
 * unless configured, and the headers handed to undici have been cleaned of
 * everything it throws on (pitfall 4).
 */
import { Pool, type Dispatcher } from 'undici';
import type { Readable } from 'node:stream';
import { RelayBody } from '../http/relay-body.js';
import type { Limits, Upstream } from '../config/proxy-config.js';
import type { AbortListener, Downstream } from '../http/downstream.js';
import { filterResponseHeaders } from '../http/downstream.js';
import { classifyUpstreamError, type UpstreamFailure } from './errors.js';

export interface H1UpstreamOptions {
  readonly upstream: Upstream;
  readonly limits: Limits;
  /** TLS connect options for an https upstream (tls/originate.ts `undiciConnect`). */
  readonly connect?: object;
  /** SNI / verified name, passed on every dispatch (undici would take it from Host). */
  readonly servername?: string;
  readonly insecureSkipVerify?: boolean;
  readonly connections?: number;
}

export interface ForwardResult {
  /** Called once with the status sent to the client (or the failure). */
  onDone(status: number, failure?: UpstreamFailure): void;
  /** Called when the upstream failed before a response: the caller answers. */
  onFailure(f: UpstreamFailure, err: unknown): void;
}

type DispatchController = Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseStart']>>[0];

/**
 * One forwarded request's undici handler. Once the exchange has ended it drops the
 * downstream and the callback (see Forwarded in http/enforce.ts: a finished
 * request's objects should not keep later ones alive through a promoted handler).
 */
class ForwardHandler implements Dispatcher.DispatchHandler, AbortListener {
  #controller: DispatchController | undefined;
  #ds: Downstream | undefined;
  #cb: ForwardResult | undefined;
  #done = false;
  #status = 0;
  #aborted = false;

  constructor(ds: Downstream, cb: ForwardResult) {
    this.#ds = ds;
    this.#cb = cb;
    ds.onAbort(this);
  }

  clientAborted(): void {
    this.#aborted = true;
    this.#controller?.abort(new Error('client aborted'));
  }

  onRequestStart(controller: DispatchController): void {
    this.#controller = controller;
    if (this.#aborted) controller.abort(new Error('client aborted'));
  }

  onResponseStart(controller: DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    const ds = this.#ds;
    if (statusCode < 200 || ds === undefined) return;
    this.#status = statusCode;
    const h = filterResponseHeaders(headers);
    const announcesTrailers = headers['trailer'] !== undefined;
    try {
      ds.respond(statusCode, h, false, announcesTrailers);
    } catch (err) {
      controller.abort(err as Error);
    }
  }

  onResponseData(controller: DispatchController, chunk: Buffer): void {
    const ds = this.#ds;
    if (ds === undefined || ds.closed) return;
    if (!ds.isHead && !ds.write(chunk)) {
      controller.pause();
      ds.onceDrain(() => controller.resume());
    }
  }

  onResponseEnd(_controller: DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    if (this.#done) return;
    this.#done = true;
    let t: Record<string, string | string[]> | undefined;
    for (const k in trailers) {
      const v = trailers[k];
      if (v === undefined) continue;
      (t ??= Object.create(null) as Record<string, string | string[]>)[k] = v;
    }
    this.#ds!.end(t);
    this.#cb!.onDone(this.#status);
    this.#release();
  }

  onResponseError(_controller: DispatchController, err: Error): void {
    if (this.#done) return;
    this.#done = true;
    const ds = this.#ds!;
    const cb = this.#cb!;
    this.#release();
    if (this.#aborted) {
      cb.onDone(0);
      return;
    }
    const f = classifyUpstreamError(err);
    if (ds.headersSent) {
      // Mid-response failure: the client must not mistake a cut body for a full one.
      ds.abort();
      cb.onDone(this.#status, f);
      return;
    }
    cb.onFailure(f, err);
  }

  #release(): void {
    this.#ds = undefined;
    this.#cb = undefined;
    this.#controller = undefined;
  }
}

export class H1Upstream {
  readonly pool: Pool;
  readonly #servername: string | undefined;
  readonly #origin: string;

  constructor(opts: H1UpstreamOptions) {
    const u = opts.upstream;
    const tls = u.protocol === 'https';
    const host = u.host.includes(':') ? `[${u.host}]` : u.host;
    this.#origin = `${tls ? 'https' : 'http'}://${host}:${u.port}`;
    // Plain http: a constant servername, which undici's connector ignores without
    // TLS; without one undici derives it from every request's Host (an isIP() regex
    // per request).
    this.#servername = tls ? (opts.servername ?? (isIpLiteral(u.host) ? undefined : u.host)) : u.host;
    const connect: Record<string, unknown> = { ...(tls ? opts.connect : {}), timeout: opts.limits.upstreamConnectTimeoutMs };
    this.pool = new Pool(this.#origin, {
      connections: opts.connections ?? 128,
      pipelining: 1,
      headersTimeout: opts.limits.upstreamTimeoutMs,
      bodyTimeout: opts.limits.idleTimeoutMs,
      keepAliveTimeout: 4_000,
      strictContentLength: true,
      connect,
    });
    this.pool.on('connectionError', () => {});
  }

  /**
   * Forward one request. `headers` is a cleaned flat array (request-guard
   * forwardHeaders) without Host; `authority` becomes the Host header. `whole`: the
   * request body as one Buffer, when it had all arrived (in place of `ds.body`).
   */
  forward(ds: Downstream, method: string, path: string, authority: string, headers: string[], cb: ForwardResult, whole?: Buffer): void {
    headers.push('host', authority);
    const opts: Dispatcher.DispatchOptions & { servername?: string } = {
      origin: this.#origin,
      method: method as Dispatcher.HttpMethod,
      path,
      headers,
      body: whole ?? (ds.body && ds.protocol === 'HTTP/2' ? detachable(ds.body) : ds.body),
      // Do not reuse a connection whose response came early (CL.0 family).
      reset: false,
      idempotent: false,
    };
    if (this.#servername) opts.servername = this.#servername;
    const handler = new ForwardHandler(ds, cb);
    try {
      this.pool.dispatch(opts, handler);
    } catch (err) {
      cb.onFailure(classifyUpstreamError(err), err);
    }
  }

  async close(): Promise<void> {
    await this.pool.destroy().catch(() => {});
  }
}

/**
 * undici destroys a stream body once it has read it; destroying an HTTP/2 server
 * stream resets it before the response is sent. Relay through a RelayBody, which
 * leaves the source alone once it has ended (and destroys it on an error). A body
 * that is already a RelayBody (maxBodyBytes counting) is detached as it is.
 */
function detachable(body: Readable): Readable {
  return body instanceof RelayBody ? body : new RelayBody(body);
}

export function isIpLiteral(h: string): boolean {
  if (h.includes(':')) return true;
  for (let i = 0; i < h.length; i++) {
    const c = h.charCodeAt(i);
    if (!(c === 46 || (c >= 48 && c <= 57))) return false;
  }
  return h.length > 0;
}
