/**
 * Policy test helpers: compile YAML text (written to a temp dir and loaded with the
 * real loader) and run decisions with short HTTP attribute objects.
 */
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigDir } from '../../src/config/load.js';
import { compileSnapshot, type CompileOptions } from '../../src/policy/compile.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { ConfigIssue } from '../../src/config/issues.js';
import type { HttpAttributes } from '../../src/policy/types.js';

export interface Compiled {
  snapshot?: PolicySnapshotImpl;
  errors: ConfigIssue[];
  loadErrors: readonly ConfigIssue[];
}

/** Load + compile a set of files ({name: yaml}). */
export async function compileFiles(files: Record<string, string>, opts: CompileOptions = {}): Promise<Compiled> {
  const dir = mkdtempSync(join(tmpdir(), 'l7w-policy-'));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    const loaded = await loadConfigDir(dir);
    if (loaded.errors.length) return { errors: [], loadErrors: loaded.errors };
    const { snapshot, errors } = compileSnapshot(loaded.docs, opts);
    return { ...(snapshot ? { snapshot } : {}), errors, loadErrors: [] };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Compile and insist on success. */
export async function compileOk(files: Record<string, string>, opts: CompileOptions = {}): Promise<PolicySnapshotImpl> {
  const c = await compileFiles(files, opts);
  if (!c.snapshot) throw new Error(`compile failed: ${JSON.stringify([...c.loadErrors, ...c.errors])}`);
  return c.snapshot;
}

export function http(method: string, path: string, headers: Record<string, string> = {}, host = 'svc'): HttpAttributes {
  const lower = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return { method, path, host, header: (n: string) => lower.get(n) };
}

/** A Pod document. */
export function pod(name: string, labels: Record<string, string>, ip: string, extra: { ns?: string; sa?: string; ports?: string } = {}): string {
  const ls = Object.entries(labels).map(([k, v]) => `    ${JSON.stringify(k)}: ${JSON.stringify(v)}`).join('\n');
  return `---
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${extra.ns ?? 'default'}
  labels:
${ls || '    {}'}
spec:
  serviceAccountName: ${extra.sa ?? 'default'}
  containers:
  - name: c
    image: x
${extra.ports ?? ''}
status:
  podIP: ${ip}
`;
}
