/**
 * An ingress listener: a reverse proxy in front of one endpoint (SPEC.md
 * "ProxyConfig"). One TCP port serves HTTP/1.1 and HTTP/2:
 *
 *   accept ─▶ [PROXY v1/v2 header, only when sourceIdentity lists proxyProtocol;
 *              a connection without a valid one is refused]
 *          ─▶ [TLS with ALPN h2/http/1.1 and SNI certificates, when `tls` is set]
 *          ─▶ cleartext: sniff the `PRI * HTTP/2.0` preface (h2c prior knowledge)
 *          ─▶ http.Server or Http2Server via emit('connection')
 *
 * What was learned about the connection (peer address, PROXY header, client
 * certificate, served certificate, SNI) is attached to the socket as ConnInfo; the
 * identity is resolved per request against the snapshot current for that request.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type * as http from 'node:http';
import type * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { IngressListener, Limits } from '../config/proxy-config.js';
import type { SecretDoc } from '../config/documents.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { HttpFlowRecorder } from '../observe/flow.js';
import { CONN_INFO, type ConnInfo, type EnforceContext } from '../http/enforce.js';
import { createProtocolServers, type ProtocolServers } from '../http/server.js';
import { H1Upstream } from '../upstream/h1.js';
import { H2Upstream } from '../upstream/h2.js';
import { readProxyHeader } from './proxy-protocol.js';
import { ListenerCertificates, certificateOf } from '../tls/cert-store.js';
import { originateOptions } from '../tls/originate.js';
import { clientCertificateOf } from '../identity/source.js';
import type { UpstreamTarget } from '../http/websocket.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export interface IngressDeps {
  readonly limits: Limits;
  readonly snapshot: () => PolicySnapshot | undefined;
  readonly flows: HttpFlowRecorder;
  readonly secrets: readonly SecretDoc[];
}

export class IngressListenerServer {
  readonly spec: IngressListener;
  readonly #limits: Limits;
  readonly #net: net.Server;
  readonly #servers: ProtocolServers;
  readonly #h1?: H1Upstream;
  readonly #h2?: H2Upstream;
  readonly #certs?: ListenerCertificates;
  readonly #sockets = new Set<net.Socket>();
  readonly #connInfo = new WeakMap<net.Socket, ConnInfo>();
  readonly #tls?: tls.Server;
  /** Drain: HTTP/1 connections and the response each is writing now. */
  readonly #h1Conns = new Set<net.Socket>();
  readonly #h1Current = new WeakMap<net.Socket, http.ServerResponse>();
  #draining = false;
  #bound = false;

  constructor(spec: IngressListener, deps: IngressDeps) {
    this.spec = spec;
    this.#limits = deps.limits;
    const u = spec.upstream;
    let wsTarget: UpstreamTarget | undefined;
    if (u.protocol === 'h2c') {
      this.#h2 = new H2Upstream({ upstream: u, limits: deps.limits });
    } else if (u.protocol === 'http') {
      this.#h1 = new H1Upstream({ upstream: u, limits: deps.limits });
      wsTarget = { protocol: 'http', host: u.host, port: u.port };
    } else {
      // https: HTTP/1.1 through undici; gRPC through node:http2 with ALPN h2.
      const o = originateOptions(u, spec.upstreamTLS, deps.secrets);
      const insecure = o.insecureSkipVerify;
      this.#h1 = new H1Upstream({
        upstream: u,
        limits: deps.limits,
        connect: { ...o.undiciConnect, ALPNProtocols: ['http/1.1'] },
        ...(o.servername ? { servername: o.servername } : {}),
        insecureSkipVerify: insecure,
      });
      this.#h2 = new H2Upstream({ upstream: u, limits: deps.limits, connect: o.http2 });
      wsTarget = { protocol: 'https', host: u.host, port: u.port, tls: { ...(o.undiciConnect as object), ALPNProtocols: ['http/1.1'] } as https.RequestOptions };
    }
    const ctx: EnforceContext & { ws?: UpstreamTarget } = {
      spec,
      limits: deps.limits,
      snapshot: deps.snapshot,
      flows: deps.flows,
      port: spec.endpointPort ?? u.port,
      upstreamIp: u.host,
      ...(this.#h1 ? { h1: this.#h1 } : {}),
      ...(this.#h2 ? { h2: this.#h2 } : {}),
      ...(wsTarget ? { ws: wsTarget } : {}),
    };
    this.#servers = createProtocolServers(ctx);
    // Drain support: remember each HTTP/1 connection's current response so a drain
    // can mark it `Connection: close`; requests that start while draining get it too.
    this.#servers.h1.on('connection', (s: net.Socket) => {
      this.#h1Conns.add(s);
      s.once('close', () => this.#h1Conns.delete(s));
    });
    this.#servers.h1.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (this.#draining) res.shouldKeepAlive = false;
      else this.#h1Current.set(req.socket, res);
    });
    if (spec.tls) {
      this.#certs = ListenerCertificates.load(spec.tls, deps.secrets);
      this.#tls = this.#makeTlsServer(this.#certs);
    }
    this.#net = net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => this.#onConnection(s));
    this.#net.maxConnections = deps.limits.maxConnectionsPerListener;
    this.#net.on('error', () => {});
  }

  get bound(): boolean {
    return this.#bound;
  }

  /** Client connections open now (the l7warden_open_connections gauge). */
  get openConnections(): number {
    return this.#sockets.size;
  }

  /** The certificate table, for reloads by the owner. */
  get certificates(): ListenerCertificates | undefined {
    return this.#certs;
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onErr = (err: Error) => reject(err);
      this.#net.once('error', onErr);
      this.#net.listen({ host: this.spec.host, port: this.spec.port }, () => {
        this.#net.off('error', onErr);
        this.#bound = true;
        resolve(this.#net.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo | undefined {
    const a = this.#net.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  #onConnection(socket: net.Socket): void {
    socket.on('error', () => {});
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    const info: ConnInfo = {
      remoteIp: stripV4Mapped(socket.remoteAddress ?? ''),
      remotePort: socket.remotePort ?? 0,
      localIp: stripV4Mapped(socket.localAddress ?? ''),
      localPort: socket.localPort ?? 0,
      tls: this.spec.tls !== undefined,
      cachedVersion: -1,
    };
    if (this.spec.sourceIdentity.includes('proxyProtocol')) {
      readProxyHeader(socket, { timeoutMs: this.#limits.headersTimeoutMs }).then(
        (hdr) => {
          info.proxyHeader = hdr;
          if (hdr.command === 'PROXY' && hdr.source) info.proxySrc = { ip: hdr.source.address, port: hdr.source.port };
          if (hdr.rest.length > 0) socket.unshift(hdr.rest);
          this.#afterProxy(socket, info, true);
        },
        () => socket.destroy(),
      );
      // Accepted paused (pauseOnConnect): without this the header bytes never arrive.
      // readProxyHeader pauses the socket again once it has the header.
      socket.resume();
      return;
    }
    this.#afterProxy(socket, info, false);
  }

  #afterProxy(socket: net.Socket, info: ConnInfo, proxied: boolean): void {
    if (!this.#tls) {
      this.#sniff(socket, info);
      return;
    }
    this.#connInfo.set(socket, info);
    this.#tls.emit('connection', socket);
    // After a PROXY header the socket may hold bytes already read (a ClientHello in
    // the header's segment, unshifted above): the TLS socket's first read feeds them
    // to the handshake; resuming the raw socket would flow them to nobody.
    if (!proxied) socket.resume();
  }

  /** A non-listening tls.Server does the handshakes (SNI, ALPN, client certificates, timeout). */
  #makeTlsServer(certs: ListenerCertificates): tls.Server {
    const opts = certs.serverOptions();
    const server = tls.createServer({ ...opts, handshakeTimeout: this.#limits.tlsHandshakeTimeoutMs });
    certs.attach(server);
    server.on('tlsClientError', (_err, s) => s.destroy());
    server.on('error', () => {});
    server.on('secureConnection', (tlsSocket: tls.TLSSocket) => {
      tlsSocket.on('error', () => {});
      const raw = (tlsSocket as unknown as { _parent?: net.Socket })._parent;
      const info = raw ? this.#connInfo.get(raw) : undefined;
      if (!info) {
        tlsSocket.destroy();
        return;
      }
      const served = certificateOf(tlsSocket);
      if (served) info.servedCert = served;
      const sn = (tlsSocket as tls.TLSSocket & { servername?: string | false }).servername;
      if (typeof sn === 'string' && sn) info.sni = sn;
      if (opts.requestCert) info.clientCert = clientCertificateOf(tlsSocket);
      (tlsSocket as unknown as Record<symbol, ConnInfo>)[CONN_INFO] = info;
      if (tlsSocket.alpnProtocol === 'h2') this.#servers.h2.emit('connection', tlsSocket);
      else this.#servers.h1.emit('connection', tlsSocket);
    });
    return server;
  }

  /** Cleartext: HTTP/2 prior knowledge starts with the preface; anything else is HTTP/1. */
  #sniff(socket: net.Socket, info: ConnInfo): void {
    (socket as unknown as Record<symbol, ConnInfo>)[CONN_INFO] = info;
    let buf: Buffer | undefined;
    const timer = setTimeout(() => socket.destroy(), this.#limits.headersTimeoutMs);
    timer.unref();
    const onData = (chunk: Buffer) => {
      buf = buf ? Buffer.concat([buf, chunk]) : chunk;
      const n = Math.min(buf.length, PREFACE.length);
      const prefixMatches = buf.compare(PREFACE, 0, n, 0, n) === 0;
      if (prefixMatches && n < PREFACE.length) return; // need more bytes to tell
      socket.off('data', onData);
      socket.off('close', onClose);
      clearTimeout(timer);
      socket.pause();
      socket.unshift(buf);
      if (prefixMatches) this.#servers.h2.emit('connection', socket);
      else {
        this.#servers.h1.emit('connection', socket);
        // We paused it; the HTTP/1 server's 'data' listener does not undo an explicit pause.
        process.nextTick(() => socket.resume());
      }
    };
    const onClose = () => clearTimeout(timer);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  }

  /**
   * Stop accepting, let in-flight requests finish (HTTP/2 gets GOAWAY), then after
   * `drainMs` destroy what is left.
   */
  async close(drainMs = this.#limits.drainTimeoutMs): Promise<void> {
    this.#draining = true;
    const closed = new Promise<void>((resolve) => this.#net.close(() => resolve()));
    // In-flight HTTP/1 responses not yet started announce `Connection: close`; ones
    // already started finish and their connection is closed as soon as it is idle.
    for (const s of this.#h1Conns) {
      const res = this.#h1Current.get(s);
      if (res && !res.headersSent) res.shouldKeepAlive = false;
    }
    this.#servers.h1.closeIdleConnections();
    for (const s of this.#servers.sessions) s.close();
    const deadline = Date.now() + drainMs;
    while (this.#sockets.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      this.#servers.h1.closeIdleConnections();
    }
    for (const s of this.#sockets) s.destroy();
    await closed;
    this.#servers.h1.close();
    this.#servers.h2.close();
    await Promise.all([this.#h1?.close(), this.#h2?.close()]);
  }
}

function stripV4Mapped(a: string): string {
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}
