/**
 * The decision API: the one place a verdict is made is `decide()` in
 * policy/decide.ts, over an immutable PolicySnapshot built by policy/compile.
 * Every listener (HTTP, gRPC, DNS, egress) and `explain` call it; none decides on
 * its own.
 *
 * Hot-path contract: `decide()` does no regex compilation, no allocation of policy
 * structures and no I/O. A snapshot is never mutated; a request reads the current
 * snapshot once when it arrives and keeps it (safe across awaits).
 */
import type { Direction, L4Proto, RuleRef, TLSContext } from './api.js';
import type { Endpoint, Identity } from '../identity/identity.js';

/** The parts of an HTTP request the rules look at. */
export interface HttpAttributes {
  readonly method: string;
  /** Canonical request target (normalized path + query), exactly what is forwarded. */
  readonly path: string;
  /** :authority / Host verbatim (port included if the client sent one). */
  readonly host: string;
  /** Header value by lowercase name; several values joined with ", ". */
  header(name: string): string | undefined;
}

export interface DecisionQuery {
  readonly src: Identity;
  readonly dst: Identity;
  /** Destination port (the protected endpoint's port), and its protocol. */
  readonly port: number;
  readonly protocol: L4Proto;
  /** Present for an HTTP request / gRPC call: L7 rules are checked. */
  readonly http?: HttpAttributes;
  /** Present for a DNS query: lowercase FQDN with the trailing dot. */
  readonly dns?: string;
  /** TLS SNI, checked against `serverNames` where a rule has them. */
  readonly sni?: string;
}

/**
 * Which datapath policy-map entry an L3/L4 allow stands for, as Cilium's
 * policy-verdict events report it (pkg/monitor/api/types.go PolicyMatch*): 1 L3-only
 * (peer, any port), 2 L3-L4 (peer and port), 3 L4-only (any peer, port), 4 all.
 */
export type PolicyMatchType = 1 | 2 | 3 | 4;

/** POLICY_DENIED (133): no allow rule; POLICY_DENY (181): an explicit deny rule. */
export type DropReason = 'POLICY_DENIED' | 'POLICY_DENY';

/** An action a headerMatches mismatch asks the proxy to perform before forwarding. */
export interface HeaderAction {
  readonly action: 'LOG' | 'ADD' | 'DELETE' | 'REPLACE';
  readonly name: string;   // lowercase header name
  readonly value?: string; // the policy's value (ADD/REPLACE)
  /** The value came from a Secret: log it as [redacted]. */
  readonly secret: boolean;
}

export interface DirectionVerdict {
  readonly direction: Direction;
  /** False when no rule selects the subject in this direction (allowed, nothing checked). */
  readonly enforced: boolean;
  readonly allowed: boolean;
  /** 'L7' when the port entry that applied to this peer carries L7 rules. */
  readonly type: 'L3_L4' | 'L7';
  /** The allowing rule, the deny rule, or for an L7 miss a rule whose L7 rules did not match. */
  readonly rule?: RuleRef;
  readonly dropReason?: DropReason;
  /** Which L7 parser the port uses for this peer, if any. */
  readonly l7?: 'http' | 'dns';
  /** TLS contexts / server names of the port rule that applied (egress interception, ingress origination). */
  readonly terminatingTLS?: TLSContext;
  readonly originatingTLS?: TLSContext;
  /**
   * Denied only because the rules here carry serverNames and the question had no
   * SNI: a listener that can read the ClientHello may ask again with it.
   */
  readonly sniMissing?: true;
  /**
   * On L3/L4 allows: the map entry the datapath would have matched (the most
   * specific allow covering this peer and port), for Hubble's `policy_match_type`.
   */
  readonly matchType?: PolicyMatchType;
}

export interface Verdict {
  readonly allowed: boolean;
  readonly type: 'L3_L4' | 'L7';
  readonly dropReason?: DropReason;
  /** The rule that decided: the first denying direction's rule, else the ingress (or egress) allow. */
  readonly rule?: RuleRef;
  /** The direction whose policy decided (the denying one; for allows, ingress if enforced). */
  readonly decidedBy?: Direction;
  /** Present when the source is a local endpoint (its egress policy applied). */
  readonly egress?: DirectionVerdict;
  /** Present when the destination is a local endpoint (its ingress policy applied). */
  readonly ingress?: DirectionVerdict;
  /** headerMatches actions to apply before forwarding (empty in the common case). */
  readonly headerActions: readonly HeaderAction[];
  /**
   * The `log.value`s of the rules behind the policy-map entry this direction's
   * lookup matched (Cilium's RuleMeta log, Hubble's `policy_log`): the most specific
   * allow entry covering the peer and port, or the deny entry when a deny rule
   * decides; every rule merged into that entry, sorted by bytes, each value once
   * (pkg/policy/origin.go). Absent when no matched entry has a value (no entry:
   * default deny; or a direction nothing selects). Frozen arrays of the snapshot.
   */
  readonly egressLog?: readonly string[];
  readonly ingressLog?: readonly string[];
  /**
   * Every policy behind that same entry, when more than one: Hubble's
   * `*_allowed_by` / `*_denied_by` for an L3/L4 allow or a deny rule list them all
   * (sorted, one per policy). Absent when one policy is behind it (`rule`, or the
   * direction's `rule`, names it). Frozen arrays of the snapshot.
   */
  readonly egressRules?: readonly RuleRef[];
  readonly ingressRules?: readonly RuleRef[];
}

/** Summary counts, printed by `check`. */
export interface SnapshotStats {
  readonly documents: number;
  readonly policies: number;
  readonly rules: number;
  readonly endpoints: number;
  readonly identities: number;
}

/** A toFQDNs selector as the DNS proxy needs it: does a name belong to it? */
export interface FqdnSelectorInfo {
  /** Stable key, the label value in `fqdn:<key>` (the name or pattern: `api.github.com`, `*.github.com`). */
  readonly key: string;
  matches(fqdn: string): boolean;
}

export interface PolicySnapshot {
  readonly version: number;
  readonly stats: SnapshotStats;
  readonly enforcement: 'default' | 'always' | 'never';
  /** Every identity known at compile time (reserved, pods, CIDR). */
  readonly identities: ReadonlyMap<number, Identity>;
  readonly endpoints: readonly Endpoint[];
  endpointByName(namespace: string, name: string): Endpoint | undefined;
  endpointByIdentity(id: number): Endpoint | undefined;
  /** Longest-prefix match over pod IPs and CIDR identities; unknown addresses are world. */
  identityForIP(ip: string): Identity;
  /** Identity for a label set (`k8s:app=x` strings), allocating a deterministic number if new. */
  identityForLabels(labels: readonly string[]): Identity;
  /** The toFQDNs selectors of every policy (the DNS proxy labels learned IPs with them). */
  readonly fqdnSelectors: readonly FqdnSelectorInfo[];
  decide(q: DecisionQuery): Verdict;
  /** Stable text dump for golden tests and the admin /policy endpoint. */
  dump(): string;
}
