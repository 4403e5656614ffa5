/**
 * The protocol servers behind an ingress listener: one `http.Server` (HTTP/1.1,
 * keep-alive, pipelining) and one `http2.Http2Server` (core stream API), neither
 * listening itself. The listener (listeners/ingress.ts) accepts the TCP connection,
 * reads a PROXY header if configured, terminates TLS if configured, sniffs the
 * HTTP/2 preface on cleartext, and hands the socket over with `emit('connection')`.
 *
 * Limits (config Limits): header bytes (`maxHeaderSize`, and the same count on
 * HTTP/2 via `maxHeaderListSize`), header count (Node's `maxHeadersCount` set above
 * the limit so the proxy counts and answers 431 itself instead of Node truncating
 * silently), headers/request/keep-alive timeouts (HTTP/2 streams: stream-deadline.ts),
 * HTTP/2 `maxConcurrentStreams`.
 * The parser is Node's strict one: `insecureHTTPParser` is never set.
 */
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Limits } from '../config/proxy-config.js';
import { handleH1, handleH2, h1Reject, type EnforceContext } from './enforce.js';
import { markConnectionRefused } from './downstream.js';
import { handleUpgrade } from './websocket.js';
import { StreamDeadlines } from './stream-deadline.js';

export interface ProtocolServers {
  readonly h1: http.Server;
  readonly h2: http2.Http2Server;
  /** Open HTTP/2 sessions (for GOAWAY on shutdown). */
  readonly sessions: Set<http2.ServerHttp2Session>;
}

/**
 * An `http.Server` that never listens (sockets arrive through emit('connection'))
 * has no connection list: Node creates it, and the timer that enforces
 * `headersTimeout` / `requestTimeout` (408 to a slowloris client) and makes
 * `closeIdleConnections()` work, only on 'listening'. Start them here. The timer is
 * unref'd and `server.close()` clears it.
 */
export function startConnectionChecks(server: http.Server): void {
  server.emit('listening');
}

/**
 * The HTTP/1 server every listener uses, with the limits applied the same way:
 * strict parser, header bytes, request/headers/idle timeouts (with Node's connection
 * checks started), and a header count one above the limit so Node never truncates
 * silently and the guard can answer 431.
 */
export function createLimitedH1Server(limits: Limits, opts: { requireHostHeader?: boolean } = {}): http.Server {
  const h1 = http.createServer({
    maxHeaderSize: limits.maxRequestHeadersKb * 1024,
    insecureHTTPParser: false,
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: Math.min(limits.idleTimeoutMs, 60_000),
    connectionsCheckingInterval: Math.min(5_000, Math.max(250, Math.floor(limits.headersTimeoutMs / 4))),
    requireHostHeader: opts.requireHostHeader ?? true,
    joinDuplicateHeaders: false,
  });
  startConnectionChecks(h1);
  h1.maxHeadersCount = limits.maxHeadersCount + 1;
  h1.timeout = limits.idleTimeoutMs;
  return h1;
}

/** A plain refusal written on the socket itself (no response object): status, then close. */
function rawRefusal(status: number): string {
  const body = `${status}\r\n`;
  return `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`;
}

/**
 * Per HTTP/1 connection: the last request the server dispatched, its response and the
 * response before it (so a parse error can be placed in the response order), and
 * whether a parse error was handled already.
 */
const LAST_REQUEST: unique symbol = Symbol('l7warden.lastRequest');
const LAST_RESPONSE: unique symbol = Symbol('l7warden.lastResponse');
const PREV_RESPONSE: unique symbol = Symbol('l7warden.prevResponse');
const PARSE_FAILED: unique symbol = Symbol('l7warden.parseFailed');

type H1Socket = Duplex & {
  _httpMessage?: http.ServerResponse | null;
  [LAST_REQUEST]?: http.IncomingMessage;
  [LAST_RESPONSE]?: http.ServerResponse;
  [PREV_RESPONSE]?: http.ServerResponse;
  [PARSE_FAILED]?: boolean;
};

/**
 * Answer `status` and close once `res` (a response pipelined ahead) is finished: its
 * 'finish' listener runs before Node's own, so the refusal follows its last byte and
 * nothing queued behind it is written.
 */
function refuseAfter(socket: Duplex, res: http.ServerResponse, status: number): void {
  res.prependOnceListener('finish', () => {
    if (socket.destroyed || !socket.writable) socket.destroy();
    else socket.end(rawRefusal(status));
  });
  res.once('close', () => {
    if (!res.writableFinished) socket.destroy();
  });
}

/**
 * Node's server keeps the response it is writing on a connection in
 * `socket._httpMessage` (queued pipelined responses are assigned as each one
 * finishes) and clears it when the last one is done; an upgrade request gets no
 * response object, so at 'upgrade' a set field means an earlier request is in flight.
 */
export function responseInFlight(socket: Duplex): boolean {
  return (socket as H1Socket)._httpMessage != null;
}

/**
 * Let the in-flight responses finish in order, then answer the upgrade (or CONNECT,
 * or a request the parser refused) with `status` and close.
 * Node removed its own 'drain' relay when it emitted 'upgrade'; without it a large
 * in-flight response waiting for 'drain' would stall, so it is relayed here.
 */
export function refuseUpgradeWhenIdle(socket: Duplex, status = 400): void {
  const s = socket as H1Socket;
  const relayDrain = () => {
    const m = s._httpMessage;
    if (m && m.writableNeedDrain) m.emit('drain');
  };
  socket.on('drain', relayDrain);
  const check = () => {
    const res = s._httpMessage;
    if (res) {
      const next = () => {
        res.off('finish', next);
        res.off('close', next);
        // Node's own 'finish' handler detaches this response and assigns the next queued one.
        process.nextTick(check);
      };
      res.once('finish', next);
      res.once('close', next);
      return;
    }
    socket.off('drain', relayDrain);
    if (socket.destroyed || !socket.writable) socket.destroy();
    else socket.end(rawRefusal(status));
  };
  check();
}

