/**
 * `l7warden explain`: a policy trace without traffic. It resolves both sides to
 * identities the way the proxy would, builds the same DecisionQuery a listener
 * builds, and asks the same `snapshot.decide()`; nothing here decides on its own.
 */
import { isIP } from 'node:net';
import { formatRuleRef, type L4Proto, type RuleRef } from '../policy/api.js';
import type { DecisionQuery, DirectionVerdict, HttpAttributes, PolicySnapshot, Verdict } from '../policy/types.js';
import type { Endpoint, Identity } from '../identity/identity.js';
import { normalizeQName } from '../policy/dns-pattern.js';
import { canonicalizeTarget } from '../http/canonical-path.js';
import { formatIssue } from '../config/issues.js';
import { WardenError } from '../core/errors.js';
import { loadAndCompile } from './check.js';
import { EXIT, parse, type Io } from './args.js';

/** How a --from/--to value was resolved. */
export interface ResolvedPeer {
  readonly input: string;
  readonly how: 'pod' | 'labels' | 'ip';
  readonly identity: Identity;
  readonly endpoint?: Endpoint;
  /** Said when the value matched no endpoint, as `explain` must. */
  readonly note?: string;
}

function parseLabels(spec: string): string[] {
  const out: string[] = [];
  for (const part of spec.split(',')) {
    const p = part.trim();
    if (!p) continue;
    const eq = p.indexOf('=');
    const key = eq < 0 ? p : p.slice(0, eq);
    const value = eq < 0 ? '' : p.slice(eq + 1);
    if (!key) throw new WardenError('L7W_ERR_USAGE', `bad label ${JSON.stringify(p)} in ${JSON.stringify(spec)}`);
    out.push(value === '' && key.startsWith('reserved:') ? key : `${key}=${value}`);
  }
  if (out.length === 0) throw new WardenError('L7W_ERR_USAGE', `no labels in ${JSON.stringify(spec)}`);
  return out;
}

/** A label `key=value` (key may carry a source) as a lookup key and value. */
function lookupKey(label: string): [string, string] {
  const eq = label.indexOf('=');
  const key = eq < 0 ? label : label.slice(0, eq);
  const value = eq < 0 ? '' : label.slice(eq + 1);
  return [key.includes(':') ? key : `any:${key}`, value];
}

export function resolvePeer(snap: PolicySnapshot, input: string): ResolvedPeer {
  if (isIP(input)) {
    const identity = snap.identityForIP(input);
    const endpoint = snap.endpointByIdentity(identity.id);
    const onPod = endpoint?.ips.includes(input) ?? false;
    return {
      input,
      how: 'ip',
      identity,
      ...(onPod && endpoint ? { endpoint } : {}),
      ...(onPod ? {} : { note: `${input} is no endpoint's address: identity ${identity.id} from the IP cache` }),
    };
  }
  if (input.includes('=') || input.startsWith('reserved:')) {
    const labels = parseLabels(input);
    const wanted = labels.map(lookupKey);
    const matches = new Map<number, Endpoint>();
    for (const ep of snap.endpoints) {
      if (wanted.every(([k, v]) => ep.identity.lookup.get(k) === v)) matches.set(ep.identity.id, ep);
    }
    if (matches.size > 1) {
      const list = [...matches.values()].map((e) => `${e.namespace}/${e.name} (${e.identity.id})`).join(', ');
      throw new WardenError('L7W_ERR_USAGE', `labels ${JSON.stringify(input)} match several identities: ${list}`);
    }
    const only = [...matches.values()][0];
    if (only) return { input, how: 'labels', identity: only.identity, endpoint: only };
    const sourced = labels.map((l) => (l.slice(0, l.indexOf('=') < 0 ? l.length : l.indexOf('=')).includes(':') ? l : `k8s:${l}`));
    const identity = snap.identityForLabels(sourced);
    return { input, how: 'labels', identity, note: `labels ${JSON.stringify(input)} match no endpoint: identity ${identity.id} for exactly these labels` };
  }
  const slash = input.indexOf('/');
  const ns = slash < 0 ? 'default' : input.slice(0, slash);
  const name = slash < 0 ? input : input.slice(slash + 1);
  const endpoint = snap.endpointByName(ns, name);
  if (!endpoint) throw new WardenError('L7W_ERR_USAGE', `no pod ${ns}/${name} in the config`);
  return { input, how: 'pod', identity: endpoint.identity, endpoint };
}

