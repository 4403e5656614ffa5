/**
 * The compiled, immutable per-(subject identity, direction) port tables that
 * `decide()` walks, and the builder that turns merged L4 filters into them.
 *
 * Shape of the index (see docs/policy-engine.md):
 *
 *   DirPolicy ─ per protocol ─ ProtoTable
 *     exact:  Map<port, PortEntry>        single-port segments
 *     ranges: sorted disjoint segments    (binary search) for endPort ranges
 *     any:    PortEntry                   port-0 (L3-only) rules alone
 *   PortEntry
 *     byRemote: Map<remote identity id, RemoteView>   every compile-time identity
 *     wildcardView: RemoteView                        ids selected only by `*`
 *     sels: CompiledSel[]                             fallback for unknown ids
 *   RemoteView: the deny rule (if any) and the allow rules selecting that remote
 *
 * Port-0 rules are appended to every specific segment (cilium/proxy does the
 * same), overlapping ranges are split into disjoint segments whose rule lists are
 * the union of the ranges covering them. Verdict objects for every outcome are
 * built here, so the decision returns shared frozen objects.
 */
import type { Direction, L4Proto, RuleRef, TLSContext } from './api.js';
import type { DirectionVerdict, PolicyMatchType } from './types.js';
import type { Identity } from '../identity/identity.js';
import type { PeerSelector } from './selectors.js';
import type { CompiledHttpItem, DnsGroup, ServerNameMatcher } from './l7.js';

export type L7Parser = 'http' | 'dns';

/** One peer selector's merged policy on one port (Cilium's PerSelectorPolicy), ready to decide. */
export interface CompiledSel {
  readonly sel: PeerSelector;
  readonly deny: boolean;
  /** The synthesized allow-localhost entry, not a policy rule. */
  readonly localhost: boolean;
  /** The first contributing rule (deny rule, or the allow rule for L3/L4 decisions). */
  readonly ref: RuleRef | undefined;
  readonly refs: readonly (RuleRef | undefined)[];
  /** `log.value`s of the contributing rules (logList: sorted, unique, frozen; often empty). */
  readonly log: readonly string[];
  readonly parser: L7Parser | undefined;
  /** HTTP items (OR); includes a wildcard item when an L4-only rule merged in. */
  readonly http: readonly CompiledHttpItem[];
  readonly dns: readonly DnsGroup[];
  readonly hasHeaderActions: boolean;
  readonly sni: ServerNameMatcher | undefined;
  readonly terminatingTLS: TLSContext | undefined;
  readonly originatingTLS: TLSContext | undefined;
  // Precomputed verdicts.
  readonly allowL4: DirectionVerdict;
  readonly allowL7: Readonly<Record<L7Parser, DirectionVerdict>>;
  readonly l7Denied: DirectionVerdict;
  readonly denyVerdict: DirectionVerdict;
  readonly httpAllow: readonly DirectionVerdict[];
  readonly dnsAllow: readonly DirectionVerdict[];
}

/** What one remote identity gets on one port. */
export interface RemoteView {
  readonly deny: CompiledSel | undefined;
  readonly allows: readonly CompiledSel[];
  /**
   * Log values of the map entry the datapath's lookup finds for this remote: the
   * rules of the allows (denies) with the most specific match type, merged as
   * Cilium merges the origins of one map key. Undefined when none has a value.
   */
  readonly allowLog: readonly string[] | undefined;
  readonly denyLog: readonly string[] | undefined;
  /**
   * The policies behind that same entry, when more than one (Hubble's
   * `*_allowed_by` / `*_denied_by` list them all: see entryRules). Undefined when
   * one policy is behind it: its verdict's `rule` names it.
   */
  readonly allowRules: readonly RuleRef[] | undefined;
  readonly denyRules: readonly RuleRef[] | undefined;
  /** Some allow carries serverNames: filter per query. */
  readonly hasSni: boolean;
  readonly hasHeaderActions: boolean;
  /** Without SNI filtering: the first allow with an L7 parser, and the first without. */
  readonly firstL7: CompiledSel | undefined;
  readonly firstL4: CompiledSel | undefined;
  /**
   * firstL4's allow carrying the match type of the most specific allow in the view:
   * the datapath reports the entry its lookup found (bpf/lib/policy.h: peer+port
   * before any-peer+port before peer-only before allow-all), not the first rule.
   */
  readonly allowL4: DirectionVerdict | undefined;
}

