/**
 * Peer selectors → identity predicates (Cilium's CachedSelector). Each selector has
 * a stable `key` (two selectors with the same key are the same selector, so their
 * rules merge on a port as Cilium merges PerSelectorPolicies) and a `matches`
 * predicate over an Identity. The compiler evaluates every selector once against
 * every identity known at compile time; `matches` is also the fallback the
 * decision uses for identities learned later (FQDN IPs).
 */
import type { CIDRRule, FQDNSelector, LabelSelector, SelectorRequirement } from './api.js';
import type { Identity } from '../identity/identity.js';
import { prefixContains, parsePrefix } from '../identity/ipcache.js';
import { CLUSTER_LABEL, DEFAULT_CLUSTER } from '../identity/labels.js';

export interface PeerSelector {
  /** Stable identity of the selector (merge key; also printed in dumps). */
  readonly key: string;
  /** True when it selects every identity (absent peers with toPorts, entity `all`). */
  readonly wildcard: boolean;
  matches(id: Identity): boolean;
}

export const WILDCARD_SELECTOR: PeerSelector = Object.freeze({
  key: '*',
  wildcard: true,
  matches: () => true,
});

function requirementMatches(r: SelectorRequirement, id: Identity): boolean {
  // `cidr:` keys match by containment (`cidr:1.1.1.1/32` has `cidr:1.0.0.0/8`).
  if (r.key.startsWith('cidr:')) {
    const has = id.cidr !== undefined && safeContains(r.key.slice(5), id.cidr);
    return r.operator === 'DoesNotExist' || r.operator === 'NotIn' ? !has : has;
  }
  const v = id.lookup.get(r.key);
  switch (r.operator) {
    case 'In':
      return v !== undefined && r.values.includes(v);
    case 'NotIn':
      return v === undefined || !r.values.includes(v);
    case 'Exists':
      return v !== undefined;
    case 'DoesNotExist':
      return v === undefined;
  }
}

function safeContains(outer: string, inner: string): boolean {
  try {
    return prefixContains(outer, inner);
  } catch {
    return false;
  }
}

/** Canonical text of a requirement list (order-independent). */
function requirementsKey(reqs: readonly SelectorRequirement[]): string {
  return reqs
    .map((r) => `${r.key} ${r.operator} ${[...r.values].sort().join(',')}`)
    .sort()
    .join('; ');
}

/** A Kubernetes label selector (requirements ANDed; none = everything). */
export function labelSelector(sel: LabelSelector): PeerSelector {
  const reqs = sel.requirements;
  if (reqs.length === 0) return WILDCARD_SELECTOR;
  return {
    key: `{${requirementsKey(reqs)}}`,
    wildcard: false,
    matches(id) {
      for (const r of reqs) if (!requirementMatches(r, id)) return false;
      return true;
    },
  };
}

/** True when a label selector selects this identity (used for endpointSelector too). */
export function selectorMatches(sel: LabelSelector, id: Identity): boolean {
  for (const r of sel.requirements) if (!requirementMatches(r, id)) return false;
  return true;
}

function hasLabel(key: string): (id: Identity) => boolean {
  return (id) => id.lookup.has(key);
}

const CLUSTER_RESERVED = ['host', 'remote-node', 'init', 'ingress', 'health', 'unmanaged', 'kube-apiserver'];

/**
 * An entity (CILIUM-SEMANTICS.md §1.4, EntitySelectorMapping). `cluster` means the
 * reserved in-cluster identities plus every pod of the local cluster.
 */
export function entitySelector(entity: string): PeerSelector {
  const e = entity.toLowerCase();
  let pred: (id: Identity) => boolean;
  switch (e) {
    case 'all':
      return { key: 'entity:all', wildcard: true, matches: () => true };
    case 'world':
      pred = (id) => id.lookup.has('reserved:world') || id.lookup.has('reserved:world-ipv4') || id.lookup.has('reserved:world-ipv6');
      break;
    // reserved:world is the IPv4 world here (unknown IPv6 addresses are world-ipv6,
    // PolicySnapshotImpl.identityForIP), so world-ipv4 selects it too.
    case 'world-ipv4':
      pred = (id) => id.lookup.has('reserved:world-ipv4') || id.lookup.has('reserved:world');
      break;
    case 'world-ipv6':
      pred = hasLabel('reserved:world-ipv6');
      break;
    case 'host':
    case 'remote-node':
    case 'kube-apiserver':
    case 'ingress':
    case 'health':
    case 'init':
    case 'unmanaged':
      pred = hasLabel(`reserved:${e}`);
      break;
    case 'cluster':
      pred = (id) =>
        CLUSTER_RESERVED.some((r) => id.lookup.has(`reserved:${r}`)) ||
        id.lookup.get(`k8s:${CLUSTER_LABEL}`) === DEFAULT_CLUSTER;
      break;
    case 'cluster-mesh':
      pred = (id) => CLUSTER_RESERVED.some((r) => id.lookup.has(`reserved:${r}`)) || id.lookup.has(`k8s:${CLUSTER_LABEL}`);
      break;
    default:
      // `none` and anything unknown select nothing (reserved:none is never carried).
      pred = () => false;
  }
  return { key: `entity:${e}`, wildcard: false, matches: pred };
}

