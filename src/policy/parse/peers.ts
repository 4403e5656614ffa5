/**
 * One element of ingress / ingressDeny / egress / egressDeny, validated as
 * Cilium's `IngressRule.sanitize` / `EgressRule.sanitize` do
 * (pkg/policy/api/rule_validation.go) and sanitized as `ParseToCiliumRule` does.
 */
import { Fields, indexPath } from '../../config/reader.js';
import type { CIDRRule, FQDNSelector, LabelSelector, PeerRule, PortRule, RuleSection } from '../api.js';
import { formatPrefix, hostBitsSet, maskPrefix, parseIP, parsePrefix, prefixContains } from './cidr.js';
import { readFQDNSelector, readPortRule, type PortContext } from './ports.js';
import { peerSelector, readSelectorList, sanitizeSelector, selector } from './selector.js';

/**
 * api.EntitySelectorMapping keys (CILIUM-SEMANTICS.md §1.4). world-ipv4, world-ipv6
 * and cluster-mesh are in the contract's table; an older CRD copy's enum lacks them,
 * so they are kept (a newer one lists them).
 */
export const ENTITIES: readonly string[] = [
  'all', 'world', 'world-ipv4', 'world-ipv6', 'host', 'remote-node', 'kube-apiserver', 'ingress',
  'health', 'init', 'unmanaged', 'cluster', 'cluster-mesh', 'none',
];

export interface SectionContext {
  readonly namespace: string; // "" for cluster-wide
  readonly subjectMatchesInit: boolean;
  readonly hostPolicy: boolean;
  readonly secretNamespace: string;
}

interface PeerField {
  readonly key: string;
  /** Cilium's name for the member in "Combining X and Y is not supported yet". */
  readonly member: string;
}

const INGRESS_PEERS: readonly PeerField[] = [
  { key: 'fromEndpoints', member: 'FromEndpoints' },
  { key: 'fromCIDR', member: 'FromCIDR' },
  { key: 'fromCIDRSet', member: 'FromCIDRSet' },
  { key: 'fromEntities', member: 'FromEntities' },
  { key: 'fromNodes', member: 'FromNodes' },
  { key: 'fromGroups', member: 'FromGroups' },
];

const EGRESS_PEERS: readonly PeerField[] = [
  { key: 'toEndpoints', member: 'ToEndpoints' },
  { key: 'toCIDR', member: 'ToCIDR' },
  { key: 'toCIDRSet', member: 'ToCIDRSet' },
  { key: 'toEntities', member: 'ToEntities' },
  { key: 'toServices', member: 'ToServices' },
  { key: 'toFQDNs', member: 'ToFQDNs' },
  { key: 'toGroups', member: 'ToGroups' },
  { key: 'toNodes', member: 'ToNodes' },
];

function knownKeys(section: RuleSection): { known: string[]; special: Record<string, string> } {
  const ingress = section === 'ingress' || section === 'ingressDeny';
  const deny = section === 'ingressDeny' || section === 'egressDeny';
  const peers = (ingress ? INGRESS_PEERS : EGRESS_PEERS).map((p) => p.key).filter((k) => !(deny && k === 'toFQDNs'));
  const requires = ingress ? 'fromRequires' : 'toRequires';
  const known = [...peers, requires, 'toPorts', 'icmps'];
  if (!deny) known.push('authentication');
  const special: Record<string, string> = {};
  if (deny && !ingress) special.toFQDNs = 'toFQDNs is not allowed in egressDeny rules';
  if (deny) special.authentication = 'authentication is not allowed in deny rules';
  if (ingress) {
    for (const p of EGRESS_PEERS) special[p.key] = `${p.key} is an egress peer; use the from* fields in ${section}`;
  } else {
    for (const p of INGRESS_PEERS) special[p.key] = `${p.key} is an ingress peer; use the to* fields in ${section}`;
  }
  return { known, special };
}