export interface PortEntry {
  readonly sels: readonly CompiledSel[];
  readonly byRemote: ReadonlyMap<number, RemoteView>;
  readonly wildcardView: RemoteView | undefined;
}

export interface ProtoTable {
  readonly exact: ReadonlyMap<number, PortEntry>;
  readonly rangeStart: readonly number[];
  readonly rangeEnd: readonly number[];
  readonly rangeEntry: readonly PortEntry[];
  readonly any: PortEntry | undefined;
}

/** One L4 filter as merged (for dumps): the port key and its selector policies. */
export interface FilterSummary {
  readonly proto: L4Proto;
  readonly port: number;
  readonly endPort: number;
  readonly parser: L7Parser | undefined;
  readonly sels: readonly CompiledSel[];
}

export interface DirPolicy {
  readonly direction: Direction;
  /** Default-deny in force for this subject and direction. */
  readonly enforced: boolean;
  /** Set when no rule entry selects the subject in this direction: everything is allowed. */
  readonly open: DirectionVerdict | undefined;
  /** How many rule entries select the subject in this direction. */
  readonly entries: number;
  readonly tables: Readonly<Record<L4Proto, ProtoTable>>;
  readonly filters: readonly FilterSummary[];
  /** No rule applies to this port/remote. */
  readonly denied: DirectionVerdict;
}

/** Verdict of a direction in which nothing selects the subject. */
export function notEnforcedVerdict(direction: Direction): DirectionVerdict {
  // Cilium puts an allow-all entry in the map of an endpoint it does not enforce.
  return Object.freeze({ direction, enforced: false, allowed: true, type: 'L3_L4', matchType: 4 });
}

/** Lookup precedence of a match type (higher wins): L3-L4, L4-only, L3-only, all. */
const MATCH_RANK: readonly number[] = [0, 2, 4, 3, 1];

/** Look up the port entry for a port: exact, then range segment, then port 0. */
export function lookupPort(t: ProtoTable, port: number): PortEntry | undefined {
  const e = t.exact.get(port);
  if (e !== undefined) return e;
  const starts = t.rangeStart;
  let lo = 0;
  let hi = starts.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const s = starts[mid] as number;
    if (port < s) hi = mid - 1;
    else if (port > (t.rangeEnd[mid] as number)) lo = mid + 1;
    else return t.rangeEntry[mid];
  }
  return t.any;
}

/** Build the view of one remote over a list of selector policies (also the run-time fallback). */
export function makeView(sels: readonly CompiledSel[], selected: (s: CompiledSel) => boolean): RemoteView | undefined {
  let deny: CompiledSel | undefined;
  let denies: CompiledSel[] | undefined;
  const allows: CompiledSel[] = [];
  let localhost = false;
  let redirect = false;
  for (const s of sels) {
    if (!selected(s)) continue;
    if (s.deny) {
      deny ??= s;
      (denies ??= []).push(s);
    } else {
      allows.push(s);
      if (s.localhost) localhost = true;
      else if (isRedirect(s)) redirect = true;
    }
  }
  if (deny === undefined && allows.length === 0) return undefined;
  // Allow-localhost is an L3 entry in the endpoint's BPF policy map only
  // (determineAllowLocalhostIngress, pkg/policy/mapstate.go); the proxy's policy is
  // built from the rules alone. When a rule selecting the host redirects this port,
  // the datapath prefers the redirect (bpf/lib/policy.h __policy_can_access, proxy
  // port priority) and the proxy then judges the host by the rules: the localhost
  // entry must not widen them to "anything".
  const denyLog = denies !== undefined && denies.some((s) => s.log.length > 0) ? entryLog(denies) : undefined;
  const denyRules = denies !== undefined && (denies.length > 1 || denies[0]!.refs.length > 1) ? entryRules(denies) : undefined;
  if (localhost && redirect) return freezeView(deny, allows.filter((s) => !s.localhost), denyLog, denyRules);
  return freezeView(deny, allows, denyLog, denyRules);
}

