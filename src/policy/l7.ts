/**
 * L7 matchers, compiled once per snapshot: HTTP rule items (Cilium's getHTTPRule
 * translation to Envoy header matchers, pkg/envoy/xds_server.go, and the proxy's
 * HeaderMatch actions, cilium/network_policy.cc), DNS rule groups and TLS server
 * names. Nothing here compiles a regex at request time.
 */
import type { HTTPRule, HeaderMatch, RuleRef, SecretRef } from './api.js';
import type { HeaderAction, HttpAttributes } from './types.js';
import { compilePattern, type CompiledPattern } from './regex.js';
import RE2 from 're2';
import { compileDnsRules, type DnsMatcher } from './dns-pattern.js';
import type { SecretDoc } from '../config/documents.js';

/** A plain header matcher: presence, exact value, or (failed secret) never. */
export interface CompiledHeader {
  readonly name: string; // lowercase
  readonly kind: 'present' | 'exact' | 'never';
  readonly value: string;
}

/** A headerMatches entry with a non-fail mismatch action. */
export interface CompiledHeaderAction {
  readonly name: string; // lowercase
  readonly value: string;
  readonly secret: boolean;
  readonly action: 'LOG' | 'ADD' | 'DELETE' | 'REPLACE';
}

/** One `http:` list item: every field must match (AND). */
export interface CompiledHttpItem {
  readonly ref: RuleRef | undefined;
  /** Canonical text, for dumps and de-duplication (Cilium's PortRuleHTTP.Exists). */
  readonly text: string;
  readonly method?: CompiledPattern;
  readonly path?: CompiledPattern;
  readonly host?: CompiledPattern;
  readonly headers: readonly CompiledHeader[];
  readonly actions: readonly CompiledHeaderAction[];
}

/** Secret lookup for headerMatches: the value of a Secret with exactly one data entry. */
export type SecretValue = (ref: SecretRef) => string | undefined;

export function secretValueFrom(secrets: readonly SecretDoc[]): SecretValue {
  const byName = new Map<string, SecretDoc>();
  for (const s of secrets) byName.set(`${s.namespace}/${s.name}`, s);
  return (ref) => {
    const doc = byName.get(`${ref.namespace}/${ref.name}`);
    if (!doc) return undefined;
    const values = Object.values(doc.data);
    // GetSecretString: "must have exactly one item".
    if (values.length !== 1 || values[0] === undefined) return undefined;
    return values[0].toString('utf8');
  };
}

/** Split a `headers:` string at the first space (trailing colons trimmed from the name). */
export function parseHeaderString(h: string): CompiledHeader {
  const sp = h.indexOf(' ');
  if (sp < 0) return { name: h.toLowerCase(), kind: 'present', value: '' };
  return { name: h.slice(0, sp).replace(/:+$/, '').toLowerCase(), kind: 'exact', value: h.slice(sp + 1) };
}

/** A plain headerMatch (fail on mismatch) or an action, resolving the secret. */
function compileHeaderMatch(
  m: HeaderMatch,
  secretValue: SecretValue,
): { header?: CompiledHeader; action?: CompiledHeaderAction } {
  const name = m.name.toLowerCase();
  let value: string | undefined;
  let fromSecret = false;
  const fromStore = m.secret ? secretValue(m.secret) : undefined;
  if (fromStore !== undefined && fromStore !== '') {
    value = fromStore;
    fromSecret = true;
  } else if (m.value !== undefined && m.value !== '') {
    // getSecretString: the inline value is used when the Secret gave none (missing or empty).
    value = m.value;
  } else if (m.secret && fromStore === undefined) {
    // Secret unavailable and no fallback value: Cilium emits an inverted
    // empty-exact matcher, which never matches, so the item can never allow.
    return { header: { name, kind: 'never', value: '' } };
  } else {
    // No value at all, or a Secret that exists with an empty value: a presence match
    // (getHTTPRule hands the latter to cilium-envoy as an SDS value, and
    // HeaderMatch::allowed matches presence when that value is empty).
    value = '';
    fromSecret = m.secret !== undefined;
  }
  if (m.mismatch !== '') return { action: { name, value, secret: fromSecret, action: m.mismatch } };
  return { header: value === '' ? { name, kind: 'present', value: '' } : { name, kind: 'exact', value } };
}