/** A CIDR string from fromCIDR / toCIDR: a prefix, or a bare address meaning /32 or /128. */
function readPlainCIDR(f: Fields, key: string): CIDRRule[] | undefined {
  const list = f.strList(key);
  if (!list) return undefined;
  const seq = f.seq(key)!;
  const out: CIDRRule[] = [];
  list.forEach((text, i) => {
    const at = seq.items[i] ?? f.at(key);
    const path = indexPath(f.sub(key), i);
    if (text === '') {
      f.rep.error(at, path, 'IP must be specified');
      return;
    }
    // The CRD's CIDR type is `format: cidr` (net.ParseCIDR), so the API server refuses
    // an address without a prefix length (cilium/cilium#47150).
    const ip = parseIP(text);
    if (ip) {
      f.rep.error(at, path, `${JSON.stringify(text)} has no prefix length; write ${text}/${ip.family === 4 ? 32 : 128}`);
      return;
    }
    const p = parsePrefix(text);
    if (typeof p === 'string') {
      f.rep.error(at, path, `unable to parse CIDR: ${JSON.stringify(text)}: ${p}`);
      return;
    }
    if (hostBitsSet(p)) f.rep.warn(at, path, `${text} has host bits set; it means ${formatPrefix(maskPrefix(p))}`);
    out.push({ cidr: formatPrefix(maskPrefix(p)), except: [] });
  });
  return out;
}

function readCIDRSet(f: Fields, key: string): CIDRRule[] | undefined {
  const items = f.maps(key);
  if (!items) return undefined;
  const out: CIDRRule[] = [];
  for (const { f: c } of items) {
    const before = c.rep.errorCount;
    c.checkKnown(['cidr', 'except'], {
      cidrGroupRef: 'cidrGroupRef is not supported by l7warden (CiliumCIDRGroup documents are not loaded)',
      cidrGroupSelector: 'cidrGroupSelector is not supported by l7warden (CiliumCIDRGroup documents are not loaded)',
    });
    const text = c.str('cidr', { required: !c.has('cidrGroupRef') && !c.has('cidrGroupSelector') });
    const except = c.strList('except') ?? [];
    if (text === undefined) continue;
    const p = parsePrefix(text);
    if (typeof p === 'string') {
      c.error('cidr', `Unable to parse CIDRRule ${JSON.stringify(text)}: ${p}`);
      continue;
    }
    if (hostBitsSet(p)) c.rep.warn(c.at('cidr'), c.sub('cidr'), `${text} has host bits set; it means ${formatPrefix(maskPrefix(p))}`);
    const exceptOut: string[] = [];
    const exceptSeq = c.seq('except');
    except.forEach((e, i) => {
      const at = exceptSeq?.items[i] ?? c.at('except');
      const path = indexPath(c.sub('except'), i);
      const ep = parsePrefix(e);
      if (typeof ep === 'string') {
        c.rep.error(at, path, `Unable to parse except CIDR ${JSON.stringify(e)}: ${ep}`);
        return;
      }
      if (!prefixContains(p, ep)) {
        c.rep.error(at, path, `allow CIDR prefix ${text} does not contain exclude CIDR prefix ${e}`);
        return;
      }
      exceptOut.push(formatPrefix(maskPrefix(ep)));
    });
    if (c.rep.errorCount !== before) continue;
    out.push({ cidr: formatPrefix(maskPrefix(p)), except: exceptOut });
  }
  return out;
}

function readEntities(f: Fields, key: string): string[] | undefined {
  const list = f.strList(key);
  if (!list) return undefined;
  const seq = f.seq(key)!;
  const out: string[] = [];
  list.forEach((e, i) => {
    if (!ENTITIES.includes(e)) f.rep.error(seq.items[i] ?? f.at(key), indexPath(f.sub(key), i), `unsupported entity: ${e}`);
    else out.push(e);
  });
  return out;
}

function readFQDNs(f: Fields, key: string): FQDNSelector[] | undefined {
  const items = f.maps(key);
  if (!items) return undefined;
  const out: FQDNSelector[] = [];
  for (const { f: q } of items) {
    const s = readFQDNSelector(q);
    if (s) out.push(s);
  }
  return out;
}

