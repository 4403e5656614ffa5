/**
 * ConfigDocs → PolicySnapshot. Follows Cilium's policy resolution
 * (pkg/policy/repository.go, rule.go, l4.go; CILIUM-SEMANTICS.md §2):
 *
 * 1. identities: one per distinct filtered pod label set (deterministic numbers),
 *    reserved ones, and a local-scope CIDR identity per prefix named in policy;
 * 2. per subject identity and direction: the rule entries selecting it decide
 *    default-deny (entries count, `enableDefaultDeny: false` on every selecting
 *    rule leaves it open but denies still apply, `always` / `never` modes);
 * 3. each entry becomes per-selector policies on L4 filters keyed by port/proto,
 *    merged as Cilium merges them (parsers, TLS contexts, SNI, L7 wildcarding);
 * 4. filters become port tables indexed by remote identity (tables.ts), shared
 *    between subjects that have the same entries.
 *
 * Compile errors (merge conflicts, invalid patterns) are ConfigIssues located at
 * the rule element; any error means no snapshot.
 */
import type { ConfigDocs, PodDoc } from '../config/documents.js';
import type { ConfigIssue } from '../config/issues.js';
import type {
  Direction,
  DNSRule,
  L4Proto,
  PeerRule,
  PortRule,
  Rule,
  RuleRef,
  RuleSection,
  TLSContext,
} from './api.js';
import type { DirectionVerdict, PolicyMatchType } from './types.js';
import type { Endpoint, Identity } from '../identity/identity.js';
import { Reserved } from '../identity/identity.js';
import { IdentityAllocator } from '../identity/allocator.js';
import { IPCache, type IPCacheOverlay, parsePrefix } from '../identity/ipcache.js';
import { podIdentityLabels } from '../identity/labels.js';
import { WardenError } from '../core/errors.js';
import {
  cidrSelector,
  entitySelector,
  fqdnKey,
  fqdnSelector,
  labelSelector,
  nodeSelector,
  reservedSelector,
  selectorMatches,
  WILDCARD_SELECTOR,
  type PeerSelector,
} from './selectors.js';
import {
  compileDnsGroup,
  compileHttpItem,
  compileServerNames,
  secretValueFrom,
  wildcardHttpItem,
  type CompiledHttpItem,
  type DnsGroup,
  type SecretValue,
} from './l7.js';
import {
  buildPortEntry,
  logList,
  notEnforcedVerdict,
  type CompiledSel,
  type DirPolicy,
  type FilterSummary,
  type L7Parser,
  type PortEntry,
  type ProtoTable,
  type RemoteView,
} from './tables.js';
import { PolicySnapshotImpl, type SnapshotInternals } from './snapshot.js';
import { compileOne, normalizeQName } from './dns-pattern.js';

export interface CompileOptions {
  /** Snapshot version (the store bumps it on every swap). Default 1. */
  readonly version?: number;
  /** Cilium's --enable-policy. Default `default`. */
  readonly enforcement?: 'default' | 'always' | 'never';
  /** A shared IP cache overlay (FQDN-learned IPs) carried across snapshots. */
  readonly ipOverlay?: IPCacheOverlay;
}

export interface CompileResult {
  readonly snapshot?: PolicySnapshotImpl;
  readonly errors: ConfigIssue[];
}

const PROTOS: readonly L4Proto[] = ['TCP', 'UDP', 'SCTP'];

/** One rule entry (an element of ingress / ingressDeny / egress / egressDeny). */
interface Entry {
  readonly uid: number;
  readonly rule: Rule;
  readonly ref: RuleRef;
  readonly peer: PeerRule;
  readonly deny: boolean;
  readonly usesNamedPorts: boolean;
}

/** A per-selector policy while merging (Cilium's PerSelectorPolicy). */
interface SelDraft {
  sel: PeerSelector;
  deny: boolean;
  refs: (RuleRef | undefined)[];
  /** `log.value`s of the contributing rules (Cilium merges them into the map entry's origin). */
  logs: string[];
  parser: L7Parser | undefined;
  http: CompiledHttpItem[];
  dns: DnsGroup[];
  serverNames: string[];
  terminatingTLS: TLSContext | undefined;
  originatingTLS: TLSContext | undefined;
  /** The synthesized allow-localhost entry (not a rule: never part of the proxy's policy). */
  localhost: boolean;
}

