/**
 * HTTP rule patterns (`method`, `path`, `host`) are RE2 syntax with full-string
 * match, as Envoy enforces them for Cilium (`safe_regex`, google_re2). We compile
 * them with the RE2 engine itself (the `re2` native binding), so matching is linear
 * in the input whatever the pattern (`/(a+)+b` on a 10 KiB path is still linear),
 * and whatever RE2 cannot run (backreferences, lookaround) is rejected when the
 * policy loads, never at request time.
 *
 * Patterns that are plain literals (the common case: `GET`, `/v1/request-landing`)
 * compile to a string comparison; the result is the same as RE2's full match.
 */
import RE2 from 're2';
import { WardenError } from '../core/errors.js';

export interface CompiledPattern {
  /** The pattern as written in the policy. */
  readonly source: string;
  /** Full-string match. */
  test(input: string): boolean;
}

const META = /[\\.+*?()|[\]{}^$]/;
// A backslash followed by punctuation is a literal in RE2 (`\.`, `\/`, `\-`).
const ESCAPED_PUNCT = /\\([!-/:-@[-`{-~])/g;

/** If `p` (without anchors) denotes exactly one string, return it. */
function literalOf(p: string): string | undefined {
  let body = p;
  if (body.startsWith('^')) body = body.slice(1);
  if (body.endsWith('$') && !body.endsWith('\\$')) body = body.slice(0, -1);
  const unescaped = body.replace(ESCAPED_PUNCT, '');
  if (META.test(unescaped)) return undefined;
  return body.replace(ESCAPED_PUNCT, '$1');
}

/**
 * Compile an RE2 pattern for full-string matching. Throws WardenError
 * L7W_ERR_REGEX with RE2's own message when the pattern is not valid RE2.
 */
export function compilePattern(source: string): CompiledPattern {
  const lit = literalOf(source);
  if (lit !== undefined) {
    return { source, test: (input: string) => input === lit };
  }
  let re: RE2;
  try {
    re = new RE2(`^(?:${source})$`, 'u');
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new WardenError('L7W_ERR_REGEX', `invalid RE2 pattern ${JSON.stringify(source)}: ${msg}`);
  }
  return { source, test: (input: string) => re.test(input) };
}

/** Validate without keeping the result: returns the error message, or undefined when valid. */
export function patternError(source: string): string | undefined {
  try {
    compilePattern(source);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}
