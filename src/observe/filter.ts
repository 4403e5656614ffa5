/**
 * `hubble observe` filters over flow records, ported from Hubble's own code rather than
 * re-imagined (CILIUM-SEMANTICS.md §5.2):
 *
 * - the command line becomes Hubble's FlowFilters (hubble/cmd/observe/flows_filter.go):
 *   flags that name either side (`--label`, `--identity`, `--namespace`) put their
 *   source half in a left filter and their destination half in a right one, every
 *   other flag goes into both, and a flow passes when it matches the left OR the
 *   right filter (each the AND of its fields, each field the OR of its values). So
 *   `-n ns --label app=x` means "a source in ns labelled app=x, or such a destination",
 *   not "ns on one side and app=x on either";
 * - `--not` sends the next flag to a second set of filters (the blacklist); a flow
 *   matching any blacklist filter is left out. `--not --not` is an error;
 * - Hubble's flag conflicts (`--label` with `--from-label`, …) are errors;
 * - label selectors are Kubernetes selectors after Hubble's source-prefix translation
 *   (pkg/hubble/filters/labelparser.go, the k8s parser in
 *   pkg/k8s/slim/k8s/apis/labels/selector.go, lookups as pkg/labels LabelArray);
 * - HTTP filters follow pkg/hubble/filters/http.go: `--http-path` is an unanchored
 *   RE2 on the URL's decoded path (Go's url.ParseRequestURI), `--http-status` is
 *   `403` or `4+` / `40+`, and none of them may be combined with a `--type` that
 *   excludes l7 events.
 */
import RE2 from 're2';
import { RESERVED_NAMES } from '../identity/identity.js';
import { WardenError } from '../core/errors.js';

/** A flow as read back from JSON (`record.flow`). */
export type FlowJson = Record<string, any>;

export type Predicate = (f: FlowJson) => boolean;

export type FilterFlag =
  | 'from-label'
  | 'to-label'
  | 'label'
  | 'namespace'
  | 'from-namespace'
  | 'to-namespace'
  | 'verdict'
  | 'http-method'
  | 'http-path'
  | 'http-status'
  | 'protocol'
  | 'from-identity'
  | 'to-identity'
  | 'identity'
  | 'type'
  | 'traffic-direction';

export const FILTER_FLAGS: readonly FilterFlag[] = [
  'from-label',
  'to-label',
  'label',
  'namespace',
  'from-namespace',
  'to-namespace',
  'verdict',
  'http-method',
  'http-path',
  'http-status',
  'protocol',
  'from-identity',
  'to-identity',
  'identity',
  'type',
  'traffic-direction',
];

const usage = (msg: string) => new WardenError('L7W_ERR_USAGE', msg);

// ---- label selectors (k8s selector syntax, Cilium sources) ----------------------------

export interface Requirement {
  /** `any` matches a label of any source. */
  readonly source: string;
  readonly key: string;
  readonly op: 'in' | 'notin' | 'exists' | 'notexists' | 'gt' | 'lt';
  readonly values: readonly string[];
}

const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\r' || c === '\n';

/**
 * labelparser.go translateSelector: `k8s:foo in (a)` becomes `k8s.foo in (a)` and a
 * key without a source gets `any.`, so the k8s parser (no colons in keys) accepts it.
 */
export function translateSelector(sel: string): string {
  let out = '';
  let i = 0;
  while (i < sel.length) {
    while (i < sel.length && (isSpace(sel[i]!) || sel[i] === '!')) out += sel[i++];
    let key = '';
    while (i < sel.length && !(isSpace(sel[i]!) || sel[i] === '=' || sel[i] === '!' || sel[i] === ',')) key += sel[i++];
    if (!key.includes(':')) key = `any:${key}`;
    out += key.replace(':', '.');
    let nesting = 0;
    while (i < sel.length) {
      const c = sel[i++]!;
      if (c === '(') nesting++;
      if (c === ')') nesting--;
      out += c;
      if (c === ',' && nesting === 0) break;
    }
  }
  return out;
}

