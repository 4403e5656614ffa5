/**
 * The source identity of a connection, from the methods a listener lists in
 * `sourceIdentity`, in order; the first that yields an identity wins (SPEC.md
 * "Identity"):
 *
 *  - proxyProtocol: the PROXY header's source address, looked up in the IP cache.
 *    Only on listeners that require the header (the listener reads it; see
 *    listeners/proxy-protocol.ts). A LOCAL header or one without addresses yields
 *    nothing here.
 *  - clientCertificate: a *verified* client certificate whose one URI SAN is a
 *    SPIFFE ID `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` → the identity of that
 *    namespace + service account. An unverified certificate never yields one.
 *  - sourceAddress: the socket's remote address in the IP cache (unknown = world).
 *
 * If no method yields one, the source is `reserved:world`, as Cilium treats an
 * unknown source.
 */
import { X509Certificate } from 'node:crypto';
import type { SourceIdentityMethod } from '../config/proxy-config.js';
import type { PolicySnapshot } from '../policy/types.js';
import { Reserved, type Identity } from './identity.js';
import type { ProxyHeader } from '../listeners/proxy-protocol.js';
import { sanEntries } from '../tls/cert-store.js';

export const NAMESPACE_LABEL = 'k8s:io.kubernetes.pod.namespace';
export const SERVICE_ACCOUNT_LABEL = 'k8s:io.cilium.k8s.policy.serviceaccount';

export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly uri: string;
}