function parsePort(spec: string | undefined, dns: boolean): { port: number; protocol: L4Proto } {
  const fallback = dns ? { port: 53, protocol: 'UDP' as const } : { port: 80, protocol: 'TCP' as const };
  if (spec === undefined) return fallback;
  const [p, proto] = spec.split('/');
  const port = Number(p);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new WardenError('L7W_ERR_USAGE', `--port ${spec}: not a port`);
  const protocol = (proto ?? fallback.protocol).toUpperCase();
  if (protocol !== 'TCP' && protocol !== 'UDP' && protocol !== 'SCTP') {
    throw new WardenError('L7W_ERR_USAGE', `--port ${spec}: protocol must be TCP, UDP or SCTP`);
  }
  return { port, protocol };
}

function httpAttributes(method: string, path: string, host: string, headers: readonly string[]): HttpAttributes {
  const map = new Map<string, string>();
  for (const h of headers) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new WardenError('L7W_ERR_USAGE', `--header ${JSON.stringify(h)}: expected name:value`);
    const name = h.slice(0, colon).trim().toLowerCase();
    const value = h.slice(colon + 1).trim();
    const prev = map.get(name);
    map.set(name, prev === undefined ? value : `${prev}, ${value}`);
  }
  const canonical = canonicalizeTarget(path);
  if (!canonical.ok) throw new WardenError('L7W_ERR_USAGE', `--path ${JSON.stringify(path)}: the proxy answers 400: ${canonical.reason}`);
  return { method, path: canonical.path, host, header: (n) => map.get(n) };
}

function ruleJson(r: RuleRef | undefined) {
  return r ? { ...r, text: formatRuleRef(r) } : undefined;
}

/**
 * What a flow record would carry for this direction beyond its rule: the other
 * policies behind the matched map entry (`*_allowed_by` / `*_denied_by` list them
 * all for an L3/L4 allow or a deny rule) and that entry's `policy_log` values.
 */
interface EntryInfo {
  readonly rules: readonly RuleRef[] | undefined;
  readonly log: readonly string[] | undefined;
}

function directionJson(d: DirectionVerdict | undefined, entry: EntryInfo) {
  if (!d) return undefined;
  return {
    enforced: d.enforced,
    verdict: d.allowed ? 'allowed' : 'denied',
    type: d.type,
    ...(d.dropReason ? { dropReason: d.dropReason } : {}),
    ...(d.rule ? { rule: ruleJson(d.rule) } : {}),
    ...(d.l7 ? { l7: d.l7 } : {}),
    ...(d.type === 'L3_L4' && entry.rules ? { entryPolicies: entry.rules.map((r) => policyName(r)) } : {}),
    ...(entry.log && entry.log.length > 0 ? { policyLog: entry.log } : {}),
  };
}

