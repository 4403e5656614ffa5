/**
 * ProxyConfig (l7warden.io/v1alpha1): listeners, upstreams, admin, limits, flow log.
 * These are the types after validation with every default applied; docs/config.md
 * documents each field. Validation lives in config/validate-proxy-config.ts.
 */

export type SourceIdentityMethod = 'proxyProtocol' | 'clientCertificate' | 'sourceAddress';

export interface SecretOrDirRef {
  /** `namespace/name` of a Secret document, or of a certs/<ns>/<name>/ directory. */
  readonly secret: string;
}

export interface ListenerTLS extends SecretOrDirRef {
  /** Extra certificates chosen by SNI; the first (`secret`) is the default. */
  readonly sni?: readonly SecretOrDirRef[];
  /** Client certificates: `request` asks and verifies when sent; `require` refuses without one. */
  readonly clientAuth?: 'none' | 'request' | 'require';
  /** Secret whose ca.crt verifies client certificates (defaults to the listener's own secret's ca.crt). */
  readonly clientCA?: string;
}

export interface UpstreamTLS {
  /** Secret with ca.crt that verifies the upstream. Absent: the system CAs. */
  readonly secret?: string;
  /** Name the upstream certificate must carry (and SNI sent); default: the upstream URL's host. */
  readonly servername?: string;
  /** Off only when written explicitly; never off by default. */
  readonly insecureSkipVerify: boolean;
}

export interface EndpointRef {
  readonly namespace: string;
  readonly pod: string;
}

export interface Upstream {
  /** As written: http://h:p, https://h:p, or h2c://h:p (HTTP/2 cleartext, for gRPC). */
  readonly url: string;
  readonly protocol: 'http' | 'https' | 'h2c';
  readonly host: string;
  readonly port: number;
}

interface ListenerBase {
  readonly name: string;
  readonly address: string; // host:port as written
  readonly host: string;
  readonly port: number;
}

export interface IngressListener extends ListenerBase {
  readonly mode: 'ingress';
  readonly endpoint: EndpointRef;
  readonly upstream: Upstream;
  /**
   * The destination port policy sees: the port the protected pod listens on (the
   * `toPorts` port). Default: the upstream URL's port. Lets a demo or a test run the
   * upstream on a high port while the policy keeps saying `port: "80"`.
   */
  readonly endpointPort?: number;
  readonly upstreamTLS?: UpstreamTLS;
  readonly tls?: ListenerTLS;
  /** Ordered; the first method that yields an identity wins. Default [sourceAddress]. */
  readonly sourceIdentity: readonly SourceIdentityMethod[];
  /** What a source with no L3/L4 allow gets on this HTTP listener: 403 (default) or a reset. */
  readonly l3DenyAction: 'forbidden' | 'reset';
}

export interface EgressListener extends ListenerBase {
  readonly mode: 'egress';
  readonly sourceIdentity: readonly SourceIdentityMethod[];
  /** Secret with ca.crt used to verify re-originated TLS when a rule intercepts; default system CAs. */
  readonly upstreamCA?: string;
  /**
   * Name of the `dns` listener whose DnsProxy resolves the names in forward-proxy
   * requests and CONNECT targets (so the answers are decided and learned like any
   * query). Default: the only dns listener; none ⇒ only IP literals are served.
   */
  readonly dnsListener?: string;
}

export interface DnsListener extends ListenerBase {
  readonly mode: 'dns';
  /** Resolver the allowed queries go to, host:port. */
  readonly upstream: { readonly host: string; readonly port: number };
  readonly sourceIdentity: readonly SourceIdentityMethod[];
  /** What a denied query gets (Cilium's --tofqdns-dns-reject-response-code). */
  readonly rejectResponseCode: 'refused' | 'nameError';
  /**
   * The identity of the DNS server for policy purposes: `namespace/pod` of a Pod
   * document, or absent to look the upstream's IP up in the IP cache.
   */
  readonly serverEndpoint?: EndpointRef;
}

export type ListenerSpec = IngressListener | EgressListener | DnsListener;

export interface Limits {
  readonly maxRequestHeadersKb: number;     // 60
  readonly maxHeadersCount: number;         // 100
  readonly maxUrlBytes: number;             // 16384
  readonly headersTimeoutMs: number;        // 10000
  readonly requestTimeoutMs: number;        // 300000
  readonly idleTimeoutMs: number;           // 60000
  readonly tlsHandshakeTimeoutMs: number;   // 10000
  readonly upstreamConnectTimeoutMs: number; // 2000 (Cilium's Envoy)
  readonly upstreamTimeoutMs: number;       // 60000: no response headers by then => 504
  readonly http2MaxConcurrentStreams: number; // 100
  readonly maxConnectionsPerListener: number; // 10000
  readonly maxBodyBytes: number;            // 0 = unlimited (streamed, never buffered)
  readonly dnsMaxInFlight: number;          // 1000
  readonly dnsMinTtlSeconds: number;        // 0
  readonly dnsMaxTtlSeconds: number;        // 0 = no maximum (Cilium has none)
  readonly dnsMaxIpsPerHostname: number;    // 1000
  readonly dnsUpstreamTimeoutMs: number;    // 5000
  readonly drainTimeoutMs: number;          // 15000
}

export interface FlowLogSpec {
  /** "-" for stdout, a path, or "" for off. */
  readonly file: string;
  readonly format: 'json';
  readonly nodeName: string;
  /** Rotate the file before it grows past this many bytes (absent: never rotate). */
  readonly maxBytes?: number;
  /** Files kept when rotating, the live one included (default 5). */
  readonly maxFiles?: number;
}

export interface ProxyConfigSpec {
  readonly admin?: { readonly address: string; readonly host: string; readonly port: number };
  readonly listeners: readonly ListenerSpec[];
  /** Cilium's --enable-policy. */
  readonly enforcement: 'default' | 'always' | 'never';
  readonly limits: Limits;
  readonly flowLog: FlowLogSpec;
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxRequestHeadersKb: 60,
  maxHeadersCount: 100,
  maxUrlBytes: 16384,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  idleTimeoutMs: 60_000,
  tlsHandshakeTimeoutMs: 10_000,
  upstreamConnectTimeoutMs: 2_000,
  upstreamTimeoutMs: 60_000,
  http2MaxConcurrentStreams: 100,
  maxConnectionsPerListener: 10_000,
  maxBodyBytes: 0,
  dnsMaxInFlight: 1000,
  dnsMinTtlSeconds: 0,
  dnsMaxTtlSeconds: 0,
  dnsMaxIpsPerHostname: 1000,
  dnsUpstreamTimeoutMs: 5_000,
  drainTimeoutMs: 15_000,
});
