/**
 * Everything that makes a request malformed or ambiguous, checked before a policy
 * decision, and the header hygiene applied before forwarding (SECURITY.md §1.4–§1.7,
 * §3.4 "must be added by the proxy"). Node's strict parser (never
 * `insecureHTTPParser`) has already rejected CL+TE, duplicate CL, obs-fold and
 * invalid bytes on HTTP/1; the checks here close what it lets through:
 *
 *  - header count over the limit ⇒ 431 (the server's `maxHeadersCount` is set above
 *    the limit so Node never truncates silently); header bytes over the limit ⇒ 431
 *  - URL longer than `maxUrlBytes` ⇒ 414
 *  - Transfer-Encoding other than exactly `chunked` (case-insensitive), TE on
 *    HTTP/1.0, TE with Content-Length, duplicate Content-Length or Host ⇒ 400
 *  - methods that are not upper-case tokens, CONNECT ⇒ 400
 *  - header names with `_` (CGI upstreams fold them into `-`) ⇒ 400
 *  - `Upgrade: h2c` / `HTTP2-Settings` ⇒ 400 (never forwarded, never tunnelled)
 *  - HTTP/2: `host` ≠ `:authority`, an invalid authority ⇒ 400
 *  - Content-Length above `maxBodyBytes` ⇒ 413 (streamed bodies are counted while
 *    forwarding)
 *
 * Forwarded headers (`forwardHeaders`): hop-by-hop headers are dropped (Connection
 * and what it nominates, Keep-Alive, Proxy-*, TE except `te: trailers` towards an
 * HTTP/2 upstream, Trailer, Transfer-Encoding, Upgrade except for an allowed
 * WebSocket upgrade, HTTP2-Settings), pseudo-headers are dropped, and client copies
 * of provenance headers are dropped (`x-forwarded-*`, `forwarded`, `x-real-ip`,
 * `x-envoy-*`, `x-l7warden-*`, `x-forwarded-client-cert`). `X-Forwarded-For` is
 * **replaced** with the proxy's own view of the client address (the PROXY-protocol
 * source when one was given, else the peer address) and `X-Forwarded-Proto` with the
 * scheme the client used: the upstream sees where the request really came from, and
 * the client's copy never reaches it nor influences identity.
 */
import type { Limits } from '../config/proxy-config.js';
import type { HttpAttributes } from '../policy/types.js';

export interface GuardFailure {
  readonly status: 400 | 413 | 414 | 431;
  readonly reason: string;
}

/** Lowercase names of headers never forwarded as the client sent them. */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings', 'host',
  'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port',
  'x-forwarded-prefix', 'x-forwarded-client-cert', 'x-real-ip',
]);

function isDroppedByPrefix(lname: string): boolean {
  // x-envoy-*, x-l7warden-*, proxy-*
  const c = lname.charCodeAt(0);
  if (c === 120 /* x */) return lname.startsWith('x-envoy-') || lname.startsWith('x-l7warden-') || lname.startsWith('x-forwarded-');
  if (c === 112 /* p */) return lname.startsWith('proxy-');
  return false;
}