interface FilterDraft {
  proto: L4Proto;
  port: number;
  endPort: number;
  parser: L7Parser | undefined;
  sels: Map<string, SelDraft>;
}

class CompileError extends Error {
  constructor(
    readonly entry: Entry | undefined,
    message: string,
  ) {
    super(message);
  }
}

function issuePath(ref: RuleRef): string {
  const spec = ref.specIndex === undefined ? 'spec' : `specs[${ref.specIndex}]`;
  return `${spec}.${ref.section}[${ref.index}]`;
}

function tlsEqual(a: TLSContext, b: TLSContext): boolean {
  return (
    a.secret.namespace === b.secret.namespace &&
    a.secret.name === b.secret.name &&
    (a.trustedCA ?? '') === (b.trustedCA ?? '') &&
    (a.certificate ?? '') === (b.certificate ?? '') &&
    (a.privateKey ?? '') === (b.privateKey ?? '')
  );
}

function tlsText(t: TLSContext | undefined): string {
  return t ? `${t.secret.namespace}/${t.secret.name}` : 'none';
}

const MATCH_ALL_DNS = (ref: RuleRef | undefined): DnsGroup => compileDnsGroup(ref, [{ matchPattern: '*' }]);

/**
 * Compile loaded documents into an immutable snapshot. Never throws for policy
 * problems: they come back as located ConfigIssues and no snapshot.
 */
export function compileSnapshot(docs: ConfigDocs, opts: CompileOptions = {}): CompileResult {
  const c = new Compiler(docs, opts);
  return c.run();
}

class Compiler {
  private readonly errors: ConfigIssue[] = [];
  private readonly errorKeys = new Set<string>();
  private readonly alloc = new IdentityAllocator();
  private readonly enforcement: 'default' | 'always' | 'never';
  private readonly secretValue: SecretValue;
  private known: Identity[] = [];
  private readonly selectorIds = new Map<string, readonly number[]>();
  private readonly httpCache = new Map<PortRule, CompiledHttpItem[]>();
  private readonly dnsCache = new Map<PortRule, DnsGroup>();
  private readonly namedPortsByIdentity = new Map<number, Map<string, { port: number; protocol: L4Proto }[]>>();
  private readonly dirCache = new Map<string, DirPolicy>();
  private readonly viewIntern = new Map<string, RemoteView>();
  private readonly selIndex = new Map<CompiledSel, number>();

  constructor(
    private readonly docs: ConfigDocs,
    private readonly opts: CompileOptions,
  ) {
    this.enforcement = opts.enforcement ?? 'default';
    this.secretValue = secretValueFrom(docs.secrets);
  }