type Tok = 'id' | '!' | ',' | '=' | '==' | '!=' | '>' | '<' | '(' | ')' | 'in' | 'notin' | 'eos' | 'error';
const SPECIAL = new Set(['=', '!', '(', ')', ',', '>', '<']);
const SYMBOL_TOKENS = new Set(['!', ',', '=', '==', '!=', '>', '<', '(', ')']);

/** The k8s selector lexer (selector.go Lexer), as a token list. */
function lex(s: string): { tok: Tok; lit: string }[] {
  const items: { tok: Tok; lit: string }[] = [];
  let pos = 0;
  for (;;) {
    while (pos < s.length && isSpace(s[pos]!)) pos++;
    if (pos >= s.length) {
      items.push({ tok: 'eos', lit: '' });
      return items;
    }
    if (SPECIAL.has(s[pos]!)) {
      // Longest symbol that is a token: `!=` and `==` over `!` and `=`.
      let buf = '';
      let last: string | undefined;
      while (pos < s.length && SPECIAL.has(s[pos]!)) {
        buf += s[pos];
        if (SYMBOL_TOKENS.has(buf)) {
          last = buf;
          pos++;
        } else if (last !== undefined) break;
        else pos++;
      }
      items.push(last === undefined ? { tok: 'error', lit: buf } : { tok: last as Tok, lit: last });
      continue;
    }
    let buf = '';
    while (pos < s.length && !SPECIAL.has(s[pos]!) && !isSpace(s[pos]!)) buf += s[pos++];
    items.push({ tok: buf === 'in' || buf === 'notin' ? buf : 'id', lit: buf });
  }
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** k8s validation.IsQualifiedName on the translated key (`any.app`, `k8s.io.x/y`). */
function checkKey(k: string): void {
  const parts = k.split('/');
  let name = parts[0]!;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    name = parts[1]!;
    if (prefix === '' || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)) throw usage(`invalid label key ${JSON.stringify(k)}: bad prefix`);
  } else if (parts.length > 2) throw usage(`invalid label key ${JSON.stringify(k)}`);
  if (name === '' || name.length > 63 || !QUALIFIED_NAME.test(name)) throw usage(`invalid label key ${JSON.stringify(k)}: a name of up to 63 alphanumerics, '-', '_' or '.'`);
}

function checkValue(key: string, v: string): void {
  if (v.length > 63 || !LABEL_VALUE.test(v)) throw usage(`invalid label value ${JSON.stringify(v)} for ${key}: up to 63 alphanumerics, '-', '_' or '.'`);
}

