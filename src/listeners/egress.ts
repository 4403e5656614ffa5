/**
 * The `egress` listener: the FQDN egress gate (SPEC.md "Who uses it" 3). One TCP
 * port serves
 *
 *  1. an HTTP forward proxy — absolute-form requests, each decided with the source's
 *     egress policy and its HTTP attributes (egress/request.ts);
 *  2. CONNECT tunnels — `CONNECT host:port`: a name is resolved through the DNS
 *     listener (egress/resolve.ts), the resulting IP decided at L3/L4; denied ⇒ 403,
 *     nothing dialled; allowed ⇒ one of
 *       - the rule has `terminatingTLS`: intercept — terminate TLS with the rule's
 *         certificate, decide every HTTP request inside with the L7 rules and
 *         re-originate verified TLS to the decided IP (servername = the CONNECT name);
 *       - the port has HTTP rules for this peer but no terminatingTLS: the tunnel is
 *         parsed as plaintext HTTP/1.1 and every request decided (TLS inside fails
 *         to parse: 400, closed — fail closed, as Envoy's HTTP filter would);
 *       - DNS rules on the port: refused (a tunnel would bypass DNS inspection);
 *       - otherwise: dial exactly the decided IP and splice;
 *  3. transparent connections — on a listener whose `sourceIdentity` lists
 *     `proxyProtocol`, a PROXY header whose destination is not this listener is the
 *     original destination: decided at L3/L4 (denied ⇒ TCP reset, nothing dialled),
 *     then intercepted / parsed / spliced as for CONNECT. A PROXY header naming
 *     this listener itself (a load balancer in front of the forward proxy), or a
 *     LOCAL header, makes the connection a forward-proxy connection.
 *
 * Source identity: the listener's `sourceIdentity` methods (PROXY source, else the
 * peer address in the IP cache). The snapshot is read once per request / tunnel.
 */
import { createLimitedH1Server, orderHttp1Refusals } from '../http/server.js';
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { EgressListener, Limits } from '../config/proxy-config.js';
import type { SecretDoc } from '../config/documents.js';
import type { PolicySnapshot, Verdict } from '../policy/types.js';
import type { DnsProxy } from '../dns/server.js';
import type { FlowPeer, HttpFlowInfo, HttpFlowRecorder } from '../observe/flow.js';
import type { Identity } from '../identity/identity.js';
import { DENY_BODY } from '../http/enforce.js';
import { connectionRefused } from '../http/downstream.js';
import { refuseUpgradeWhenIdle, responseInFlight } from '../http/server.js';
import { certificateOf } from '../tls/cert-store.js';
import { readClientHello } from '../tls/client-hello.js';
import { normalizeIP } from '../identity/ipcache.js';
import { readProxyHeader, type ProxyAddress } from './proxy-protocol.js';
import { isValidAuthority } from '../http/canonical-path.js';
import { EgressUpstreams } from '../egress/upstreams.js';
import { ResolveMemo, resolveThroughDns } from '../egress/resolve.js';
import {
  attachConn,
  decideIps,
  egressConnOf,
  handleEgressRequest,
  resolveFailureStatus,
  sourceOf,
  splitAuthority,
  type EgressConn,
  type EgressContext,
  type Tunnel,
} from '../egress/request.js';

export interface EgressDeps {
  readonly limits: Limits;
  readonly snapshot: () => PolicySnapshot | undefined;
  /**
   * The shared flow recorder (Hubble shape, metrics, secret-header redaction): every
   * record this listener makes says `traffic_direction: EGRESS`.
   */
  readonly flows: HttpFlowRecorder;
  readonly secrets: readonly SecretDoc[];
  /** The DNS proxy names are resolved through (the `dnsListener`'s); undefined ⇒ IP literals only. */
  readonly resolver: () => DnsProxy | undefined;
}

/** An IPv4-mapped IPv6 address as its IPv4 address, whichever way it is written (::ffff:7f00:1 too). */
function stripV4Mapped(a: string): string {
  if (!a.startsWith('::ffff:')) return a;
  const n = normalizeIP(a);
  return n !== undefined && net.isIPv4(n) ? n : a;
}

