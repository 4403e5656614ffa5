/**
 * Per-request enforcement on the egress listener (HTTP/1.1):
 *
 *  - forward proxy: an absolute-form request `GET http://host:port/path`; the host
 *    is an IP literal or a name resolved through the DNS listener (egress/resolve.ts),
 *    so the destination identity is `identityForIP(ip)` — FQDN-learned IPs carry
 *    their `fqdn:` labels;
 *  - inside an inspected tunnel (CONNECT or transparent, plaintext or intercepted
 *    TLS): the destination was fixed when the tunnel was decided; each request is
 *    decided again with its HTTP attributes.
 *
 * The checks are the ingress path's: request-guard (`checkH1`), the one
 * canonicalizer, header hygiene (`forwardHeaders`), the 403 body, 503/504/502 for
 * upstream failures. `snapshot.decide()` makes every verdict; the request is sent
 * to the IP that was decided (one undici Pool per IP:port, never re-resolved).
 * X-Forwarded-For / -Proto are not added on egress (the client's address is not the
 * destination's business); client copies are still stripped.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { X509Certificate } from 'node:crypto';
import type { EgressListener, Limits } from '../config/proxy-config.js';
import type { Identity } from '../identity/identity.js';
import type { TLSContext } from '../policy/api.js';
import type { HeaderAction, HttpAttributes, PolicySnapshot, Verdict } from '../policy/types.js';
import type { DnsProxy } from '../dns/server.js';
import { isUnicastIP, type ProxyHeader } from '../listeners/proxy-protocol.js';
import type { FlowPeer, HttpFlowInfo, HttpFlowRecorder } from '../observe/flow.js';
import { canonicalizeTarget, isValidAuthority, authorityKey } from '../http/canonical-path.js';
import { checkH1, forwardHeaders, RequestAttributes, type RequestFacts } from '../http/request-guard.js';
import { H1Downstream, connectionRefused, type Downstream } from '../http/downstream.js';
import { countBody } from '../http/relay-body.js';
import { DENY_BODY, h1Reject } from '../http/enforce.js';
import { failureStatus, type UpstreamFailure } from '../upstream/errors.js';
import { resolveSourceIdentity } from '../identity/source.js';
import { coversHost } from '../tls/cert-store.js';
import { ResolveMemo, resolveThroughDns, type ResolveFailure } from './resolve.js';
import type { EgressUpstreams } from './upstreams.js';

export interface EgressContext {
  readonly spec: EgressListener;
  readonly limits: Limits;
  readonly snapshot: () => PolicySnapshot | undefined;
  /** The shared Hubble-shape recorder (records say traffic_direction EGRESS) and metrics. */
  readonly flows: HttpFlowRecorder;
  /** The DNS listener's proxy whose resolver (and FQDN cache) names go through. */
  readonly resolver: () => DnsProxy | undefined;
  readonly upstreams: EgressUpstreams;
}

/** The fixed destination of a tunnel (CONNECT or transparent) whose requests are inspected. */
export interface Tunnel {
  readonly ip: string;
  readonly port: number;
  /** The CONNECT host name, or the intercepted SNI: requests must name it in Host. */
  readonly name?: string;
  /** TLS was intercepted: requests are re-originated with TLS to ip:port. */
  readonly tls: boolean;
  readonly sni?: string;
  readonly originatingTLS?: TLSContext;
  readonly servedCert?: X509Certificate;
}

/** What the listener knows about a client connection (attached to its socket). */
export interface EgressConn {
  readonly remoteIp: string;
  readonly remotePort: number;
  readonly localIp: string;
  readonly localPort: number;
  proxyHeader?: ProxyHeader;
  /** The client's address as reported in flows and used for DNS: PROXY source, else the peer. */
  srcIp: string;
  srcPort: number;
  cachedVersion: number;
  cachedSrc?: Identity;
  tunnel?: Tunnel;
  memo?: ResolveMemo;
}

export const EGRESS_CONN: unique symbol = Symbol('l7warden.egress.conn');

