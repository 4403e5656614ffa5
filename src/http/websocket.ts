/**
 * WebSocket over HTTP/1.1: the upgrade request is decided like any request
 * (enforce.decideUpgrade); when allowed it is sent upstream on a connection of its
 * own (`agent: false`, never pooled) and the two sockets are joined only after the
 * upstream answers a real `101` whose `Upgrade` is `websocket` (Envoy CVE-2024-23326:
 * a 200 is not an upgrade). Any other answer is relayed as a normal response and the
 * connection closed. After the switch the tunnel is opaque: policy applies to the
 * opening request only. `Upgrade: h2c` never gets here (request-guard answers 400).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { decideUpgrade, DENY_BODY, type EnforceContext } from './enforce.js';
import { classifyUpstreamError, failureStatus } from '../upstream/errors.js';
import { RESPONSE_HOP_BY_HOP } from './request-guard.js';
import { connectionRefused } from './downstream.js';

const REASONS: Record<number, string> = {
  400: 'Bad Request', 403: 'Forbidden', 413: 'Payload Too Large', 414: 'URI Too Long', 421: 'Misdirected Request',
  431: 'Request Header Fields Too Large', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function rawReply(socket: Duplex, status: number, body: Buffer | string): void {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  socket.write(
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\ncontent-type: text/plain\r\ncontent-length: ${b.length}\r\nconnection: close\r\n\r\n`,
  );
  socket.end(b);
}

function headBlock(status: number, message: string, raw: readonly string[], upgrade: boolean): string {
  let s = `HTTP/1.1 ${status} ${message}\r\n`;
  for (let i = 0; i < raw.length; i += 2) {
    const l = raw[i]!.toLowerCase();
    if (RESPONSE_HOP_BY_HOP.has(l) && !(upgrade && (l === 'connection' || l === 'upgrade'))) continue;
    s += `${raw[i]}: ${raw[i + 1]}\r\n`;
  }
  return s + '\r\n';
}

/**
 * Close `a` and `b` when `a` has seen no read or write progress for `ms`. After the
 * handover from the HTTP server (the 'upgrade' event) Node no longer times the
 * client socket out, and an upstream socket has only the request's timeout.
 */
function idleClose(a: Duplex, ms: number, b?: Duplex | null): void {
  const s = a as Socket;
  if (!(ms > 0) || typeof s.setTimeout !== 'function') return;
  s.setTimeout(ms, () => {
    s.destroy();
    b?.destroy();
  });
}

export interface UpstreamTarget {
  readonly protocol: 'http' | 'https';
  readonly host: string;
  readonly port: number;
  /** TLS options for an https upstream (CA, servername, checkServerIdentity). */
  readonly tls?: https.RequestOptions;
}

export function handleUpgrade(ctx: EnforceContext & { ws?: UpstreamTarget }, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  // Pipelined behind a request refused as malformed: no tunnel, no decision; the
  // refusal already written is flushed, then the connection ends.
  if (connectionRefused(socket)) {
    socket.end();
    return;
  }
  const d = decideUpgrade(ctx, req);
  if (d.kind === 'reject') {
    rawReply(socket, d.status, `${d.status}\r\n`);
    return;
  }
  if (d.kind === 'deny') {
    if (d.reset) {
      const s = socket as Socket & { resetAndDestroy?: () => void };
      if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
      else s.destroy();
      return;
    }
    rawReply(socket, 403, DENY_BODY);
    return;
  }
  const target = ctx.ws;
  if (!target) {
    rawReply(socket, 502, 'no upstream for upgrades\r\n');
    d.done(502);
    return;
  }
  const headers = [...d.headers, 'host', d.authority];
  const opts: http.RequestOptions = {
    host: target.host,
    port: target.port,
    method: 'GET',
    path: d.path,
    headers,
    agent: false,
    timeout: ctx.limits.upstreamTimeoutMs,
    ...(target.tls ?? {}),
  };
  let up: http.ClientRequest;
  try {
    up = target.protocol === 'https' ? https.request(opts) : http.request(opts);
  } catch {
    rawReply(socket, 502, 'upstream error\r\n');
    d.done(502);
    return;
  }
  let settled = false;
  const fail = (status: number) => {
    if (settled) return;
    settled = true;
    rawReply(socket, status, status === 503 ? 'upstream unavailable\r\n' : status === 504 ? 'upstream timeout\r\n' : 'upstream error\r\n');
    d.done(status);
  };
  socket.once('close', () => {
    if (!settled) {
      settled = true;
      up.destroy();
      d.done(0);
    }
  });
  up.on('error', (err) => fail(failureStatus(classifyUpstreamError(err))));
  up.on('timeout', () => {
    up.destroy();
    fail(504);
  });
  up.on('response', (res) => {
    // Not switching protocols: relay the answer as a plain response, then close.
    if (settled) {
      res.destroy();
      return;
    }
    settled = true;
    socket.write(headBlock(res.statusCode ?? 502, res.statusMessage ?? '', res.rawHeaders.concat(['connection', 'close']), false));
    // pipe, not write-per-chunk: a client that does not read stalls the upstream
    // instead of making the proxy buffer the whole body.
    idleClose(socket, ctx.limits.idleTimeoutMs, res.socket);
    res.pipe(socket);
    res.on('error', () => socket.destroy());
    socket.once('close', () => res.destroy());
    d.done(res.statusCode ?? 502);
  });
  up.on('upgrade', (res, upSocket, upHead) => {
    upSocket.on('error', () => socket.destroy());
    const proto = res.headers['upgrade'];
    if (settled || res.statusCode !== 101 || typeof proto !== 'string' || proto.toLowerCase() !== 'websocket') {
      upSocket.destroy();
      fail(502);
      return;
    }
    settled = true;
    up.setTimeout(0);
    // The tunnel is bounded by idleTimeoutMs (no bytes either way, or a peer that does
    // not read, for that long: both sides closed), as Envoy's stream idle timeout keeps
    // applying to an upgraded stream. Backpressure both ways comes from pipe().
    idleClose(socket, ctx.limits.idleTimeoutMs, upSocket);
    idleClose(upSocket, ctx.limits.idleTimeoutMs, socket);
    socket.write(headBlock(101, 'Switching Protocols', res.rawHeaders, true));
    if (upHead.length > 0) socket.write(upHead);
    if (head.length > 0) upSocket.write(head);
    upSocket.pipe(socket);
    socket.pipe(upSocket);
    socket.once('close', () => upSocket.destroy());
    upSocket.once('close', () => socket.destroy());
    d.done(101);
  });
  up.end();
}
