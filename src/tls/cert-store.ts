/**
 * Terminating TLS: certificates from Secrets (documents or certs/<ns>/<name>/ files,
 * both arrive as SecretDoc) turned into SecureContexts, chosen per handshake by SNI.
 *
 * Usage (HTTP data path):
 *
 *   const certs = ListenerCertificates.load(listener.tls, docs.secrets); // throws WardenError L7W_ERR_TLS
 *   const server = http2.createSecureServer({ ...certs.serverOptions(), allowHTTP1: true });
 *   certs.attach(server);                        // reload also swaps the no-SNI default
 *   ...
 *   certs.reload(newListener.tls, newDocs.secrets); // validate all, then swap; old stays on error
 *   ...
 *   if (!coversHost(certificateOf(tlsSocket), authority)) → 421
 *
 * Why a class with a replaceable table: SNICallback reads `this.#table` on every
 * handshake, so swapping the table changes the certificate for new connections
 * without restarting the listener; live connections keep the context they got.
 */
import { constants as cryptoConstants, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { createSecureContext, createServer as createTlsServer, type SecureContext, type TLSSocket, type TlsOptions, type Server as TlsServer } from 'node:tls';
import { randomBytes } from 'node:crypto';
import type { ListenerTLS } from '../config/proxy-config.js';
import type { SecretDoc } from '../config/documents.js';
import { WardenError } from '../core/errors.js';

/** ALPN served by every terminating listener (h2 first: clients that speak it should). */
export const SERVER_ALPN: readonly string[] = Object.freeze(['h2', 'http/1.1']);
export const MIN_TLS_VERSION = 'TLSv1.2' as const;
/**
 * OpenSSL options of every terminating context: no renegotiation (TLS 1.2; 1.3 has
 * none). Envoy (BoringSSL) never accepts one as a server. Node's own limit (3 per 10
 * minutes) did not hold on a bare server-side TLSSocket (egress interception): its
 * ERR_TLS_SESSION_ATTACK only reaches the internal '_tlsError' event, so one tunnel
 * could renegotiate hundreds of times a second, a private-key operation each.
 */
export const SERVER_SECURE_OPTIONS = cryptoConstants.SSL_OP_NO_RENEGOTIATION;

export type SecretSource = readonly SecretDoc[] | ReadonlyMap<string, SecretDoc>;

/** One usable certificate: the leaf, its chain, its key and the context built from them. */
export interface ServingCertificate {
  /** `namespace/name` of the Secret it came from. */
  readonly secret: string;
  readonly leaf: X509Certificate;
  /** Lowercase DNS SANs, as written (wildcards keep their `*.`). */
  readonly dnsNames: readonly string[];
  readonly context: SecureContext;
  /** PEM chain (leaf first) and key: what the server's default context is built from. */
  readonly certPem: string;
  readonly keyPem: string;
}

/** The immutable table one handshake reads: default first, then SNI extras in config order. */
export interface CertTable {
  readonly defaultCert: ServingCertificate;
  readonly all: readonly ServingCertificate[];
  /** Exact DNS SAN → certificate (first in config order wins). */
  readonly exact: ReadonlyMap<string, ServingCertificate>;
  /** `*.suffix` SAN → certificate, keyed by the suffix (`example.com`). */
  readonly wildcard: ReadonlyMap<string, ServingCertificate>;
  /** PEM bundle that verifies client certificates, when client auth is on. */
  readonly clientCA?: string;
  readonly clientAuth: 'none' | 'request' | 'require';
}

/** What `tls.createServer` / `http2.createSecureServer` need from us. */
export interface ServerTLSOptions extends TlsOptions {
  key: string;
  cert: string;
  SNICallback: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;
  ALPNProtocols: string[];
  minVersion: 'TLSv1.2';
  requestCert: boolean;
  rejectUnauthorized: boolean;
  ca?: string;
  /**
   * The default certificate's prebuilt context. `new tls.TLSSocket(sock, {isServer,
   * ...opts})` uses it instead of parsing key and cert again on every connection;
   * tls.createServer ignores it and builds its default from key/cert/ca.
   */
  secureContext: SecureContext;
}

function indexSecrets(secrets: SecretSource): ReadonlyMap<string, SecretDoc> {
  if (!Array.isArray(secrets)) return secrets as ReadonlyMap<string, SecretDoc>;
  const m = new Map<string, SecretDoc>();
  for (const s of secrets as readonly SecretDoc[]) m.set(`${s.namespace}/${s.name}`, s);
  return m;
}

function tlsError(secret: string, what: string, cause?: unknown): WardenError {
  // Never include key bytes or the raw OpenSSL text that could echo them: name the
  // secret and the item only.
  return new WardenError('L7W_ERR_TLS', `secret ${secret}: ${what}`, cause === undefined ? undefined : { cause });
}

function lookupSecret(index: ReadonlyMap<string, SecretDoc>, ref: string): SecretDoc {
  if (!/^[^/\s]+\/[^/\s]+$/.test(ref)) throw tlsError(ref, 'reference must be <namespace>/<name>');
  const doc = index.get(ref);
  if (!doc) throw tlsError(ref, 'not found (no Secret document and no certs/<ns>/<name>/ directory)');
  return doc;
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate in a PEM bundle, parsed (throws on none or an unparsable one). */
export function parsePemBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT_RE) ?? [];
  if (blocks.length === 0) throw new Error('no PEM certificate found');
  return blocks.map((b) => new X509Certificate(b));
}

