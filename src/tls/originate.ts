/**
 * Originating TLS (proxy → upstream): the options the upstream client needs, and a
 * classifier for failed verification so the caller answers 502.
 *
 * Rules (SECURITY.md §5): verify the chain and the name; the name is the configured
 * `servername` or the upstream URL's host — never the client's Host; verification is
 * off only when `insecureSkipVerify: true` is written; no plaintext fallback.
 *
 *   const tlsOpts = originateOptions(listener.upstream, listener.upstreamTLS, docs.secrets);
 *   new undici.Pool(origin, { connect: tlsOpts.undiciConnect, allowH2: ... });
 *   http2.connect(`https://${host}:${port}`, tlsOpts.http2);
 *   ...
 *   catch (err) { const f = classifyUpstreamTLSError(err); if (f) → 502, log f.code }
 *
 * A trust change (new CA) must come with a new Pool / http2 session: undici caches
 * TLS sessions per servername, and a resumed session skips verification.
 */
import { checkServerIdentity, createSecureContext, type PeerCertificate, type ConnectionOptions, type SecureContext } from 'node:tls';
import { isIP } from 'node:net';
import type { UpstreamTLS } from '../config/proxy-config.js';
import type { SecretDoc } from '../config/documents.js';
import { WardenError } from '../core/errors.js';
import { parsePemBundle, type SecretSource } from './cert-store.js';

export interface OriginateTLS {
  /** Name verified against the upstream certificate (DNS name or IP). */
  readonly verifyName: string;
  /** SNI sent; absent for an IP (RFC 6066 forbids IP SNI). */
  readonly servername?: string;
  /** CA bundle (PEM); absent means node's bundled roots. */
  readonly ca?: readonly string[];
  readonly insecureSkipVerify: boolean;
  /**
   * Built once: passing `ca` per connection would make node build a new context
   * (and parse the bundle) on every connect.
   */
  readonly secureContext: SecureContext;
  /** For undici `new Pool(origin, { connect })` (its connector passes these to tls.connect). */
  readonly undiciConnect: ConnectionOptions;
  /** For `http2.connect(authority, options)`. */
  readonly http2: ConnectionOptions;
}

function indexSecrets(secrets: SecretSource): ReadonlyMap<string, SecretDoc> {
  if (!Array.isArray(secrets)) return secrets as ReadonlyMap<string, SecretDoc>;
  const m = new Map<string, SecretDoc>();
  for (const s of secrets as readonly SecretDoc[]) m.set(`${s.namespace}/${s.name}`, s);
  return m;
}

/** The CA bundle in a Secret's ca.crt, validated. Throws WardenError L7W_ERR_TLS naming the secret. */
export function caFromSecret(secrets: SecretSource, ref: string): string {
  const doc = indexSecrets(secrets).get(ref);
  if (!doc) throw new WardenError('L7W_ERR_TLS', `secret ${ref}: not found (no Secret document and no certs/<ns>/<name>/ directory)`);
  const ca = doc.data['ca.crt'];
  if (!ca || ca.length === 0) throw new WardenError('L7W_ERR_TLS', `secret ${ref}: ca.crt is missing (needed to verify the upstream)`);
  const pem = ca.toString('utf8');
  try { parsePemBundle(pem); } catch (err) {
    throw new WardenError('L7W_ERR_TLS', `secret ${ref}: ca.crt is not a valid PEM certificate bundle`, { cause: err });
  }
  return pem;
}

/**
 * Refuse to run with verification disabled process-wide. Our options set
 * rejectUnauthorized explicitly (which wins over the variable), but other clients in
 * the process would not: fail at startup instead (SECURITY.md §5).
 */
export function assertVerificationEnv(env: NodeJS.ProcessEnv = process.env): void {
  if (env['NODE_TLS_REJECT_UNAUTHORIZED'] === '0') {
    throw new WardenError('L7W_ERR_TLS', 'NODE_TLS_REJECT_UNAUTHORIZED=0 disables certificate verification; unset it (use upstreamTLS.insecureSkipVerify per upstream if you must)');
  }
}

/**
 * Build upstream TLS options.
 * @param upstream the configured upstream (its host is the default name to verify)
 * @param tlsSpec  the listener's upstreamTLS (or an egress rule's originatingTLS mapped to it)
 * @param alpn     protocols to offer; default by client (undici sets its own from allowH2)
 */
