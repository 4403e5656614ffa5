/**
 * Typed, located reading of a YAML tree. Every accessor reports what is wrong
 * with the field it reads (as a ConfigIssue at that field's line/column, with
 * its path) and returns `undefined` instead of throwing, so one run collects
 * every error in every document.
 */
import type { ConfigIssue, SourcePos } from './issues.js';
import { entryOf, plainInteger, type Loc, type YMap, type YNode, type YSeq } from './yaml-tree.js';

/** Collects issues for one file. */
export class Reporter {
  constructor(
    readonly file: string,
    private readonly errors: ConfigIssue[],
    private readonly warnings: ConfigIssue[],
    /** Path of the object inside its document (`items[2]` for an item of a List). */
    private readonly prefix = '',
  ) {}

  /** A reporter for an object nested at `prefix` (paths are reported from the document root). */
  scoped(prefix: string): Reporter {
    return new Reporter(this.file, this.errors, this.warnings, this.full(prefix));
  }

  private full(path: string): string {
    if (!this.prefix) return path;
    if (!path) return this.prefix;
    return path.startsWith('[') ? `${this.prefix}${path}` : `${this.prefix}.${path}`;
  }

  error(at: Loc, path: string, message: string): void {
    this.errors.push({ file: this.file, line: at.line, col: at.col, path: this.full(path), message });
  }

  warn(at: Loc, path: string, message: string): void {
    this.warnings.push({ file: this.file, line: at.line, col: at.col, path: this.full(path), message });
  }

  pos(at: Loc): SourcePos {
    return { file: this.file, line: at.line, col: at.col };
  }

  /** Number of errors so far (used to tell whether a part added any). */
  get errorCount(): number {
    return this.errors.length;
  }
}

const PLAIN_KEY = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** `spec` + `ingress` → `spec.ingress`; keys that are not identifiers are bracketed. */
export function joinPath(parent: string, key: string): string {
  const seg = PLAIN_KEY.test(key) ? key : `[${JSON.stringify(key)}]`;
  if (!parent) return seg;
  return seg.startsWith('[') ? `${parent}${seg}` : `${parent}.${seg}`;
}

export function indexPath(parent: string, i: number): string {
  return `${parent}[${i}]`;
}

/** How a node's type is named in messages. */
export function typeName(n: YNode): string {
  if (n.kind === 'map') return 'an object';
  if (n.kind === 'seq') return 'a list';
  const v = n.value;
  if (v === null) return 'null';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return 'a number';
  if (typeof v === 'boolean') return 'a boolean';
  return typeof v;
}

function isNull(n: YNode | undefined): boolean {
  return n === undefined || (n.kind === 'scalar' && n.value === null);
}

/** Edit distance, for "did you mean" hints on misspelt field names. */
function distance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

