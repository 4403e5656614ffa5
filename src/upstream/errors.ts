/**
 * What an upstream failure means for the client (SPEC.md Outcomes): down or refused
 * ⇒ 503, no response in time ⇒ 504, TLS verification failed ⇒ 502, anything else
 * before a response ⇒ 502. gRPC callers get UNAVAILABLE (14) for all of them.
 */
export type UpstreamFailure = 'connect' | 'timeout' | 'tls' | 'protocol';

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'CERT_SIGNATURE_FAILURE',
  'HOSTNAME_MISMATCH', 'ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_TLS_HANDSHAKE_TIMEOUT', 'EPROTO',
]);

const CONNECT_CODES = new Set([
  'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT', 'ERR_HTTP2_GOAWAY_SESSION', 'L7W_ERR_UPSTREAM_CONNECT',
]);

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'L7W_ERR_UPSTREAM_TIMEOUT']);

export function classifyUpstreamError(err: unknown): UpstreamFailure {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (TLS_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) return 'tls';
      if (CONNECT_CODES.has(code)) return 'connect';
      if (TIMEOUT_CODES.has(code)) return 'timeout';
    }
    e = (e as { cause?: unknown }).cause;
  }
  return 'protocol';
}

export function failureStatus(f: UpstreamFailure): 502 | 503 | 504 {
  return f === 'connect' ? 503 : f === 'timeout' ? 504 : 502;
}
