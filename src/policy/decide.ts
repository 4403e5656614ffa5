/**
 * The one function that makes a verdict (CILIUM-SEMANTICS.md §2.3). Both the
 * source's egress policy and the destination's ingress policy apply whenever the
 * source / destination identity belongs to a known endpoint; identities without
 * endpoints (world, CIDR, FQDN) have no policy of their own.
 *
 * Hot path: a Map lookup for the subject's table, a Map (or binary search) for the
 * port, a Map for the remote identity, then the precompiled L7 matchers of the
 * few rules that select that remote. The returned DirectionVerdicts are shared
 * objects built at compile time; only the final Verdict is allocated (and a
 * header-action list when a rule asks for actions). Identities not known at
 * compile time (FQDN-learned) fall back to matching each rule's selector on that
 * port against the identity's labels.
 */
import type { DecisionQuery, DirectionVerdict, HeaderAction, Verdict } from './types.js';
import type { Identity } from '../identity/identity.js';
import type { RuleRef } from './api.js';
import { collectHeaderActions, httpItemMatches } from './l7.js';
import { lookupPort, viewForUnknown, type CompiledSel, type DirPolicy, type RemoteView } from './tables.js';

/** What decide() needs from a snapshot. */
export interface DecisionIndex {
  /** Identity ids known at compile time (their views are indexed). */
  readonly known: ReadonlyMap<number, Identity>;
  /** Subject identity id → policy, for identities that own endpoints. */
  readonly egress: ReadonlyMap<number, DirPolicy>;
  readonly ingress: ReadonlyMap<number, DirPolicy>;
}

const NO_ACTIONS: readonly HeaderAction[] = Object.freeze([]);

// Header actions found while deciding. decide() is synchronous, so one scratch
// slot (reset per call) avoids allocating a callback per decision.
let pending: HeaderAction[] | undefined;
// The log of the map entry decideDirection's lookup matched (a frozen array of the
// snapshot), read by decide() right after each direction: no allocation.
let viewLog: readonly string[] | undefined;
/** The same entry's policies when more than one (RemoteView.allowRules / denyRules). */
let viewRules: readonly RuleRef[] | undefined;

/** Decide one connection / request / DNS query. */
export function decide(ix: DecisionIndex, q: DecisionQuery): Verdict {
  pending = undefined;
  let eg: DirectionVerdict | undefined;
  let ing: DirectionVerdict | undefined;
  let egLog: readonly string[] | undefined;
  let ingLog: readonly string[] | undefined;
  let egRules: readonly RuleRef[] | undefined;
  let ingRules: readonly RuleRef[] | undefined;
  const egp = ix.egress.get(q.src.id);
  if (egp !== undefined) {
    eg = decideDirection(egp, q.dst, ix.known.get(q.dst.id) !== undefined, q);
    egLog = viewLog;
    egRules = viewRules;
  }
  const ingp = ix.ingress.get(q.dst.id);
  if (ingp !== undefined) {
    ing = decideDirection(ingp, q.src, ix.known.get(q.src.id) !== undefined, q);
    ingLog = viewLog;
    ingRules = viewRules;
  }
  let decider: DirectionVerdict | undefined;
  let allowed = true;
  if (eg !== undefined && !eg.allowed) {
    decider = eg;
    allowed = false;
  } else if (ing !== undefined && !ing.allowed) {
    decider = ing;
    allowed = false;
  } else if (ing !== undefined && ing.enforced) {
    decider = ing;
  } else if (eg !== undefined && eg.enforced) {
    decider = eg;
  }
  const type = allowed
    ? eg?.type === 'L7' || ing?.type === 'L7'
      ? 'L7'
      : 'L3_L4'
    : (decider as DirectionVerdict).type;
  return {
    allowed,
    type,
    dropReason: decider?.dropReason,
    rule: decider?.rule,
    decidedBy: decider?.direction,
    egress: eg,
    ingress: ing,
    headerActions: allowed && pending !== undefined ? pending : NO_ACTIONS,
    egressLog: egLog,
    ingressLog: ingLog,
    egressRules: egRules,
    ingressRules: ingRules,
  };
}