/**
 * A CIDR set item: CIDR identities whose prefix lies inside `cidr` and outside every
 * `except`; a zero-length prefix also selects the world identities (Cilium maps
 * 0.0.0.0/0 and ::/0 to reserved:world). Pods are never selected (CIDR peers only
 * select non-cluster traffic).
 */
export function cidrSelector(rule: CIDRRule): PeerSelector {
  const outer = parsePrefix(rule.cidr);
  const excepts = [...rule.except];
  const world = outer.len === 0;
  const worldFamily = outer.family === 4 ? 'reserved:world-ipv4' : 'reserved:world-ipv6';
  return {
    key: `cidr:${outer.text}${excepts.length ? ` except ${[...excepts].sort().join(',')}` : ''}`,
    wildcard: false,
    matches(id) {
      if (id.cidr !== undefined) {
        if (!safeContains(outer.text, id.cidr)) return false;
        for (const ex of excepts) if (safeContains(ex, id.cidr)) return false;
        return true;
      }
      if (!world) return false;
      // World identities have no prefix of their own: a /0 stands for its family's
      // (cidr_test.go TestGetAsEndpointSelectors: 0.0.0.0/0 is world-ipv4, ::/0 is
      // world-ipv6, neither selects the other). reserved:world is the IPv4 world here:
      // unknown IPv6 addresses, and FQDN identities learned for them, are world-ipv6
      // (PolicySnapshotImpl.identityForIP).
      if (id.lookup.has(worldFamily)) return true;
      return outer.family === 4 && id.lookup.has('reserved:world');
    },
  };
}

/** The stable key of a toFQDNs selector: `<name>` or `<pattern>`, lowercased. */
/**
 * A toFQDNs selector's key: its name or pattern, lowercased. Learned IPs carry it as
 * the label `fqdn:<key>`, the label Cilium gives them (api.FQDNSelector.IdentityLabel:
 * `fqdn:api.github.com`, `fqdn:*.github.com`), so flows and `--label` filters read as
 * Hubble's. matchName `x` and matchPattern `x` share a key: a pattern without `*`
 * selects exactly that name.
 */
export function fqdnKey(f: FQDNSelector): string {
  return (f.matchName ?? f.matchPattern ?? '').toLowerCase();
}

/** toFQDNs: identities labelled `fqdn:<key>` (created by the DNS proxy for learned IPs). */
export function fqdnSelector(f: FQDNSelector): PeerSelector {
  const key = fqdnKey(f);
  const label = `fqdn:${key}`;
  return {
    key: label,
    wildcard: false,
    matches: (id) => id.fqdnSelectors?.has(key) === true || id.lookup.has(label),
  };
}

/**
 * fromNodes/toNodes. Without node documents the only node identities are
 * reserved:host and reserved:remote-node, which carry no node labels: an empty
 * selector selects both, a selector with requirements is matched against their
 * reserved labels (and so normally selects nothing).
 */
export function nodeSelector(sel: LabelSelector): PeerSelector {
  const reqs = sel.requirements;
  return {
    key: `node{${requirementsKey(reqs)}}`,
    wildcard: false,
    matches(id) {
      if (!id.lookup.has('reserved:host') && !id.lookup.has('reserved:remote-node')) return false;
      for (const r of reqs) if (!requirementMatches(r, id)) return false;
      return true;
    },
  };
}

/** A selector for exactly one reserved identity (synthesized rules, e.g. allow-localhost). */
export function reservedSelector(name: string): PeerSelector {
  return { key: `reserved:${name}`, wildcard: false, matches: hasLabel(`reserved:${name}`) };
}