  run(): CompileResult {
    const rules: Rule[] = this.docs.policies.flatMap((p) => p.rules);
    const entries = this.collectEntries(rules);

    // Identities: pods, then CIDR prefixes named in policy (all in one sorted batch).
    const nsDocs = new Map(this.docs.namespaces.map((n) => [n.name, n]));
    const endpointPods = this.docs.pods.filter((p) => !p.hostNetwork);
    const podLabelSets = endpointPods.map((p) => podIdentityLabels(p, nsDocs.get(p.namespace)));
    const prefixes = this.policyPrefixes(entries);
    const cidrSets = prefixes.map((p) => [`cidr:${p}`, 'reserved:world']);
    const allocated = this.alloc.allocateBatch([...podLabelSets, ...cidrSets]);
    const podIdents = allocated.slice(0, endpointPods.length);
    const cidrIdents = allocated.slice(endpointPods.length);
    this.known = this.alloc.all();
    const identities = new Map(this.known.map((i) => [i.id, i]));

    const endpoints = this.buildEndpoints(endpointPods, podIdents);
    const host = identities.get(Reserved.host) as Identity;
    const world = identities.get(Reserved.world) as Identity;
    const ipEntries: [string, Identity][] = [];
    prefixes.forEach((p, i) => ipEntries.push([p, cidrIdents[i] as Identity]));
    for (const p of this.docs.pods) if (p.hostNetwork) for (const ip of p.ips) ipEntries.push([ip, host]);
    for (const ep of endpoints) for (const ip of ep.ips) ipEntries.push([ip, ep.identity]);
    const validIps = ipEntries.filter(([ip]) => {
      try {
        parsePrefix(ip);
        return true;
      } catch {
        return false;
      }
    });
    const ipcache = new IPCache(validIps, world, this.opts.ipOverlay);

    // Which rules select which subject identity.
    const subjects = [...new Set(endpoints.map((e) => e.identity))].sort((a, b) => a.id - b.id);
    const egress = new Map<number, DirPolicy>();
    const ingress = new Map<number, DirPolicy>();
    const rulesBySubject = this.rulesBySubject(rules, subjects);
    const entriesByRule = new Map<Rule, Entry[]>();
    for (const e of entries) {
      let l = entriesByRule.get(e.rule);
      if (!l) entriesByRule.set(e.rule, (l = []));
      l.push(e);
    }
    for (const subj of subjects) {
      const selecting = rulesBySubject.get(subj.id) ?? [];
      const mine = selecting.flatMap((r) => entriesByRule.get(r) ?? []);
      for (const dir of ['ingress', 'egress'] as const) {
        const dp = this.dirPolicy(subj, dir, selecting, mine);
        if (dp) (dir === 'ingress' ? ingress : egress).set(subj.id, dp);
      }
    }

    if (this.errors.length > 0) return { errors: this.errors };

    const fqdnSelectors = this.fqdnSelectors(entries);
    const internals: SnapshotInternals = {
      version: this.opts.version ?? 1,
      enforcement: this.enforcement,
      stats: {
        documents: this.docs.documentCount,
        policies: this.docs.policies.length,
        rules: rules.length,
        endpoints: endpoints.length,
        identities: identities.size,
      },
      identities,
      endpoints,
      ipcache,
      allocator: this.alloc,
      index: { known: identities, egress, ingress },
      fqdnSelectors,
    };
    return { snapshot: new PolicySnapshotImpl(internals), errors: [] };
  }

  private addError(entry: Entry | undefined, rule: Rule | undefined, message: string): void {
    const pos = entry?.peer.pos ?? rule?.pos;
    const issue: ConfigIssue = {
      file: pos?.file ?? this.docs.dir,
      line: pos?.line ?? 1,
      col: pos?.col ?? 1,
      path: entry ? issuePath(entry.ref) : '',
      message,
    };
    const key = `${issue.file}:${issue.line}:${issue.col}:${issue.path}:${issue.message}`;
    if (this.errorKeys.has(key)) return;
    this.errorKeys.add(key);
    this.errors.push(issue);
  }

  private collectEntries(rules: readonly Rule[]): Entry[] {
    const out: Entry[] = [];
    const sections: readonly RuleSection[] = ['ingress', 'ingressDeny', 'egress', 'egressDeny'];
    for (const rule of rules) {
      // Host policies (nodeSelector) never select pods; l7warden has no host endpoint.
      if (!rule.endpointSelector) continue;
      for (const section of sections) {
        rule[section].forEach((peer, index) => {
          const usesNamedPorts = peer.toPorts.some((pr) => pr.ports.some((p) => !/^\d+$/.test(p.port)));
          out.push({
            uid: out.length,
            rule,
            ref: { ...rule.ref, section, index },
            peer,
            deny: section.endsWith('Deny'),
            usesNamedPorts,
          });
        });
      }
    }
    return out;
  }

  private policyPrefixes(entries: readonly Entry[]): string[] {
    const set = new Set<string>();
    for (const e of entries) {
      for (const c of e.peer.cidrSet ?? []) {
        for (const p of [c.cidr, ...c.except]) {
          try {
            const parsed = parsePrefix(p);
            // 0.0.0.0/0 and ::/0 are the world identities, not CIDR identities.
            if (parsed.len > 0) set.add(parsed.text);
          } catch (err) {
            this.addError(e, e.rule, err instanceof Error ? err.message : String(err));
          }
        }
      }
    }
    return [...set].sort();
  }