function statusLine(status: number): string {
  return http.STATUS_CODES[status] ?? 'Error';
}

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';

/** Answer a CONNECT (or a request on a raw socket) and close. */
function rawReply(socket: Duplex, status: number, body: string): void {
  if (socket.destroyed) return;
  socket.end(
    `HTTP/1.1 ${status} ${statusLine(status)}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * A TCP reset when possible (transparent denial), else a plain destroy. Not once our
 * side has begun its end() (Node does that itself when the client's FIN arrives, the
 * listener not being half-open): libuv cannot reset a shutting handle, the reset fails
 * (EINVAL) after the handle was let go, and the socket is never closed — a file
 * descriptor leaked per client that sent part of a ClientHello and then its FIN.
 */
function reset(socket: Duplex): void {
  const s = socket as Duplex & { resetAndDestroy?: () => void };
  if (typeof s.resetAndDestroy === 'function' && !socket.writableEnded) {
    try {
      s.resetAndDestroy();
      return;
    } catch {
      /* not a TCP socket */
    }
  }
  socket.destroy();
}

export class EgressListenerServer {
  readonly spec: EgressListener;
  readonly #limits: Limits;
  readonly #net: net.Server;
  readonly #http: http.Server;
  readonly #ctx: EgressContext;
  readonly #upstreams: EgressUpstreams;
  readonly #sockets = new Set<Duplex>();
  #bound = false;
  #port = 0;

  constructor(spec: EgressListener, deps: EgressDeps) {
    this.spec = spec;
    this.#limits = deps.limits;
    this.#upstreams = new EgressUpstreams({
      limits: deps.limits,
      secrets: deps.secrets,
      ...(spec.upstreamCA ? { upstreamCA: spec.upstreamCA } : {}),
      idleMs: deps.limits.idleTimeoutMs,
    });
    this.#ctx = {
      spec,
      limits: deps.limits,
      snapshot: deps.snapshot,
      flows: deps.flows,
      resolver: deps.resolver,
      upstreams: this.#upstreams,
    };
    const limits = deps.limits;
    // Missing Host is the guard's 400 (which marks the connection refused), not Node's:
    // Node's bypassed the handler and a request pipelined behind it was forwarded.
    const h1 = createLimitedH1Server(limits, { requireHostHeader: false });
    // Parse errors (408 slow headers, 431 oversized headers, 400 otherwise) are answered
    // after the responses still owed on the connection (http/server.ts).
    orderHttp1Refusals(h1);
    h1.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      try {
        handleEgressRequest(this.#ctx, req, res);
      } catch {
        if (!res.headersSent) {
          res.shouldKeepAlive = false;
          res.writeHead(500, { 'content-type': 'text/plain', 'content-length': 5, connection: 'close' });
          res.end('500\r\n');
        } else res.destroy();
      }
    });
    h1.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => {});
      this.#onConnect(req, socket, head).catch(() => socket.destroy());
    });
    // WebSocket and other upgrades are not tunnelled on egress (yet): an explicit answer.
    h1.on('upgrade', (_req: http.IncomingMessage, socket: Duplex) => {
      socket.on('error', () => {});
      // Behind a response still being written: answered after it, not in its middle.
      if (responseInFlight(socket)) refuseUpgradeWhenIdle(socket);
      else rawReply(socket, 400, 'upgrade is not served on the egress listener\r\n');
    });
    this.#http = h1;
    this.#net = net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => this.#onConnection(s));
    this.#net.maxConnections = limits.maxConnectionsPerListener;
    this.#net.on('error', () => {});
  }

  get bound(): boolean {
    return this.#bound;
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onErr = (err: Error) => reject(err);
      this.#net.once('error', onErr);
      this.#net.listen({ host: this.spec.host, port: this.spec.port }, () => {
        this.#net.off('error', onErr);
        this.#bound = true;
        const a = this.#net.address() as AddressInfo;
        this.#port = a.port;
        resolve(a);
      });
    });
  }

  #track(s: Duplex): void {
    this.#sockets.add(s);
    s.once('close', () => this.#sockets.delete(s));
  }

  #onConnection(socket: net.Socket): void {
    socket.on('error', () => {});
    this.#track(socket);
    const remoteIp = stripV4Mapped(socket.remoteAddress ?? '');
    const conn: EgressConn = {
      remoteIp,
      remotePort: socket.remotePort ?? 0,
      localIp: stripV4Mapped(socket.localAddress ?? ''),
      localPort: socket.localPort ?? 0,
      srcIp: remoteIp,
      srcPort: socket.remotePort ?? 0,
      cachedVersion: -1,
    };
    if (!this.spec.sourceIdentity.includes('proxyProtocol')) {
      this.#serveHttp(socket, conn);
      return;
    }
    readProxyHeader(socket, { timeoutMs: this.#limits.headersTimeoutMs }).then(
      (hdr) => {
        // A throw in here would be an unhandled rejection (the process ends): fail closed.
        try {
          conn.proxyHeader = hdr;
          if (hdr.command === 'PROXY' && hdr.source) {
            conn.srcIp = stripV4Mapped(hdr.source.address);
            conn.srcPort = hdr.source.port;
          }
          if (hdr.rest.length > 0) socket.unshift(hdr.rest);
          const dest = hdr.command === 'PROXY' ? hdr.destination : undefined;
          if (dest && !this.#isSelf(dest, conn)) this.#onTransparent(socket, conn, dest);
          else this.#serveHttp(socket, conn);
        } catch {
          this.#failClosed(socket);
        }
      },
      () => socket.destroy(),
    );
    // Accepted paused (pauseOnConnect): let the header bytes in. readProxyHeader
    // pauses the socket again once it has the header.
    socket.resume();
  }

  /**
   * An internal error on a connection's path (a throw where no reply can be written):
   * reset it, nothing dialled, counted as l7warden_upstream_errors_total{kind="internal"}.
   */
  #failClosed(socket: Duplex): void {
    try {
      this.#ctx.flows.upstreamError(this.spec.name, 'internal');
    } catch {
      /* counting must not stop the reset */
    }
    reset(socket);
  }

  /** A PROXY destination that is this listener: the client meant the forward proxy. */
  #isSelf(dest: ProxyAddress, conn: EgressConn): boolean {
    if (dest.port !== this.#port) return false;
    const d = normalizeIP(dest.address);
    return d !== undefined && (d === normalizeIP(conn.localIp) || d === normalizeIP(this.spec.host));
  }

  #serveHttp(socket: net.Socket, conn: EgressConn): void {
    attachConn(socket, conn);
    this.#http.emit('connection', socket);
    process.nextTick(() => socket.resume());
  }

  /** The tunnel's HTTP requests go through the same server, with the destination fixed. */
  #serveTunnelHttp(socket: Duplex, conn: EgressConn, tunnel: Tunnel): void {
    conn.tunnel = tunnel;
    attachConn(socket, conn);
    this.#http.emit('connection', socket);
    process.nextTick(() => (socket as net.Socket).resume?.());
  }

  async #onConnect(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const start = process.hrtime.bigint();
    // Pipelined behind a request refused as malformed: no tunnel (http/downstream.ts).
    if (connectionRefused(socket)) {
      socket.end();
      return;
    }
    // Pipelined behind a request whose response is still being written: Node hands the
    // socket over anyway, and a tunnel would start in the middle of that response
    // (ingress refuses upgrades the same way, http/server.ts). 400 after it, then close.
    if (responseInFlight(socket)) {
      refuseUpgradeWhenIdle(socket);
      return;
    }
    const conn = egressConnOf(socket);
    if (!conn || conn.tunnel) {
      rawReply(socket, 400, 'CONNECT is not served here\r\n');
      return;
    }
    if (req.rawHeaders.length / 2 > this.#limits.maxHeadersCount) {
      rawReply(socket, 431, '431\r\n');
      return;
    }
    // A CONNECT has no content (RFC 9110 §9.3.6): with Transfer-Encoding or a non-zero
    // Content-Length, the bytes after the head are a body to one parser and tunnel data
    // to another. Envoy answers 501 (integration_test.cc ConnectWithTEChunked): 400 here.
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const n = req.rawHeaders[i]!.toLowerCase();
      if (n === 'transfer-encoding' || (n === 'content-length' && Number(req.rawHeaders[i + 1]) !== 0)) {
        rawReply(socket, 400, 'CONNECT with a body\r\n');
        return;
      }
    }
    const target = req.url ?? '';
    if (!isValidAuthority(target)) {
      rawReply(socket, 400, 'CONNECT needs host:port\r\n');
      return;
    }
    const { host, port } = splitAuthority(target, 0);
    if (port === 0 || host === '') {
      rawReply(socket, 400, 'CONNECT needs host:port\r\n');
      return;
    }
    const snap = this.#ctx.snapshot();
    if (!snap) {
      rawReply(socket, 503, 'no policy loaded\r\n');
      return;
    }
    const src = sourceOf(this.#ctx, conn, snap);
    const literal = net.isIP(host) !== 0;
    const names = literal ? undefined : [host];
    const info: HttpFlowInfo = {
      method: 'CONNECT',
      url: target,
      protocol: req.httpVersion === '1.0' ? 'HTTP/1.0' : 'HTTP/1.1',
      headers: req.rawHeaders,
      direction: 'EGRESS',
      ...(names ? { names } : {}),
    };
    let ips: readonly string[] | undefined;
    const memo = (conn.memo ??= new ResolveMemo());
    ips = memo.get(host, snap.version, Date.now());
    if (!ips) {
      const r = await resolveThroughDns(this.#ctx.resolver(), host, { address: conn.srcIp, port: conn.srcPort }, this.#limits.dnsUpstreamTimeoutMs + 1000);
      if (!r.ok) {
        const f = resolveFailureStatus(r.reason);
        rawReply(socket, f.status, f.body);
        if (f.status === 403) this.#recordRefused(snap, conn, src, info, port, start);
        return;
      }
      ips = r.ips;
      if (names) memo.set(host, ips, r.ttl, snap.version, Date.now());
    }
    if (socket.destroyed) return;
    const d = decideIps(snap, src, ips, port, undefined, undefined);
    if (!d.v.allowed && (d.v.egress?.sniMissing || d.v.ingress?.sniMissing)) {
      await this.#connectBySni(socket, head, conn, snap, src, ips, port, info, start, literal ? undefined : host);
      return;
    }
    const flows = this.#ctx.flows;
    const srcPeer: FlowPeer = { ip: conn.srcIp, port: conn.srcPort, identity: src };
    const dstPeer: FlowPeer = { ip: d.ip, port, identity: d.dst };
    flows.request(snap, srcPeer, dstPeer, info, d.v);
    const respond = (code: number) => flows.response(snap, srcPeer, dstPeer, info, d.v.type, code, start);
    if (!d.v.allowed || this.#parserOf(d.v) === 'dns') {
      rawReply(socket, 403, DENY_BODY.toString('latin1'));
      respond(403);
      return;
    }
    const term = d.v.egress?.terminatingTLS;
    if (term) {
      let opts: tls.TlsOptions;
      try {
        opts = this.#upstreams.terminating(term);
      } catch {
        rawReply(socket, 502, 'interception certificate unusable\r\n');
        respond(502);
        return;
      }
      socket.write(ESTABLISHED);
      respond(200);
      if (head.length > 0) socket.unshift(head);
      this.#intercept(socket, conn, opts, { ip: d.ip, port, ...(literal ? {} : { name: host }), originatingTLS: d.v.egress?.originatingTLS });
      return;
    }
    if (this.#parserOf(d.v) === 'http') {
      socket.write(ESTABLISHED);
      respond(200);
      if (head.length > 0) socket.unshift(head);
      this.#serveTunnelHttp(socket, conn, { ip: d.ip, port, tls: false, ...(literal ? {} : { name: host }) });
      return;
    }
    this.#dial(d.ip, port, socket, head, {
      connected: () => {
        socket.write(ESTABLISHED);
        respond(200);
      },
      failed: (timeout) => {
        const status = timeout ? 504 : 503;
        flows.upstreamError(this.spec.name, timeout ? 'timeout' : 'connect');
        rawReply(socket, status, timeout ? 'upstream timeout\r\n' : 'upstream unavailable\r\n');
        respond(status);
      },
    });
  }

  /**
   * A CONNECT that only rules with serverNames could allow (Envoy's TLS inspector
   * in Cilium): answer it, read the client's ClientHello without terminating it, and
   * decide again with its SNI. Allowed: dial and send the ClientHello first (or, for a
   * rule with terminatingTLS, intercept as usual). Denied, no SNI, or no ClientHello
   * within headersTimeoutMs: the tunnel is reset (the client has its 200 already) and
   * nothing is dialled.
   */
  async #connectBySni(
    socket: Duplex,
    head: Buffer,
    conn: EgressConn,
    snap: PolicySnapshot,
    src: Identity,
    ips: readonly string[],
    port: number,
    info: HttpFlowInfo,
    start: bigint,
    name: string | undefined,
  ): Promise<void> {
    socket.write(ESTABLISHED);
    const hello = await readClientHello(socket, head, this.#limits.headersTimeoutMs);
    const sni = hello?.result.kind === 'sni' ? hello.result.name : undefined;
    const d = decideIps(snap, src, ips, port, undefined, sni);
    const flows = this.#ctx.flows;
    const srcPeer: FlowPeer = { ip: conn.srcIp, port: conn.srcPort, identity: src };
    const dstPeer: FlowPeer = { ip: d.ip, port, identity: d.dst };
    const term = d.v.egress?.terminatingTLS;
    const parser = this.#parserOf(d.v);
    // L7 rules need the TLS terminated (terminatingTLS) to see inside; DNS rules never tunnel.
    if (hello === undefined || socket.destroyed || !d.v.allowed || parser === 'dns' || (parser === 'http' && !term)) {
      // The tunnel is reset: a request record and no response record (as l3DenyAction reset).
      const denied: Verdict = d.v.allowed ? { ...d.v, allowed: false, dropReason: 'POLICY_DENIED' } : d.v;
      flows.request(snap, srcPeer, dstPeer, info, denied, true);
      reset(socket);
      return;
    }
    flows.request(snap, srcPeer, dstPeer, info, d.v);
    const respond = (code: number) => flows.response(snap, srcPeer, dstPeer, info, d.v.type, code, start);
    if (term) {
      let opts: tls.TlsOptions;
      try {
        opts = this.#upstreams.terminating(term);
      } catch {
        respond(502);
        reset(socket);
        return;
      }
      respond(200);
      socket.unshift(hello.bytes);
      this.#intercept(socket, conn, opts, { ip: d.ip, port, ...(name ? { name } : {}), originatingTLS: d.v.egress?.originatingTLS });
      return;
    }
    this.#dial(d.ip, port, socket, hello.bytes, {
      connected: () => respond(200),
      failed: (timeout) => {
        flows.upstreamError(this.spec.name, timeout ? 'timeout' : 'connect');
        respond(timeout ? 504 : 503);
        reset(socket);
      },
    });
  }

  /** The L7 parser the applying rules want on this connection, if any. */
  #parserOf(v: Verdict): 'http' | 'dns' | undefined {
    if (v.type !== 'L7') return undefined;
    const e = v.egress?.type === 'L7' ? v.egress.l7 : undefined;
    const i = v.ingress?.type === 'L7' ? v.ingress.l7 : undefined;
    if (e === 'dns' || i === 'dns') return 'dns';
    return e ?? i;
  }

  #recordRefused(snap: PolicySnapshot, conn: EgressConn, src: Identity, info: HttpFlowInfo, port: number, start: bigint): void {
    const flows = this.#ctx.flows;
    if (!flows.active) return;
    const v: Verdict = { allowed: false, type: 'L3_L4', dropReason: 'POLICY_DENIED', decidedBy: 'egress', headerActions: [] };
    const srcPeer: FlowPeer = { ip: conn.srcIp, port: conn.srcPort, identity: src };
    const dstPeer: FlowPeer = { ip: '0.0.0.0', port, identity: snap.identityForIP('0.0.0.0') };
    flows.request(snap, srcPeer, dstPeer, info, v);
    flows.response(snap, srcPeer, dstPeer, info, 'L3_L4', 403, start);
  }

  /** Terminate the client's TLS; the HTTP inside goes to the request handler with the tunnel fixed. */
  #intercept(
    socket: Duplex,
    conn: EgressConn,
    opts: tls.TlsOptions,
    t: { ip: string; port: number; name?: string; originatingTLS?: Tunnel['originatingTLS'] },
  ): void {
    const tlsSocket = new tls.TLSSocket(socket as net.Socket, { isServer: true, ...opts, server: undefined } as tls.TLSSocketOptions);
    tlsSocket.on('error', () => socket.destroy());
    // No resume() on the raw socket: bytes already buffered on it (a ClientHello that
    // arrived with the PROXY header, CONNECT early data) are fed to the TLS socket by
    // its first read, and resuming the raw socket would flow them to nobody.
    this.#track(tlsSocket);
    const timer = setTimeout(() => tlsSocket.destroy(), this.#limits.tlsHandshakeTimeoutMs);
    timer.unref();
    tlsSocket.once('close', () => clearTimeout(timer));
    tlsSocket.once('secure', () => {
      clearTimeout(timer);
      const sn = (tlsSocket as tls.TLSSocket & { servername?: string | false }).servername;
      // Normalised as the ClientHello reader and the Host check do (lowercase, no trailing dot).
      const lower = typeof sn === 'string' ? sn.toLowerCase() : '';
      const sni = (lower.endsWith('.') ? lower.slice(0, -1) : lower) || undefined;
      const served = certificateOf(tlsSocket);
      const inner: EgressConn = {
        remoteIp: conn.remoteIp,
        remotePort: conn.remotePort,
        localIp: conn.localIp,
        localPort: conn.localPort,
        ...(conn.proxyHeader ? { proxyHeader: conn.proxyHeader } : {}),
        srcIp: conn.srcIp,
        srcPort: conn.srcPort,
        cachedVersion: -1,
      };
      const name = t.name ?? sni;
      this.#serveTunnelHttp(tlsSocket, inner, {
        ip: t.ip,
        port: t.port,
        tls: true,
        ...(name ? { name } : {}),
        ...(sni ? { sni } : {}),
        ...(t.originatingTLS ? { originatingTLS: t.originatingTLS } : {}),
        ...(served ? { servedCert: served } : {}),
      });
    });
  }

  /** A transparent connection: the PROXY destination is the original destination. */
  #onTransparent(socket: net.Socket, conn: EgressConn, dest: ProxyAddress): void {
    const snap = this.#ctx.snapshot();
    if (!snap) {
      reset(socket);
      return;
    }
    const ip = stripV4Mapped(dest.address);
    const port = dest.port;
    let d: ReturnType<typeof decideIps>;
    let src: Identity;
    try {
      src = sourceOf(this.#ctx, conn, snap);
      d = decideIps(snap, src, [ip], port, undefined, undefined);
    } catch {
      reset(socket);
      return;
    }
    if (!d.v.allowed && (d.v.egress?.sniMissing || d.v.ingress?.sniMissing)) {
      // Only serverNames rules could allow it: decide again with the ClientHello's SNI
      // (read, not terminated; put back for whatever follows). See #connectBySni.
      void readClientHello(socket, Buffer.alloc(0), this.#limits.headersTimeoutMs).then((hello) => {
        // A throw here (the decision with the SNI, the dial) would be an unhandled
        // rejection that ends the process: fail closed instead.
        try {
          if (hello === undefined || socket.destroyed) {
            this.#transparentDecided(socket, conn, snap, src, ip, port, d);
            return;
          }
          socket.unshift(hello.bytes);
          const sni = hello.result.kind === 'sni' ? hello.result.name : undefined;
          this.#transparentDecided(socket, conn, snap, src, ip, port, sni ? decideIps(snap, src, [ip], port, undefined, sni) : d);
        } catch {
          this.#failClosed(socket);
        }
      });
      return;
    }
    this.#transparentDecided(socket, conn, snap, src, ip, port, d);
  }

  #transparentDecided(socket: net.Socket, conn: EgressConn, snap: PolicySnapshot, src: Identity, ip: string, port: number, d: ReturnType<typeof decideIps>): void {
    const srcPeer: FlowPeer = { ip: conn.srcIp, port: conn.srcPort, identity: src };
    const dstPeer: FlowPeer = { ip, port, identity: d.dst };
    // The names a DNS answer returned this IP for, when the FQDN cache knows it.
    const known = this.#ctx.flows.active ? this.#ctx.resolver()?.namesFor(ip) : undefined;
    const names = known && known.length > 0 ? known : undefined;
    const parser = this.#parserOf(d.v);
    const allowed = d.v.allowed && parser !== 'dns';
    if (!allowed) {
      this.#ctx.flows.connection(snap, srcPeer, dstPeer, d.v.allowed ? { ...d.v, allowed: false, dropReason: 'POLICY_DENIED' } : d.v, 'EGRESS', 'TCP', names);
      reset(socket);
      return;
    }
    const term = d.v.egress?.terminatingTLS;
    if (term) {
      let opts: tls.TlsOptions;
      try {
        opts = this.#upstreams.terminating(term);
      } catch {
        reset(socket);
        return;
      }
      this.#intercept(socket, conn, opts, { ip, port, originatingTLS: d.v.egress?.originatingTLS });
      return;
    }
    if (parser === 'http') {
      this.#serveTunnelHttp(socket, conn, { ip, port, tls: false });
      return;
    }
    this.#ctx.flows.connection(snap, srcPeer, dstPeer, d.v, 'EGRESS', 'TCP', names);
    // The bytes after the PROXY header were unshifted; they flow once spliced.
    this.#dial(ip, port, socket, Buffer.alloc(0), {
      connected: () => {},
      failed: () => reset(socket),
    });
  }

  /**
   * Dial exactly `ip:port`, then splice the client and the destination. `head` is
   * sent first (bytes the client sent after CONNECT). Bounded: connect timeout, then
   * the idle timeout on both sides.
   */
  #dial(ip: string, port: number, client: Duplex, head: Buffer, cb: { connected: () => void; failed: (timeout: boolean) => void }): void {
    const up = net.connect({ host: ip, port, noDelay: true });
    this.#track(up);
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      up.destroy();
      cb.failed(true);
    }, this.#limits.upstreamConnectTimeoutMs);
    timer.unref();
    const onClientGone = () => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        up.destroy();
      }
    };
    client.once('close', onClientGone);
    up.once('error', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      cb.failed(false);
    });
    up.once('connect', () => {
      if (settled) {
        up.destroy();
        return;
      }
      settled = true;
      clearTimeout(timer);
      client.off('close', onClientGone);
      cb.connected();
      if (head.length > 0) up.write(head);
      splice(client, up, this.#limits.idleTimeoutMs);
    });
  }

  async close(drainMs = this.#limits.drainTimeoutMs): Promise<void> {
    this.#bound = false;
    const closed = new Promise<void>((resolve) => this.#net.close(() => resolve()));
    this.#http.closeIdleConnections();
    const deadline = Date.now() + drainMs;
    while (this.#sockets.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      this.#http.closeIdleConnections();
    }
    for (const s of this.#sockets) s.destroy();
    await closed;
    this.#http.close();
    await this.#upstreams.close();
  }
}

/** Copy both ways until either side closes; an idle tunnel is closed after `idleMs`. */
function splice(a: Duplex, b: net.Socket, idleMs: number): void {
  const kill = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', kill);
  b.on('error', kill);
  a.once('close', () => b.destroy());
  b.once('close', () => a.destroy());
  b.setTimeout(idleMs, kill);
  const as = a as Duplex & { setTimeout?: (ms: number, cb: () => void) => void };
  if (typeof as.setTimeout === 'function') as.setTimeout(idleMs, kill);
  a.pipe(b);
  b.pipe(a);
  (a as net.Socket).resume?.();
}