function isUpperToken(m: string): boolean {
  if (m.length === 0 || m.length > 32) return false;
  for (let i = 0; i < m.length; i++) {
    const c = m.charCodeAt(i);
    // upper-case letters, digits, and the tchar punctuation that methods use
    if (!((c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 45 || c === 95)) return false;
  }
  return true;
}

function hasToken(list: string, token: string): boolean {
  // comma-separated, case-insensitive
  let start = 0;
  const l = list.toLowerCase();
  while (start <= l.length) {
    let end = l.indexOf(',', start);
    if (end < 0) end = l.length;
    if (l.slice(start, end).trim() === token) return true;
    start = end + 1;
  }
  return false;
}

export interface RequestFacts {
  /** Content-Length as a number when present (validated digits). */
  contentLength?: number;
  chunked: boolean;
  /** An `Upgrade: websocket` request (GET, Connection: upgrade). */
  websocket: boolean;
  /** Host header value (HTTP/1) or :authority (HTTP/2). */
  authority?: string;
  /** Headers named by `Connection` (lowercase), dropped when forwarding. */
  connectionNominated?: Set<string>;
}

const DIGITS = /^[0-9]{1,15}$/;
const NO_FACTS_SET: ReadonlySet<string> = new Set();

/**
 * Check an HTTP/1.x request's head. `raw` is `req.rawHeaders`.
 * Returns a failure or fills `facts`.
 */
export function checkH1(
  method: string,
  url: string,
  httpVersion: string,
  raw: readonly string[],
  limits: Limits,
  facts: RequestFacts,
): GuardFailure | undefined {
  if (raw.length / 2 > limits.maxHeadersCount) return { status: 431, reason: 'too many headers' };
  if (url.length > limits.maxUrlBytes) return { status: 414, reason: 'request target too long' };
  if (!isUpperToken(method)) return { status: 400, reason: 'invalid method' };
  if (method === 'CONNECT') return { status: 400, reason: 'CONNECT is not served on an ingress listener' };
  let hosts = 0;
  let cls = 0;
  let tes = 0;
  let bytes = url.length;
  let connection: string | undefined;
  let upgrade: string | undefined;
  const maxBytes = limits.maxRequestHeadersKb * 1024;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    bytes += name.length + value.length + 4;
    if (name.includes('_')) return { status: 400, reason: 'underscore in header name' };
    const n = name.length;
    // Only a few names matter here; compare by length first to stay cheap.
    if (n === 4 || n === 7 || n === 10 || n === 14 || n === 17) {
      const l = name.toLowerCase();
      if (l === 'host') {
        hosts++;
        facts.authority = value;
      } else if (l === 'upgrade') upgrade = value;
      else if (l === 'connection') connection = connection === undefined ? value : connection + ', ' + value;
      else if (l === 'content-length') {
        cls++;
        if (!DIGITS.test(value)) return { status: 400, reason: 'invalid Content-Length' };
        facts.contentLength = Number(value);
      } else if (l === 'http2-settings') {
        return { status: 400, reason: 'HTTP2-Settings is not accepted' };
      } else if (l === 'transfer-encoding') {
        tes++;
        if (value.toLowerCase() !== 'chunked') return { status: 400, reason: 'unsupported Transfer-Encoding' };
        facts.chunked = true;
      }
    }
  }
  if (bytes > maxBytes) return { status: 431, reason: 'request headers too large' };
  if (hosts !== 1) return { status: 400, reason: hosts === 0 ? 'missing Host' : 'duplicate Host' };
  if (cls > 1) return { status: 400, reason: 'duplicate Content-Length' };
  if (tes > 1) return { status: 400, reason: 'duplicate Transfer-Encoding' };
  if (tes > 0 && cls > 0) return { status: 400, reason: 'Content-Length with Transfer-Encoding' };
  if (tes > 0 && httpVersion === '1.0') return { status: 400, reason: 'Transfer-Encoding on HTTP/1.0' };
  if (upgrade !== undefined) {
    if (hasToken(upgrade, 'h2c')) return { status: 400, reason: 'Upgrade: h2c is not accepted' };
    if (upgrade.trim().toLowerCase() === 'websocket' && connection !== undefined && hasToken(connection, 'upgrade')) {
      if (method !== 'GET') return { status: 400, reason: 'WebSocket upgrade must be GET' };
      facts.websocket = true;
    }
  }
  if (connection !== undefined) {
    for (const tok of connection.toLowerCase().split(',')) {
      const t = tok.trim();
      if (t && t !== 'close' && t !== 'keep-alive' && t !== 'upgrade') {
        (facts.connectionNominated ??= new Set()).add(t);
      }
    }
  }
  if (limits.maxBodyBytes > 0 && facts.contentLength !== undefined && facts.contentLength > limits.maxBodyBytes)
    return { status: 413, reason: 'request body too large' };
  return undefined;
}

/**
 * Check an HTTP/2 request's headers (from the core `stream` event). `raw` is the
 * flat `[name, value, …]` array Node passes as `rawHeaders`; names are lowercase.
 */