const MAX_ICMP_FIELDS = 40;
// The CRD's ICMPField.type pattern, which the API server applies to string values.
// "ExtendedEcho Reply" (with the space) is what the generated YAML folds to.
const ICMP_TYPE = new RegExp('^([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5]|EchoReply|DestinationUnreachable|Redirect|Echo'
  + '|RouterAdvertisement|RouterSelection|TimeExceeded|ParameterProblem|Timestamp|TimestampReply|Photuris'
  + '|ExtendedEchoRequest|ExtendedEcho Reply|PacketTooBig|EchoRequest|MulticastListenerQuery'
  + '|MulticastListenerReport|MulticastListenerDone|RouterSolicitation|NeighborSolicitation'
  + '|NeighborAdvertisement|RedirectMessage|RouterRenumbering|ICMPNodeInformationQuery|ICMPNodeInformationResponse'
  + '|InverseNeighborDiscoverySolicitation|InverseNeighborDiscoveryAdvertisement|HomeAgentAddressDiscoveryRequest'
  + '|HomeAgentAddressDiscoveryReply|MobilePrefixSolicitation|MobilePrefixAdvertisement'
  + '|DuplicateAddressRequestCodeSuffix|DuplicateAddressConfirmationCodeSuffix)$');

function readICMPs(f: Fields): number {
  const items = f.maps('icmps');
  if (!items) return 0;
  for (const { f: r } of items) {
    r.checkKnown(['fields']);
    // ICMPRule.verify (pkg/policy/api/rule_validation.go) and the CRD's maxItems.
    const fieldsSeq = r.seq('fields');
    if (fieldsSeq && fieldsSeq.items.length > MAX_ICMP_FIELDS) {
      r.error('fields', `too many types, the max is ${MAX_ICMP_FIELDS}`);
    }
    for (const { f: fld } of r.maps('fields') ?? []) {
      fld.checkKnown(['type', 'family']);
      fld.oneOf('family', ['IPv4', 'IPv6']);
      const t = fld.node_('type');
      if (t === undefined) fld.rep.error(fld.loc, fld.sub('type'), 'is required');
      else if (t.kind !== 'scalar' || (typeof t.value === 'string' ? !ICMP_TYPE.test(t.value) : !(typeof t.value === 'number' && Number.isInteger(t.value) && t.value >= 0 && t.value <= 255))) {
        fld.rep.error(t, fld.sub('type'), `${t.kind === 'scalar' ? `${JSON.stringify(t.value)} is not` : 'must be'} an ICMP type number 0-255 or a type name (EchoRequest, DestinationUnreachable, …)`);
      }
    }
  }
  return items.length;
}

