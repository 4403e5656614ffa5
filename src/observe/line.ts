/**
 * A flow record's JSON line, handed over in pieces. The sink encodes the pieces
 * straight into its file slab (sink.ts SlabWriter), so a line is never joined into
 * one string on the way to disk; `LineJoiner` joins them for the readers that want
 * text (the admin stream, `toLine()`).
 *
 * Why pieces, measured on a 1.4 KB DNS record (Node 20): building the line cost
 * ~0.6–1 µs and encoding it as one string ~2 µs more, most of it V8 flattening the
 * concatenated rope before a byte is written, while the endpoint pair and policy
 * fragments, about 1 KB of it, are the same for every record of a pair of
 * identities. Those are kept as `Fragment`s, their UTF-8 bytes made once, and
 * copied (a memcpy) instead of encoded again; text known to be ASCII is written a
 * byte per character. Each native write costs ~70 ns, so the pieces are kept few:
 * a record writing every field on its own measured slower (docs/observability.md).
 */

/** Cached JSON text together with its UTF-8 bytes (made once, shared by records). */
export class Fragment {
  readonly bytes: Buffer;
  constructor(readonly text: string) {
    this.bytes = Buffer.from(text, 'utf8');
  }
}

/** Where a record's pieces go, in order; together they are its JSON line. */
export interface LineOut {
  /** Any text (UTF-8 encoded). */
  put(piece: string): void;
  /**
   * Text whose every code unit is below 0x80 (numbers, addresses, our own literals,
   * names checked by `isAscii`): written a byte per character.
   */
  ascii(piece: string): void;
  fragment(f: Fragment): void;
}

/** The line as one string. */
export class LineJoiner implements LineOut {
  text = '';
  put(piece: string): void {
    this.text += piece;
  }
  ascii(piece: string): void {
    this.text += piece;
  }
  fragment(f: Fragment): void {
    this.text += f.text;
  }
}

// What JSON.stringify would escape: quotes, backslashes, control characters, and
// surrogates (a lone one is written as \uXXXX; a pair merely takes the slow path).
const NEEDS_ESCAPE = /["\\\x00-\x1f\ud800-\udfff]/;

/**
 * `JSON.stringify(s)` for a string: most method names, URLs and header values need
 * no escapes, and quoting them cost 85 ns against JSON.stringify's 220 (a 45-character
 * URL, Node 20).
 */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : '"' + s + '"';
}

/** `jsonString(s)` without its quotes: `s` itself when it needs no escapes. */
export function jsonInner(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s).slice(1, -1) : s;
}

const NON_ASCII = /[^\x00-\x7f]/;

/** Is every code unit below 0x80 (so UTF-8 and Latin-1 bytes are the same)? */
export function isAscii(s: string): boolean {
  return !NON_ASCII.test(s);
}