  private buildEndpoints(pods: readonly PodDoc[], idents: readonly Identity[]): Endpoint[] {
    const out: Endpoint[] = [];
    pods.forEach((pod, i) => {
      const identity = idents[i] as Identity;
      const namedPorts = new Map<string, { port: number; protocol: L4Proto }>();
      let byName = this.namedPortsByIdentity.get(identity.id);
      if (!byName) this.namedPortsByIdentity.set(identity.id, (byName = new Map()));
      for (const cp of pod.containerPorts) {
        if (!cp.name) continue;
        const name = cp.name.toLowerCase();
        namedPorts.set(name, { port: cp.port, protocol: cp.protocol });
        let l = byName.get(name);
        if (!l) byName.set(name, (l = []));
        if (!l.some((x) => x.port === cp.port && x.protocol === cp.protocol)) l.push({ port: cp.port, protocol: cp.protocol });
      }
      out.push(Object.freeze({ namespace: pod.namespace, name: pod.name, identity, ips: pod.ips, namedPorts }));
    });
    return out.sort((a, b) => (a.namespace === b.namespace ? cmp(a.name, b.name) : cmp(a.namespace, b.namespace)));
  }

  private rulesBySubject(rules: readonly Rule[], subjects: readonly Identity[]): Map<number, Rule[]> {
    const out = new Map<number, Rule[]>();
    // Rules with the same subject selector are evaluated once.
    const bySelector = new Map<string, Rule[]>();
    for (const r of rules) {
      if (!r.endpointSelector) continue;
      const key = labelSelector(r.endpointSelector).key;
      let l = bySelector.get(key);
      if (!l) bySelector.set(key, (l = []));
      l.push(r);
    }
    for (const group of bySelector.values()) {
      const sel = (group[0] as Rule).endpointSelector!;
      for (const s of subjects) {
        if (!selectorMatches(sel, s)) continue;
        let l = out.get(s.id);
        if (!l) out.set(s.id, (l = []));
        l.push(...group);
      }
    }
    // Keep document order so the first contributing rule is stable.
    const order = new Map(rules.map((r, i) => [r, i]));
    for (const l of out.values()) l.sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
    return out;
  }

  /** The compile-time identity ids a selector selects (cached per selector key). */
  private idsOf = (sel: PeerSelector): readonly number[] => {
    let ids = this.selectorIds.get(sel.key);
    if (ids === undefined) {
      ids = this.known.filter((i) => sel.matches(i)).map((i) => i.id);
      this.selectorIds.set(sel.key, ids);
    }
    return ids;
  };

  private dirPolicy(subj: Identity, dir: Direction, selecting: readonly Rule[], mine: readonly Entry[]): DirPolicy | undefined {
    if (this.enforcement === 'never') return undefined;
    const dirEntries = mine.filter((e) => e.ref.section === dir || e.ref.section === `${dir}Deny`);
    let enforced: boolean;
    if (this.enforcement === 'always') enforced = true;
    else if (dirEntries.length === 0) enforced = false;
    else {
      // computePolicyEnforcementAndRules: default-deny unless every rule with
      // entries in this direction disables it.
      const withEntries = selecting.filter((r) => dirEntries.some((e) => e.rule === r));
      enforced = withEntries.some((r) => r.enableDefaultDeny[dir] !== false);
    }
    if (!enforced && dirEntries.length === 0) {
      return Object.freeze({
        direction: dir,
        enforced: false,
        open: notEnforcedVerdict(dir),
        entries: 0,
        tables: EMPTY_TABLES,
        filters: [],
        denied: notEnforcedVerdict(dir),
      });
    }
    const namedSig =
      dir === 'ingress' && dirEntries.some((e) => e.usesNamedPorts)
        ? JSON.stringify([...(this.namedPortsByIdentity.get(subj.id) ?? new Map())].sort())
        : '';
    const key = `${dir}|${enforced}|${dirEntries.map((e) => e.uid).join(',')}|${namedSig}`;
    const cached = this.dirCache.get(key);
    if (cached) return cached;
    const dp = this.buildDirPolicy(subj, dir, enforced, dirEntries);
    this.dirCache.set(key, dp);
    return dp;
  }

