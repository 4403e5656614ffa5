/**
 * YAML (and JSON, which is YAML) into a small located tree: every map, list and
 * scalar keeps the 1-based line/column where it starts, so each validator can
 * point at the exact field. We walk the `yaml` library's AST rather than its
 * `toJS()` output because plain JS values have lost their positions.
 *
 * Aliases are expanded (k8s tooling accepts them) with a budget, so an alias bomb
 * ("billion laughs") becomes one error instead of an out-of-memory crash.
 * `<<` merge keys are honoured as sigs.k8s.io/yaml does.
 */
import {
  CST,
  Lexer,
  LineCounter,
  Parser,
  Composer,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  type Document,
  type Node as YamlNode,
} from 'yaml';

export interface Loc {
  readonly line: number;
  readonly col: number;
}

export interface YScalar extends Loc {
  readonly kind: 'scalar';
  /** string | number | boolean | null as the YAML 1.2 core schema reads it. */
  readonly value: unknown;
  /** For a number: its text as written (`010`, `0x50`, `1e2`, …), see `plainInteger`. */
  readonly text?: string;
}

/**
 * Is a number written as a plain decimal integer? `010`, `0o10`, `0x50`, `1e2`, `+80`,
 * `80.0` and `-0` are numbers to the YAML 1.2 core schema used here, but a YAML 1.1
 * reader (kubectl, sigs.k8s.io/yaml) reads some of them otherwise (`010` is 8 there):
 * the same file would mean another port or limit in the cluster than here.
 */
export function plainInteger(n: YScalar): boolean {
  return n.text === undefined || (/^-?(0|[1-9][0-9]*)$/.test(n.text) && n.text !== '-0');
}

export interface YEntry {
  readonly key: string;
  readonly keyLoc: Loc;
  readonly value: YNode;
}

export interface YMap extends Loc {
  readonly kind: 'map';
  readonly entries: readonly YEntry[];
}

export interface YSeq extends Loc {
  readonly kind: 'seq';
  readonly items: readonly YNode[];
}

export type YNode = YScalar | YMap | YSeq;

/** A located problem found while reading YAML text. */
export interface YamlProblem extends Loc {
  readonly message: string;
}

export interface YamlDocument {
  /** The document's root node; documents that are empty (`---` alone) are not returned. */
  readonly root: YNode;
  /** Syntax errors that made the document unusable are not here: such documents are dropped. */
  readonly problems: readonly YamlProblem[];
}

export interface ParsedYaml {
  readonly documents: readonly YamlDocument[];
  readonly errors: readonly YamlProblem[];
  readonly warnings: readonly YamlProblem[];
}

/** Upper bound on nodes produced by alias expansion in one document. */
const MAX_EXPANDED_NODES = 100_000;

/**
 * Bounds on one file, checked before the YAML library composes anything. The library
 * builds about 300-900 bytes of objects per token: a 4 MB file of `[1,1,…]` took 2 GB,
 * 4 MB of `[` 3.5 GB (a 32 MB file, within MAX_FILE_BYTES, is an out-of-memory crash
 * of a running proxy on reload), 2 MB of `---` lines 560 MB. Its composer recurses
 * once per nesting level: past a few thousand levels a warmed-up process died with
 * "FATAL ERROR: RegExpCompiler Allocation failed" (not catchable), a bit less threw
 * RangeError out of this parser. Counted tokens exclude spaces, newlines, comments.
 */
const MAX_TOKENS = 2_000_000;
/** Every lexeme, blank lines and comments included (32 MB of newlines took 170 s). */
const MAX_LEXEMES = 4_000_000;
const MAX_DOCUMENTS = 10_000;
const MAX_DEPTH = 200;

class AliasBudgetExceeded extends Error {}
class TooDeep extends Error {}

