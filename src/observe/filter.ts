/**
 * `hubble observe` filters over flow records (CILIUM-SEMANTICS.md §5.2,
 * hubble/cmd/observe/flows_filter.go, pkg/hubble/filters/*):
 *
 * - values of one flag are ORed, different flags are ANDed;
 * - `--not` applies to the next flag; as in Hubble, the negated flags form one
 *   blacklist filter (ANDed), and a flow matching that whole filter is left out;
 * - label selectors are k8s-style (`k=v`, `k==v`, `k!=v`, `k in (a,b)`,
 *   `k notin (a,b)`, `k`, `!k`; commas AND), a key without a source is `any:k`;
 * - `--http-path` is an unanchored RE2 on the URL's path, compiled once here;
 * - `--http-status` is `403` or a prefix `4+` / `40+`, and only matches flows
 *   with a status (responses).
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

// ---- label selectors -------------------------------------------------------------

interface Requirement {
  readonly key: string; // sourced: `k8s:app`, `any:app`, `reserved:world`
  readonly op: 'in' | 'notin' | 'exists' | 'notexists';
  readonly values: readonly string[];
}

/** Split at commas outside parentheses. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter((x) => x !== '');
}

function sourced(key: string): string {
  const k = key.trim();
  if (!k) throw usage('empty label key');
  return k.includes(':') ? k : `any:${k}`;
}

/** Parse one k8s-style selector string into requirements (ANDed). */
export function parseSelector(sel: string): Requirement[] {
  const reqs: Requirement[] = [];
  for (const part of splitTop(sel)) {
    let m: RegExpExecArray | null;
    if ((m = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(part))) {
      const values = m[3]!.split(',').map((v) => v.trim()).filter((v) => v !== '');
      reqs.push({ key: sourced(m[1]!), op: m[2] === 'in' ? 'in' : 'notin', values });
    } else if ((m = /^([^!=\s]+)\s*!=\s*(.*)$/.exec(part))) {
      reqs.push({ key: sourced(m[1]!), op: 'notin', values: [m[2]!.trim()] });
    } else if ((m = /^([^!=\s]+)\s*==?\s*(.*)$/.exec(part))) {
      reqs.push({ key: sourced(m[1]!), op: 'in', values: [m[2]!.trim()] });
    } else if ((m = /^!\s*([^!=\s]+)$/.exec(part))) {
      reqs.push({ key: sourced(m[1]!), op: 'notexists', values: [] });
    } else if (/^[^!=\s()]+$/.test(part)) {
      reqs.push({ key: sourced(part), op: 'exists', values: [] });
    } else {
      throw usage(`bad label selector ${JSON.stringify(sel)}`);
    }
  }
  if (reqs.length === 0) throw usage(`empty label selector ${JSON.stringify(sel)}`);
  return reqs;
}

/** The values a (sourced or any:) key has in a label list `source:key=value`. */
function valuesOf(labels: readonly string[], key: string): string[] {
  const anySource = key.startsWith('any:');
  const bare = anySource ? key.slice(4) : key;
  const out: string[] = [];
  for (const l of labels) {
    const eq = l.indexOf('=');
    const k = eq < 0 ? l : l.slice(0, eq);
    const v = eq < 0 ? '' : l.slice(eq + 1);
    if (anySource) {
      const colon = k.indexOf(':');
      if ((colon < 0 ? k : k.slice(colon + 1)) === bare) out.push(v);
    } else if (k === bare) out.push(v);
  }
  return out;
}

export function selectorMatches(reqs: readonly Requirement[], labels: readonly string[]): boolean {
  for (const r of reqs) {
    const vals = valuesOf(labels, r.key);
    switch (r.op) {
      case 'exists':
        if (vals.length === 0) return false;
        break;
      case 'notexists':
        if (vals.length > 0) return false;
        break;
      case 'in':
        if (!vals.some((v) => r.values.includes(v))) return false;
        break;
      case 'notin':
        if (vals.some((v) => r.values.includes(v))) return false;
        break;
    }
  }
  return true;
}

// ---- per-flag predicates ----------------------------------------------------------

const RESERVED_BY_NAME = new Map<string, number>(Object.entries(RESERVED_NAMES).map(([n, name]) => [name, Number(n)]));

function identityOf(v: string): number {
  const n = Number(v);
  if (v.trim() !== '' && Number.isInteger(n) && n >= 0) return n;
  const r = RESERVED_BY_NAME.get(v.replace(/^reserved:/, ''));
  if (r === undefined) throw usage(`--identity ${JSON.stringify(v)}: a number or a reserved name (${[...RESERVED_BY_NAME.keys()].join(', ')})`);
  return r;
}

const VERDICTS = ['FORWARDED', 'DROPPED', 'ERROR', 'AUDIT', 'REDIRECTED', 'TRACED', 'TRANSLATED'];
const EVENT_TYPES: Record<string, number> = { drop: 1, debug: 2, capture: 3, trace: 4, 'policy-verdict': 5, 'trace-sock': 131, l7: 129, agent: 137 };
const PROTOCOLS = ['tcp', 'udp', 'sctp', 'icmp', 'icmpv4', 'icmpv6', 'vrrp', 'igmp', 'dns', 'http', 'kafka'];

function urlPath(url: string): string {
  const s = url.indexOf('://');
  const start = s < 0 ? 0 : url.indexOf('/', s + 3);
  if (start < 0) return '/';
  const q = url.indexOf('?', start);
  return q < 0 ? url.slice(start) : url.slice(start, q);
}