/** Lowercase DNS SAN entries of a certificate (never the subject CN: RFC 6125 §6.4.4). */
export function dnsSANs(cert: X509Certificate): string[] {
  return sanEntries(cert.subjectAltName)
    .filter((e) => e.startsWith('DNS:'))
    .map((e) => e.slice(4).toLowerCase());
}

/**
 * Split node's `subjectAltName` text ("DNS:a, IP Address:1.2.3.4, URI:x").
 * Node JSON-quotes a value that contains a comma, quote or control character
 * (CVE-2021-44532), so a quoted value is decoded and a name cannot forge a second
 * entry by embedding ", DNS:evil".
 */
export function sanEntries(san: string | undefined): string[] {
  if (!san) return [];
  const out: string[] = [];
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(':', i);
    if (colon < 0) break;
    const type = san.slice(i, colon + 1);
    let j = colon + 1;
    let value: string;
    if (san[j] === '"') {
      // JSON string: find the closing quote that is not escaped.
      let k = j + 1;
      while (k < san.length && san[k] !== '"') k += san[k] === '\\' ? 2 : 1;
      try { value = JSON.parse(san.slice(j, k + 1)) as string; } catch { value = ''; }
      j = k + 1;
    } else {
      const comma = san.indexOf(', ', j);
      const end = comma < 0 ? san.length : comma;
      value = san.slice(j, end);
      j = end;
    }
    out.push(type + value);
    if (san.startsWith(', ', j)) j += 2;
    else if (j < san.length) break; // malformed: stop rather than guess
    i = j;
  }
  return out;
}

function loadServing(doc: SecretDoc, now: number, clientCA: string | undefined): ServingCertificate {
  const secret = `${doc.namespace}/${doc.name}`;
  const crt = doc.data['tls.crt'];
  const key = doc.data['tls.key'];
  if (!crt || crt.length === 0) throw tlsError(secret, 'tls.crt is missing');
  if (!key || key.length === 0) throw tlsError(secret, 'tls.key is missing');
  const certPem = crt.toString('utf8');
  const keyPem = key.toString('utf8');
  let chain: X509Certificate[];
  try { chain = parsePemBundle(certPem); } catch (err) { throw tlsError(secret, 'tls.crt is not a valid PEM certificate', err); }
  let keyObj: KeyObject;
  try { keyObj = createPrivateKey(keyPem); } catch { throw tlsError(secret, 'tls.key is not a valid PEM private key'); }
  const leaf = chain[0]!;
  if (!leaf.checkPrivateKey(keyObj)) throw tlsError(secret, 'tls.key does not match the certificate in tls.crt');
  if (Date.parse(leaf.validTo) < now) throw tlsError(secret, `certificate expired ${leaf.validTo}`);
  if (Date.parse(leaf.validFrom) > now) throw tlsError(secret, `certificate not valid before ${leaf.validFrom}`);
  const dnsNames = dnsSANs(leaf);
  let context: SecureContext;
  try {
    // SNI-chosen contexts replace the default one for the handshake, and with it the
    // store that verifies client certificates: every context carries the client CA.
    context = createSecureContext({ cert: certPem, key: keyPem, minVersion: MIN_TLS_VERSION, secureOptions: SERVER_SECURE_OPTIONS, ...(clientCA ? { ca: clientCA } : {}) });
  } catch (err) {
    throw tlsError(secret, `tls.crt/tls.key rejected by OpenSSL (${(err as { code?: string }).code ?? 'error'})`);
  }
  return { secret, leaf, dnsNames, context, certPem, keyPem };
}

function loadCA(index: ReadonlyMap<string, SecretDoc>, ref: string): string {
  const doc = lookupSecret(index, ref);
  const ca = doc.data['ca.crt'];
  if (!ca || ca.length === 0) throw tlsError(ref, 'ca.crt is missing (needed to verify client certificates)');
  const pem = ca.toString('utf8');
  try { parsePemBundle(pem); } catch (err) { throw tlsError(ref, 'ca.crt is not a valid PEM certificate bundle', err); }
  return pem;
}