/**
 * The file's documents, composed while its text is checked against the bounds
 * above; or where it first exceeds one (byte offset and why). One lexer and parser
 * pass serves both: checking first and then calling parseAllDocuments lexed and
 * parsed every file twice (~40 % of loading a 1 MB, 2,000-policy directory).
 * A document's tokens reach the composer (which recurses once per nesting level)
 * only after the lexeme that completed it has passed the depth check, so nothing
 * deeper than MAX_DEPTH is ever composed; a file over a bound is dropped whole.
 */
function composeBounded(src: string, lc: LineCounter): { docs: Document[] } | { over: { offset: number; message: string } } {
  const parser = new Parser(lc.addNewLine);
  lc.addNewLine(0); // what Parser.parse() does first: line 1 starts at offset 0
  const composer = new Composer({ prettyErrors: false, uniqueKeys: true, merge: true });
  const docs: Document[] = [];
  const ready: CST.Token[] = [];
  let tokens = 0;
  let lexemes = 0;
  let documents = 0;
  const take = (tok: CST.Token): string | undefined => {
    if (tok.type === 'document' && ++documents > MAX_DOCUMENTS) return `more than ${MAX_DOCUMENTS} documents in one file; split it`;
    ready.push(tok);
    return undefined;
  };
  const compose = (): void => {
    for (const tok of ready) for (const d of composer.next(tok)) docs.push(d as Document);
    ready.length = 0;
  };
  for (const lexeme of new Lexer().lex(src)) {
    if (++lexemes > MAX_LEXEMES) return { over: { offset: parser.offset, message: `more than ${MAX_LEXEMES} YAML lexemes in one file; split it` } };
    const type = CST.tokenType(lexeme);
    if (type !== 'space' && type !== 'newline' && type !== 'comment' && ++tokens > MAX_TOKENS) {
      return { over: { offset: parser.offset, message: `more than ${MAX_TOKENS} YAML tokens in one file; split it` } };
    }
    for (const tok of parser.next(lexeme)) {
      const message = take(tok);
      if (message) return { over: { offset: tok.offset, message } };
    }
    if (parser.stack.length > MAX_DEPTH) return { over: { offset: parser.offset, message: `nested deeper than ${MAX_DEPTH} levels` } };
    if (ready.length > 0) compose();
  }
  for (const tok of parser.end()) {
    const message = take(tok);
    if (message) return { over: { offset: tok.offset, message } };
  }
  compose();
  for (const d of composer.end()) docs.push(d as Document);
  return { docs };
}

function lineColAt(src: string, offset: number): Loc {
  let line = 1;
  let lineStart = 0;
  for (let i = src.indexOf('\n'); i >= 0 && i < offset; i = src.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, col: offset - lineStart + 1 };
}

/** Look a key up in a located map (the last occurrence wins, as in JSON decoding). */
export function entryOf(map: YMap, key: string): YEntry | undefined {
  for (let i = map.entries.length - 1; i >= 0; i--) {
    const e = map.entries[i];
    if (e && e.key === key) return e;
  }
  return undefined;
}

