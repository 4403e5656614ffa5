/**
 * A stable, human-readable dump of a snapshot, for golden tests and the admin
 * /policy endpoint. Everything is sorted; nothing depends on Map insertion order
 * or object identity. Peers are printed as identity-number lists (the numbers are
 * deterministic, see identity/allocator.ts) followed by the selector.
 */
import { formatRuleRef, type RuleRef } from './api.js';
import type { SnapshotInternals } from './snapshot.js';
import type { CompiledSel, DirPolicy } from './tables.js';

function ref(r: RuleRef | undefined): string {
  return r ? formatRuleRef(r) : '(built-in)';
}

function peers(x: SnapshotInternals, s: CompiledSel): string {
  if (s.sel.wildcard) return `* ${s.sel.key}`;
  const ids = [...x.identities.values()].filter((i) => s.sel.matches(i)).map((i) => i.id);
  return `[${ids.join(',')}] ${s.sel.key}`;
}

function dumpSel(x: SnapshotInternals, s: CompiledSel, out: string[]): void {
  const verb = s.deny ? 'deny' : 'allow';
  out.push(`      ${verb} ${peers(x, s)}`);
  const refs = [...new Set(s.refs.map(ref))];
  out.push(`        by ${refs.join('; ')}`);
  if (s.sni) out.push(`        serverNames: ${s.sni.names.join(' ')}`);
  if (s.terminatingTLS) out.push(`        terminatingTLS: ${s.terminatingTLS.secret.namespace}/${s.terminatingTLS.secret.name}`);
  if (s.originatingTLS) out.push(`        originatingTLS: ${s.originatingTLS.secret.namespace}/${s.originatingTLS.secret.name}`);
  for (const h of s.http) out.push(`        http: ${h.text}`);
  for (const d of s.dns) out.push(`        dns: ${d.matcher.source}`);
}

function dumpDir(x: SnapshotInternals, name: string, dp: DirPolicy | undefined, out: string[]): void {
  if (!dp) {
    out.push(`  ${name}: not enforced (policy disabled)`);
    return;
  }
  if (dp.open) {
    out.push(`  ${name}: not enforced (no rules)`);
    return;
  }
  out.push(`  ${name}: ${dp.enforced ? 'enforced (default deny)' : 'not enforced (enableDefaultDeny: false)'}, ${dp.entries} entries`);
  for (const f of dp.filters) {
    const port = f.port === 0 ? '0 (any port)' : f.endPort > f.port ? `${f.port}-${f.endPort}` : `${f.port}`;
    out.push(`    ${f.proto}/${port}${f.parser ? ` l7=${f.parser}` : ''}`);
    for (const s of f.sels) dumpSel(x, s, out);
  }
}

/** The text dump (ends with a newline). */
export function dumpSnapshot(x: SnapshotInternals): string {
  const out: string[] = [];
  out.push(`snapshot version=${x.version} enforcement=${x.enforcement}`);
  const st = x.stats;
  out.push(
    `stats: documents=${st.documents} policies=${st.policies} rules=${st.rules} endpoints=${st.endpoints} identities=${st.identities}`,
  );
  out.push('identities:');
  for (const i of [...x.identities.values()].sort((a, b) => a.id - b.id)) {
    out.push(`  ${i.id} ${i.labels.join(' ')}`);
  }
  out.push('endpoints:');
  for (const ep of x.endpoints) {
    const ports = [...ep.namedPorts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const np = ports.length ? ` ports=${ports.map(([n, p]) => `${n}:${p.port}/${p.protocol}`).join(',')}` : '';
    out.push(`  ${ep.namespace}/${ep.name} identity=${ep.identity.id} ips=${ep.ips.join(',') || '-'}${np}`);
  }
  out.push('ipcache:');
  for (const [prefix, ident] of x.ipcache.entries().sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    out.push(`  ${prefix} -> ${ident.id}`);
  }
  out.push('policy:');
  const subjects = [...new Set(x.endpoints.map((e) => e.identity.id))].sort((a, b) => a - b);
  for (const id of subjects) {
    const names = x.endpoints.filter((e) => e.identity.id === id).map((e) => `${e.namespace}/${e.name}`);
    out.push(`identity ${id} (${names.join(', ')}):`);
    dumpDir(x, 'ingress', x.index.ingress.get(id), out);
    dumpDir(x, 'egress', x.index.egress.get(id), out);
  }
  if (x.fqdnSelectors.length) {
    out.push('fqdnSelectors:');
    for (const f of x.fqdnSelectors) out.push(`  fqdn:${f.key}`);
  }
  return `${out.join('\n')}\n`;
}