export function egressConnOf(socket: unknown): EgressConn | undefined {
  return (socket as { [EGRESS_CONN]?: EgressConn } | null)?.[EGRESS_CONN];
}

export function attachConn(socket: object, conn: EgressConn): void {
  (socket as { [EGRESS_CONN]?: EgressConn })[EGRESS_CONN] = conn;
}

/** The source identity under `snap` (cached per snapshot version on the connection). */
export function sourceOf(ctx: EgressContext, conn: EgressConn, snap: PolicySnapshot): Identity {
  if (conn.cachedSrc && conn.cachedVersion === snap.version) return conn.cachedSrc;
  const r = resolveSourceIdentity(
    ctx.spec.sourceIdentity,
    { remoteAddress: conn.remoteIp, ...(conn.proxyHeader ? { proxyHeader: conn.proxyHeader } : {}) },
    snap,
  );
  conn.cachedVersion = snap.version;
  conn.cachedSrc = r.identity;
  return r.identity;
}

/** host (lowercase, no brackets, no trailing dot) and port of a valid authority. */
export function splitAuthority(a: string, defaultPort: number): { host: string; port: number } {
  let host: string;
  let rest: string;
  if (a.charCodeAt(0) === 91) {
    const close = a.indexOf(']');
    host = a.slice(1, close);
    rest = a.slice(close + 1);
  } else {
    const colon = a.indexOf(':');
    host = colon < 0 ? a : a.slice(0, colon);
    rest = colon < 0 ? '' : a.slice(colon);
  }
  host = host.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  const port = rest.length > 1 ? Number(rest.slice(1)) : defaultPort;
  return { host, port };
}

/** What a failed resolution gets: the DNS policy's refusal is a denial (403); the rest are gateway errors. */
export function resolveFailureStatus(r: ResolveFailure): { status: number; body: string } {
  switch (r) {
    case 'refused':
      return { status: 403, body: DENY_BODY.toString('latin1') };
    case 'invalid':
      return { status: 400, body: 'invalid host name\r\n' };
    case 'nxdomain':
    case 'nodata':
      return { status: 502, body: 'name not resolved\r\n' };
    case 'no-resolver':
      return { status: 502, body: 'no DNS listener to resolve names\r\n' };
    default:
      return { status: 503, body: 'name resolution failed\r\n' };
  }
}

/** headerMatches actions, as the ingress path applies them. */
function applyHeaderActions(headers: string[], actions: readonly HeaderAction[]): void {
  for (const a of actions) {
    if (a.action === 'LOG') continue;
    if (a.action === 'DELETE' || a.action === 'REPLACE') {
      for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i] === a.name) headers.splice(i, 2);
    }
    if ((a.action === 'ADD' || a.action === 'REPLACE') && a.value !== undefined) headers.push(a.name, a.value);
  }
}

/** forwardHeaders without the provenance headers it adds (egress does not disclose the client). */
function egressHeaders(raw: readonly string[], facts: RequestFacts): string[] {
  const h = forwardHeaders(raw, {
    keepTeTrailers: false,
    websocket: false,
    forwardedFor: '',
    forwardedProto: 'http',
    ...(facts.connectionNominated ? { nominated: facts.connectionNominated } : {}),
  });
  for (let i = h.length - 2; i >= 0; i -= 2) {
    const n = h[i];
    if (n === 'x-forwarded-for' || n === 'x-forwarded-proto') h.splice(i, 2);
  }
  return h;
}

function plainReply(ds: Downstream, status: number, close: boolean, body: string): void {
  if (ds.headersSent) {
    ds.abort();
    return;
  }
  if (close) ds.closeAfter();
  const buf = Buffer.from(body);
  ds.respond(status, { 'content-type': 'text/plain', 'content-length': buf.length }, false);
  if (!ds.isHead) ds.write(buf);
  ds.end();
}

/**
 * A destination that is not a unicast address (0.0.0.0 and :: in any spelling, a
 * DNS answer of 0.0.0.0, multicast, broadcast) is never allowed: to the policy it is
 * `world`, but a connect() to 0.0.0.0 or :: reaches this host's own loopback.
 */
