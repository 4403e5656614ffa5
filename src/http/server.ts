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
export function createLimitedH1Server(limits: Limits): http.Server {
  const h1 = http.createServer({
    maxHeaderSize: limits.maxRequestHeadersKb * 1024,
    insecureHTTPParser: false,
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    keepAliveTimeout: Math.min(limits.idleTimeoutMs, 60_000),
    connectionsCheckingInterval: Math.min(5_000, Math.max(250, Math.floor(limits.headersTimeoutMs / 4))),
    requireHostHeader: true,
    joinDuplicateHeaders: false,
  });
  startConnectionChecks(h1);
  h1.maxHeadersCount = limits.maxHeadersCount + 1;
  h1.timeout = limits.idleTimeoutMs;
  return h1;
}

const UPGRADE_REFUSED = 'HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\n400\r\n';

type H1Socket = Duplex & { _httpMessage?: http.ServerResponse | null };

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
 * Let the in-flight responses finish in order, then answer the upgrade (or CONNECT) 400 and close.
 * Node removed its own 'drain' relay when it emitted 'upgrade'; without it a large
 * in-flight response waiting for 'drain' would stall, so it is relayed here.
 */
export function refuseUpgradeWhenIdle(socket: Duplex): void {
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
    else socket.end(UPGRADE_REFUSED);
  };
  check();
}

export function createProtocolServers(ctx: EnforceContext): ProtocolServers {
  const limits: Limits = ctx.limits;
  const h1 = createLimitedH1Server(limits);
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
  // CONNECT is not served on an ingress listener: an explicit 400 rather than Node's silent close.
  h1.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    socket.on('error', () => {});
    socket.end('HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\n400\r\n');
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