export function checkH2(
  method: string | undefined,
  path: string | undefined,
  authority: string | undefined,
  raw: readonly string[],
  limits: Limits,
  facts: RequestFacts,
): GuardFailure | undefined {
  let count = 0;
  let bytes = 0;
  let host: string | undefined;
  let hosts = 0;
  let cls = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    bytes += name.length + value.length + 32;
    if (name.charCodeAt(0) === 58 /* : */) continue;
    count++;
    if (name.includes('_')) return { status: 400, reason: 'underscore in header name' };
    if (name === 'host') {
      hosts++;
      host = value;
    } else if (name === 'content-length') {
      cls++;
      if (!DIGITS.test(value)) return { status: 400, reason: 'invalid content-length' };
      facts.contentLength = Number(value);
    } else if (name === 'http2-settings' || name === 'upgrade') {
      return { status: 400, reason: `${name} is not accepted on HTTP/2` };
    }
  }
  if (count > limits.maxHeadersCount) return { status: 431, reason: 'too many headers' };
  if (bytes > limits.maxRequestHeadersKb * 1024) return { status: 431, reason: 'request headers too large' };
  if (method === undefined || !isUpperToken(method)) return { status: 400, reason: 'invalid method' };
  if (method === 'CONNECT') return { status: 400, reason: 'CONNECT is not served on an ingress listener' };
  if (path === undefined) return { status: 400, reason: 'missing :path' };
  if (path.length > limits.maxUrlBytes) return { status: 414, reason: 'request target too long' };
  if (hosts > 1 || cls > 1) return { status: 400, reason: 'duplicate host or content-length' };
  if (authority === undefined) {
    if (host === undefined) return { status: 400, reason: 'missing :authority' };
    facts.authority = host;
  } else {
    if (host !== undefined && host !== authority) return { status: 400, reason: 'host differs from :authority' };
    facts.authority = authority;
  }
  if (limits.maxBodyBytes > 0 && facts.contentLength !== undefined && facts.contentLength > limits.maxBodyBytes)
    return { status: 413, reason: 'request body too large' };
  return undefined;
}

export interface ForwardOptions {
  /** Keep exactly `te: trailers` (HTTP/2 upstream). */
  readonly keepTeTrailers: boolean;
  /** Keep Connection: upgrade / Upgrade: websocket (an allowed WebSocket upgrade). */
  readonly websocket: boolean;
  /** Value for X-Forwarded-For (the proxy's view of the client). */
  readonly forwardedFor: string;
  readonly forwardedProto: 'http' | 'https';
  readonly nominated?: ReadonlySet<string>;
}

/**
 * The headers to forward, as a flat `[name, value, …]` array with lowercase names,
 * duplicates kept in order (undici and node:http2 both take this shape).
 * `cookie` fields from HTTP/2 are joined with "; " into one (HTTP/1 needs one line).
 */
export function forwardHeaders(raw: readonly string[], opts: ForwardOptions): string[] {
  const out: string[] = [];
  const nominated = opts.nominated ?? NO_FACTS_SET;
  let cookie: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58) continue; // pseudo-header
    const l = name.toLowerCase();
    if (HOP_BY_HOP.has(l)) {
      if (l === 'te' && opts.keepTeTrailers && raw[i + 1]!.trim().toLowerCase() === 'trailers') {
        out.push('te', 'trailers');
      }
      continue;
    }
    if (isDroppedByPrefix(l) || nominated.has(l)) continue;
    if (l === 'expect') continue; // undici refuses it; Node answered 100-continue already
    if (l === 'cookie') {
      cookie = cookie === undefined ? raw[i + 1]! : cookie + '; ' + raw[i + 1]!;
      continue;
    }
    out.push(l, raw[i + 1]!);
  }
  if (cookie !== undefined) out.push('cookie', cookie);
  if (opts.websocket) out.push('connection', 'upgrade', 'upgrade', 'websocket');
  out.push('x-forwarded-for', opts.forwardedFor, 'x-forwarded-proto', opts.forwardedProto);
  return out;
}

/** Response headers never copied back to the client (and that HTTP/2 refuses). */
export const RESPONSE_HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'trailer', 'te', 'http2-settings',
]);