/** One flag with all its values (ORed). Regexes are compiled here, once. */
export function flagPredicate(flag: FilterFlag, values: readonly string[]): Predicate {
  const any = (p: (v: string) => Predicate): Predicate => {
    const ps = values.map(p);
    return (f) => ps.some((x) => x(f));
  };
  switch (flag) {
    case 'from-label':
    case 'to-label':
    case 'label':
      return any((v) => {
        const reqs = parseSelector(v);
        const side = (e: FlowJson | undefined) => selectorMatches(reqs, (e?.labels as string[] | undefined) ?? []);
        if (flag === 'from-label') return (f) => side(f.source);
        if (flag === 'to-label') return (f) => side(f.destination);
        return (f) => side(f.source) || side(f.destination);
      });
    case 'namespace':
      return any((v) => (f) => f.source?.namespace === v || f.destination?.namespace === v);
    case 'from-namespace':
      return any((v) => (f) => f.source?.namespace === v);
    case 'to-namespace':
      return any((v) => (f) => f.destination?.namespace === v);
    case 'verdict':
      return any((v) => {
        const want = v.toUpperCase();
        if (!VERDICTS.includes(want)) throw usage(`--verdict ${v}: one of ${VERDICTS.join(', ')}`);
        return (f) => (f.verdict ?? 'VERDICT_UNKNOWN') === want;
      });
    case 'http-method':
      return any((v) => {
        const want = v.toUpperCase();
        return (f) => typeof f.l7?.http?.method === 'string' && f.l7.http.method.toUpperCase() === want;
      });
    case 'http-path':
      return any((v) => {
        let re: RE2;
        try {
          re = new RE2(v, 'u');
        } catch (e) {
          throw usage(`--http-path ${JSON.stringify(v)}: ${e instanceof Error ? e.message : String(e)}`);
        }
        return (f) => typeof f.l7?.http?.url === 'string' && re.test(urlPath(f.l7.http.url));
      });
    case 'http-status':
      return any((v) => {
        const m = /^([1-5])(\d?)(\d?)(\+?)$/.exec(v);
        if (!m || (m[4] === '' && v.length !== 3) || (m[4] === '+' && v.length > 3)) {
          throw usage(`--http-status ${v}: a status (403) or a prefix (4+, 40+)`);
        }
        const prefix = m[4] === '+' ? v.slice(0, -1) : undefined;
        return (f) => {
          const code = f.l7?.http?.code;
          if (typeof code !== 'number' || code === 0) return false;
          return prefix !== undefined ? String(code).startsWith(prefix) : String(code) === v;
        };
      });
    case 'protocol':
      return any((v) => {
        const p = v.toLowerCase();
        if (!PROTOCOLS.includes(p)) throw usage(`--protocol ${v}: one of ${PROTOCOLS.join(', ')}`);
        switch (p) {
          case 'http':
            return (f) => f.l7?.http !== undefined;
          case 'dns':
            return (f) => f.l7?.dns !== undefined;
          case 'kafka':
            return (f) => f.l7?.kafka !== undefined;
          case 'icmp':
            return (f) => f.l4?.ICMPv4 !== undefined || f.l4?.ICMPv6 !== undefined;
          default: {
            const key = { tcp: 'TCP', udp: 'UDP', sctp: 'SCTP', icmpv4: 'ICMPv4', icmpv6: 'ICMPv6', vrrp: 'VRRP', igmp: 'IGMP' }[p]!;
            return (f) => f.l4?.[key] !== undefined;
          }
        }
      });
    case 'from-identity':
    case 'to-identity':
    case 'identity':
      return any((v) => {
        const id = identityOf(v);
        if (flag === 'from-identity') return (f) => f.source?.identity === id;
        if (flag === 'to-identity') return (f) => f.destination?.identity === id;
        return (f) => f.source?.identity === id || f.destination?.identity === id;
      });
    case 'type':
      return any((v) => {
        const [name, sub] = v.split(':');
        const t = EVENT_TYPES[name ?? ''] ?? (Number.isInteger(Number(name)) ? Number(name) : undefined);
        if (t === undefined) throw usage(`--type ${v}: one of ${Object.keys(EVENT_TYPES).join(', ')} (optionally :subtype)`);
        const st = sub === undefined ? undefined : Number(sub);
        if (st !== undefined && !Number.isInteger(st)) throw usage(`--type ${v}: subtype must be a number`);
        return (f) => f.event_type?.type === t && (st === undefined || (f.event_type?.sub_type ?? 0) === st);
      });
    case 'traffic-direction':
      return any((v) => {
        const d = v.toUpperCase();
        return (f) => f.traffic_direction === d;
      });
  }
}

export interface FlagValue {
  readonly flag: FilterFlag;
  readonly value: string;
  readonly negated: boolean;
}

/**
 * Build the whole filter from flags in command-line order: the whitelist is the AND
 * of the non-negated flags (each an OR of its values), the blacklist the AND of the
 * negated ones; a flow passes when it matches the whitelist and not the blacklist.
 */
export function buildFilter(flags: readonly FlagValue[]): Predicate {
  const group = (negated: boolean): Predicate[] => {
    const by = new Map<FilterFlag, string[]>();
    for (const f of flags) {
      if (f.negated !== negated) continue;
      const list = by.get(f.flag) ?? [];
      list.push(f.value);
      by.set(f.flag, list);
    }
    return [...by].map(([flag, values]) => flagPredicate(flag, values));
  };
  const white = group(false);
  const black = group(true);
  return (f) => white.every((p) => p(f)) && !(black.length > 0 && black.every((p) => p(f)));
}