/** Parse the translated selector as k8s labels.Parse does; errors as Hubble's are errors. */
function parseK8s(s: string): Requirement[] {
  const items = lex(s);
  let p = 0;
  // In a value position `in` / `notin` are plain identifiers.
  const look = (values: boolean) => {
    const it = items[p]!;
    return values && (it.tok === 'in' || it.tok === 'notin') ? { tok: 'id' as Tok, lit: it.lit } : it;
  };
  const take = (values: boolean) => {
    const it = look(values);
    p++;
    return it;
  };
  const fail = (msg: string): never => {
    throw usage(`bad label selector: ${msg}`);
  };
  const reqs: Requirement[] = [];
  for (;;) {
    const t = look(true);
    if (t.tok === 'eos') return reqs;
    if (t.tok !== 'id' && t.tok !== '!') fail(`found '${t.lit}', expected: !, identifier, or 'end of string'`);
    let op: Requirement['op'] | undefined;
    let k = take(true);
    if (k.tok === '!') {
      op = 'notexists';
      k = take(true);
    }
    if (k.tok !== 'id') fail(`found '${k.lit}', expected: identifier`);
    checkKey(k.lit);
    const next = look(true).tok;
    let values: string[] = [];
    if (next === 'eos' || next === ',') op ??= 'exists';
    if (op === undefined) {
      const o = take(false);
      const ops: Partial<Record<Tok, Requirement['op']>> = { in: 'in', notin: 'notin', '=': 'in', '==': 'in', '!=': 'notin', '>': 'gt', '<': 'lt' };
      op = ops[o.tok] ?? fail(`found '${o.lit}', expected: in, notin, =, ==, !=, gt, lt`);
      if (o.tok === 'in' || o.tok === 'notin') {
        if (take(true).tok !== '(') fail(`expected '(' after ${o.lit}`);
        const set = new Set<string>();
        const first = look(true).tok;
        if (first === ')') {
          p++;
          set.add('');
        } else if (first === 'id' || first === ',') {
          for (;;) {
            const v = take(true);
            if (v.tok === 'id') {
              set.add(v.lit);
              const after = look(true).tok;
              if (after === ',') continue;
              if (after === ')') break;
              fail(`found '${look(true).lit}', expected: ',' or ')'`);
            } else if (v.tok === ',') {
              if (set.size === 0) set.add('');
              const after = look(true).tok;
              if (after === ')') {
                set.add('');
                break;
              }
              if (after === ',') set.add('');
            } else fail(`found '${v.lit}', expected: ',', or identifier`);
          }
          if (take(true).tok !== ')') fail(`expected ')'`);
        } else fail(`found '${look(true).lit}', expected: ',', ')' or identifier`);
        values = [...set];
      } else {
        const v = look(true);
        if (v.tok === 'eos' || v.tok === ',') values = [''];
        else if (take(true).tok === 'id') values = [v.lit];
        else fail(`found '${v.lit}', expected: identifier`);
      }
    }
    if ((op === 'gt' || op === 'lt') && (values.length !== 1 || !/^[+-]?\d+$/.test(values[0]!))) fail(`${k.lit}: '>' and '<' take one integer`);
    for (const v of values) checkValue(k.lit, v);
    const dot = k.lit.indexOf('.');
    reqs.push({ source: k.lit.slice(0, dot), key: k.lit.slice(dot + 1), op: op!, values });
    const end = take(true);
    if (end.tok === 'eos') return reqs;
    if (end.tok !== ',') fail(`found '${end.lit}', expected: ',' or 'end of string'`);
    const t2 = look(true).tok;
    if (t2 !== 'id' && t2 !== '!') fail(`found '${look(true).lit}', expected: identifier after ','`);
  }
}

/** A Hubble label selector (`k8s:app=x,!any:y`); the empty string selects everything. */
export function parseSelector(sel: string): Requirement[] {
  return parseK8s(translateSelector(sel));
}

interface FlowLabel {
  readonly source: string;
  readonly key: string;
  readonly value: string;
}

/** pkg/labels ParseLabel: `source:key=value`, `$host` = reserved:host, no source = unspec. */
function parseFlowLabel(s: string): FlowLabel {
  let source = 'unspec';
  let next = s;
  if (s.startsWith('$')) {
    source = 'reserved';
    next = s.slice(1);
  } else {
    const c = s.indexOf(':');
    if (c >= 0) {
      source = s.slice(0, c);
      next = s.slice(c + 1);
    } else if (s.startsWith('reserved.')) {
      source = 'reserved';
      next = s.slice('reserved.'.length);
    }
  }
  const eq = next.indexOf('=');
  if (eq < 0) return { source, key: next, value: '' };
  if (eq === 0 && source === 'reserved') return { source, key: next.slice(1), value: '' };
  return { source, key: next.slice(0, eq), value: next.slice(eq + 1) };
}

/** LabelArray.Lookup: the first label (array sorted by key) with that key and source. */
function lookup(labels: readonly FlowLabel[], r: Requirement): string | undefined {
  for (const l of labels) if (l.key === r.key && (r.source === 'any' || l.source === r.source)) return l.value;
  return undefined;
}

