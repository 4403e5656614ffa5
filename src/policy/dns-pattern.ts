/**
 * DNS matchName / matchPattern, exactly as Cilium's pkg/fqdn/matchpattern does it
 * (CILIUM-SEMANTICS.md §3.1): names are lowercased and compared in FQDN form with
 * the trailing dot; `*` is zero or more DNS characters inside one label; a leading
 * `**.` is one or more whole labels; a pattern of only stars (optionally followed by
 * one dot) is "any name".
 *
 * Several patterns for one (endpoint, port, peer) are joined into one RE2 regex, as
 * Cilium's GeneratePattern does, so the cost of a query does not grow with the
 * number of patterns.
 */
import RE2 from 're2';

const ALLOWED_PATTERN_CHARS = /^[-a-zA-Z0-9_.*]+$/;
const ALLOWED_NAME_CHARS = /^[-a-zA-Z0-9_.]+$/;
const ONLY_STARS = /^\*+\.?$/;

/** The "any name" regex: one or more non-empty labels, or the root. */
export const MATCH_ALL_UNANCHORED = '(^([-a-zA-Z0-9_]+[.])+$)|(^[.]$)';
const LABEL_CHARS = '[-a-zA-Z0-9_]';
const SUBDOMAIN_WILDCARD = `(${LABEL_CHARS}+([.]${LABEL_CHARS}+){0,})[.]`;

/** dns.FQDN: append the trailing dot unless present. */
export function toFQDN(name: string): string {
  return name.endsWith('.') ? name : `${name}.`;
}

/** Validation error for a matchPattern value, or undefined. */
export function matchPatternError(pattern: string): string | undefined {
  if (pattern.length === 0) return 'must not be empty';
  if (pattern.length > 255) return 'must be at most 255 characters';
  if (!ALLOWED_PATTERN_CHARS.test(pattern)) return `${JSON.stringify(pattern)} may only contain [-a-zA-Z0-9_.*]`;
  return undefined;
}

/** Validation error for a matchName value, or undefined. */
export function matchNameError(name: string): string | undefined {
  if (name.length === 0) return 'must not be empty';
  if (name.length > 255) return 'must be at most 255 characters';
  if (!ALLOWED_NAME_CHARS.test(name)) return `${JSON.stringify(name)} may only contain [-a-zA-Z0-9_.]`;
  return undefined;
}

/** matchpattern.Sanitize: lowercase, FQDN unless the pattern is only stars (+ one dot). */
export function sanitizePattern(pattern: string): string {
  const p = pattern.toLowerCase();
  if (ONLY_STARS.test(p)) return p;
  return toFQDN(p);
}

/** True when the pattern means "any name". */
export function isMatchAll(pattern: string): boolean {
  return ONLY_STARS.test(pattern.toLowerCase());
}

/** matchpattern.ToUnanchoredRegexp. */
export function patternToRegexSource(pattern: string): string {
  const p = sanitizePattern(pattern);
  if (ONLY_STARS.test(p)) return MATCH_ALL_UNANCHORED;
  let rest = p;
  let out = '';
  const lead = /^\*\*+\./.exec(rest);
  if (lead) {
    out += SUBDOMAIN_WILDCARD;
    rest = rest.slice(lead[0].length);
  }
  out += rest.replace(/\./g, '[.]').replace(/\*+/g, `${LABEL_CHARS}*`);
  return out;
}

/** A matchName as a regex source: the literal FQDN with dots escaped. */
export function nameToRegexSource(name: string): string {
  return toFQDN(name.toLowerCase()).replace(/\./g, '[.]');
}

export interface DnsMatcher {
  /** The rule texts joined, for dumps. */
  readonly source: string;
  readonly matchAll: boolean;
  /** `qname` is lowercased and given the trailing dot by the caller (see normalizeQName). */
  test(qname: string): boolean;
}

export interface DnsRuleText {
  readonly matchName?: string;
  readonly matchPattern?: string;
}

/**
 * Compile a list of DNS rules into one matcher (GeneratePattern): no rules, or any
 * pattern that reduces to "all", allows every name.
 */
export function compileDnsRules(rules: readonly DnsRuleText[]): DnsMatcher {
  const parts: string[] = [];
  const texts: string[] = [];
  let matchAll = rules.length === 0;
  for (const r of rules) {
    if (r.matchPattern !== undefined) {
      texts.push(`matchPattern:${r.matchPattern}`);
      if (isMatchAll(r.matchPattern)) matchAll = true;
      else parts.push(patternToRegexSource(r.matchPattern));
    } else if (r.matchName !== undefined) {
      texts.push(`matchName:${r.matchName}`);
      parts.push(nameToRegexSource(r.matchName));
    }
  }
  const source = texts.join(' ') || '*';
  if (matchAll) return { source, matchAll: true, test: () => true };
  const re = new RE2(`^(?:${parts.join('|')})$`);
  return { source, matchAll: false, test: (q: string) => re.test(q) };
}

/** One pattern as an anchored matcher (toFQDNs selectors, tests). */
export function compileOne(rule: DnsRuleText): DnsMatcher {
  if (rule.matchPattern !== undefined && isMatchAll(rule.matchPattern)) {
    const re = new RE2(`^(?:${MATCH_ALL_UNANCHORED})$`);
    return { source: `matchPattern:${rule.matchPattern}`, matchAll: true, test: (q) => re.test(q) };
  }
  return compileDnsRules([rule]);
}

/** Lowercase and add the trailing dot, as Cilium does to query names before matching. */
export function normalizeQName(name: string): string {
  return toFQDN(name.toLowerCase());
}
