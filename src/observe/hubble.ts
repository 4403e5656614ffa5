/**
 * Pieces of Hubble's flow JSON shared by the HTTP and DNS recorders
 * (CILIUM-SEMANTICS.md §5.1; `api/v1/flow/flow.proto`, protojson with proto field
 * names): endpoints, policy references, drop reasons, header lists.
 *
 * Everything here is used when a record is *serialised* (the sink does that in
 * batches, off the request path), except `endpointOf`, which is a cached lookup.
 */
import { randomFillSync } from 'node:crypto';
import type { Identity } from '../identity/identity.js';
import type { RuleRef } from '../policy/api.js';
import type { ConfigDocs } from '../config/documents.js';
import type { DirectionVerdict, DropReason, PolicySnapshot, Verdict } from '../policy/types.js';


/** Hubble's numeric drop reasons (pkg/monitor/api/drop.go). */
export const DROP_REASON_CODE: Readonly<Record<DropReason, number>> = Object.freeze({
  POLICY_DENIED: 133,
  POLICY_DENY: 181,
});

/** event_type.type values (pkg/monitor/api/types.go). */
export const EVENT = Object.freeze({ drop: 1, trace: 4, policyVerdict: 5, l7: 129 });

export const REDACTED = 'HUBBLE_REDACTED';

export interface HubbleEndpoint {
  readonly identity: number;
  readonly namespace?: string;
  readonly labels: readonly string[];
  readonly pod_name?: string;
}

export interface HubblePolicy {
  readonly name: string;
  readonly namespace?: string;
  readonly kind: string;
  readonly labels: readonly string[];
  readonly revision: string;
}

// One endpoint object (and its JSON text, made on first serialisation) per
// (snapshot, identity): records share them, nothing is rebuilt per request or per
// record. Identities learned at run time add entries; the map goes away with its
// snapshot.
interface EndpointEntry {
  readonly e: HubbleEndpoint;
  json: string | undefined;
  /** endpointPairJson fragments, by the other endpoint. */
  pairs?: Map<EndpointEntry, string>;
}
const endpointCache = new WeakMap<PolicySnapshot, Map<number, EndpointEntry>>();
let lastSnapshot: PolicySnapshot | undefined;
let lastMap: Map<number, EndpointEntry> | undefined;

function endpointEntry(id: Identity, snapshot: PolicySnapshot): EndpointEntry {
  let m = lastSnapshot === snapshot ? lastMap : endpointCache.get(snapshot);
  if (!m) {
    m = new Map();
    endpointCache.set(snapshot, m);
  }
  lastSnapshot = snapshot;
  lastMap = m;
  let en = m.get(id.id);
  if (en === undefined || en.e.labels !== id.labels) {
    const ep = snapshot.endpointByIdentity(id.id);
    const e: HubbleEndpoint = {
      identity: id.id,
      ...(id.namespace ? { namespace: id.namespace } : {}),
      labels: id.labels,
      ...(ep ? { pod_name: ep.name } : {}),
    };
    en = { e, json: undefined };
    if (m.size < 65_536) m.set(id.id, en);
  }
  return en;
}

/** Hubble `Endpoint` for an identity: identity, namespace, labels, pod_name. */
export function endpointOf(id: Identity, snapshot: PolicySnapshot): HubbleEndpoint {
  return endpointEntry(id, snapshot).e;
}

/** `JSON.stringify(endpointOf(id, snapshot))`, made once per (snapshot, identity). */
export function endpointJson(id: Identity, snapshot: PolicySnapshot): string {
  const en = endpointEntry(id, snapshot);
  return (en.json ??= JSON.stringify(en.e));
}

/**
 * `,"source":<from>,"destination":<to>`: a record's two endpoints as one fragment,
 * made once per endpoint pair (a line costs per piece: see dns/flow.ts).
 */
export function endpointPairJson(from: Identity, to: Identity, snapshot: PolicySnapshot): string {
  const a = endpointEntry(from, snapshot);
  const b = endpointEntry(to, snapshot);
  const pairs = (a.pairs ??= new Map());
  let p = pairs.get(b);
  if (p === undefined) {
    p = `,"source":${(a.json ??= JSON.stringify(a.e))},"destination":${(b.json ??= JSON.stringify(b.e))}`;
    if (pairs.size < 1024) pairs.set(b, p);
  }
  return p;
}

/**
 * Hubble `Policy` for a rule: name, namespace, kind, the labels Cilium derives for
 * a policy (`io.cilium.k8s.policy.*`), and the repository revision (our snapshot
 * version, a uint64 and so a JSON string).
 */