/** Parse one section element. Returns undefined when it had errors. */
export function readPeerRule(ctx: SectionContext, section: RuleSection, f: Fields): PeerRule | undefined {
  const before = f.rep.errorCount;
  const ingress = section === 'ingress' || section === 'ingressDeny';
  const deny = section === 'ingressDeny' || section === 'egressDeny';
  const { known, special } = knownKeys(section);
  f.checkKnown(known, special);

  // fromRequires / toRequires are deprecated; the CRD now has MaxItems=0.
  const requiresKey = ingress ? 'fromRequires' : 'toRequires';
  const req = f.seq(requiresKey);
  if (req && req.items.length > 0) {
    f.error(requiresKey, `Too many: ${req.items.length}: must have at most 0 items (${requiresKey} was removed from Cilium; use ${ingress ? 'fromEndpoints' : 'toEndpoints'} with matchExpressions)`);
  }

  // Only one L3 peer kind per element; Cilium names members in Go-style capitals.
  const peerFields = (ingress ? INGRESS_PEERS : EGRESS_PEERS).filter((p) => !(deny && p.key === 'toFQDNs'));
  const order = f.keys();
  const present = peerFields
    .filter((p) => {
      const s = f.node_(p.key);
      return s !== undefined && s.kind === 'seq' && s.items.length > 0;
    })
    .sort((a, b) => order.indexOf(a.key) - order.indexOf(b.key)); // name them in the order written
  if (present.length > 1) {
    f.rep.error(f.loc, f.path, `Combining ${present[0]!.member} and ${present[1]!.member} is not supported yet`);
  }

  for (const key of ['fromGroups', 'toGroups', 'toServices']) {
    const s = f.node_(key);
    if (s && known.includes(key)) {
      f.error(key, `${key} is not supported by l7warden (${key === 'toServices' ? 'Kubernetes Services are' : 'cloud provider groups are'} not loaded)`);
    }
  }

  let endpoints: LabelSelector[] | undefined;
  const epKey = ingress ? 'fromEndpoints' : 'toEndpoints';
  const rawEps = readSelectorList(f, epKey);
  if (rawEps) endpoints = rawEps.map((r) => peerSelector(r, ctx.namespace, ctx.subjectMatchesInit));

  let nodes: LabelSelector[] | undefined;
  const rawNodes = readSelectorList(f, ingress ? 'fromNodes' : 'toNodes');
  if (rawNodes) nodes = rawNodes.map((r) => selector(sanitizeSelector(r), r.text));

  const cidrKey = ingress ? 'fromCIDR' : 'toCIDR';
  const plain = readPlainCIDR(f, cidrKey);
  const set = readCIDRSet(f, `${cidrKey}Set`);
  const cidrSet = plain || set ? [...(plain ?? []), ...(set ?? [])] : undefined;

  const entities = readEntities(f, ingress ? 'fromEntities' : 'toEntities');
  const fqdns = !ingress && !deny ? readFQDNs(f, 'toFQDNs') : undefined;

  const pctx: PortContext = { rep: f.rep, secretNamespace: ctx.secretNamespace, ingress, deny, hostPolicy: ctx.hostPolicy };
  const toPorts: PortRule[] = [];
  const portItems = f.maps('toPorts') ?? [];
  for (const { f: pf } of portItems) {
    const pr = readPortRule(pctx, pf);
    if (pr) toPorts.push(pr);
  }

  const icmpCount = readICMPs(f);
  if (icmpCount > 0 && portItems.length > 0) {
    f.rep.error(f.loc, f.path, 'The ICMPs block may only be present without ToPorts. Define a separate rule to use ToPorts.');
  }

  let authMode: string | undefined;
  if (!deny) {
    const af = f.map('authentication');
    if (af) {
      af.checkKnown(['mode']);
      if (af.required('mode') !== undefined) authMode = af.oneOf('mode', ['disabled', 'required', 'test-always-fail']);
    }
  }

  if (f.rep.errorCount !== before) return undefined;

  const pos = f.rep.pos(f.loc);
  // ICMP is never proxied, so an ICMP-only element allows no TCP/UDP/SCTP at all;
  // it stays an entry (it still switches on default deny), selecting no peer.
  // The same holds for authentication mode test-always-fail, which Cilium drops.
  if (icmpCount > 0 || authMode === 'test-always-fail') {
    f.rep.warn(f.loc, f.path, icmpCount > 0
      ? 'icmps rules are not enforced by l7warden (ICMP is not proxied); this element allows no TCP, UDP or SCTP traffic'
      : 'authentication mode test-always-fail: this element allows nothing');
    return { endpoints: [], toPorts: [], pos };
  }
  if (authMode === 'required') {
    f.rep.warn(f.at('authentication'), f.sub('authentication'), 'mutual authentication is not performed by l7warden; the rule applies without it');
  }
  return {
    ...(endpoints !== undefined ? { endpoints } : {}),
    ...(cidrSet !== undefined ? { cidrSet } : {}),
    ...(entities !== undefined ? { entities } : {}),
    ...(nodes !== undefined ? { nodes } : {}),
    ...(fqdns !== undefined ? { fqdns } : {}),
    toPorts,
    pos,
  };
}
