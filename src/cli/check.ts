/**
 * `l7warden check [--config DIR]`: load and compile without binding anything (Envoy's
 * validate mode). Exit 0 with a one-line summary, or 1 with every located error.
 */
import { loadConfigDir } from '../config/load.js';
import { formatIssue, type ConfigIssue } from '../config/issues.js';
import { compileSnapshot } from '../policy/compile.js';
import type { PolicySnapshot } from '../policy/types.js';
import { EXIT, parse, type Io } from './args.js';

export interface Compiled {
  snapshot?: PolicySnapshot;
  errors: readonly ConfigIssue[];
  warnings: readonly ConfigIssue[];
}

/** Load and compile a config directory: the first half of every command. */
export async function loadAndCompile(dir: string): Promise<Compiled> {
  const loaded = await loadConfigDir(dir);
  if (loaded.errors.length > 0) return { errors: loaded.errors, warnings: loaded.warnings };
  const enforcement = loaded.docs.proxyConfig?.spec.enforcement;
  const { snapshot, errors } = compileSnapshot(loaded.docs, enforcement ? { enforcement } : {});
  return snapshot && errors.length === 0
    ? { snapshot, errors: [], warnings: loaded.warnings }
    : { errors, warnings: loaded.warnings };
}

export async function runCheck(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string', short: 'c', default: 'config' } });
  const dir = values.config as string;
  const { snapshot, errors, warnings } = await loadAndCompile(dir);
  for (const w of warnings) io.err(`warning: ${formatIssue(w)}`);
  if (!snapshot) {
    for (const e of errors) io.err(formatIssue(e));
    io.err(`${dir}: ${errors.length} error${errors.length === 1 ? '' : 's'}`);
    return EXIT.invalid;
  }
  const s = snapshot.stats;
  io.out(
    `${dir}: valid: ${s.documents} documents, ${s.policies} policies (${s.rules} rules), ` +
      `${s.endpoints} endpoints, ${s.identities} identities`,
  );
  return EXIT.ok;
}
