/**
 * Test PKI: a CA and leaves generated per test file into memory or a temp dir (never
 * the repo's certs/), wrapped as the SecretDocs the config loader would produce.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SecretDoc } from '../../src/config/documents.js';
import { makeCA, makeLeaf, type CertificateAuthority, type Leaf, type MakeLeafOptions } from '../../src/cli/certs.js';
import type { TestT } from './tap.js';

export function secretDoc(ref: string, data: Record<string, string | Buffer | undefined>): SecretDoc {
  const [namespace = '', name = ''] = ref.split('/');
  const bufs: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(data)) if (v !== undefined) bufs[k] = Buffer.isBuffer(v) ? v : Buffer.from(v);
  return { namespace, name, data: bufs, pos: { file: `certs/${ref}/tls.crt`, line: 1, col: 1 } };
}

export function leafSecret(ref: string, leaf: Leaf): SecretDoc {
  return secretDoc(ref, { 'tls.crt': leaf.certPem, 'tls.key': leaf.keyPem, 'ca.crt': leaf.caPem });
}

export function newCA(commonName = 'test CA'): CertificateAuthority {
  return makeCA({ commonName });
}

export function leaf(ca: CertificateAuthority, opts: MakeLeafOptions): Leaf {
  return makeLeaf(ca, opts);
}

/** A temp dir removed at teardown. */
export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'l7w-tls-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Assert that `fn` throws / rejects a WardenError with `code` whose message matches `re`. */
export async function rejectsWarden(
  t: TestT,
  fn: () => unknown,
  code: string,
  re: RegExp,
  msg = '',
): Promise<void> {
  try {
    await fn();
  } catch (e) {
    const err = e as { name?: string; code?: string; message?: string };
    t.equal(err.name, 'WardenError', `${msg} WardenError`);
    t.equal(err.code, code, `${msg} code`);
    t.match(err.message, re, `${msg} message`);
    return;
  }
  t.fail(`${msg} expected to throw ${code}`);
}

interface Listenable {
  listen(port: number, host: string, cb: () => void): unknown;
  close(cb?: (err?: Error) => void): unknown;
  address(): unknown;
  on(ev: 'connection', fn: (c: import('node:net').Socket) => void): unknown;
}

/**
 * Listen on 127.0.0.1:0 and close at teardown, destroying open connections first
 * (close() waits for every socket, and a half-closed one can linger forever).
 */
export async function listenLocal(t: { teardown(fn: () => Promise<void>): void }, s: Listenable): Promise<number> {
  const open = new Set<import('node:net').Socket>();
  s.on('connection', (c) => { open.add(c); c.on('close', () => open.delete(c)); });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { s.close(() => r()); for (const c of open) c.destroy(); }));
  return (s.address() as { port: number }).port;
}