  private buildDirPolicy(subj: Identity, dir: Direction, enforced: boolean, entries: readonly Entry[]): DirPolicy {
    const filters = new Map<string, FilterDraft>();
    for (const e of entries) {
      try {
        this.mergeEntry(filters, subj, dir, e);
      } catch (err) {
        if (err instanceof CompileError) this.addError(err.entry ?? e, e.rule, err.message);
        else if (err instanceof WardenError) this.addError(e, e.rule, err.message);
        else throw err;
      }
    }
    // Synthesized rules (no RuleRef): an open direction with rules gets an allow-all
    // L3 rule (deny rules still win); enforced ingress always admits the local host
    // (allow-localhost=always, Cilium's default on Kubernetes). The latter is only a
    // datapath map entry, see makeView in tables.ts for what that implies on L7 ports.
    if (!enforced) this.mergeSynth(filters, WILDCARD_SELECTOR);
    else if (dir === 'ingress') this.mergeSynth(filters, reservedSelector('host'), true);

    const denied: DirectionVerdict = Object.freeze({
      direction: dir,
      enforced,
      allowed: !enforced,
      type: 'L3_L4',
      ...(enforced ? { dropReason: 'POLICY_DENIED' as const } : {}),
    });
    const summaries: FilterSummary[] = [];
    const byProto = new Map<L4Proto, { draft: FilterDraft; sels: CompiledSel[] }[]>();
    const sorted = [...filters.values()].sort(
      (a, b) => cmp(a.proto, b.proto) || a.port - b.port || a.endPort - b.endPort,
    );
    for (const f of sorted) {
      const sels = [...f.sels.values()].map((d) => this.compileSel(d, dir, enforced, f.parser, f.port));
      summaries.push(Object.freeze({ proto: f.proto, port: f.port, endPort: f.endPort, parser: f.parser, sels }));
      let l = byProto.get(f.proto);
      if (!l) byProto.set(f.proto, (l = []));
      l.push({ draft: f, sels });
    }
    const tables = {} as Record<L4Proto, ProtoTable>;
    for (const proto of PROTOS) tables[proto] = this.protoTable(byProto.get(proto) ?? []);
    return Object.freeze({
      direction: dir,
      enforced,
      open: undefined,
      entries: entries.length,
      tables: Object.freeze(tables),
      filters: Object.freeze(summaries),
      denied,
    });
  }

  private protoTable(filters: { draft: FilterDraft; sels: CompiledSel[] }[]): ProtoTable {
    const zero = filters.filter((f) => f.draft.port === 0).flatMap((f) => f.sels);
    const specific = filters.filter((f) => f.draft.port !== 0);
    const exact = new Map<number, PortEntry>();
    const rangeStart: number[] = [];
    const rangeEnd: number[] = [];
    const rangeEntry: PortEntry[] = [];
    const points = [...new Set(specific.flatMap((f) => [f.draft.port, f.draft.endPort + 1]))].sort((a, b) => a - b);
    const entryCache = new Map<string, PortEntry>();
    for (let i = 0; i + 1 < points.length; i++) {
      const lo = points[i] as number;
      const hi = (points[i + 1] as number) - 1;
      const covering = specific.filter((f) => f.draft.port <= lo && f.draft.endPort >= hi);
      if (covering.length === 0) continue;
      const ckey = covering.map((f) => `${f.draft.port}-${f.draft.endPort}`).join(',');
      let entry = entryCache.get(ckey);
      if (!entry) {
        entry = this.portEntry([...covering.flatMap((f) => f.sels), ...zero]);
        entryCache.set(ckey, entry);
      }
      if (lo === hi) exact.set(lo, entry);
      else {
        rangeStart.push(lo);
        rangeEnd.push(hi);
        rangeEntry.push(entry);
      }
    }
    return Object.freeze({
      exact,
      rangeStart,
      rangeEnd,
      rangeEntry,
      any: zero.length ? this.portEntry(zero) : undefined,
    });
  }

  private portEntry(sels: CompiledSel[]): PortEntry {
    return buildPortEntry(sels, this.idsOf, this.viewIntern, (s) => this.selIndex.get(s) ?? 0);
  }

  /** Peer selectors of an entry; absent peers with ports = wildcard; explicit [] = none. */
  private peerSelectors(e: Entry): PeerSelector[] {
    const p = e.peer;
    const hasPeerField =
      p.endpoints !== undefined || p.cidrSet !== undefined || p.entities !== undefined || p.nodes !== undefined || p.fqdns !== undefined;
    if (!hasPeerField) return p.toPorts.length > 0 ? [WILDCARD_SELECTOR] : [];
    const out: PeerSelector[] = [];
    for (const s of p.endpoints ?? []) out.push(labelSelector(s));
    for (const c of p.cidrSet ?? []) out.push(cidrSelector(c));
    for (const en of p.entities ?? []) out.push(entitySelector(en));
    for (const n of p.nodes ?? []) out.push(nodeSelector(n));
    for (const f of p.fqdns ?? []) out.push(fqdnSelector(f));
    return out;
  }