/** A policy as Hubble names it: kind and namespace/name. */
function policyName(r: RuleRef): string {
  return `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;
}

function entryText(name: string, d: DirectionVerdict | undefined, entry: EntryInfo): string[] {
  const lines: string[] = [];
  if (d?.type === 'L3_L4' && entry.rules) lines.push(`${name} entry:  ${entry.rules.map(policyName).join(', ')}`);
  if (d && entry.log && entry.log.length > 0) lines.push(`${name} policy_log: ${JSON.stringify(entry.log)}`);
  return lines;
}

function peerJson(p: ResolvedPeer) {
  return {
    input: p.input,
    identity: p.identity.id,
    labels: p.identity.labels,
    ...(p.endpoint ? { endpoint: `${p.endpoint.namespace}/${p.endpoint.name}` } : {}),
    ...(p.note ? { note: p.note } : {}),
  };
}

function peerText(p: ResolvedPeer): string {
  const who = p.endpoint ? `${p.endpoint.namespace}/${p.endpoint.name}` : p.input;
  return `${who} (identity ${p.identity.id}: ${p.identity.labels.join(', ') || 'no labels'})`;
}

function directionText(name: string, d: DirectionVerdict | undefined, side: string): string {
  if (!d) return `${name}: not checked (the ${side} is not a local endpoint)`;
  if (!d.enforced && d.allowed) return `${name}: not enforced (no policy selects the ${side} in this direction)`;
  const what = d.allowed ? 'allowed' : `denied (${d.dropReason ?? 'POLICY_DENIED'})`;
  return `${name}: ${what} at ${d.type}${d.rule ? ` by ${formatRuleRef(d.rule)}` : ''}`;
}

export async function runExplain(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string', short: 'c', default: 'config' },
    from: { type: 'string' },
    to: { type: 'string' },
    port: { type: 'string', short: 'p' },
    method: { type: 'string', short: 'X' },
    path: { type: 'string' },
    host: { type: 'string' },
    header: { type: 'string', short: 'H', multiple: true },
    dns: { type: 'string' },
    sni: { type: 'string' },
    output: { type: 'string', short: 'o', default: 'text' },
  });
  if (!values.from || !values.to) throw new WardenError('L7W_ERR_USAGE', 'explain needs --from and --to');
  const output = values.output as string;
  if (output !== 'text' && output !== 'json') throw new WardenError('L7W_ERR_USAGE', '-o must be text or json');
  const headers = (values.header as string[] | undefined) ?? [];
  const isHttp = values.method !== undefined || values.path !== undefined || values.host !== undefined || headers.length > 0;
  if (isHttp && values.dns !== undefined) throw new WardenError('L7W_ERR_USAGE', 'give an HTTP request or --dns, not both');

  const { snapshot, errors } = await loadAndCompile(values.config as string);
  if (!snapshot) {
    for (const e of errors) io.err(formatIssue(e));
    return EXIT.invalid;
  }
  const src = resolvePeer(snapshot, values.from as string);
  const dst = resolvePeer(snapshot, values.to as string);
  const dns = values.dns as string | undefined;
  const { port, protocol } = parsePort(values.port as string | undefined, dns !== undefined);
  const query: DecisionQuery = {
    src: src.identity,
    dst: dst.identity,
    port,
    protocol,
    ...(isHttp
      ? {
          http: httpAttributes(
            (values.method as string | undefined) ?? 'GET',
            (values.path as string | undefined) ?? '/',
            (values.host as string | undefined) ?? '',
            headers,
          ),
        }
      : {}),
    ...(dns !== undefined ? { dns: normalizeQName(dns) } : {}),
    ...(values.sni !== undefined ? { sni: values.sni as string } : {}),
  };
  const verdict: Verdict = snapshot.decide(query);
  const request = query.http
    ? `${query.http.method} ${query.http.path}${query.http.host ? ` (host ${query.http.host})` : ''}`
    : query.dns !== undefined
      ? `DNS ${query.dns}`
      : 'connection';

  const egress: EntryInfo = { rules: verdict.egressRules, log: verdict.egressLog };
  const ingress: EntryInfo = { rules: verdict.ingressRules, log: verdict.ingressLog };
  if (output === 'json') {
    io.out(
      JSON.stringify(
        {
          verdict: verdict.allowed ? 'allowed' : 'denied',
          type: verdict.type,
          ...(verdict.dropReason ? { dropReason: verdict.dropReason } : {}),
          ...(verdict.rule ? { rule: ruleJson(verdict.rule) } : {}),
          ...(verdict.decidedBy ? { decidedBy: verdict.decidedBy } : {}),
          source: peerJson(src),
          destination: peerJson(dst),
          port: `${port}/${protocol}`,
          request,
          policyVersion: snapshot.version,
          ...(verdict.egress ? { egress: directionJson(verdict.egress, egress) } : {}),
          ...(verdict.ingress ? { ingress: directionJson(verdict.ingress, ingress) } : {}),
          headerActions: verdict.headerActions,
        },
        null,
        2,
      ),
    );
    return EXIT.ok;
  }
  io.out(verdict.allowed ? 'ALLOWED' : 'DENIED');
  io.out(`  request:     ${request} to port ${port}/${protocol}`);
  io.out(`  source:      ${peerText(src)}`);
  io.out(`  destination: ${peerText(dst)}`);
  for (const p of [src, dst]) if (p.note) io.out(`  note:        ${p.note}`);
  io.out(
    `  decided by:  ${verdict.rule ? formatRuleRef(verdict.rule) : 'no rule'} ` +
      `(${verdict.type}${verdict.dropReason ? `, ${verdict.dropReason}` : ''})`,
  );
  io.out(`  ${directionText('egress', verdict.egress, 'source')}`);
  for (const l of entryText('egress', verdict.egress, egress)) io.out(`    ${l}`);
  io.out(`  ${directionText('ingress', verdict.ingress, 'destination')}`);
  for (const l of entryText('ingress', verdict.ingress, ingress)) io.out(`    ${l}`);
  for (const a of verdict.headerActions) {
    io.out(`  header action: ${a.action} ${a.name}${a.value !== undefined ? `: ${a.secret ? '[redacted]' : a.value}` : ''}`);
  }
  return EXIT.ok;
}