/** Does this selector's policy send the port to the proxy (Cilium's PerSelectorPolicy.isRedirect: L7 rules, SNI or TLS)? */
function isRedirect(s: CompiledSel): boolean {
  return s.parser !== undefined || s.sni !== undefined || s.terminatingTLS !== undefined || s.originatingTLS !== undefined;
}

function freezeView(
  deny: CompiledSel | undefined,
  allows: CompiledSel[],
  denyLog: readonly string[] | undefined,
  denyRules: readonly RuleRef[] | undefined,
): RemoteView {
  let firstL7: CompiledSel | undefined;
  let firstL4: CompiledSel | undefined;
  for (const s of allows) {
    if (s.parser !== undefined) firstL7 ??= s;
    else firstL4 ??= s;
  }
  let allowL4: DirectionVerdict | undefined;
  if (firstL4 !== undefined) {
    let best: PolicyMatchType | undefined = firstL4.allowL4.matchType;
    for (const s of allows) {
      const m = s.allowL4.matchType;
      if (m !== undefined && (best === undefined || MATCH_RANK[m]! > MATCH_RANK[best]!)) best = m;
    }
    allowL4 = best === firstL4.allowL4.matchType ? firstL4.allowL4 : Object.freeze({ ...firstL4.allowL4, matchType: best });
  }
  return Object.freeze({
    deny,
    allows: Object.freeze(allows),
    allowLog: allows.some((s) => s.log.length > 0) ? entryLog(allows) : undefined,
    denyLog,
    allowRules: allows.length > 1 || (allows[0] !== undefined && allows[0].refs.length > 1) ? entryRules(allows) : undefined,
    denyRules,
    hasSni: allows.some((s) => s.sni !== undefined),
    hasHeaderActions: allows.some((s) => s.hasHeaderActions),
    firstL7,
    firstL4,
    allowL4,
  });
}

/**
 * The log of the entry a lookup finds among `sels` (all covering one remote and
 * port): the values of the sels with the most specific match type. The deny sels'
 * match type is that of their (unused) allow verdict: the key they occupy.
 */
function entryLog(sels: readonly CompiledSel[]): readonly string[] | undefined {
  let best = 0;
  for (const s of sels) best = Math.max(best, MATCH_RANK[s.allowL4.matchType ?? 0]!);
  // Common case: one selector policy of that entry has values, its list is the answer.
  let only: readonly string[] | undefined;
  let several = false;
  for (const s of sels) {
    if (s.log.length === 0 || MATCH_RANK[s.allowL4.matchType ?? 0] !== best) continue;
    if (only === undefined || only === s.log) only = s.log;
    else several = true;
  }
  if (!several) return only;
  const values: string[] = [];
  for (const s of sels) if (MATCH_RANK[s.allowL4.matchType ?? 0] === best) values.push(...s.log);
  return logList(values);
}

/**
 * The policies behind the entry a lookup finds among `sels` (chosen as entryLog
 * chooses): every contributing rule's policy, once, in the order of Cilium's
 * derivedFrom list, a sorted LabelArrayList of the policies' labels
 * (`derived-from=<kind>`, `name=`, `namespace=`; labels.LabelArray.Less) with
 * duplicates skipped (hubble/parser/.../correlation.go toProto). Undefined when
 * there is only one: the verdict's own rule names it.
 */