export function selectorMatches(reqs: readonly Requirement[], labels: readonly FlowLabel[]): boolean {
  for (const r of reqs) {
    const v = lookup(labels, r);
    switch (r.op) {
      case 'exists':
        if (v === undefined) return false;
        break;
      case 'notexists':
        if (v !== undefined) return false;
        break;
      case 'in':
        if (v === undefined || !r.values.includes(v)) return false;
        break;
      case 'notin':
        if (v !== undefined && r.values.includes(v)) return false;
        break;
      case 'gt':
      case 'lt': {
        if (v === undefined || !/^[+-]?\d+$/.test(v)) return false;
        const a = Number(v);
        const b = Number(r.values[0]);
        if (r.op === 'gt' ? !(a > b) : !(a < b)) return false;
        break;
      }
    }
  }
  return true;
}

function flowLabels(ep: FlowJson | undefined): FlowLabel[] {
  const raw = ep?.labels;
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new TypeError('labels is not a list');
  return raw
    .map((l) => parseFlowLabel(String(l)))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

// ---- values -------------------------------------------------------------------------

const RESERVED_BY_NAME = new Map<string, number>(Object.entries(RESERVED_NAMES).map(([n, name]) => [name, Number(n)]));

function identityOf(flag: string, v: string): number {
  const r = RESERVED_BY_NAME.get(v.replace(/^reserved:/, ''));
  if (r !== undefined) return r;
  const n = Number(v);
  if (v.trim() !== '' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff) return n;
  throw usage(`--${flag} ${JSON.stringify(v)}: a number or a reserved name (${[...RESERVED_BY_NAME.keys()].join(', ')})`);
}

const VERDICTS = ['VERDICT_UNKNOWN', 'FORWARDED', 'DROPPED', 'ERROR', 'AUDIT', 'REDIRECTED', 'TRACED', 'TRANSLATED'];
/** monitor/api/types.go MessageTypeNames. */
const EVENT_TYPES: Record<string, number> = { drop: 1, debug: 2, capture: 3, trace: 4, 'policy-verdict': 5, 'trace-sock': 7, l7: 129, agent: 130 };
/** monitor/api/types.go TraceObservationPoints. */
const TRACE_POINTS: Record<string, number> = {
  'to-endpoint': 0,
  'to-proxy': 1,
  'to-host': 2,
  'to-stack': 3,
  'to-overlay': 4,
  'from-endpoint': 5,
  'from-proxy': 6,
  'from-host': 7,
  'from-stack': 8,
  'from-overlay': 9,
  'from-network': 10,
  'to-network': 11,
  'from-crypto': 12,
  'to-crypto': 13,
};
/** flows_filter.go agentEventSubtypes. */
const AGENT_SUBTYPES: Record<string, number> = {
  unspecified: 0,
  message: 1,
  'agent-started': 2,
  'endpoint-regenerate-success': 3,
  'endpoint-regenerate-failure': 4,
  'policy-updated': 5,
  'policy-deleted': 6,
  'endpoint-created': 7,
  'endpoint-deleted': 8,
  'ipcache-upserted': 9,
  'ipcache-deleted': 10,
};
const PROTOCOLS = ['tcp', 'udp', 'sctp', 'icmp', 'icmpv4', 'icmpv6', 'vrrp', 'igmp', 'dns', 'http', 'kafka'];

interface EventTypeFilter {
  readonly type: number;
  readonly subType?: number;
}

function parseUint32(s: string): number | undefined {
  return /^\d+$/.test(s) && Number(s) <= 0xffffffff ? Number(s) : undefined;
}

/** flows_filter.go "type": a name or number, then `:subtype` (names only after a type name). */
function parseEventType(v: string): EventTypeFilter {
  const colon = v.indexOf(':');
  const name = colon < 0 ? v : v.slice(0, colon);
  const named = EVENT_TYPES[name];
  const type = named ?? parseUint32(name);
  if (type === undefined) throw usage(`--type ${v}: one of ${Object.keys(EVENT_TYPES).join(', ')} or a number (optionally :subtype)`);
  if (colon < 0) return { type };
  const sub = v.slice(colon + 1);
  const byName = named === 4 ? TRACE_POINTS[sub] : named === 130 ? AGENT_SUBTYPES[sub] : undefined;
  const subType = byName ?? parseUint32(sub);
  if (subType === undefined) throw usage(`--type ${v}: unknown sub-type ${JSON.stringify(sub)}`);
  return { type, subType };
}

const HEX = /^[0-9a-fA-F]{2}$/;

/**
 * The path Go's url.ParseRequestURI gives (decoded), or undefined where it fails: an
 * absolute URL or an absolute path; no fragment is split off.
 */
export function requestUriPath(url: string): string | undefined {
  let rest: string;
  if (url.startsWith('/')) rest = url;
  else {
    const m = /^[A-Za-z][A-Za-z0-9+.-]*:/.exec(url);
    if (!m) return undefined;
    rest = url.slice(m[0].length);
    if (rest.startsWith('//')) {
      const slash = rest.indexOf('/', 2);
      const q = rest.indexOf('?', 2);
      const end = slash < 0 ? (q < 0 ? rest.length : q) : q >= 0 && q < slash ? q : slash;
      rest = rest.slice(end);
    } else if (!rest.startsWith('/')) return '';
  }
  const q = rest.indexOf('?');
  const raw = q < 0 ? rest : rest.slice(0, q);
  if (!raw.includes('%')) return raw;
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === '%') {
      const h = raw.slice(i + 1, i + 3);
      if (!HEX.test(h)) return undefined;
      bytes.push(parseInt(h, 16));
      i += 2;
    } else for (const b of Buffer.from(raw[i]!, 'utf8')) bytes.push(b);
  }
  return Buffer.from(bytes).toString('utf8');
}

