/**
 * Golden tests: test/fixtures/golden/<case>/ holds policy YAML (loaded with the real
 * loader), `queries.jsonc` (explain-style questions with expected verdicts) and, for
 * some cases, `expected.txt` (the snapshot dump). Regenerate dumps with
 * UPDATE_GOLDEN=1 and review the diff.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigDir } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/policy/compile.js';
import { formatRuleRef } from '../../src/policy/api.js';
import type { DirectionVerdict, Verdict } from '../../src/policy/types.js';
import type { Identity } from '../../src/identity/identity.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import { http } from '../helpers/policy-fixtures.js';

const root = fileURLToPath(new URL('../fixtures/golden/', import.meta.url));

interface Query {
  name: string;
  from?: string;
  fromLabels?: string[];
  to?: string;
  toLabels?: string[];
  port: number;
  proto?: 'TCP' | 'UDP' | 'SCTP';
  method?: string;
  path?: string;
  host?: string;
  headers?: Record<string, string>;
  dns?: string;
  sni?: string;
  only?: 'ingress' | 'egress';
  expect: { allowed: boolean; type?: string; dropReason?: string; decidedBy?: string; rule?: string | null };
}

function resolve(s: PolicySnapshotImpl, ref: string | undefined, labels: string[] | undefined): Identity {
  if (labels) return s.identityForLabels(labels);
  if (ref === undefined) throw new Error('query needs from/to');
  if (ref.startsWith('ip:')) return s.identityForIP(ref.slice(3));
  const [ns, name] = ref.split('/') as [string, string];
  const ep = s.endpointByName(ns, name);
  if (!ep) throw new Error(`no endpoint ${ref}`);
  return ep.identity;
}

for (const name of readdirSync(root).sort()) {
  const dir = join(root, name);
  t.test(name, async (t) => {
    const loaded = await loadConfigDir(dir);
    t.same(loaded.errors, [], 'loads without errors');
    const { snapshot, errors } = compileSnapshot(loaded.docs);
    t.same(errors, [], 'compiles without errors');
    if (!snapshot) return;
    const expectedFile = join(dir, 'expected.txt');
    const dump = snapshot.dump();
    t.equal(dump, snapshot.dump(), 'dump is stable');
    if (process.env.UPDATE_GOLDEN === '1' && existsSync(expectedFile)) writeFileSync(expectedFile, dump);
    if (existsSync(expectedFile)) t.equal(dump, readFileSync(expectedFile, 'utf8'), 'dump matches expected.txt');
    const queries = JSON.parse(readFileSync(join(dir, 'queries.jsonc'), 'utf8')) as Query[];
    for (const q of queries) {
      const src = resolve(snapshot, q.from, q.fromLabels);
      const dst = resolve(snapshot, q.to, q.toLabels);
      const v: Verdict = snapshot.decide({
        src,
        dst,
        port: q.port,
        protocol: q.proto ?? 'TCP',
        ...(q.method !== undefined ? { http: http(q.method, q.path ?? '/', q.headers ?? {}, q.host ?? 'svc') } : {}),
        ...(q.dns !== undefined ? { dns: q.dns } : {}),
        ...(q.sni !== undefined ? { sni: q.sni } : {}),
      });
      const got: Verdict | DirectionVerdict | undefined = q.only ? v[q.only] : v;
      if (!got) {
        t.fail(`${q.name}: no ${q.only} verdict`);
        continue;
      }
      const actual: Record<string, unknown> = { allowed: got.allowed };
      if (q.expect.type !== undefined) actual.type = got.type;
      if (q.expect.dropReason !== undefined) actual.dropReason = got.dropReason;
      if (q.expect.decidedBy !== undefined) actual.decidedBy = q.only ? (got as DirectionVerdict).direction : (got as Verdict).decidedBy;
      if (q.expect.rule !== undefined) actual.rule = got.rule ? formatRuleRef(got.rule) : null;
      t.same(actual, q.expect, q.name);
    }
  });
}