// SPIFFE ID spec: trust domain [a-z0-9.-_], path segments of [A-Za-z0-9.-_];
// Kubernetes narrows ns to a DNS-1123 label and the SA to a DNS-1123 subdomain.
const SPIFFE_RE = /^spiffe:\/\/([a-z0-9._-]{1,255})\/ns\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\/sa\/([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$/;

/** Parse a Kubernetes-style SPIFFE ID; undefined for anything else (no percent-encoding, no extra segments). */
export function parseSpiffeId(uri: string): SpiffeId | undefined {
  const m = SPIFFE_RE.exec(uri);
  if (!m) return undefined;
  const [, trustDomain, namespace, , serviceAccount] = m;
  if (!trustDomain || !namespace || !serviceAccount) return undefined;
  return { trustDomain, namespace, serviceAccount, uri };
}

/** The peer certificate as node gives it (`getPeerCertificate()`), or parsed. */
export type PeerCert = X509Certificate | { readonly raw?: Buffer; readonly subjectaltname?: string };

/**
 * The SPIFFE ID of a certificate: exactly one URI SAN is required (X509-SVID spec
 * §2); two URIs, a non-SPIFFE URI, or a malformed one yield undefined.
 */
export function spiffeIdOf(cert: PeerCert): SpiffeId | undefined {
  let san: string | undefined;
  if (cert instanceof X509Certificate) san = cert.subjectAltName;
  else if (cert.raw && cert.raw.length > 0) san = new X509Certificate(cert.raw).subjectAltName;
  else san = cert.subjectaltname;
  const uris = sanEntries(san).filter((e) => e.startsWith('URI:'));
  if (uris.length !== 1) return undefined;
  return parseSpiffeId(uris[0]!.slice(4));
}

const bySnapshot = new WeakMap<PolicySnapshot, Map<string, Identity>>();

/**
 * The identity of a namespace + service account: the pods' identity when every pod
 * with that namespace and SA has the same one; otherwise (no pods, or pods with
 * different labels) the identity of just the two labels, so only selectors on
 * namespace / service account can match it. Memoized per snapshot.
 */
export function identityForServiceAccount(snapshot: PolicySnapshot, namespace: string, serviceAccount: string): Identity {
  let memo = bySnapshot.get(snapshot);
  if (!memo) { memo = new Map(); bySnapshot.set(snapshot, memo); }
  const key = `${namespace}/${serviceAccount}`;
  const hit = memo.get(key);
  if (hit) return hit;
  const ids = new Map<number, Identity>();
  for (const ep of snapshot.endpoints) {
    if (ep.namespace !== namespace) continue;
    if (ep.identity.lookup.get(SERVICE_ACCOUNT_LABEL) !== serviceAccount) continue;
    ids.set(ep.identity.id, ep.identity);
  }
  const only = ids.size === 1 ? [...ids.values()][0] : undefined;
  const identity = only ?? snapshot.identityForLabels([
    `${NAMESPACE_LABEL}=${namespace}`,
    `${SERVICE_ACCOUNT_LABEL}=${serviceAccount}`,
  ].sort());
  memo.set(key, identity);
  return identity;
}

export interface ClientCertificateInput {
  /** `tlsSocket.authorized`: the chain verified against the listener's client CA. */
  readonly authorized: boolean;
  readonly certificate: PeerCert | undefined;
}

export interface CertificateIdentityOptions {
  /** When set, the SPIFFE trust domain must equal it. */
  readonly trustDomain?: string;
}

/** Identity from a client certificate; undefined unless verified and a valid SPIFFE ID. */
export function identityFromClientCertificate(
  snapshot: PolicySnapshot,
  peer: ClientCertificateInput,
  opts: CertificateIdentityOptions = {},
): { identity: Identity; spiffe: SpiffeId } | undefined {
  if (peer.authorized !== true || !peer.certificate) return undefined;
  let spiffe: SpiffeId | undefined;
  try { spiffe = spiffeIdOf(peer.certificate); } catch { return undefined; }
  if (!spiffe) return undefined;
  if (opts.trustDomain !== undefined && spiffe.trustDomain !== opts.trustDomain) return undefined;
  return { identity: identityForServiceAccount(snapshot, spiffe.namespace, spiffe.serviceAccount), spiffe };
}

/**
 * Read what the identity walk needs off a TLS socket. An empty object from
 * getPeerCertificate() means no certificate was sent. The socket must come from a
 * tls.Server (e.g. ListenerCertificates.terminator()): on a bare server-side
 * `new TLSSocket(...)` node never sets `authorized`, so no identity would result.
 */
export function clientCertificateOf(socket: {
  readonly authorized: boolean;
  getPeerCertificate(detailed?: boolean): { raw?: Buffer; subjectaltname?: string } | null;
}): ClientCertificateInput {
  const c = socket.getPeerCertificate(false);
  const present = c !== null && c !== undefined && Buffer.isBuffer(c.raw) && c.raw.length > 0;
  return { authorized: socket.authorized === true, certificate: present ? c : undefined };
}

export interface SourceInput {
  readonly proxyHeader?: ProxyHeader;
  readonly clientCertificate?: ClientCertificateInput;
  /** The socket's remote address (the PROXY sender's, when a PROXY header was read). */
  readonly remoteAddress: string;
}

export interface SourceResult {
  readonly identity: Identity;
  /** The method that produced the identity; 'none' = nothing did, world assumed. */
  readonly method: SourceIdentityMethod | 'none';
  /** The client address to report in flows: the PROXY source if there is one, else the socket's. */
  readonly address: string;
  readonly spiffe?: SpiffeId;
}

function world(snapshot: PolicySnapshot): Identity {
  return snapshot.identities.get(Reserved.world) ?? snapshot.identityForLabels(['reserved:world']);
}

/** Walk `methods` in order; the first that yields an identity wins. */
export function resolveSourceIdentity(
  methods: readonly SourceIdentityMethod[],
  input: SourceInput,
  snapshot: PolicySnapshot,
  opts: CertificateIdentityOptions = {},
): SourceResult {
  const proxied = input.proxyHeader?.command === 'PROXY' ? input.proxyHeader.source : undefined;
  const address = proxied?.address ?? input.remoteAddress;
  for (const m of methods) {
    if (m === 'proxyProtocol') {
      if (proxied) return { identity: snapshot.identityForIP(proxied.address), method: m, address };
    } else if (m === 'clientCertificate') {
      const r = input.clientCertificate && identityFromClientCertificate(snapshot, input.clientCertificate, opts);
      if (r) return { identity: r.identity, method: m, address, spiffe: r.spiffe };
    } else if (m === 'sourceAddress') {
      if (input.remoteAddress) return { identity: snapshot.identityForIP(input.remoteAddress), method: m, address };
    }
  }
  return { identity: world(snapshot), method: 'none', address };
}