/** Compile one HTTP rule item. Throws WardenError L7W_ERR_REGEX on an invalid pattern. */
export function compileHttpItem(rule: HTTPRule, ref: RuleRef | undefined, secretValue: SecretValue): CompiledHttpItem {
  const headers: CompiledHeader[] = rule.headers.map(parseHeaderString);
  const actions: CompiledHeaderAction[] = [];
  for (const m of rule.headerMatches) {
    const c = compileHeaderMatch(m, secretValue);
    if (c.header) headers.push(c.header);
    if (c.action) actions.push(c.action);
  }
  const parts: string[] = [];
  if (rule.method !== undefined && rule.method !== '') parts.push(`method=${rule.method}`);
  if (rule.path !== undefined && rule.path !== '') parts.push(`path=${rule.path}`);
  if (rule.host !== undefined && rule.host !== '') parts.push(`host=${rule.host}`);
  for (const h of rule.headers) parts.push(`header=${JSON.stringify(h)}`);
  for (const m of rule.headerMatches) {
    const v = m.secret ? `secret:${m.secret.namespace}/${m.secret.name}` : JSON.stringify(m.value ?? '');
    parts.push(`headerMatch=${m.name}:${v}${m.mismatch ? `/${m.mismatch}` : ''}`);
  }
  return {
    ref,
    text: parts.length ? parts.join(' ') : '*',
    ...(rule.method ? { method: compilePattern(rule.method) } : {}),
    ...(rule.path ? { path: compilePattern(rule.path) } : {}),
    ...(rule.host ? { host: compilePattern(rule.host) } : {}),
    headers,
    actions,
  };
}

/** The wildcard item Cilium appends when an L4-only rule merges with an L7 one. */
export function wildcardHttpItem(ref: RuleRef | undefined): CompiledHttpItem {
  return { ref, text: '*', headers: [], actions: [] };
}

/** Method, path, host and plain header matchers of one item (AND). */
export function httpItemMatches(item: CompiledHttpItem, http: HttpAttributes): boolean {
  if (item.method && !item.method.test(http.method)) return false;
  if (item.path && !item.path.test(http.path)) return false;
  if (item.host && !item.host.test(http.host)) return false;
  for (const h of item.headers) {
    if (h.kind === 'never') return false;
    const v = http.header(h.name);
    if (v === undefined) return false;
    if (h.kind === 'exact' && v !== h.value) return false;
  }
  return true;
}

/**
 * Run the mismatch actions of an item that matched otherwise (HeaderMatch::allowed):
 * a matching header needs nothing; on mismatch the action is recorded (DELETE only
 * when the header is present).
 */
export function collectHeaderActions(item: CompiledHttpItem, http: HttpAttributes, out: HeaderAction[]): void {
  for (const a of item.actions) {
    const v = http.header(a.name);
    const present = v !== undefined;
    const ok = a.value === '' ? present : present && v === a.value;
    if (ok) continue;
    if (a.action === 'DELETE' && !present) continue;
    out.push(
      a.action === 'DELETE' || a.action === 'LOG'
        ? { action: a.action, name: a.name, ...(a.value !== '' ? { value: a.value } : {}), secret: a.secret }
        : { action: a.action, name: a.name, value: a.value, secret: a.secret },
    );
  }
}

/** DNS rules of one contributing rule, joined into one matcher (GeneratePattern). */
export interface DnsGroup {
  readonly ref: RuleRef | undefined;
  readonly matcher: DnsMatcher;
}

export function compileDnsGroup(ref: RuleRef | undefined, rules: readonly { matchName?: string; matchPattern?: string }[]): DnsGroup {
  return { ref, matcher: compileDnsRules(rules) };
}

/**
 * TLS serverNames (SNI), matched as cilium/proxy's SniPattern (cilium/network_policy.cc):
 * a name without `*` is compared case-insensitively; otherwise `.` is a literal dot,
 * a `**` label one or more whole DNS labels (wherever it stands), `*` zero or more DNS
 * characters within one label, and `*` / `**` alone any name of DNS labels. Full match
 * on the lowercased SNI: `example.com.`, `ex@mple.com` and `` match nothing. The
 * patterns are validated by the loader (src/policy/parse/ports.ts) and compiled here,
 * once per snapshot, with RE2 (linear whatever the number of `**` labels).
 */
export interface ServerNameMatcher {
  readonly names: readonly string[];
  test(sni: string): boolean;
}

const SNI_CHARS = '[-a-z0-9_]';
const SNI_LABELS = `${SNI_CHARS}+(?:[.]${SNI_CHARS}+)*`;

export function compileServerNames(names: readonly string[]): ServerNameMatcher {
  const exact = new Set<string>();
  const wild: string[] = [];
  for (const n of names) {
    const lower = n.toLowerCase();
    if (!lower.includes('*')) exact.add(lower);
    else wild.push(lower === '*' ? SNI_LABELS : lower.replace(/\*\*|\*|\./g, (m) => (m === '.' ? '[.]' : m === '**' ? SNI_LABELS : `${SNI_CHARS}*`)));
  }
  const re = wild.length > 0 ? new RE2(`^(?:${wild.join('|')})$`) : undefined;
  return {
    names,
    test: (sni) => {
      const lower = sni.toLowerCase();
      return exact.has(lower) || (re !== undefined && re.test(lower));
    },
  };
}