export function policyOf(r: RuleRef, revision: number): HubblePolicy {
  const labels = [
    `k8s:io.cilium.k8s.policy.derived-from=${r.kind}`,
    `k8s:io.cilium.k8s.policy.name=${r.name}`,
    ...(r.namespace ? [`k8s:io.cilium.k8s.policy.namespace=${r.namespace}`] : []),
  ];
  return {
    name: r.name,
    ...(r.namespace ? { namespace: r.namespace } : {}),
    kind: r.kind,
    labels,
    revision: String(revision),
  };
}

/** The policies a field names: one rule's, or the list of a policy-map entry's (Verdict.egressRules). */
type Named = RuleRef | readonly RuleRef[];

/**
 * Who a direction's verdict names: an L3/L4 allow or a deny rule stands for the
 * policy-map entry the datapath matched, and Hubble lists every policy behind that
 * entry (correlation.go lookupPolicyForKey + toProto); an L7 verdict names the rule
 * whose L7 rule matched (or, denied, one whose L7 rules did not).
 */
function named(d: DirectionVerdict | undefined, rule: RuleRef | undefined, rules: readonly RuleRef[] | undefined): Named | undefined {
  return d !== undefined && d.type === 'L3_L4' && rules !== undefined ? rules : rule;
}

/**
 * `ingress_allowed_by` / `egress_allowed_by` / `ingress_denied_by` /
 * `egress_denied_by` from a verdict, calling `put` for each in that order: a
 * denial names the denying direction's policies, an allow those of each enforced
 * direction that allowed.
 */
function eachPolicyField<C>(v: Verdict, revision: number, ctx: C, put: (ctx: C, revision: number, field: PolicyField, who: Named) => void): void {
  if (!v.allowed) {
    const egress = v.decidedBy === 'egress';
    const who = named(egress ? v.egress : v.ingress, v.rule, egress ? v.egressRules : v.ingressRules);
    if (who !== undefined) put(ctx, revision, egress ? 'egress_denied_by' : 'ingress_denied_by', who);
    return;
  }
  const eg = v.egress !== undefined && v.egress.enforced && v.egress.allowed ? named(v.egress, v.egress.rule, v.egressRules) : undefined;
  const ing = v.ingress !== undefined && v.ingress.enforced && v.ingress.allowed ? named(v.ingress, v.ingress.rule, v.ingressRules) : undefined;
  if (eg) put(ctx, revision, 'egress_allowed_by', eg);
  if (ing) put(ctx, revision, 'ingress_allowed_by', ing);
  if (!eg && !ing && v.rule) put(ctx, revision, v.decidedBy === 'egress' ? 'egress_allowed_by' : 'ingress_allowed_by', v.rule);
}

function policiesOf(who: Named, revision: number): HubblePolicy[] {
  return isRuleList(who) ? who.map((r) => policyOf(r, revision)) : [policyOf(who, revision)];
}

function isRuleList(who: Named): who is readonly RuleRef[] {
  return Array.isArray(who);
}

/** The policy fields of a verdict as Hubble objects, added to `into`. */
export function policyFields(v: Verdict, revision: number, into: Record<string, unknown>): void {
  eachPolicyField(v, revision, into, addPolicies);
}

function addPolicies(into: Record<string, unknown>, revision: number, field: PolicyField, who: Named): void {
  into[field] = policiesOf(who, revision);
}

type PolicyField = 'egress_allowed_by' | 'ingress_allowed_by' | 'egress_denied_by' | 'ingress_denied_by';

// `,"<field>":[<policies>]` per rule (or entry list) and field: rules and lists
// belong to a snapshot; the revision is kept with the text in case one outlives it.
const policyFieldCache = new WeakMap<object, { readonly revision: number; readonly byField: Map<PolicyField, string> }>();
function policyField(field: PolicyField, who: Named, revision: number): string {
  let c = policyFieldCache.get(who);
  if (c === undefined || c.revision !== revision) policyFieldCache.set(who, (c = { revision, byField: new Map() }));
  let f = c.byField.get(field);
  if (f === undefined) c.byField.set(field, (f = `,"${field}":${JSON.stringify(policiesOf(who, revision))}`));
  return f;
}

/**
 * `policyFields` as JSON text: each member preceded by a comma, in the order
 * `policyFields` adds them ("" when there is none), from cached pieces.
 */
export function policyFieldsJson(v: Verdict, revision: number): string {
  const acc = { text: '' };
  eachPolicyField(v, revision, acc, addPolicyJson);
  return acc.text;
}