  private mergeEntry(filters: Map<string, FilterDraft>, subj: Identity, dir: Direction, e: Entry): void {
    const sels = this.peerSelectors(e);
    if (sels.length === 0) return;
    if (e.peer.toPorts.length === 0) {
      // L3-only: port 0, every protocol, no L7.
      for (const proto of PROTOS) {
        for (const sel of sels) this.mergeSel(filters, e, proto, 0, 0, undefined, sel, undefined);
      }
      return;
    }
    for (const pr of e.peer.toPorts) {
      const parser: L7Parser | undefined = pr.rules?.http?.length ? 'http' : pr.rules?.dns?.length ? 'dns' : undefined;
      for (const pp of pr.ports) {
        const protos = pp.protocol === 'ANY' ? PROTOS : [pp.protocol];
        if (/^\d+$/.test(pp.port)) {
          const port = Number(pp.port);
          const endPort = pp.endPort !== undefined && pp.endPort > port ? pp.endPort : port;
          for (const proto of protos) {
            for (const sel of sels) this.mergeSel(filters, e, proto, port, endPort, parser, sel, pr);
          }
          continue;
        }
        // Named port: ingress resolves against the subject's pods, egress against
        // the pods the peer selector selects.
        const name = pp.port.toLowerCase();
        if (dir === 'ingress') {
          for (const np of this.namedPortsByIdentity.get(subj.id)?.get(name) ?? []) {
            if (!protos.includes(np.protocol)) continue;
            for (const sel of sels) this.mergeSel(filters, e, np.protocol, np.port, np.port, parser, sel, pr);
          }
        } else {
          // Egress: Cilium resolves the name over the identities the peer selector
          // selects (pkg/policy/types NamedPortMultiMap.GetNamedPort(name, proto, ids)),
          // once per concrete protocol: one number among them opens that port to the
          // whole selector; two different numbers (ErrDuplicateNamedPorts) or none
          // (ErrUnknownNamedPort) open nothing.
          for (const sel of sels) {
            for (const proto of protos) {
              let port = 0;
              let conflict = false;
              for (const id of this.idsOf(sel)) {
                for (const np of this.namedPortsByIdentity.get(id)?.get(name) ?? []) {
                  if (np.protocol !== proto) continue;
                  if (port === 0) port = np.port;
                  else if (np.port !== port) conflict = true;
                }
              }
              if (port !== 0 && !conflict) this.mergeSel(filters, e, proto, port, port, parser, sel, pr);
            }
          }
        }
      }
    }
  }

  private newDraft(e: Entry | undefined, sel: PeerSelector, parser: L7Parser | undefined, pr: PortRule | undefined): SelDraft {
    const ref = e?.ref;
    const d: SelDraft = {
      sel,
      deny: e?.deny ?? false,
      refs: [ref],
      logs: e?.rule.log !== undefined ? [e.rule.log] : [],
      parser,
      http: [],
      dns: [],
      serverNames: [...(pr?.serverNames ?? [])],
      terminatingTLS: pr?.terminatingTLS,
      originatingTLS: pr?.originatingTLS,
      localhost: false,
    };
    if (pr && parser === 'http') d.http = this.httpItems(pr, ref);
    if (pr && parser === 'dns') d.dns = [this.dnsGroup(pr, ref)];
    return d;
  }

  private httpItems(pr: PortRule, ref: RuleRef | undefined): CompiledHttpItem[] {
    let items = this.httpCache.get(pr);
    if (!items) {
      items = (pr.rules?.http ?? []).map((h) => compileHttpItem(h, ref, this.secretValue));
      this.httpCache.set(pr, items);
    }
    return items;
  }

  private dnsGroup(pr: PortRule, ref: RuleRef | undefined): DnsGroup {
    let g = this.dnsCache.get(pr);
    if (!g) {
      g = compileDnsGroup(ref, (pr.rules?.dns ?? []) as DNSRule[]);
      this.dnsCache.set(pr, g);
    }
    return g;
  }