export function suggest(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) if (k.toLowerCase() === lower) return k;
  // A truncated name (`proto` for `protocol`) is the commonest slip after case.
  for (const k of known) if (lower.length >= 3 && k.toLowerCase().startsWith(lower)) return k;
  for (const k of known) {
    const d = distance(lower, k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

/**
 * A map being read at `path`. Accessors treat an explicit `null` like an absent
 * field, as Kubernetes' JSON decoding does for optional fields.
 */
export class Fields {
  constructor(
    readonly rep: Reporter,
    readonly node: YMap,
    readonly path: string,
  ) {}

  /** Wrap `node` as a map, reporting an error when it is something else. */
  static of(rep: Reporter, node: YNode, path: string): Fields | undefined {
    if (node.kind !== 'map') {
      rep.error(node, path, `must be an object, not ${typeName(node)}`);
      return undefined;
    }
    return new Fields(rep, node, path);
  }

  get loc(): Loc {
    return this.node;
  }

  keys(): string[] {
    return this.node.entries.map((e) => e.key);
  }

  /**
   * Report every key not in `known` (the CRD schema's strictness). `special`
   * gives a more helpful message for keys known to be wrong in this place.
   */
  checkKnown(known: readonly string[], special: Readonly<Record<string, string>> = {}): void {
    for (const e of this.node.entries) {
      if (known.includes(e.key)) continue;
      const msg = special[e.key];
      if (msg !== undefined) {
        this.rep.error(e.keyLoc, joinPath(this.path, e.key), msg);
        continue;
      }
      const hint = suggest(e.key, known);
      this.rep.error(e.keyLoc, joinPath(this.path, e.key), hint ? `unknown field (did you mean "${hint}"?)` : 'unknown field');
    }
  }

  /** The node at `key`, or undefined when absent or null. */
  node_(key: string): YNode | undefined {
    const e = entryOf(this.node, key);
    return e && !isNull(e.value) ? e.value : undefined;
  }

  has(key: string): boolean {
    return this.node_(key) !== undefined;
  }

  /** Where to point for `key`: its value, or the map itself when absent. */
  at(key: string): Loc {
    return this.node_(key) ?? this.node;
  }

  keyLoc(key: string): Loc {
    return entryOf(this.node, key)?.keyLoc ?? this.node;
  }

  sub(key: string): string {
    return joinPath(this.path, key);
  }

  error(key: string, message: string): void {
    this.rep.error(this.at(key), this.sub(key), message);
  }

  required(key: string): YNode | undefined {
    const n = this.node_(key);
    if (n === undefined) this.rep.error(this.node, this.sub(key), 'is required');
    return n;
  }

  str(key: string, opts: { required?: boolean; nonEmpty?: boolean } = {}): string | undefined {
    const n = opts.required ? this.required(key) : this.node_(key);
    if (n === undefined) return undefined;
    if (n.kind !== 'scalar' || typeof n.value !== 'string') {
      const hint = n.kind === 'scalar' && n.value !== null ? ` (quote it: "${String(n.value)}")` : '';
      this.rep.error(n, this.sub(key), `must be a string, not ${typeName(n)}${hint}`);
      return undefined;
    }
    if (opts.nonEmpty && n.value === '') {
      this.rep.error(n, this.sub(key), 'must not be empty');
      return undefined;
    }
    return n.value;
  }

  bool(key: string): boolean | undefined {
    const n = this.node_(key);
    if (n === undefined) return undefined;
    if (n.kind !== 'scalar' || typeof n.value !== 'boolean') {
      this.rep.error(n, this.sub(key), `must be true or false, not ${typeName(n)}`);
      return undefined;
    }
    return n.value;
  }

  int(key: string, opts: { required?: boolean; min?: number; max?: number } = {}): number | undefined {
    const n = opts.required ? this.required(key) : this.node_(key);
    if (n === undefined) return undefined;
    if (n.kind !== 'scalar' || typeof n.value !== 'number' || !Number.isInteger(n.value)) {
      this.rep.error(n, this.sub(key), `must be an integer, not ${n.kind === 'scalar' && typeof n.value === 'number' ? String(n.value) : typeName(n)}`);
      return undefined;
    }
    if (!plainInteger(n)) {
      this.rep.error(n, this.sub(key), `write ${n.text} as a plain decimal integer (YAML 1.1 readers such as kubectl read it differently)`);
      return undefined;
    }
    const v = n.value;
    if (opts.min !== undefined && v < opts.min) {
      this.rep.error(n, this.sub(key), `must be at least ${opts.min}, not ${v}`);
      return undefined;
    }
    if (opts.max !== undefined && v > opts.max) {
      this.rep.error(n, this.sub(key), `must be at most ${opts.max}, not ${v}`);
      return undefined;
    }
    return v;
  }

  /** One of `allowed` (exact spelling). */
  oneOf<T extends string>(key: string, allowed: readonly T[]): T | undefined {
    const s = this.str(key);
    if (s === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(s)) {
      this.error(key, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, not ${JSON.stringify(s)}`);
      return undefined;
    }
    return s as T;
  }

  map(key: string, opts: { required?: boolean } = {}): Fields | undefined {
    const n = opts.required ? this.required(key) : this.node_(key);
    if (n === undefined) return undefined;
    return Fields.of(this.rep, n, this.sub(key));
  }

  seq(key: string): YSeq | undefined {
    const n = this.node_(key);
    if (n === undefined) return undefined;
    if (n.kind !== 'seq') {
      this.rep.error(n, this.sub(key), `must be a list, not ${typeName(n)}`);
      return undefined;
    }
    return n;
  }

  /** A list of strings; bad items are reported and skipped. */
  strList(key: string): string[] | undefined {
    const s = this.seq(key);
    if (!s) return undefined;
    const out: string[] = [];
    s.items.forEach((it, i) => {
      if (it.kind === 'scalar' && typeof it.value === 'string') out.push(it.value);
      else this.rep.error(it, indexPath(this.sub(key), i), `must be a string, not ${typeName(it)}`);
    });
    return out;
  }

  /** A string → string map (labels, annotations). */
  strMap(key: string): Record<string, string> | undefined {
    const f = this.map(key);
    if (!f) return undefined;
    // No prototype: a key `__proto__` must be kept like any other. On `{}` the
    // assignment sets nothing, and a selector `matchLabels: {__proto__: x}` silently
    // became `{}`, selecting every pod.
    const out: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const e of f.node.entries) {
      const v = e.value;
      if (v.kind === 'scalar' && typeof v.value === 'string') out[e.key] = v.value;
      else if (v.kind === 'scalar' && v.value === null) out[e.key] = '';
      else {
        const hint = v.kind === 'scalar' ? ` (quote it: "${String(v.value)}")` : '';
        this.rep.error(v, joinPath(f.path, e.key), `must be a string, not ${typeName(v)}${hint}`);
      }
    }
    return out;
  }

  /** Each item of a list as a map, with its path; non-maps are reported. */
  maps(key: string): { f: Fields; i: number }[] | undefined {
    const s = this.seq(key);
    if (!s) return undefined;
    const out: { f: Fields; i: number }[] = [];
    s.items.forEach((it, i) => {
      const f = Fields.of(this.rep, it, indexPath(this.sub(key), i));
      if (f) out.push({ f, i });
    });
    return out;
  }
}