/**
 * Validate every certificate a listener names and build its lookup table.
 * Throws `WardenError('L7W_ERR_TLS')` naming the first bad Secret.
 */
export function buildCertTable(listenerTLS: ListenerTLS, secrets: SecretSource, now = Date.now()): CertTable {
  const index = indexSecrets(secrets);
  const clientAuth = listenerTLS.clientAuth ?? 'none';
  const clientCA = clientAuth === 'none' ? undefined : loadCA(index, listenerTLS.clientCA ?? listenerTLS.secret);
  const refs = [listenerTLS.secret, ...(listenerTLS.sni ?? []).map((s) => s.secret)];
  const all: ServingCertificate[] = [];
  for (const ref of new Set(refs)) all.push(loadServing(lookupSecret(index, ref), now, clientCA));
  const exact = new Map<string, ServingCertificate>();
  const wildcard = new Map<string, ServingCertificate>();
  for (const c of all) {
    for (const name of c.dnsNames) {
      if (name.startsWith('*.')) { if (!wildcard.has(name.slice(2))) wildcard.set(name.slice(2), c); }
      else if (!name.includes('*') && !exact.has(name)) exact.set(name, c);
    }
  }
  return { defaultCert: all[0]!, all, exact, wildcard, clientAuth, ...(clientCA ? { clientCA } : {}) };
}

/** Normalize a server name: lowercase, one trailing dot dropped. */
function normName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
}

/**
 * The certificate for an SNI name: an exact DNS SAN first, then a `*.` wildcard
 * covering exactly one label (RFC 6125 §6.4.3), else the default. Never throws.
 */
export function selectCertificate(table: CertTable, servername: string | undefined): ServingCertificate {
  if (!servername) return table.defaultCert;
  const name = normName(servername);
  const hit = table.exact.get(name);
  if (hit) return hit;
  const dot = name.indexOf('.');
  if (dot > 0) {
    const w = table.wildcard.get(name.slice(dot + 1));
    if (w) return w;
  }
  return table.defaultCert;
}

/** Per-listener certificates whose table can be replaced while the server runs. */
export class ListenerCertificates {
  #table: CertTable;
  readonly #servers = new Set<TlsServer>();

  private constructor(table: CertTable) {
    this.#table = table;
  }

  /** Build from config; throws WardenError L7W_ERR_TLS. */
  static load(listenerTLS: ListenerTLS, secrets: SecretSource): ListenerCertificates {
    return new ListenerCertificates(buildCertTable(listenerTLS, secrets));
  }

  get table(): CertTable {
    return this.#table;
  }

