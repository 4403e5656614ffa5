/**
 * Security identities: a numeric id for a set of labels (CILIUM-SEMANTICS.md §6).
 * Labels are strings `source:key=value` (`k8s:app=web`, `reserved:world`,
 * `cidr:10.0.0.0/8`, `fqdn:*.example.com`).
 */

/** Cilium's reserved numbers (pkg/identity/numericidentity.go). */
export const Reserved = Object.freeze({
  unknown: 0,
  host: 1,
  world: 2,
  unmanaged: 3,
  health: 4,
  init: 5,
  remoteNode: 6,
  kubeApiserver: 7,
  ingress: 8,
  worldIPv4: 9,
  worldIPv6: 10,
});

/** Reserved label name (after `reserved:`) for each reserved number. */
export const RESERVED_NAMES: Readonly<Record<number, string>> = Object.freeze({
  1: 'host',
  2: 'world',
  3: 'unmanaged',
  4: 'health',
  5: 'init',
  6: 'remote-node',
  7: 'kube-apiserver',
  8: 'ingress',
  9: 'world-ipv4',
  10: 'world-ipv6',
});

/** First cluster-local allocated identity, and the last one for cluster-id 0. */
export const MIN_ALLOCATED = 256;
export const MAX_ALLOCATED = 65535;
/** Local scope (CIDR / FQDN identities): 1<<24 | n. */
export const LOCAL_SCOPE = 1 << 24;

export interface Identity {
  readonly id: number;
  /** Sorted `source:key=value` strings (value omitted when empty, e.g. `reserved:world`). */
  readonly labels: readonly string[];
  /**
   * Label lookup for selector matching: both `source:key` and `any:key` map to the
   * value, so a sourced selector requirement is one Map lookup. Built once.
   */
  readonly lookup: ReadonlyMap<string, string>;
  /** For CIDR identities: the prefix this identity stands for. */
  readonly cidr?: string;
  /** For FQDN-learned identities: the toFQDNs selector keys that selected the name. */
  readonly fqdnSelectors?: ReadonlySet<string>;
  /** Namespace of the pods that carry this identity ("" for reserved / CIDR / FQDN). */
  readonly namespace: string;
}

/** A Pod the proxy knows: a local endpoint whose policy it enforces. */
export interface Endpoint {
  readonly namespace: string;
  readonly name: string;
  readonly identity: Identity;
  readonly ips: readonly string[];
  /** Container port names (lowercased) to numbers, for named ports in policy. */
  readonly namedPorts: ReadonlyMap<string, { port: number; protocol: 'TCP' | 'UDP' | 'SCTP' }>;
}