// (a module function, not a closure per record)
function addPolicyJson(acc: { text: string }, revision: number, field: PolicyField, who: Named): void {
  acc.text += policyField(field, who, revision);
}

/**
 * Hubble's `policy_log` (flow.proto field 21006, after the `*_denied_by` fields) of
 * a policy-verdict event for this verdict: the log of the map entry that matched
 * (pkg/policy/correlation/correlation.go: `f.PolicyLog = info.Log`, set only on
 * policy-verdict events that were allowed or denied by a deny rule). Our one record
 * stands for both directions' events, as its `*_allowed_by` fields do: an allow
 * gives the values of each enforced direction (sorted by bytes, each once), a
 * POLICY_DENY the denying direction's. Undefined when there are none (protojson
 * omits an empty list).
 */
export function policyLog(v: Verdict): readonly string[] | undefined {
  if (!v.allowed) {
    if (v.dropReason !== 'POLICY_DENY') return undefined;
    return v.decidedBy === 'egress' ? v.egressLog : v.ingressLog;
  }
  const eg = v.egress !== undefined && v.egress.enforced && v.egress.allowed ? v.egressLog : undefined;
  const ing = v.ingress !== undefined && v.ingress.enforced && v.ingress.allowed ? v.ingressLog : undefined;
  if (eg === undefined || eg === ing) return ing ?? eg;
  if (ing === undefined) return eg;
  return mergedLog(eg, ing);
}

// Union of two directions' lists (both sorted by bytes), per pair of snapshot arrays.
const mergedLogCache = new WeakMap<readonly string[], WeakMap<readonly string[], readonly string[]>>();
const utf8 = new TextEncoder();
function mergedLog(a: readonly string[], b: readonly string[]): readonly string[] {
  let byB = mergedLogCache.get(a);
  let m = byB?.get(b);
  if (m !== undefined) return m;
  m = Object.freeze(
    [...new Set([...a, ...b])]
      .map((v) => ({ v, b: utf8.encode(v) }))
      .sort((x, y) => Buffer.compare(x.b, y.b))
      .map((x) => x.v),
  );
  if (byB === undefined) mergedLogCache.set(a, (byB = new WeakMap()));
  byB.set(b, m);
  return m;
}

// `,"policy_log":[…]` per list (lists are frozen arrays of a snapshot, shared by views).
const policyLogJsonCache = new WeakMap<readonly string[], string>();

/** `policyLog(v)` as a member of the flow object, preceded by a comma ("" when there is none). */
export function policyLogJson(v: Verdict): string {
  const l = policyLog(v);
  if (l === undefined || l.length === 0) return '';
  let j = policyLogJsonCache.get(l);
  if (j === undefined) {
    j = ',"policy_log":' + JSON.stringify(l);
    policyLogJsonCache.set(l, j);
  }
  return j;
}

let isoMs = NaN;
let isoText = '""';
let isoSecond = NaN;
/** `"YYYY-MM-DDTHH:MM:SS.` of isoSecond. */
let isoPrefix = '';
/**
 * `JSON.stringify(new Date(ms).toISOString())` for a time from Date.now(). The last
 * answer is remembered (records come in bursts), and the text up to the seconds is
 * formatted once per second: a Date and toISOString per millisecond were ~0.7 µs
 * of a record.
 */
export function isoTimeJson(ms: number): string {
  if (ms !== isoMs) {
    if (!Number.isSafeInteger(ms) || ms < 0) return `"${new Date(ms).toISOString()}"`;
    const second = Math.floor(ms / 1000);
    if (second !== isoSecond) {
      isoSecond = second;
      isoPrefix = `"${new Date(second * 1000).toISOString().slice(0, 20)}`;
    }
    const m = ms - second * 1000;
    isoText = isoPrefix + (m < 10 ? '00' : m < 100 ? '0' : '') + m + 'Z"';
    isoMs = ms;
  }
  return isoText;
}

const IP_L4 = {
  IPv4: { TCP: '","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":', UDP: '","ipVersion":"IPv4"},"l4":{"UDP":{"source_port":' },
  IPv6: { TCP: '","ipVersion":"IPv6"},"l4":{"TCP":{"source_port":', UDP: '","ipVersion":"IPv6"},"l4":{"UDP":{"source_port":' },
} as const;

/**
 * What follows a line's destination IP up to the source port, as one literal:
 * `","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":` (by the source's IP version).
 */
export function ipL4Json(fromIp: string, transport: 'TCP' | 'UDP'): string {
  return IP_L4[ipVersion(fromIp)][transport];
}

