/**
 * The policy model after parsing and validation: Cilium's `pkg/policy/api` types,
 * already sanitized the way Cilium's `ParseToCiliumRule` does it, so that the
 * compiler never needs to know which document kind a rule came from:
 *
 * - every selector key carries a label source (`k8s:`, `any:`, `reserved:`, ...);
 *   a key written without one is `any:key` (EndpointSelector.Sanitize);
 * - CNP subject selectors carry `k8s:io.kubernetes.pod.namespace=<ns>`; CNP peer
 *   selectors get the policy namespace unless they name a namespace (or namespace
 *   labels, or any `reserved:` key); CCNP peer selectors get
 *   `k8s:io.kubernetes.pod.namespace Exists` (CILIUM-SEMANTICS.md §1.3);
 * - `fromCIDR`/`toCIDR` are folded into `cidrSet` items without `except`;
 * - Kubernetes NetworkPolicy is translated into the same shapes.
 *
 * Nothing here is mutated after parsing.
 */
import type { SourcePos } from '../config/issues.js';

export type PolicyKind = 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy' | 'NetworkPolicy';
export type Direction = 'ingress' | 'egress';
export type RuleSection = 'ingress' | 'ingressDeny' | 'egress' | 'egressDeny';

/** `source:key` always has a source after sanitizing. */
export type SourcedKey = string;

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface SelectorRequirement {
  readonly key: SourcedKey;
  readonly operator: SelectorOperator;
  readonly values: readonly string[];
}

/**
 * A Kubernetes LabelSelector with sourced keys. matchLabels are turned into `In`
 * requirements with one value, so a selector is just a list of requirements
 * (ANDed). An empty list selects everything.
 */
export interface LabelSelector {
  readonly requirements: readonly SelectorRequirement[];
  /** The selector as written, for dumps and messages. */
  readonly text: string;
}

export type L4Proto = 'TCP' | 'UDP' | 'SCTP';
export type PortProtocolName = L4Proto | 'ANY';

export interface PortProtocol {
  /** A number as a string ("80"), "0" for all ports, or a lowercased IANA/container port name. */
  readonly port: string;
  readonly endPort?: number;
  readonly protocol: PortProtocolName;
}

export interface SecretRef {
  readonly namespace: string;
  readonly name: string;
}

export interface TLSContext {
  readonly secret: SecretRef;
  readonly trustedCA?: string;   // item name in the Secret, default ca.crt
  readonly certificate?: string; // default tls.crt
  readonly privateKey?: string;  // default tls.key
}

export type MismatchAction = '' | 'LOG' | 'ADD' | 'DELETE' | 'REPLACE';

export interface HeaderMatch {
  readonly name: string;
  readonly value?: string;
  readonly secret?: SecretRef;
  readonly mismatch: MismatchAction;
}

export interface HTTPRule {
  readonly method?: string; // RE2, full match
  readonly path?: string;   // RE2, full match, against the canonical path incl. query
  readonly host?: string;   // RE2, full match, against :authority / Host verbatim
  readonly headers: readonly string[];
  readonly headerMatches: readonly HeaderMatch[];
}

export interface DNSRule {
  readonly matchName?: string;
  readonly matchPattern?: string;
}

export interface L7Rules {
  readonly http?: readonly HTTPRule[];
  readonly dns?: readonly DNSRule[];
}

export interface PortRule {
  readonly ports: readonly PortProtocol[];
  readonly rules?: L7Rules;
  readonly terminatingTLS?: TLSContext;
  readonly originatingTLS?: TLSContext;
  readonly serverNames: readonly string[];
}

export interface CIDRRule {
  readonly cidr: string;            // normalized prefix, e.g. "10.0.0.0/8"
  readonly except: readonly string[];
}

export interface FQDNSelector {
  readonly matchName?: string;
  readonly matchPattern?: string;
}

/**
 * One element of ingress/ingressDeny/egress/egressDeny. Peer fields are
 * `undefined` when absent and `[]` when written as an empty list: absent peers
 * with toPorts mean "any peer", an explicit empty list selects nothing
 * (pkg/policy/utils/parserules.go).
 */
export interface PeerRule {
  readonly endpoints?: readonly LabelSelector[]; // fromEndpoints / toEndpoints
  readonly cidrSet?: readonly CIDRRule[];        // fromCIDR(+Set) / toCIDR(+Set)
  readonly entities?: readonly string[];         // fromEntities / toEntities
  readonly nodes?: readonly LabelSelector[];     // fromNodes / toNodes
  readonly fqdns?: readonly FQDNSelector[];      // toFQDNs (egress only)
  readonly toPorts: readonly PortRule[];         // [] = L3 only (all ports)
  readonly pos: SourcePos;                       // where this element starts
}

/** A reference to the rule element that decided, as printed by `explain` and in flows. */
export interface RuleRef {
  readonly kind: PolicyKind;
  readonly namespace: string; // "" for cluster-wide
  readonly name: string;
  readonly specIndex?: number; // index in `specs`; absent when the document used `spec`
  readonly section: RuleSection;
  readonly index: number;     // index of the element within its section
}

export interface Rule {
  readonly ref: Omit<RuleRef, 'section' | 'index'>;
  readonly endpointSelector?: LabelSelector;
  readonly nodeSelector?: LabelSelector;
  readonly ingress: readonly PeerRule[];
  readonly ingressDeny: readonly PeerRule[];
  readonly egress: readonly PeerRule[];
  readonly egressDeny: readonly PeerRule[];
  /** Unset means "true for a direction the rule has entries for". */
  readonly enableDefaultDeny: { readonly ingress?: boolean; readonly egress?: boolean };
  readonly description?: string;
  /**
   * `log.value`: free text Cilium attaches to the policy-map entries the rule
   * creates and Hubble writes as `policy_log` (absent when unset or empty).
   */
  readonly log?: string;
  readonly pos: SourcePos;
}

/** Format a RuleRef the one way it is shown to people. */
export function formatRuleRef(r: RuleRef): string {
  const where = r.namespace ? `${r.namespace}/${r.name}` : r.name;
  const spec = r.specIndex === undefined ? '' : `specs[${r.specIndex}].`;
  return `${r.kind} ${where} ${spec}${r.section}[${r.index}]`;
}