  private mergeSynth(filters: Map<string, FilterDraft>, sel: PeerSelector, localhost = false): void {
    for (const proto of PROTOS) {
      this.mergeSel(filters, undefined, proto, 0, 0, undefined, sel, undefined);
      const d = filters.get(`${proto}/0-0`)?.sels.get(sel.key);
      // Only a draft that no rule contributed to is the bare allow-localhost entry.
      if (localhost && d !== undefined && !d.deny && d.refs.every((r) => r === undefined)) d.localhost = true;
    }
  }

  /** Merge one selector's policy into the L4 filter for port/proto (mergePortProto). */
  private mergeSel(
    filters: Map<string, FilterDraft>,
    e: Entry | undefined,
    proto: L4Proto,
    port: number,
    endPort: number,
    parser: L7Parser | undefined,
    sel: PeerSelector,
    pr: PortRule | undefined,
  ): void {
    const fkey = `${proto}/${port}-${endPort}`;
    let f = filters.get(fkey);
    if (!f) filters.set(fkey, (f = { proto, port, endPort, parser: undefined, sels: new Map() }));
    if (parser !== undefined) {
      if (f.parser === undefined) f.parser = parser;
      else if (f.parser !== parser) {
        throw new CompileError(e, `cannot merge conflicting L7 parsers (${parser}/${f.parser})`);
      }
    }
    const incoming = this.newDraft(e, sel, parser, pr);
    const cur = f.sels.get(sel.key);
    if (!cur) {
      f.sels.set(sel.key, incoming);
      checkSni(incoming, e);
      return;
    }
    // Denies take priority over any rule; deny rules on one key merge their origins.
    if (cur.deny) {
      if (incoming.deny) {
        cur.refs.push(incoming.refs[0]);
        cur.logs.push(...incoming.logs);
      }
      return;
    }
    if (incoming.deny) {
      f.sels.set(sel.key, incoming);
      return;
    }
    if (incoming.terminatingTLS) {
      if (!cur.terminatingTLS) cur.terminatingTLS = incoming.terminatingTLS;
      else if (!tlsEqual(cur.terminatingTLS, incoming.terminatingTLS)) {
        throw new CompileError(
          e,
          `cannot merge conflicting terminating TLS contexts for cached selector ${sel.key}: (${tlsText(incoming.terminatingTLS)}/${tlsText(cur.terminatingTLS)})`,
        );
      }
    }
    if (incoming.originatingTLS) {
      if (!cur.originatingTLS) cur.originatingTLS = incoming.originatingTLS;
      else if (!tlsEqual(cur.originatingTLS, incoming.originatingTLS)) {
        throw new CompileError(
          e,
          `cannot merge conflicting originating TLS contexts for cached selector ${sel.key}: (${tlsText(incoming.originatingTLS)}/${tlsText(cur.originatingTLS)})`,
        );
      }
    }
    for (const n of incoming.serverNames) if (!cur.serverNames.includes(n)) cur.serverNames.push(n);
    cur.refs.push(incoming.refs[0]);
    cur.logs.push(...incoming.logs);
    checkSni(cur, e);
    const curL7 = cur.parser !== undefined;
    const newL7 = incoming.parser !== undefined;
    if (!curL7 && newL7) {
      // The L4-only side becomes a wildcard L7 rule: everything allowed at L7.
      cur.parser = incoming.parser;
      cur.http = incoming.parser === 'http' ? [...incoming.http, wildcardHttpItem(cur.refs[0])] : [];
      cur.dns = incoming.parser === 'dns' ? [...incoming.dns, MATCH_ALL_DNS(cur.refs[0])] : [];
    } else if (curL7 && !newL7) {
      if (cur.parser === 'http') cur.http = [...cur.http, wildcardHttpItem(incoming.refs[0])];
      else cur.dns = [...cur.dns, MATCH_ALL_DNS(incoming.refs[0])];
    } else if (curL7 && newL7) {
      const texts = new Set(cur.http.map((h) => h.text));
      cur.http = [...cur.http, ...incoming.http.filter((h) => !texts.has(h.text))];
      cur.dns = [...cur.dns, ...incoming.dns];
    }
  }