// ---- FlowFilter fields ---------------------------------------------------------------

type Field =
  | 'source_label'
  | 'destination_label'
  | 'source_namespace'
  | 'destination_namespace'
  | 'source_identity'
  | 'destination_identity'
  | 'verdict'
  | 'http_method'
  | 'http_path'
  | 'http_status_code'
  | 'protocol'
  | 'event_type'
  | 'traffic_direction';

const HTTP_FIELDS: readonly Field[] = ['http_method', 'http_path', 'http_status_code'];

/** One Hubble FlowFilter: field -> values (ORed); fields ANDed. */
type FlowFilter = Map<Field, string[]>;

function fieldPredicate(field: Field, values: readonly string[]): Predicate {
  const anyOf = (mk: (v: string) => Predicate): Predicate => {
    const ps = values.map(mk);
    return (f) => ps.some((p) => p(f));
  };
  switch (field) {
    case 'source_label':
    case 'destination_label': {
      let sels: Requirement[][];
      try {
        sels = values.map(parseSelector);
      } catch (e) {
        const side = field === 'source_label' ? 'source' : 'destination';
        throw usage(`invalid ${side} label filter: ${e instanceof Error ? e.message : String(e)}`);
      }
      return (f) => {
        const labels = flowLabels(field === 'source_label' ? f.source : f.destination);
        return sels.some((s) => selectorMatches(s, labels));
      };
    }
    case 'source_namespace':
    case 'destination_namespace':
      // A namespace filter is Hubble's pod filter `ns/` (k8s.go filterByNamespacedName).
      return anyOf((ns) => (f) => {
        const ep = field === 'source_namespace' ? f.source : f.destination;
        const epNs = (ep?.namespace as string | undefined) ?? '';
        const pod = (ep?.pod_name as string | undefined) ?? '';
        if (epNs === '' && pod === '') return false;
        return ns === '' || ns === epNs;
      });
    case 'source_identity':
    case 'destination_identity': {
      const ids = values.map(Number);
      return (f) => {
        const ep = field === 'source_identity' ? f.source : f.destination;
        return ep !== undefined && ep !== null && ids.includes((ep.identity as number | undefined) ?? 0);
      };
    }
    case 'verdict':
      return (f) => values.includes(f.verdict ?? 'VERDICT_UNKNOWN');
    case 'http_method':
      return anyOf((m) => (f) => typeof f.l7?.http?.method === 'string' && f.l7.http.method !== '' && f.l7.http.method.toUpperCase() === m.toUpperCase());
    case 'http_path': {
      const res = values.map((v) => {
        try {
          return new RE2(v, 'u');
        } catch (e) {
          throw usage(`invalid http path filter: ${v}: ${e instanceof Error ? e.message : String(e)}`);
        }
      });
      return (f) => {
        const url = f.l7?.http?.url;
        if (typeof url !== 'string' || url === '') return false;
        const path = requestUriPath(url);
        return path !== undefined && res.some((re) => re.test(path));
      };
    }
    case 'http_status_code': {
      const full: string[] = [];
      const prefix: string[] = [];
      for (const s of values) {
        if (/^[1-5][0-9]{2}$/.test(s)) full.push(s);
        else if (/^[1-5][0-9]?\+$/.test(s)) prefix.push(s.slice(0, -1));
        else throw usage(`invalid http status code filter: invalid status code prefix: ${JSON.stringify(s)} (a status, 403, or a prefix, 4+ or 40+)`);
      }
      return (f) => {
        const code = f.l7?.http?.code;
        if (typeof code !== 'number' || code === 0) return false;
        const s = String(code).padStart(3, '0');
        return full.includes(s) || prefix.some((p) => s.startsWith(p));
      };
    }
    case 'protocol':
      return anyOf((v) => {
        const p = v.toLowerCase();
        if (!PROTOCOLS.includes(p)) throw usage(`invalid protocol filter: unknown protocol: ${JSON.stringify(v)} (${PROTOCOLS.join(', ')})`);
        switch (p) {
          case 'http':
            return (f) => f.l7?.http != null;
          case 'dns':
            return (f) => f.l7?.dns != null;
          case 'kafka':
            return (f) => f.l7?.kafka != null;
          case 'icmp':
            return (f) => f.l4?.ICMPv4 != null || f.l4?.ICMPv6 != null;
          default: {
            const key = { tcp: 'TCP', udp: 'UDP', sctp: 'SCTP', icmpv4: 'ICMPv4', icmpv6: 'ICMPv6', vrrp: 'VRRP', igmp: 'IGMP' }[p]!;
            return (f) => f.l4?.[key] != null;
          }
        }
      });
    case 'event_type': {
      const types = values.map(parseEventType);
      // event_type.go: type 0 is any type; a zero sub_type is omitted from the JSON.
      return (f) => {
        const et = f.event_type;
        if (et === undefined || et === null) return false;
        const t = (et.type as number | undefined) ?? 0;
        const st = (et.sub_type as number | undefined) ?? 0;
        return types.some((x) => (x.type === 0 || x.type === t) && (x.subType === undefined || x.subType === st));
      };
    }
    case 'traffic_direction':
      return (f) => values.includes(f.traffic_direction ?? 'TRAFFIC_DIRECTION_UNKNOWN');
  }
}