const NOT_UNICAST: Verdict = Object.freeze({ allowed: false, type: 'L3_L4', dropReason: 'POLICY_DENIED', decidedBy: 'egress', headerActions: [] }) as Verdict;

/** Pick the first candidate IP the policy allows; else the first IP's denial. */
export function decideIps(
  snap: PolicySnapshot,
  src: Identity,
  ips: readonly string[],
  port: number,
  http: HttpAttributes | undefined,
  sni: string | undefined,
): { ip: string; dst: Identity; v: Verdict } {
  let first: { ip: string; dst: Identity; v: Verdict } | undefined;
  for (let i = 0; i < ips.length && i < 64; i++) {
    const ip = ips[i]!;
    const dst = snap.identityForIP(ip);
    const v = isUnicastIP(ip) ? snap.decide({ src, dst, port, protocol: 'TCP', ...(http ? { http } : {}), ...(sni ? { sni } : {}) }) : NOT_UNICAST;
    if (v.allowed) return { ip, dst, v };
    first ??= { ip, dst, v };
  }
  return first!;
}

/** An HTTP/1.1 request on the egress listener (forward proxy) or inside a tunnel. */
export function handleEgressRequest(ctx: EgressContext, req: IncomingMessage, res: ServerResponse): void {
  // Pipelined behind a request refused as malformed: never forwarded (http/downstream.ts).
  if (connectionRefused(req.socket)) return;
  const start = process.hrtime.bigint();
  const conn = egressConnOf(req.socket);
  if (!conn) {
    h1Reject(res, 500);
    return;
  }
  const facts: RequestFacts = { chunked: false, websocket: false };
  const method = req.method ?? '';
  const url = req.url ?? '';
  const bad = checkH1(method, url, req.httpVersion, req.rawHeaders, ctx.limits, facts);
  if (bad || facts.websocket) {
    h1Reject(res, bad ? bad.status : 400);
    return;
  }
  const hasBody = facts.chunked || (facts.contentLength !== undefined && facts.contentLength > 0);
  const ds = new H1Downstream(req, res, hasBody);
  const canon = canonicalizeTarget(url);
  if (!canon.ok) {
    plainReply(ds, 400, true, 'bad request target\r\n');
    return;
  }
  const authority = facts.authority ?? '';
  if (!isValidAuthority(authority)) {
    plainReply(ds, 400, true, 'bad authority\r\n');
    return;
  }
  const tunnel = conn.tunnel;
  let scheme: 'http' | 'https';
  if (canon.authority !== undefined) {
    const s = canon.scheme ?? 'http';
    if (!isValidAuthority(canon.authority) || authorityKey(canon.authority, s) !== authorityKey(authority, s)) {
      plainReply(ds, 400, true, 'absolute-form authority differs from Host\r\n');
      return;
    }
  }
  if (tunnel) {
    scheme = tunnel.tls ? 'https' : 'http';
    if (canon.authority !== undefined && (canon.scheme ?? 'http') !== scheme) {
      plainReply(ds, 400, true, 'scheme differs from the tunnel\r\n');
      return;
    }
    const host = splitAuthority(authority, 0).host;
    if (tunnel.name !== undefined && host !== tunnel.name) {
      plainReply(ds, 421, false, 'misdirected request\r\n');
      return;
    }
    // The client's SNI must name that host too: serverNames were matched on the SNI,
    // while the request and the re-originated TLS go to the CONNECT name. CONNECT
    // other.test with SNI allowed.test reached other.test (SECURITY.md §5: SNI, Host
    // and the FQDN allow-list bind to one name).
    if (tunnel.sni !== undefined && host !== tunnel.sni) {
      plainReply(ds, 421, false, 'misdirected request\r\n');
      return;
    }
    if (tunnel.servedCert && !coversHost(tunnel.servedCert, authority)) {
      plainReply(ds, 421, false, 'misdirected request\r\n');
      return;
    }
  } else {
    if (canon.authority === undefined) {
      plainReply(ds, 400, true, 'a proxy request needs an absolute-form target (http://host/path)\r\n');
      return;
    }
    scheme = canon.scheme ?? 'http';
  }
  if (ctx.limits.maxBodyBytes > 0 && ds.body) ds.body = countBody(ctx.limits.maxBodyBytes, ds, facts);
  const snap = ctx.snapshot();
  if (!snap) {
    plainReply(ds, 503, false, 'no policy loaded\r\n');
    return;
  }
  const attrs = new RequestAttributes(method, canon.path, authority, req.rawHeaders, facts.connectionNominated);
  if (tunnel) {
    decideAndForward(ctx, { ds, conn, snap, attrs, facts, raw: req.rawHeaders, scheme, start, ips: [tunnel.ip], port: tunnel.port, tunnel });
    return;
  }
  const { host, port } = splitAuthority(canon.authority!, scheme === 'https' ? 443 : 80);
  const src = sourceOf(ctx, conn, snap);
  const memo = (conn.memo ??= new ResolveMemo());
  const now = Date.now();
  const cached = memo.get(host, snap.version, now);
  const names = isIpLiteral(host) ? undefined : [host];
  if (cached) {
    decideAndForward(ctx, { ds, conn, snap, attrs, facts, raw: req.rawHeaders, scheme, start, ips: cached, port, host, names });
    return;
  }
  resolveThroughDns(ctx.resolver(), host, { address: conn.srcIp, port: conn.srcPort }, ctx.limits.dnsUpstreamTimeoutMs + 1000).then(
    (r) => {
      // Already answered while the name was resolving (413: the body crossed
      // maxBodyBytes; queued behind a pipelined response it is not finished, so
      // `closed` is still false). A second answer threw ERR_HTTP_HEADERS_SENT here,
      // inside a promise callback: an unhandled rejection that ended the process.
      if (ds.closed || ds.headersSent) return;
      if (!r.ok) {
        const f = resolveFailureStatus(r.reason);
        if (f.status === 403) {
          deny(ds);
          recordDenied(ctx, snap, conn, src, { method, url: `${scheme}://${authority}${canon.path}`, protocol: ds.protocol, headers: req.rawHeaders, direction: 'EGRESS', ...(names ? { names } : {}) }, port, start);
        } else plainReply(ds, f.status, false, f.body);
        return;
      }
      if (names) memo.set(host, r.ips, r.ttl, snap.version, Date.now());
      decideAndForward(ctx, { ds, conn, snap, attrs, facts, raw: req.rawHeaders, scheme, start, ips: r.ips, port, host, names });
    },
    () => plainReply(ds, 500, false, 'internal error\r\n'),
  );
}