/**
 * Installed on every HTTP/1 server (ingress, egress): the order of answers on a
 * pipelined connection survives a refusal by the parser.
 *
 * A request the parser refuses (bad bytes, a header section over the limit, data after
 * `Connection: close`). Node's default answer is written at once and the connection
 * destroyed: behind pipelined requests that were already decided and forwarded, their
 * responses were lost and the client read the 400 as the answer to the first of them
 * (Envoy IntegrationTest.PipelineWithTrailers answers 200, 200, 400). Now the
 * responses of the complete requests ahead finish in order, then the refusal:
 *  - every request dispatched so far is complete: the error is in the next one;
 *  - the last one is incomplete (the error is in its body or trailers) and responses
 *    are still pending ahead of it: the refusal takes its place after the response
 *    before it, and it is cut (its upstream request never completes);
 *  - the last one is the one being answered: Node's default (400 if its response has
 *    not started, the connection destroyed, which cuts its upstream request).
 */
export function orderHttp1Refusals(h1: http.Server): void {
  h1.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const hs = req.socket as H1Socket;
    hs[PREV_RESPONSE] = hs[LAST_RESPONSE];
    hs[LAST_RESPONSE] = res;
    hs[LAST_REQUEST] = req;
  });
  h1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const s = socket as H1Socket;
    if (s[PARSE_FAILED]) return; // a failed parser reports every later read again
    s[PARSE_FAILED] = true;
    markConnectionRefused(socket);
    const code = err.code ?? '';
    const status =
      code === 'HPE_HEADER_OVERFLOW' ? 431
      : code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? 413
      : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408
      : code.startsWith('HPE_') ? 400
      : 0;
    const last = s[LAST_REQUEST];
    if (status !== 0 && responseInFlight(socket)) {
      if (last === undefined || last.complete) {
        refuseUpgradeWhenIdle(socket, status);
        return;
      }
      const prev = s[PREV_RESPONSE];
      if (s._httpMessage !== s[LAST_RESPONSE] && prev !== undefined && !prev.writableFinished) {
        // Its upstream request waits for a body that will not come, and is cut when the
        // connection closes (Node aborts the requests still open on it); the upstream's
        // answer, if any, is queued behind the refusal and never written.
        refuseAfter(socket, prev, status);
        return;
      }
    }
    const inFlight = s._httpMessage;
    if (status !== 0 && socket.writable && (!inFlight || !inFlight.headersSent)) {
      socket.write(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nConnection: close\r\n\r\n`);
    }
    socket.destroy();
  });
}

export function createProtocolServers(ctx: EnforceContext): ProtocolServers {
  const limits: Limits = ctx.limits;
  // Security: Node's own answer to an HTTP/1.1 request without Host (400 + close)
  // bypasses the 'request' handler, so nothing marked the connection refused and a
  // request pipelined behind it was still decided and forwarded (Envoy
  // IntegrationTest.PipelineInline). The guard refuses a missing Host itself (400,
  // markConnectionRefused), HTTP/1.0 included.
  const h1 = createLimitedH1Server(limits, { requireHostHeader: false });
  orderHttp1Refusals(h1);
  h1.on('request', (req, res) => {
    try {
      handleH1(ctx, req, res);
    } catch {
      if (!res.headersSent) h1Reject(res, 500);
      else res.destroy();
    }
  });
  h1.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {});
    // Pipelined behind a request whose response is still being written: Node hands
    // the socket over anyway, and a tunnel would take it mid-response. Refused.
    if (responseInFlight(socket)) {
      refuseUpgradeWhenIdle(socket);
      return;
    }
    try {
      handleUpgrade(ctx, req, socket, head);
    } catch {
      socket.destroy();
    }
  });
  // CONNECT is not served on an ingress listener: an explicit 400 rather than Node's
  // silent close, after the responses still being written on the connection (written
  // at once, it took their place: the client read the 400 as the answer to a request
  // that had been forwarded).
  h1.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    socket.on('error', () => {});
    if (responseInFlight(socket)) refuseUpgradeWhenIdle(socket);
    else socket.end(rawRefusal(400));
  });

  const sessions = new Set<http2.ServerHttp2Session>();
  const h2 = http2.createServer({
    settings: {
      maxConcurrentStreams: limits.http2MaxConcurrentStreams,
      maxHeaderListSize: limits.maxRequestHeadersKb * 1024,
      enablePush: false,
    },
    // Above the limit (pseudo-headers count too): the proxy answers 431 itself.
    maxHeaderListPairs: limits.maxHeadersCount + 8,
    maxSessionMemory: 10,
  });
  h2.setTimeout(limits.idleTimeoutMs);
  const deadlines = new StreamDeadlines(limits.requestTimeoutMs, Math.min(5_000, Math.max(250, Math.floor(limits.requestTimeoutMs / 4))));
  h2.on('session', (s) => {
    sessions.add(s);
    s.on('error', () => {});
    s.once('close', () => sessions.delete(s));
  });
  h2.on('sessionError', () => {});
  h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    stream.on('error', () => {});
    // gRPC calls live as long as they stream, but only an HTTP/2 upstream can serve
    // them: toward HTTP/1.1 the content-type would only be a way around the deadline.
    const ct = headers['content-type'];
    if (ctx.h2 === undefined || !(typeof ct === 'string' && ct.startsWith('application/grpc'))) deadlines.track(stream);
    try {
      handleH2(ctx, stream, headers, rawHeaders);
    } catch {
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  });
  return { h1, h2, sessions };
}