  private compileSel(d: SelDraft, dir: Direction, enforced: boolean, filterParser: L7Parser | undefined, port: number): CompiledSel {
    const ref = d.refs[0];
    const tls = {
      ...(d.terminatingTLS ? { terminatingTLS: d.terminatingTLS } : {}),
      ...(d.originatingTLS ? { originatingTLS: d.originatingTLS } : {}),
    };
    const base = { direction: dir, enforced };
    // The map entry this selector's policy becomes (port 0 = every port).
    const matchType: PolicyMatchType = d.sel.wildcard ? (port === 0 ? 4 : 3) : port === 0 ? 1 : 2;
    const allowL4: DirectionVerdict = Object.freeze({ ...base, allowed: true, type: 'L3_L4', rule: ref, ...tls, matchType });
    const allowL7 = Object.freeze({
      http: Object.freeze({ ...base, allowed: true, type: 'L7', rule: ref, l7: 'http', ...tls }),
      dns: Object.freeze({ ...base, allowed: true, type: 'L7', rule: ref, l7: 'dns', ...tls }),
    } as const);
    const parser = d.deny ? undefined : d.parser;
    const l7Denied: DirectionVerdict = Object.freeze({
      ...base,
      allowed: false,
      type: 'L7',
      rule: ref,
      dropReason: 'POLICY_DENIED',
      l7: parser ?? filterParser ?? 'http',
    });
    const denyVerdict: DirectionVerdict = Object.freeze({
      ...base,
      allowed: false,
      type: 'L3_L4',
      rule: ref,
      dropReason: 'POLICY_DENY',
    });
    const http = Object.freeze(parser === 'http' ? d.http : []);
    const dns = Object.freeze(parser === 'dns' ? d.dns : []);
    const cs: CompiledSel = Object.freeze({
      sel: d.sel,
      deny: d.deny,
      localhost: d.localhost,
      ref,
      refs: Object.freeze(d.refs),
      log: logList(d.logs),
      parser,
      http,
      dns,
      hasHeaderActions: http.some((i) => i.actions.length > 0),
      sni: d.serverNames.length > 0 && !d.deny ? compileServerNames(d.serverNames) : undefined,
      terminatingTLS: d.terminatingTLS,
      originatingTLS: d.originatingTLS,
      allowL4,
      allowL7,
      l7Denied,
      denyVerdict,
      httpAllow: Object.freeze(
        http.map((i) => Object.freeze({ ...base, allowed: true, type: 'L7', rule: i.ref ?? ref, l7: 'http', ...tls }) as DirectionVerdict),
      ),
      dnsAllow: Object.freeze(
        dns.map((g) => Object.freeze({ ...base, allowed: true, type: 'L7', rule: g.ref ?? ref, l7: 'dns', ...tls }) as DirectionVerdict),
      ),
    });
    this.selIndex.set(cs, this.selIndex.size + 1);
    return cs;
  }

  private fqdnSelectors(entries: readonly Entry[]): { key: string; matches(fqdn: string): boolean }[] {
    const out = new Map<string, { key: string; matches(fqdn: string): boolean }>();
    for (const e of entries) {
      for (const f of e.peer.fqdns ?? []) {
        const key = fqdnKey(f);
        if (out.has(key)) continue;
        const m = compileOne(f.matchName !== undefined ? { matchName: f.matchName } : { matchPattern: f.matchPattern ?? '' });
        out.set(key, Object.freeze({ key, matches: (fqdn: string) => m.test(normalizeQName(fqdn)) }));
      }
    }
    return [...out.values()].sort((a, b) => cmp(a.key, b.key));
  }
}

/** L7 rules with SNI filtering need TLS termination (mergePortProto). */
function checkSni(d: SelDraft, e: Entry | undefined): void {
  if (d.serverNames.length > 0 && d.parser !== undefined && !d.terminatingTLS) {
    throw new CompileError(
      e,
      `cannot merge L7 rules for cached selector ${d.sel.key} with SNI filtering without TLS termination: [${d.serverNames.join(' ')}]`,
    );
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const EMPTY_PROTO: ProtoTable = Object.freeze({
  exact: new Map(),
  rangeStart: [],
  rangeEnd: [],
  rangeEntry: [],
  any: undefined,
});
const EMPTY_TABLES: Readonly<Record<L4Proto, ProtoTable>> = Object.freeze({ TCP: EMPTY_PROTO, UDP: EMPTY_PROTO, SCTP: EMPTY_PROTO });