function isIpLiteral(h: string): boolean {
  if (h.includes(':')) return true;
  for (let i = 0; i < h.length; i++) {
    const c = h.charCodeAt(i);
    if (!(c === 46 || (c >= 48 && c <= 57))) return false;
  }
  return h.length > 0;
}

function deny(ds: Downstream): void {
  ds.respond(403, { 'content-type': 'text/plain', 'content-length': DENY_BODY.length }, false);
  if (!ds.isHead) ds.write(DENY_BODY);
  ds.end();
}

/**
 * A name the DNS policy refused: there is no destination IP to decide on. The flow
 * shows a DROPPED request towards world with the source's identity.
 */
function recordDenied(
  ctx: EgressContext,
  snap: PolicySnapshot,
  conn: EgressConn,
  src: Identity,
  info: HttpFlowInfo,
  port: number,
  start: bigint,
): void {
  if (!ctx.flows.active) return;
  const world = snap.identityForIP('0.0.0.0');
  const v: Verdict = { allowed: false, type: 'L3_L4', dropReason: 'POLICY_DENIED', decidedBy: 'egress', headerActions: [] };
  const srcPeer: FlowPeer = { ip: conn.srcIp, port: conn.srcPort, identity: src };
  const dstPeer: FlowPeer = { ip: '0.0.0.0', port, identity: world };
  ctx.flows.request(snap, srcPeer, dstPeer, info, v);
  ctx.flows.response(snap, srcPeer, dstPeer, info, 'L3_L4', 403, start);
}