/** One direction: `remote` is the peer (destination for egress, source for ingress). */
export function decideDirection(
  dp: DirPolicy,
  remote: Identity,
  known: boolean,
  q: DecisionQuery,
): DirectionVerdict {
  viewLog = undefined;
  viewRules = undefined;
  if (dp.open !== undefined) return dp.open;
  const table = dp.tables[q.protocol];
  const entry = lookupPort(table, q.port);
  if (entry === undefined) return dp.denied;
  const view = known ? (entry.byRemote.get(remote.id) ?? entry.wildcardView) : viewForUnknown(entry, remote);
  if (view === undefined) return dp.denied;
  if (view.deny !== undefined) {
    viewLog = view.denyLog;
    viewRules = view.denyRules;
    return view.deny.denyVerdict;
  }
  viewLog = view.allowLog;
  viewRules = view.allowRules;
  if (view.allows.length === 0) return dp.denied;
  if (view.hasSni || view.hasHeaderActions) return decideSlow(dp, view, q);
  const l7 = view.firstL7;
  const l4 = view.firstL4;
  if (l7 === undefined) return view.allowL4 as DirectionVerdict;
  // The port is redirected to the proxy for this peer (type L7).
  if (l4 !== undefined) return l4.allowL7[l7.parser as 'http' | 'dns'];
  if (q.http !== undefined && l7.parser === 'http') {
    const http = q.http;
    for (const s of view.allows) {
      const items = s.http;
      for (let i = 0; i < items.length; i++) {
        if (httpItemMatches(items[i]!, http)) return s.httpAllow[i]!;
      }
    }
    return l7.l7Denied;
  }
  if (q.dns !== undefined && l7.parser === 'dns') {
    for (const s of view.allows) {
      const groups = s.dns;
      for (let i = 0; i < groups.length; i++) {
        if (groups[i]!.matcher.test(q.dns)) return s.dnsAllow[i]!;
      }
    }
    return l7.l7Denied;
  }
  // L3/L4 question (or an L7 question of another protocol): the peer is allowed here.
  return l7.allowL7[l7.parser as 'http' | 'dns'];
}

/** With serverNames or header actions: filter rules by SNI, run every action. */
function decideSlow(
  dp: DirPolicy,
  view: RemoteView,
  q: DecisionQuery,
): DirectionVerdict {
  const live: CompiledSel[] = [];
  for (const s of view.allows) {
    if (s.sni !== undefined && (q.sni === undefined || !s.sni.test(q.sni))) continue;
    live.push(s);
  }
  if (live.length === 0) {
    const first = view.allows[0] as CompiledSel;
    return sniDenied(dp, first, q.sni === undefined);
  }
  const l7 = live.find((s) => s.parser !== undefined);
  const l4 = live.find((s) => s.parser === undefined);
  if (l7 === undefined) return (l4 as CompiledSel).allowL4;
  const parser = l7.parser as 'http' | 'dns';
  if (q.http !== undefined && parser === 'http') {
    const http = q.http;
    const wantActions = live.some((s) => s.hasHeaderActions);
    let allow: DirectionVerdict | undefined = l4?.allowL7.http;
    const acts: HeaderAction[] = [];
    for (const s of live) {
      for (let i = 0; i < s.http.length; i++) {
        const item = s.http[i]!;
        if (!httpItemMatches(item, http)) continue;
        allow ??= s.httpAllow[i];
        if (!wantActions) break;
        collectHeaderActions(item, http, acts);
      }
      if (allow !== undefined && !wantActions) break;
    }
    if (allow === undefined) return l7.l7Denied;
    if (acts.length > 0) (pending ??= []).push(...acts);
    return allow;
  }
  if (l4 !== undefined) return l4.allowL7[parser];
  if (q.dns !== undefined && parser === 'dns') {
    for (const s of live) {
      for (let i = 0; i < s.dns.length; i++) if (s.dns[i]!.matcher.test(q.dns)) return s.dnsAllow[i]!;
    }
    return l7.l7Denied;
  }
  return l7.allowL7[parser];
}

const sniDeniedCache = new WeakMap<CompiledSel, DirectionVerdict>();
const sniMissingCache = new WeakMap<CompiledSel, DirectionVerdict>();

/**
 * Denied because no rule's serverNames matched the SNI: POLICY_DENIED naming that
 * rule; `sniMissing` when there was no SNI to match at all.
 */
function sniDenied(dp: DirPolicy, s: CompiledSel, missing: boolean): DirectionVerdict {
  const cache = missing ? sniMissingCache : sniDeniedCache;
  let v = cache.get(s);
  if (v === undefined) {
    v = Object.freeze(missing ? { ...dp.denied, rule: s.ref, sniMissing: true as const } : { ...dp.denied, rule: s.ref });
    cache.set(s, v);
  }
  return v;
}
