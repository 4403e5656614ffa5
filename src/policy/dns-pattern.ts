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
 *
 * Cilium joins every pattern into one regex `^(?:r1|r2|…)$`. With RE2 that stops
 * scaling somewhere past a few hundred alternatives (the DFA outgrows its memory
 * budget and RE2 falls back to the NFA: ~400 µs per name at 1,000 patterns, measured
 * with bench/dns.ts). So the same alternation is split, without changing what it
 * accepts: each pattern's trailing run of literal labels (`*.zone1.example.org.` →
 * `zone1.example.org`) places it in a trie keyed by labels from the right, and each
 * trie node holds the joined regex of its patterns (in chunks of at most 32). A
 * pattern can only match names ending in its literal labels, so a query tests only
 * the nodes on its own label path: at most (labels + 1) small regexes, whatever the
 * number of patterns.
 */
const CHUNK = 32;

interface TrieNode {
  readonly children: Map<string, TrieNode>;
  /** Regex sources of the patterns ending here that are not one of the shapes below. */
  readonly sources: string[];
  res: RE2[];
  /**
   * The common shapes, tested without RE2 (a call into it converts the name to
   * UTF-8 each time: ~1 µs, most of a DNS decision): the name ends here (a matchName
   * or a pattern without `*`); `*.` + this node's labels (one more label of DNS
   * characters, possibly empty); `**.` + them (one or more non-empty such labels).
   */
  exact: boolean;
  oneLabel: boolean;
  subdomains: boolean;
}

const newNode = (): TrieNode => ({ children: new Map(), sources: [], res: [], exact: false, oneLabel: false, subdomains: false });

/** Labels of a name or sanitized pattern, trailing dot removed ("." → [""]). */
function labelsOf(x: string): string[] {
  return (x.endsWith('.') ? x.slice(0, -1) : x).split('.');
}

/** The trailing labels of a sanitized pattern that contain no `*`, right to left. */
function literalTail(sanitized: string): string[] {
  const lead = /^\*\*+\./.exec(sanitized);
  const labels = labelsOf(lead ? sanitized.slice(lead[0].length) : sanitized);
  const out: string[] = [];
  for (let i = labels.length - 1; i >= 0; i--) {
    const l = labels[i]!;
    if (l.includes('*')) break;
    out.push(l);
  }
  return out;
}

function insert(root: TrieNode, tail: readonly string[], source: string | 'exact' | 'oneLabel' | 'subdomains'): void {
  let node = root;
  for (const l of tail) {
    let next = node.children.get(l);
    if (!next) {
      next = newNode();
      node.children.set(l, next);
    }
    node = next;
  }
  if (source === 'exact' || source === 'oneLabel' || source === 'subdomains') node[source] = true;
  else node.sources.push(source);
}

/** Which node flag a sanitized pattern sets, or undefined when it needs its regex. */
function shapeOf(sanitized: string): 'exact' | 'oneLabel' | 'subdomains' | undefined {
  const lead = /^\*\*+\./.exec(sanitized);
  if (lead) return sanitized.includes('*', lead[0].length) ? undefined : 'subdomains';
  if (!sanitized.includes('*')) return 'exact';
  if (sanitized.startsWith('*.') && !sanitized.includes('*', 1)) return 'oneLabel';
  return undefined;
}

/** Is q[start, end) made of `[-a-zA-Z0-9_]` only (LABEL_CHARS)? */
function labelChars(q: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = q.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || (c >= 0x41 && c <= 0x5a))) return false;
  }
  return true;
}

/** Is q[0, end) one or more non-empty labels of LABEL_CHARS joined by single dots? */
function subdomainLabels(q: string, end: number): boolean {
  let start = 0;
  for (let i = 0; i <= end; i++) {
    if (i === end || q.charCodeAt(i) === 0x2e) {
      if (i === start || !labelChars(q, start, i)) return false;
      start = i + 1;
    }
  }
  return true;
}

/**
 * The node's fast shapes for a name whose labels after `dot` led here (`dot` < 0:
 * none are left). `fqdn`: the name has its trailing dot (every sanitized pattern does).
 */
function testShapes(node: TrieNode, q: string, dot: number, fqdn: boolean): boolean {
  if (!fqdn) return false;
  if (dot < 0) return node.exact;
  return (node.oneLabel && labelChars(q, 0, dot)) || (node.subdomains && subdomainLabels(q, dot));
}

function finish(node: TrieNode): void {
  for (let i = 0; i < node.sources.length; i += CHUNK) {
    node.res.push(new RE2(`^(?:${node.sources.slice(i, i + CHUNK).join('|')})$`));
  }
  for (const c of node.children.values()) finish(c);
}

/** Regexes run by matchers (tests bound this instead of timing the matcher). */
export const dnsMatchCounters = { regexTests: 0 };

function testNode(node: TrieNode, q: string): boolean {
  for (const re of node.res) {
    dnsMatchCounters.regexTests++;
    if (re.test(q)) return true;
  }
  return false;
}

export function compileDnsRules(rules: readonly DnsRuleText[]): DnsMatcher {
  const texts: string[] = [];
  let matchAll = rules.length === 0;
  const root = newNode();
  for (const r of rules) {
    if (r.matchPattern !== undefined) {
      texts.push(`matchPattern:${r.matchPattern}`);
      if (isMatchAll(r.matchPattern)) matchAll = true;
      else {
        const sanitized = sanitizePattern(r.matchPattern);
        insert(root, literalTail(sanitized), shapeOf(sanitized) ?? patternToRegexSource(r.matchPattern));
      }
    } else if (r.matchName !== undefined) {
      texts.push(`matchName:${r.matchName}`);
      insert(root, labelsOf(toFQDN(r.matchName.toLowerCase())).reverse(), 'exact');
    }
  }
  const source = texts.join(' ') || '*';
  if (matchAll) return { source, matchAll: true, test: () => true };
  finish(root);
  return {
    source,
    matchAll: false,
    test(q: string): boolean {
      let node: TrieNode | undefined = root;
      if (testNode(node, q)) return true;
      const fqdn = q.endsWith('.');
      let end = fqdn ? q.length - 1 : q.length;
      for (;;) {
        // Same labels as labelsOf(): "." has one empty label, "a..b." has "a", "", "b".
        const dot = end === 0 ? -1 : q.lastIndexOf('.', end - 1);
        node = node.children.get(q.slice(dot + 1, end));
        if (!node) return false;
        if (testShapes(node, q, dot, fqdn) || testNode(node, q)) return true;
        if (dot < 0) return false;
        end = dot;
      }
    },
  };
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