/** Parse a file's text into located documents. Never throws on bad input. */
export function parseYaml(text: string): ParsedYaml {
  const lc = new LineCounter();
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const errors: YamlProblem[] = [];
  const warnings: YamlProblem[] = [];
  const documents: YamlDocument[] = [];
  const loc = (offset: number): Loc => {
    const p = lc.linePos(offset);
    return { line: p.line, col: p.col };
  };

  let composed: ReturnType<typeof composeBounded>;
  try {
    composed = composeBounded(src, lc);
  } catch (err) {
    errors.push({ line: 1, col: 1, message: `${err instanceof Error ? err.message : String(err)}` });
    return { documents, errors, warnings };
  }
  if ('over' in composed) {
    errors.push({ ...lineColAt(src, composed.over.offset), message: `${composed.over.message}; file skipped` });
    return { documents, errors, warnings };
  }
  const list = composed.docs;
  for (const doc of list) {
    let fatal = false;
    for (const e of doc.errors) {
      errors.push({ ...loc(e.pos[0]), message: e.message });
      // A duplicate key leaves a well-formed tree: keep validating the document so
      // every other error in it is reported too.
      if (e.code !== 'DUPLICATE_KEY') fatal = true;
    }
    for (const w of doc.warnings) warnings.push({ ...loc(w.pos[0]), message: w.message });
    // `---` followed by nothing is an empty document, not an error.
    if (fatal || doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) continue;
    const problems: YamlProblem[] = [];
    let budget = MAX_EXPANDED_NODES;
    // Nesting of the tree built so far: aliases can nest a deep node inside another
    // deep node, past what composeBounded saw in the text (and past the JS stack).
    let level = 0;
    const convert = (node: unknown, fallback: Loc, depth: number): YNode => {
      if (--budget < 0) throw new AliasBudgetExceeded();
      if (level > MAX_DEPTH) throw new TooDeep();
      if (isAlias(node)) {
        const target = node.resolve(doc);
        const at = node.range ? loc(node.range[0]) : fallback;
        if (!target) {
          problems.push({ ...at, message: `unresolved alias *${node.source}` });
          return { kind: 'scalar', value: null, ...at };
        }
        if (depth > 64) throw new AliasBudgetExceeded();
        return convert(target, at, depth + 1);
      }
      const at = (node as YamlNode | null)?.range ? loc((node as YamlNode).range![0]) : fallback;
      if (isMap(node)) {
        level++;
        const entries: YEntry[] = [];
        const merged: YEntry[] = [];
        for (const pair of node.items) {
          if (!isPair(pair)) continue;
          const keyNode = pair.key as unknown;
          const keyLoc = (keyNode as YamlNode | null)?.range ? loc((keyNode as YamlNode).range![0]) : at;
          const value = pair.value === null || pair.value === undefined
            ? ({ kind: 'scalar', value: null, ...keyLoc } as YScalar)
            : convert(pair.value, keyLoc, depth);
          if (isScalar(keyNode) && keyNode.source === '<<' && !keyNode.type?.startsWith('QUOTE')) {
            // Merge key: the referenced map(s) supply entries the map does not set itself.
            const sources = value.kind === 'seq' ? value.items : [value];
            for (const s of sources) {
              if (s.kind === 'map') merged.push(...s.entries);
              else problems.push({ ...s, message: 'merge key "<<" needs a map or a list of maps' });
            }
            continue;
          }
          let key: string;
          if (isScalar(keyNode)) key = String(keyNode.value);
          else if (keyNode === null || keyNode === undefined) key = '';
          else {
            problems.push({ ...keyLoc, message: 'map keys must be strings' });
            continue;
          }
          entries.push({ key, keyLoc, value });
        }
        const own = new Set(entries.map((e) => e.key));
        for (const m of merged) if (!own.has(m.key)) entries.push(m);
        level--;
        return { kind: 'map', entries, ...at };
      }
      if (isSeq(node)) {
        level++;
        const items = node.items.map((it) => convert(it, at, depth));
        level--;
        return { kind: 'seq', items, ...at };
      }
      if (isScalar(node)) {
        const v = node.value;
        if ((typeof v === 'number' || typeof v === 'bigint') && typeof node.source === 'string') {
          return { kind: 'scalar', value: typeof v === 'bigint' ? Number(v) : v, text: node.source, ...at };
        }
        return { kind: 'scalar', value: typeof v === 'bigint' ? Number(v) : v, ...at };
      }
      return { kind: 'scalar', value: null, ...at };
    };
    try {
      documents.push({ root: convert(doc.contents, { line: 1, col: 1 }, 0), problems });
    } catch (err) {
      if (!(err instanceof AliasBudgetExceeded) && !(err instanceof TooDeep)) throw err;
      const start = doc.contents.range ? loc(doc.contents.range[0]) : { line: 1, col: 1 };
      errors.push({
        ...start,
        message: err instanceof TooDeep
          ? `nested deeper than ${MAX_DEPTH} levels through aliases; document skipped`
          : `more than ${MAX_EXPANDED_NODES} nodes after alias expansion (an alias bomb, or a document to split); document skipped`,
      });
    }
  }
  return { documents, errors, warnings };
}
