/**
 * Command-line parsing shared by the subcommands: node's util.parseArgs (no
 * dependency), with usage errors turned into exit code 2 as SPEC.md's CLI table says.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { WardenError } from '../core/errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(argv: readonly string[], options: Options, allowPositionals = false) {
  try {
    return parseArgs({ args: [...argv], options, allowPositionals, strict: true });
  } catch (err) {
    throw new WardenError('L7W_ERR_USAGE', err instanceof Error ? err.message : String(err));
  }
}

/** Exit codes: 0 success, 1 invalid input or config, 2 usage error. */
export const EXIT = Object.freeze({ ok: 0, invalid: 1, usage: 2 });

export interface Io {
  out(line: string): void;
  err(line: string): void;
}

export const processIo: Io = {
  out: (l) => process.stdout.write(l + '\n'),
  err: (l) => process.stderr.write(l + '\n'),
};