// What JSON.stringify would escape: quotes, backslashes, control characters, and
// surrogates (a lone one is written as \uXXXX; a pair merely takes the slow path).
const NEEDS_ESCAPE = /["\\\x00-\x1f\ud800-\udfff]/;

/**
 * `JSON.stringify(s)` for a string: most method names, URLs and header values need
 * no escapes, and quoting them cost 85 ns against JSON.stringify's 220 (a
 * 45-character URL, Node 20).
 */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : '"' + s + '"';
}

/** `jsonString(s)` without its quotes: `s` itself when it needs no escapes. */
export function jsonInner(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s).slice(1, -1) : s;
}

/** A number as JSON.stringify writes it (non-finite: null). */
export function numJson(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

export function ipVersion(ip: string): 'IPv4' | 'IPv6' {
  return ip.includes(':') ? 'IPv6' : 'IPv4';
}

/**
 * Flow UUIDs (version 4, RFC 9562: 122 random bits) made 256 at a time: one
 * randomFillSync, the text of all 256 formatted into one buffer and read back as one
 * string, each UUID a slice of it. crypto.randomUUID formats each one on its own
 * (~1.2 µs of a record's 4.9 µs JSON build, measured earlier); slicing per UUID
 * (hex.slice × 5 joined by template) left each a 9-piece rope that writing the
 * record had to flatten: 340–480 ns per UUID written, against 200–240 now.
 */
const UUID_BATCH = 256;
const uuidBytes = Buffer.allocUnsafe(16 * UUID_BATCH);
const uuidText = Buffer.allocUnsafe(36 * UUID_BATCH);
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
let uuidBlock = '';
let uuidNext = UUID_BATCH;

function refillUuids(): void {
  randomFillSync(uuidBytes);
  let t = 0;
  for (let o = 0; o < uuidBytes.length; o += 16) {
    for (let k = 0; k < 16; k++) {
      let b = uuidBytes[o + k]!;
      if (k === 6) b = (b & 0x0f) | 0x40; // version 4
      else if (k === 8) b = (b & 0x3f) | 0x80; // variant 10
      uuidText[t++] = HEX_DIGITS[b >> 4]!;
      uuidText[t++] = HEX_DIGITS[b & 15]!;
      if (k === 3 || k === 5 || k === 7 || k === 9) uuidText[t++] = 0x2d; // '-'
    }
  }
  uuidBlock = uuidText.toString('latin1', 0, t);
  uuidNext = 0;
}

export function newUuid(): string {
  if (uuidNext >= UUID_BATCH) refillUuids();
  const o = uuidNext++ * 36;
  return uuidBlock.slice(o, o + 36);
}

/** Go's textproto.CanonicalMIMEHeaderKey: `x-request-id` → `X-Request-Id`; invalid keys unchanged. */
export function canonicalHeaderKey(k: string): string {
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    // token chars only (RFC 7230); anything else is returned as is, as Go does.
    const token =
      (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || "!#$%&'*+-.^_`|~".includes(k[i]!);
    if (!token) return k;
  }
  let out = '';
  let upper = true;
  for (let i = 0; i < k.length; i++) {
    let ch = k[i]!;
    if (upper) ch = ch.toUpperCase();
    else ch = ch.toLowerCase();
    out += ch;
    upper = ch === '-';
  }
  return out;
}

const canonCache = new Map<string, string>();
function canonical(k: string): string {
  let c = canonCache.get(k);
  if (c === undefined) {
    c = canonicalHeaderKey(k);
    if (canonCache.size < 4096) canonCache.set(k, c);
  }
  return c;
}

const keyJsonCache = new Map<string, string>();
const REDACTED_JSON = JSON.stringify(REDACTED);
/** `{"key":"<Key>","value":` for a canonical header key. */
function keyJson(key: string): string {
  let j = keyJsonCache.get(key);
  if (j === undefined) {
    j = `{"key":${JSON.stringify(key)},"value":`;
    if (keyJsonCache.size < 4096) keyJsonCache.set(key, j);
  }
  return j;
}

/** Header names whose values never reach a flow record (lowercase). */
export const DEFAULT_REDACTED_HEADERS: readonly string[] = ['authorization', 'cookie', 'proxy-authorization', 'set-cookie'];

/**
 * Lowercase names of headers that policies match against Secret values
 * (`headerMatches` with `secret`): their values are redacted in flows too.
 */
export function secretHeaderNames(docs: ConfigDocs): Set<string> {
  const out = new Set<string>();
  for (const p of docs.policies) {
    for (const r of p.rules) {
      for (const section of [r.ingress, r.ingressDeny, r.egress, r.egressDeny]) {
        for (const pr of section) {
          for (const port of pr.toPorts) {
            for (const h of port.rules?.http ?? []) {
              for (const m of h.headerMatches) if (m.secret) out.add(m.name.toLowerCase());
            }
          }
        }
      }
    }
  }
  return out;
}

/** Headers Envoy's access log does not list (they are in method/url) or hop-by-hop. */
const SKIPPED = new Set(['host', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'proxy-connection']);

/**
 * A request's headers as Hubble lists them, built only when the record is
 * serialised: `[{key, value}]` sorted by key, Go-canonical keys, pseudo-headers and
 * Host left out (they are the method and URL), sensitive values redacted. Holds the
 * raw `[name, value, …]` array the server parsed (never mutated afterwards).
 */
export class LazyHeaders {
  constructor(
    private readonly raw: readonly string[],
    private readonly redact: ReadonlySet<string>,
  ) {}

  toJSON(): { key: string; value: string }[] {
    const out: { key: string; value: string }[] = [];
    const raw = this.raw;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.charCodeAt(0) === 0x3a /* ':' */) continue;
      const lower = name.toLowerCase();
      if (SKIPPED.has(lower)) continue;
      out.push({ key: canonical(lower), value: this.redact.has(lower) ? REDACTED : raw[i + 1]! });
    }
    // Stable sort by key; several values of one header keep their order (Go's http.Header).
    out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return out;
  }

  /** `JSON.stringify(this)`, with each key's `{"key":…,"value":` made once per name. */
  json(): string {
    const list = this.toJSON();
    let s = '[';
    for (let i = 0; i < list.length; i++) {
      const h = list[i]!;
      s += (i === 0 ? '' : ',') + keyJson(h.key) + (h.value === REDACTED ? REDACTED_JSON : jsonString(h.value)) + '}';
    }
    return s + ']';
  }
}