function compileFlowFilter(ff: FlowFilter): Predicate {
  const types = ff.get('event_type');
  if (types && HTTP_FIELDS.some((h) => ff.has(h)) && !types.some((t) => parseEventType(t).type === 129)) {
    // http.go httpMatchCompatibleEventFilter: HTTP fields only exist on l7 events.
    throw usage('filtering by http method, path or status requires the event type filter to match \'l7\' events');
  }
  const ps = [...ff].map(([field, values]) => fieldPredicate(field, values));
  return (f) => ps.every((p) => p(f));
}

// ---- the command line: flows_filter.go filterTracker ---------------------------------

export interface FlagValue {
  readonly flag: FilterFlag;
  readonly value: string;
  readonly negated: boolean;
}

/** flows_filter.go newFlowFilter conflicts, as far as our flags go. */
const CONFLICTS: readonly (readonly FilterFlag[])[] = [
  ['from-namespace', 'namespace'],
  ['to-namespace', 'namespace'],
  ['label', 'from-label'],
  ['label', 'to-label'],
  ['identity', 'to-identity'],
  ['identity', 'from-identity'],
];

class Tracker {
  left?: FlowFilter;
  right?: FlowFilter;
  readonly ns: string[] = [];
  readonly srcNs: string[] = [];
  readonly dstNs: string[] = [];
  readonly changed = new Set<FilterFlag>();

