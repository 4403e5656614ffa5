/**
 * Kubernetes NetworkPolicy (networking.k8s.io/v1) translated into the same
 * `Rule` model, as Cilium's `ParseNetworkPolicy` (pkg/k8s/network_policy.go)
 * does:
 *
 * - podSelector → endpointSelector with `k8s:` keys, pinned to the namespace;
 * - a peer's namespaceSelector labels → `k8s:io.cilium.k8s.namespace.labels.<k>`
 *   (an empty namespaceSelector = any namespace: `io.kubernetes.pod.namespace Exists`);
 *   without namespaceSelector the peer is in the policy's namespace;
 * - ipBlock → cidrSet; ports default to TCP, a port-less entry means all ports;
 * - an ingress/egress rule with no from/to matches every source/destination
 *   (the `all` entity; Cilium uses a wildcard selector that also selects world);
 * - a direction listed in policyTypes without rules is default-deny: one entry
 *   that allows nothing (an explicitly empty endpoint list).
 */
import { Fields, type Reporter } from '../../config/reader.js';
import { plainInteger } from '../../config/yaml-tree.js';
import type { CIDRRule, LabelSelector, PeerRule, PortRule, Rule, SelectorRequirement } from '../api.js';
import { formatPrefix, maskPrefix, parsePrefix, prefixContains } from './cidr.js';
import { isSvcName } from './ports.js';
import { K8S_POD_NAMESPACE, NAMESPACE_LABELS_PREFIX, POD_NAMESPACE_KEY, readSelector, sanitizeSelector, selector, type RawSelector } from './selector.js';

type Dir = 'ingress' | 'egress';

function readIPBlock(f: Fields): CIDRRule | undefined {
  const before = f.rep.errorCount;
  f.checkKnown(['cidr', 'except']);
  const text = f.str('cidr', { required: true });
  const except = f.strList('except') ?? [];
  if (text === undefined) return undefined;
  const p = parsePrefix(text);
  if (typeof p === 'string') {
    f.error('cidr', `invalid CIDR ${JSON.stringify(text)}: ${p}`);
    return undefined;
  }
  const out: string[] = [];
  const seq = f.seq('except');
  except.forEach((e, i) => {
    const at = seq?.items[i] ?? f.at('except');
    const ep = parsePrefix(e);
    if (typeof ep === 'string') f.rep.error(at, `${f.sub('except')}[${i}]`, `invalid CIDR ${JSON.stringify(e)}: ${ep}`);
    else if (!prefixContains(p, ep)) f.rep.error(at, `${f.sub('except')}[${i}]`, `must be a strict subset of ${text}`);
    else out.push(formatPrefix(maskPrefix(ep)));
  });
  if (f.rep.errorCount !== before) return undefined;
  return { cidr: formatPrefix(maskPrefix(p)), except: out };
}

/**
 * ParseNetworkPolicy / parseNetworkPolicyPeer set MatchLabels[io.kubernetes.pod.namespace]
 * to the policy namespace, overwriting a written matchLabels value; matchExpressions on
 * that key are left in place and still narrow the selection.
 */
function withoutNamespaceLabel(raw: RawSelector): RawSelector {
  return { ...raw, matchLabels: raw.matchLabels.filter((l) => l.key !== POD_NAMESPACE_KEY) };
}

/** One NetworkPolicyPeer → the peer part of a PeerRule. */
function readPeer(f: Fields, namespace: string): Pick<PeerRule, 'endpoints' | 'cidrSet'> | undefined {
  const before = f.rep.errorCount;
  f.checkKnown(['podSelector', 'namespaceSelector', 'ipBlock']);
  const pod = f.map('podSelector');
  const ns = f.map('namespaceSelector');
  const ip = f.map('ipBlock');
  if (!pod && !ns && !ip) {
    f.rep.error(f.loc, f.path, 'must specify a peer');
    return undefined;
  }
  if (ip && (pod || ns)) {
    f.rep.error(f.loc, f.path, 'may not specify more than 1 peer type (ipBlock cannot be combined with podSelector or namespaceSelector)');
    return undefined;
  }
  if (ip) {
    const c = readIPBlock(ip);
    return c ? { cidrSet: [c] } : undefined;
  }
  const rawPod = pod ? readSelector(pod) : undefined;
  const rawNs = ns ? readSelector(ns) : undefined;
  if (f.rep.errorCount !== before) return undefined;
  const reqs: SelectorRequirement[] = [];
  const text: string[] = [];
  if (rawNs) {
    const nsReqs = sanitizeSelector(rawNs, `k8s`).map((r) => ({ ...r, key: `k8s:${NAMESPACE_LABELS_PREFIX}${r.key.slice(4)}` }));
    if (nsReqs.length === 0) nsReqs.push({ key: K8S_POD_NAMESPACE, operator: 'Exists', values: [] });
    reqs.push(...nsReqs);
    text.push(`namespaceSelector: ${rawNs.text}`);
  } else {
    reqs.push({ key: K8S_POD_NAMESPACE, operator: 'In', values: [namespace] });
  }
  if (rawPod) {
    // Without a namespaceSelector, Cilium writes the namespace into matchLabels: a
    // matchLabels entry on that key is replaced, a matchExpressions entry is kept.
    reqs.push(...sanitizeSelector(rawNs ? rawPod : withoutNamespaceLabel(rawPod), 'k8s'));
    text.push(`podSelector: ${rawPod.text}`);
  }
  const sel: LabelSelector = selector(reqs, text.join(' '));
  return { endpoints: [sel] };
}