/**
 * Lazy header lookup over a raw header array: the policy calls `header(name)` only
 * for rules with headerMatches, so nothing is built for the common request.
 * Several values are joined with "," and the whole list is matched (SECURITY.md §1.5),
 * exactly as Envoy's HeaderUtility::getAllOfHeaderAsString does for Cilium's `headers`
 * and `headerMatches` (separator ","): a policy value "a,b" matches the two fields
 * `a` and `b`, and neither field alone.
 * `cookie` is the exception: its fields are joined with "; ", the value
 * `forwardHeaders` sends upstream, and the one Envoy's HTTP/2 codec builds from
 * cookie crumbs before any matcher runs (reconstituteCrumbledCookies, RFC 9113
 * §8.2.3). Joined with "," the decision saw a value ("a=b,c=d") the upstream never got.
 */
export function rawHeaderLookup(raw: readonly string[]): (name: string) => string | undefined {
  return (name: string) => {
    const sep = name === 'cookie' ? '; ' : ',';
    let v: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!;
      if (n.length !== name.length || n.toLowerCase() !== name) continue;
      v = v === undefined ? raw[i + 1]! : v + sep + raw[i + 1]!;
    }
    return v;
  };
}

/**
 * The request as the policy sees it (`HttpAttributes`): method, canonical path and
 * authority are given; header values are looked up lazily from the raw headers, so
 * a rule without header matchers never builds the lookup.
 *
 * Security: a header rule sees the fields the upstream gets, as `forwardHeaders`
 * writes them, not the client's. Fields the proxy drops (hop-by-hop, `Expect`,
 * `x-envoy-*`, `proxy-*`, the client's `X-Forwarded-*`, `Forwarded`, `X-Real-IP`)
 * are absent, and `X-Forwarded-For` / `-Proto` are the proxy's own values, or absent
 * where it sends none (egress). Before, a rule on `x-forwarded-for: 10.9.9.9` was
 * satisfied by a client claiming that address, and the upstream got the request with
 * the proxy's value instead (found by the Envoy HTTP/2 differential, 717072d). Envoy
 * decides after its connection manager has rewritten these fields, so its filter sees
 * what it forwards too. `Host` stays visible: it is forwarded as the authority.
 * Fields the client nominated in `Connection` are absent too (hop-by-hop, dropped
 * before forwarding): seen by the policy, a nominated field satisfied a header rule
 * and the upstream got the request without it (81fa2e2).
 */
export class RequestAttributes implements HttpAttributes {
  #lookup: ((n: string) => string | undefined) | undefined;
  constructor(
    readonly method: string,
    readonly path: string,
    readonly host: string,
    private readonly raw: readonly string[],
    /** Lowercase names the client nominated in `Connection`. */
    private readonly nominated: ReadonlySet<string> | undefined,
    /** The X-Forwarded-For the proxy sends (undefined: none is sent). */
    private readonly forwardedFor?: string,
    /** The X-Forwarded-Proto the proxy sends (undefined: none is sent). */
    private readonly forwardedProto?: string,
    /** `TE: trailers` is forwarded (toward an HTTP/2 upstream). */
    private readonly keepTeTrailers = false,
  ) {}
  header(name: string): string | undefined {
    if (name === 'x-forwarded-for') return this.forwardedFor;
    if (name === 'x-forwarded-proto') return this.forwardedProto;
    if (name !== 'host' && (HOP_BY_HOP.has(name) || isDroppedByPrefix(name) || name === 'expect')) {
      return name === 'te' && this.keepTeTrailers ? forwardedTe(this.raw) : undefined;
    }
    if (this.nominated?.has(name)) return undefined;
    return (this.#lookup ??= rawHeaderLookup(this.raw))(name);
  }
}

/** The `te` value forwardHeaders sends with keepTeTrailers: one `trailers` per field that says so. */
function forwardedTe(raw: readonly string[]): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length !== 2 || n.toLowerCase() !== 'te' || raw[i + 1]!.trim().toLowerCase() !== 'trailers') continue;
    v = v === undefined ? 'trailers' : v + ',trailers';
  }
  return v;
}