function entryRules(sels: readonly CompiledSel[]): readonly RuleRef[] | undefined {
  let best = 0;
  for (const s of sels) best = Math.max(best, MATCH_RANK[s.allowL4.matchType ?? 0]!);
  const byPolicy = new Map<string, RuleRef>();
  for (const s of sels) {
    if (MATCH_RANK[s.allowL4.matchType ?? 0] !== best) continue;
    for (const r of s.refs) {
      if (r === undefined) continue;
      const k = `${r.kind}\u0000${r.name}\u0000${r.namespace}`;
      if (!byPolicy.has(k)) byPolicy.set(k, r);
    }
  }
  if (byPolicy.size < 2) return undefined;
  return Object.freeze([...byPolicy.values()].sort(comparePolicyLabels));
}

/** labels.LabelArray.Less over [derived-from, name, namespace?] (Go compares bytes; a missing namespace sorts first). */
function comparePolicyLabels(a: RuleRef, b: RuleRef): number {
  return (
    compareBytes(a.kind, b.kind) ||
    compareBytes(a.name, b.name) ||
    (a.namespace === b.namespace ? 0 : a.namespace === '' ? -1 : b.namespace === '' ? 1 : compareBytes(a.namespace, b.namespace))
  );
}

function compareBytes(a: string, b: string): number {
  if (a === b) return 0;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

const EMPTY_LOG: readonly string[] = Object.freeze([]);
const logIntern = new Map<string, readonly string[]>();
const utf8 = new TextEncoder();

/**
 * Log values as Cilium keeps them (pkg/policy/origin.go newStringList /
 * mergeStringList): empty values dropped, duplicates once, sorted as Go sorts
 * strings (by UTF-8 bytes). Interned: equal lists are one frozen array.
 */
export function logList(values: readonly string[]): readonly string[] {
  const set = [...new Set(values.filter((v) => v !== ''))];
  if (set.length === 0) return EMPTY_LOG;
  const sorted = set
    .map((v) => ({ v, b: utf8.encode(v) }))
    .sort((x, y) => Buffer.compare(x.b, y.b))
    .map((x) => x.v);
  const key = sorted.join('\x1f');
  let l = logIntern.get(key);
  if (l === undefined) {
    l = Object.freeze(sorted);
    if (logIntern.size < 65536) logIntern.set(key, l);
  }
  return l;
}

/** The run-time fallback for identities not known at compile time. */
export function viewForUnknown(entry: PortEntry, remote: Identity): RemoteView | undefined {
  return makeView(entry.sels, (s) => s.sel.matches(remote));
}

/**
 * Build a PortEntry. `selectedIds(sel)` gives the compile-time identity ids a
 * selector selects (shared across subjects); remote views are interned so equal
 * rule lists share one object.
 */
export function buildPortEntry(
  sels: readonly CompiledSel[],
  selectedIds: (sel: PeerSelector) => readonly number[],
  intern: Map<string, RemoteView>,
  selIndex: (s: CompiledSel) => number,
): PortEntry {
  const wildcardSels = sels.filter((s) => s.sel.wildcard);
  const perId = new Map<number, CompiledSel[]>();
  for (const s of sels) {
    if (s.sel.wildcard) continue;
    for (const id of selectedIds(s.sel)) {
      let l = perId.get(id);
      if (!l) perId.set(id, (l = []));
      l.push(s);
    }
  }
  const viewOf = (list: CompiledSel[]): RemoteView | undefined => {
    // Keep the entry order (rule order) so the first contributing rule is reported.
    list.sort((a, b) => selIndex(a) - selIndex(b));
    const key = list.map(selIndex).join(',');
    let v = intern.get(key);
    if (v === undefined) {
      v = makeView(list, () => true);
      if (v === undefined) return undefined;
      intern.set(key, v);
    }
    return v;
  };
  const byRemote = new Map<number, RemoteView>();
  for (const [id, list] of perId) {
    const v = viewOf([...list, ...wildcardSels]);
    if (v) byRemote.set(id, v);
  }
  return Object.freeze({
    sels: Object.freeze([...sels]),
    byRemote,
    wildcardView: wildcardSels.length ? viewOf([...wildcardSels]) : undefined,
  });
}