/** `/pkg.Service/Method` → service and method (gRPC request paths). */
export function grpcNames(url: string): { service: string; method: string } | undefined {
  const scheme = url.indexOf('://');
  const pathStart = scheme < 0 ? 0 : url.indexOf('/', scheme + 3);
  if (pathStart < 0) return undefined;
  let path = url.slice(pathStart);
  const q = path.indexOf('?');
  if (q >= 0) path = path.slice(0, q);
  const parts = path.split('/');
  if (parts.length !== 3 || !parts[1] || !parts[2]) return undefined;
  return { service: parts[1], method: parts[2] };
}

/**
 * gopacket's DNSResponseCode.String() (layers/dns.go), which Hubble's DNS Summary
 * prints (seven/dns.go dnsSummary): "Server Failure " keeps gopacket's trailing
 * space, codes it does not name are "Unknown".
 */
const GOPACKET_RCODES: ReadonlyMap<number, string> = new Map([
  [0, 'No Error'],
  [1, 'Format Error'],
  [2, 'Server Failure '],
  [3, 'Non-Existent Domain'],
  [4, 'Not Implemented'],
  [5, 'Query Refused'],
  [6, 'Name Exists when it should not'],
  [7, 'RR Set Exists when it should not'],
  [8, 'RR Set that should exist does not'],
  [9, 'Server Not Authoritative for zone'],
  [10, 'Name not contained in zone'],
  [16, 'Bad OPT Version'],
  [17, 'Key not recognized'],
  [18, 'Signature out of time window'],
  [19, 'Bad TKEY Mode'],
  [20, 'Duplicate key name'],
  [21, 'Algorithm not supported'],
  [22, 'Bad Truncation'],
  [23, 'Bad Cookie'],
]);

/** The rcode text of a DNS Summary (the rcode as a uint8, as Hubble converts it). */
export function summaryRcode(rcode: number): string {
  return GOPACKET_RCODES.get(rcode & 0xff) ?? 'Unknown';
}

/**
 * Go's strconv.Quote (fmt %q) of a string, for the DNS Summary's CNAME list:
 * quotes and backslashes escaped, control characters as \a \b \f \n \r \t \v or \xNN.
 * Non-ASCII text is kept (Go keeps printable runes).
 */
export function goQuote(text: string): string {
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c >= 0x20 && c !== 0x7f) out += text[i];
    else {
      const named = GO_ESCAPES[c];
      out += named !== undefined ? named : '\\x' + (c < 16 ? '0' : '') + c.toString(16);
    }
  }
  return out + '"';
}
const GO_ESCAPES: Readonly<Record<number, string>> = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r' };