  /** The certificate a handshake with this SNI would get now. */
  select(servername: string | undefined): ServingCertificate {
    return selectCertificate(this.#table, servername);
  }

  /**
   * Options for tls.createServer / http2.createSecureServer (add allowHTTP1, limits,
   * handshakeTimeout yourself). The default key/cert answer clients that send no SNI.
   */
  serverOptions(): ServerTLSOptions {
    const t = this.#table;
    return {
      key: t.defaultCert.keyPem,
      cert: t.defaultCert.certPem,
      SNICallback: (servername, cb) => {
        // Must never throw (CVE-2026-21637): any failure falls back to the default.
        let ctx: SecureContext;
        try { ctx = this.select(servername).context; } catch { ctx = this.#table.defaultCert.context; }
        cb(null, ctx);
      },
      ALPNProtocols: [...SERVER_ALPN],
      minVersion: MIN_TLS_VERSION,
      secureOptions: SERVER_SECURE_OPTIONS,
      requestCert: t.clientAuth !== 'none',
      rejectUnauthorized: t.clientAuth === 'require',
      ...(t.clientCA ? { ca: t.clientCA } : {}),
      secureContext: t.defaultCert.context,
    };
  }

  /**
   * A tls.Server that never listens: hand it accepted sockets (after any PROXY
   * header) with `terminator.emit('connection', socket)` and take TLS sockets from
   * its 'secureConnection' event. Use this rather than `new tls.TLSSocket(socket,
   * {isServer: true, ...})`: node sets `authorized` / `authorizationError` (and
   * enforces `rejectUnauthorized`) only in tls.Server's connection handling, so a
   * bare server-side TLSSocket reports every client certificate as unverified.
   * Attached, so `reload` swaps its default context. Listen for 'tlsClientError'.
   */
  terminator(extra: TlsOptions = {}): TlsServer {
    const server = createTlsServer({ ...this.serverOptions(), ...extra });
    this.attach(server);
    return server;
  }

  /** Remember a server so `reload` can also swap its no-SNI default context. */
  attach(server: TlsServer): void {
    this.#servers.add(server);
  }

  detach(server: TlsServer): void {
    this.#servers.delete(server);
  }

  /**
   * Validate the new material completely, then swap it in for new handshakes. On
   * error throws and keeps serving the old table. Same as `install(prepare(…))`.
   */
  reload(listenerTLS: ListenerTLS, secrets: SecretSource): void {
    this.install(this.prepare(listenerTLS, secrets));
  }

  /**
   * The table `install` would serve, validated completely; throws (WardenError
   * L7W_ERR_TLS) without changing anything. Client-auth mode (requestCert) is fixed
   * per server: changing it needs a new listener, so a change is refused here. A hot
   * reload prepares every listener's table before it swaps the policy, so the swap
   * and the certificates either both change or neither does.
   */
  prepare(listenerTLS: ListenerTLS, secrets: SecretSource): CertTable {
    const next = buildCertTable(listenerTLS, secrets);
    if (next.clientAuth !== this.#table.clientAuth) {
      throw new WardenError('L7W_ERR_TLS', `listener clientAuth changed (${this.#table.clientAuth} → ${next.clientAuth}): needs a restart of the listener`);
    }
    return next;
  }

  /**
   * Serve a prepared table to new handshakes. Ticket keys are rotated so a session
   * from before the change is not resumed under the new trust settings (Envoy
   * CVE-2022-21654 class).
   */
  install(next: CertTable): void {
    for (const server of this.#servers) {
      server.setSecureContext({
        key: next.defaultCert.keyPem,
        cert: next.defaultCert.certPem,
        minVersion: MIN_TLS_VERSION,
        secureOptions: SERVER_SECURE_OPTIONS,
        ...(next.clientCA ? { ca: next.clientCA } : {}),
      });
      server.setTicketKeys(randomBytes(48));
    }
    this.#table = next;
  }
}

/** Convenience for callers that never reload: the options only. */
export function serverOptions(listenerTLS: ListenerTLS, secrets: SecretSource): ServerTLSOptions {
  return ListenerCertificates.load(listenerTLS, secrets).serverOptions();
}

const certCache = new WeakMap<TLSSocket, X509Certificate | null>();

/** The certificate this side presented on a server TLS socket, parsed once per socket. */
export function certificateOf(socket: TLSSocket): X509Certificate | undefined {
  const cached = certCache.get(socket);
  if (cached !== undefined) return cached ?? undefined;
  let x: X509Certificate | null = null;
  try {
    const c = socket.getCertificate();
    if (c && 'raw' in c && Buffer.isBuffer(c.raw)) x = new X509Certificate(c.raw);
  } catch { x = null; }
  certCache.set(socket, x);
  return x ?? undefined;
}

/** Host part of a Host / :authority value: port and IPv6 brackets removed; undefined if malformed. */
export function authorityHost(authority: string): string | undefined {
  if (authority.length === 0 || authority.length > 255 + 6) return undefined;
  let host: string;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0) return undefined;
    host = authority.slice(1, end);
    const rest = authority.slice(end + 1);
    if (rest !== '' && !/^:[0-9]{1,5}$/.test(rest)) return undefined;
    if (isIP(host) !== 6) return undefined;
    return host;
  }
  const colon = authority.indexOf(':');
  if (colon >= 0) {
    if (!/^[0-9]{1,5}$/.test(authority.slice(colon + 1))) return undefined;
    host = authority.slice(0, colon);
  } else host = authority;
  if (!/^[A-Za-z0-9._-]+$/.test(host)) return undefined;
  return host;
}

/**
 * Does the certificate cover the server the request names? False means answer 421
 * (SNI/certificate cannot front another name). Uses node's checkHost/checkIP
 * (no home-grown SAN string compare: Envoy CVE-2025-66220), never the subject CN,
 * wildcards only as a whole left-most label.
 */
export function coversHost(cert: X509Certificate | { readonly raw: Buffer } | undefined, authority: string): boolean {
  if (!cert) return false;
  const x = cert instanceof X509Certificate ? cert : new X509Certificate(cert.raw);
  const host = authorityHost(authority);
  if (host === undefined) return false;
  if (isIP(host) !== 0) return x.checkIP(host) !== undefined;
  const name = normName(host);
  if (name === '' || name.startsWith('.')) return false;
  return x.checkHost(name, { subject: 'never', wildcards: true, partialWildcards: false, multiLabelWildcards: false, singleLabelSubdomains: false }) !== undefined;
}