function readPorts(f: Fields, key: string): PortRule[] | undefined {
  const items = f.maps(key);
  if (!items) return undefined;
  const out: PortRule[] = [];
  for (const { f: p } of items) {
    const before = p.rep.errorCount;
    p.checkKnown(['port', 'endPort', 'protocol']);
    const protocol = p.oneOf('protocol', ['TCP', 'UDP', 'SCTP']) ?? 'TCP';
    const portNode = p.node_('port');
    let port = '0';
    if (portNode) {
      const v = portNode.kind === 'scalar' ? portNode.value : undefined;
      if (portNode.kind === 'scalar' && !plainInteger(portNode)) {
        p.error('port', `write ${portNode.text} as a plain decimal port (YAML 1.1 readers such as kubectl read it differently)`);
      } else if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535) port = String(v);
      else if (typeof v === 'string' && /^\d+$/.test(v)) p.error('port', `${JSON.stringify(v)} is not a valid port name (write the number without quotes)`);
      else if (typeof v === 'string' && isSvcName(v)) port = v.toLowerCase();
      else p.error('port', `${JSON.stringify(v ?? null)} is not a port (1-65535 or an IANA service name)`);
    }
    const endPort = p.int('endPort', { min: 1, max: 65535 });
    let end: number | undefined;
    if (endPort !== undefined) {
      if (!portNode) p.error('endPort', 'may not be specified when `port` is not specified');
      else if (!/^\d+$/.test(port)) p.error('endPort', 'may not be specified when `port` is non-numeric');
      else if (endPort < Number(port)) p.error('endPort', 'must be greater than or equal to `port`');
      else if (endPort > Number(port)) end = endPort;
    }
    if (p.rep.errorCount !== before) continue;
    out.push({ ports: [end === undefined ? { port, protocol } : { port, endPort: end, protocol }], serverNames: [] });
  }
  return out;
}

function readDirection(rep: Reporter, spec: Fields, dir: Dir, namespace: string): PeerRule[] | undefined {
  const items = spec.maps(dir);
  if (!items) return undefined;
  const peerKey = dir === 'ingress' ? 'from' : 'to';
  const out: PeerRule[] = [];
  for (const { f } of items) {
    const before = rep.errorCount;
    f.checkKnown([peerKey, 'ports']);
    const toPorts = readPorts(f, 'ports') ?? [];
    const peers = f.maps(peerKey);
    const elements: PeerRule[] = [];
    if (!peers || peers.length === 0) {
      // "If this field is empty or missing, this rule matches all sources/destinations."
      elements.push({ entities: ['all'], toPorts, pos: rep.pos(f.loc) });
    }
    for (const { f: pf } of peers ?? []) {
      const peer = readPeer(pf, namespace);
      if (peer) elements.push({ ...peer, toPorts, pos: rep.pos(pf.loc) });
    }
    if (rep.errorCount === before) out.push(...elements);
  }
  return out;
}

/** Translate a NetworkPolicy document's `spec` into one Rule. */
export function readNetworkPolicyRule(top: Fields, name: string, namespace: string): Rule | undefined {
  const rep = top.rep;
  const before = rep.errorCount;
  const spec = top.map('spec', { required: true });
  if (!spec) return undefined;
  spec.checkKnown(['podSelector', 'policyTypes', 'ingress', 'egress']);
  const podF = spec.map('podSelector');
  // podSelector is required by the API, but `{}` (all pods) is what an omitted one decodes to.
  const rawPod = podF ? readSelector(podF) : { matchLabels: [], matchExpressions: [], text: '{}' };
  const types = spec.strList('policyTypes');
  const typeSeq = spec.seq('policyTypes');
  types?.forEach((t, i) => {
    if (t !== 'Ingress' && t !== 'Egress') {
      rep.error(typeSeq?.items[i] ?? spec.at('policyTypes'), `spec.policyTypes[${i}]`, `must be one of "Ingress", "Egress", not ${JSON.stringify(t)}`);
    }
  });
  const ingress = readDirection(rep, spec, 'ingress', namespace);
  const egress = readDirection(rep, spec, 'egress', namespace);
  if (rep.errorCount !== before || !rawPod) return undefined;

  // policyTypes defaults to Ingress, plus Egress when at least one egress rule is written:
  // `egress: []` is no egress policy, as in the API server's defaulting
  // (len(spec.egress) != 0) and in ParseNetworkPolicy (egress default deny only when
  // some rule was translated or policyTypes names Egress).
  const effective = types && types.length > 0 ? types : ['Ingress', ...(egress && egress.length > 0 ? ['Egress'] : [])];
  const denyAll = (): PeerRule => ({ endpoints: [], toPorts: [], pos: rep.pos(spec.loc) });
  const direction = (dir: Dir, list: PeerRule[] | undefined, typeName: string): PeerRule[] => {
    if (!effective.includes(typeName)) {
      if (list && list.length > 0) rep.warn(spec.at(dir), `spec.${dir}`, `ignored: policyTypes does not include ${typeName}`);
      return [];
    }
    return list && list.length > 0 ? list : [denyAll()];
  };

  const reqs = sanitizeSelector(withoutNamespaceLabel(rawPod), 'k8s');
  reqs.push({ key: K8S_POD_NAMESPACE, operator: 'In', values: [namespace] });
  return {
    ref: { kind: 'NetworkPolicy', namespace, name },
    endpointSelector: selector(reqs, rawPod.text),
    ingress: direction('ingress', ingress, 'Ingress'),
    ingressDeny: [],
    egress: direction('egress', egress, 'Egress'),
    egressDeny: [],
    enableDefaultDeny: {},
    pos: rep.pos(spec.loc),
  };
}