interface Pending {
  readonly ds: Downstream;
  readonly conn: EgressConn;
  readonly snap: PolicySnapshot;
  readonly attrs: RequestAttributes;
  readonly facts: RequestFacts;
  readonly raw: readonly string[];
  readonly scheme: 'http' | 'https';
  readonly start: bigint;
  readonly ips: readonly string[];
  readonly port: number;
  readonly host?: string;
  readonly names?: readonly string[] | undefined;
  readonly tunnel?: Tunnel;
}

function decideAndForward(ctx: EgressContext, p: Pending): void {
  const { ds, conn, snap, tunnel } = p;
  const src = sourceOf(ctx, conn, snap);
  let d: { ip: string; dst: Identity; v: Verdict };
  try {
    d = decideIps(snap, src, p.ips, p.port, p.attrs, tunnel?.sni);
  } catch {
    plainReply(ds, 500, false, 'internal error\r\n');
    return;
  }
  const { ip, dst } = d;
  // A port whose rules want the DNS parser is not served HTTP (it would bypass DNS inspection).
  const v: Verdict =
    d.v.allowed && ((d.v.egress?.type === 'L7' && d.v.egress.l7 === 'dns') || (d.v.ingress?.type === 'L7' && d.v.ingress.l7 === 'dns'))
      ? { ...d.v, allowed: false, dropReason: 'POLICY_DENIED', headerActions: [] }
      : d.v;
  const flowsOn = ctx.flows.active;
  const srcPeer: FlowPeer = { ip: conn.srcIp, port: conn.srcPort, identity: src };
  const dstPeer: FlowPeer = { ip, port: p.port, identity: dst };
  const names = p.names ?? (tunnel?.name ? [tunnel.name] : undefined);
  const info: HttpFlowInfo = {
    method: p.attrs.method,
    url: `${p.scheme}://${p.attrs.host}${p.attrs.path}`,
    protocol: ds.protocol,
    headers: p.raw,
    direction: 'EGRESS',
    ...(names ? { names } : {}),
  };
  if (flowsOn) ctx.flows.request(snap, srcPeer, dstPeer, info, v);
  if (!v.allowed) {
    deny(ds);
    if (flowsOn) ctx.flows.response(snap, srcPeer, dstPeer, info, v.type, 403, p.start);
    return;
  }
  const headers = egressHeaders(p.raw, p.facts);
  if (v.headerActions.length > 0) applyHeaderActions(headers, v.headerActions);
  let lease: ReturnType<EgressUpstreams['pool']>;
  try {
    lease = ctx.upstreams.pool({
      scheme: p.scheme,
      ip,
      port: p.port,
      ...(p.scheme === 'https' ? { verifyName: tunnel?.name ?? tunnel?.sni ?? p.host ?? ip } : {}),
      ...(tunnel?.originatingTLS ? { originatingTLS: tunnel.originatingTLS } : v.egress?.originatingTLS ? { originatingTLS: v.egress.originatingTLS } : {}),
    });
  } catch {
    plainReply(ds, 502, false, 'upstream TLS configuration unusable\r\n');
    ctx.flows.upstreamError(ctx.spec.name, 'tls');
    if (flowsOn) ctx.flows.response(snap, srcPeer, dstPeer, info, v.type, 502, p.start);
    return;
  }
  lease.up.forward(ds, p.attrs.method, p.attrs.path, p.attrs.host, headers, {
    onDone(status) {
      lease.release();
      if (flowsOn) ctx.flows.response(snap, srcPeer, dstPeer, info, v.type, status, p.start);
    },
    onFailure(f: UpstreamFailure) {
      lease.release();
      const status = failureStatus(f);
      plainReply(ds, status, false, f === 'connect' ? 'upstream unavailable\r\n' : f === 'timeout' ? 'upstream timeout\r\n' : 'upstream error\r\n');
      ctx.flows.upstreamError(ctx.spec.name, f);
      if (flowsOn) ctx.flows.response(snap, srcPeer, dstPeer, info, v.type, status, p.start);
    },
  });
}