  private add(to: 'left' | 'right' | 'both', field: Field, value: string): void {
    for (const side of to === 'both' ? (['left', 'right'] as const) : [to]) {
      const ff = (this[side] ??= new Map());
      const list = ff.get(field) ?? [];
      list.push(value);
      ff.set(field, list);
    }
  }

  set(flag: FilterFlag, value: string): void {
    this.changed.add(flag);
    for (const group of CONFLICTS) {
      const hit = group.filter((g) => this.changed.has(g));
      if (hit.length > 1) throw usage(`filters --${hit[0]} and --${hit[1]} cannot be combined`);
    }
    switch (flag) {
      case 'label':
        this.add('left', 'source_label', value);
        this.add('right', 'destination_label', value);
        break;
      case 'from-label':
        this.add('both', 'source_label', value);
        break;
      case 'to-label':
        this.add('both', 'destination_label', value);
        break;
      case 'namespace':
        this.ns.push(value);
        break;
      case 'from-namespace':
        this.srcNs.push(value);
        break;
      case 'to-namespace':
        this.dstNs.push(value);
        break;
      case 'identity': {
        const id = String(identityOf(flag, value));
        this.add('left', 'source_identity', id);
        this.add('right', 'destination_identity', id);
        break;
      }
      case 'from-identity':
        this.add('both', 'source_identity', String(identityOf(flag, value)));
        break;
      case 'to-identity':
        this.add('both', 'destination_identity', String(identityOf(flag, value)));
        break;
      case 'verdict': {
        // Hubble takes the enum name as written; lower case is accepted here too.
        const v = value.toUpperCase();
        if (!VERDICTS.includes(v)) throw usage(`invalid --verdict value: ${value} (${VERDICTS.slice(1).join(', ')})`);
        this.add('both', 'verdict', v);
        break;
      }
      case 'http-method':
        this.add('both', 'http_method', value);
        break;
      case 'http-path':
        this.add('both', 'http_path', value);
        break;
      case 'http-status':
        this.add('both', 'http_status_code', value);
        break;
      case 'protocol':
        this.add('both', 'protocol', value);
        break;
      case 'type':
        parseEventType(value);
        this.add('both', 'event_type', value);
        break;
      case 'traffic-direction': {
        const d = value.toLowerCase();
        if (d !== 'ingress' && d !== 'egress') throw usage(`${d}: invalid traffic direction, expected ingress or egress`);
        this.add('both', 'traffic_direction', d.toUpperCase());
        break;
      }
    }
  }

  /** flowFilters(): the namespaces applied, one filter when left and right are equal. */
  flowFilters(): FlowFilter[] {
    if (!this.left && !this.right && this.ns.length + this.srcNs.length + this.dstNs.length === 0) return [];
    const left: FlowFilter = this.left ?? new Map();
    const right: FlowFilter = this.right ?? new Map();
    if (this.dstNs.length) for (const ff of [left, right]) ff.set('destination_namespace', [...this.dstNs]);
    if (this.srcNs.length) for (const ff of [left, right]) ff.set('source_namespace', [...this.srcNs]);
    if (this.ns.length) {
      left.set('source_namespace', [...this.ns]);
      right.set('destination_namespace', [...this.ns]);
    }
    return sameFilter(left, right) ? [left] : [left, right];
  }
}

function sameFilter(a: FlowFilter, b: FlowFilter): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.length !== v.length || v.some((x, i) => x !== w[i])) return false;
  }
  return true;
}

/**
 * The whole filter from flags in command-line order: a flow passes when it matches
 * one of the whitelist's FlowFilters (or there are none) and none of the blacklist's.
 */
export function buildFilter(flags: readonly FlagValue[]): Predicate {
  const white = new Tracker();
  const black = new Tracker();
  for (const f of flags) (f.negated ? black : white).set(f.flag, f.value);
  const wl = white.flowFilters().map(compileFlowFilter);
  const bl = black.flowFilters().map(compileFlowFilter);
  return (f) => (wl.length === 0 || wl.some((p) => p(f))) && !bl.some((p) => p(f));
}