export function originateOptions(
  upstream: { readonly host: string },
  tlsSpec: UpstreamTLS | undefined,
  secrets: SecretSource,
  alpn?: readonly ('h2' | 'http/1.1')[],
): OriginateTLS {
  const rawName = tlsSpec?.servername ?? upstream.host;
  // Strip IPv6 brackets, lowercase, drop one trailing dot (SNI never carries it).
  let verifyName = rawName.startsWith('[') && rawName.endsWith(']') ? rawName.slice(1, -1) : rawName;
  verifyName = verifyName.toLowerCase();
  if (verifyName.endsWith('.')) verifyName = verifyName.slice(0, -1);
  if (verifyName === '') throw new WardenError('L7W_ERR_TLS', 'upstream TLS: no server name to verify');
  const ip = isIP(verifyName) !== 0;
  const ca = tlsSpec?.secret ? [caFromSecret(secrets, tlsSpec.secret)] : undefined;
  const insecure = tlsSpec?.insecureSkipVerify === true;

  // Always check against verifyName, whatever host the socket connects to: the
  // connect address may be an IP while the policy-allowed name is a DNS name.
  const check = insecure
    ? (): undefined => undefined
    : (_host: string, cert: PeerCertificate): Error | undefined => checkServerIdentity(verifyName, cert);

  // No `ca`: the context gets node's bundled roots (the `ca` option would replace them).
  const secureContext = createSecureContext({ minVersion: 'TLSv1.2', ...(ca ? { ca: [...ca] } : {}) });
  const base: ConnectionOptions = {
    secureContext,
    rejectUnauthorized: !insecure,
    checkServerIdentity: check,
    ...(ip ? {} : { servername: verifyName }),
  };
  return {
    verifyName,
    ...(ip ? {} : { servername: verifyName }),
    ...(ca ? { ca } : {}),
    insecureSkipVerify: insecure,
    secureContext,
    undiciConnect: { ...base, ...(alpn ? { ALPNProtocols: [...alpn] } : {}) },
    http2: { ...base, ALPNProtocols: ['h2'] },
  };
}

/** OpenSSL X509_V_ERR_* names node reports, plus node's own name-mismatch codes. */
const VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_CRL', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE', 'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED', 'CRL_NOT_YET_VALID', 'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD', 'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD', 'OUT_OF_MEM', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_CHAIN_TOO_LONG', 'CERT_REVOKED',
  'INVALID_CA', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_TLS_CERT_ALTNAME_FORMAT', 'INVALID_CALL', 'UNSPECIFIED',
]);

export interface UpstreamTLSFailure {
  /** `verification`: the upstream's certificate was not trusted for the name; `handshake`: TLS failed otherwise. */
  readonly kind: 'verification' | 'handshake';
  /** The underlying code (e.g. ERR_TLS_CERT_ALTNAME_INVALID, UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_SSL_WRONG_VERSION_NUMBER). */
  readonly code: string;
  readonly message: string;
}

/**
 * Is this upstream error a TLS failure? Walks `cause` chains and AggregateError
 * members (undici and fetch wrap socket errors). Returns undefined for non-TLS
 * errors (refused, reset before TLS, timeouts): the caller maps those itself.
 */
export function classifyUpstreamTLSError(err: unknown): UpstreamTLSFailure | undefined {
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  for (let steps = 0; queue.length > 0 && steps < 16; steps++) {
    const e = queue.shift();
    if (e === null || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    const message = e instanceof Error ? e.message : String(e);
    if (typeof code === 'string') {
      if (VERIFY_CODES.has(code)) return { kind: 'verification', code, message };
      if (code.startsWith('ERR_SSL_') || code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || code === 'ERR_TLS_INVALID_PROTOCOL_VERSION') {
        return { kind: 'handshake', code, message };
      }
    }
    const cause = (e as { cause?: unknown }).cause;
    if (cause !== undefined) queue.push(cause);
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors)) queue.push(...errors.slice(0, 8));
  }
  return undefined;
}

/** The WardenError for a classified failure (L7W_ERR_UPSTREAM_TLS), or undefined. */
export function upstreamTLSError(err: unknown, upstream: string): WardenError | undefined {
  const f = classifyUpstreamTLSError(err);
  if (!f) return undefined;
  const what = f.kind === 'verification' ? 'certificate verification failed' : 'TLS handshake failed';
  return new WardenError('L7W_ERR_UPSTREAM_TLS', `upstream ${upstream}: ${what} (${f.code})`, { cause: err });
}
