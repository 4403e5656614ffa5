/**
 * `l7warden replay --flows FILE [--config DIR] [-o text|json]`: re-decide recorded
 * flows under another policy directory and list the flows whose verdict would
 * change, with the rule that decides each under the new policy.
 *
 * Only decisions are replayed: REQUEST records (HTTP, gRPC, DNS) and L3/L4
 * decision records; responses and stream markers are skipped. Each side becomes an
 * identity of the new snapshot: the endpoint with exactly the recorded labels, else
 * the identity for those labels (`identityForLabels`), else (no labels) the IP
 * cache's answer for the recorded address. Port and protocol come from `l4`; HTTP
 * method, URL (→ host and path+query) and headers from `l7.http` (a redacted value
 * stays `HUBBLE_REDACTED`, so a rule on a secret header cannot match it); DNS the
 * query name. The verdict comes from `snapshot.decide()`, as in the proxy.
 *
 * Exit: 0 nothing changes, 1 something does (or the config is invalid / the file
 * unreadable), 2 usage.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { formatRuleRef, type L4Proto, type RuleRef } from '../policy/api.js';
import type { DecisionQuery, HttpAttributes, PolicySnapshot, Verdict } from '../policy/types.js';
import type { Identity } from '../identity/identity.js';
import { formatIssue } from '../config/issues.js';
import { WardenError } from '../core/errors.js';
import { loadAndCompile } from './check.js';
import { EXIT, parse, type Io } from './args.js';

type Json = Record<string, any>;

export interface ReplayedFlow {
  readonly line: number;
  readonly uuid?: string;
  readonly time?: string;
  readonly from: string;
  readonly to: string;
  readonly request: string;
  readonly port: string;
  readonly old: { verdict: 'FORWARDED' | 'DROPPED'; policy?: string };
  readonly new: { verdict: 'FORWARDED' | 'DROPPED'; type: 'L3_L4' | 'L7'; dropReason?: string; rule?: string; ruleRef?: RuleRef };
}

function identityFor(snap: PolicySnapshot, ep: Json | undefined, ip: string | undefined): Identity {
  const labels = Array.isArray(ep?.labels) ? (ep.labels as string[]).filter((l) => typeof l === 'string') : [];
  if (labels.length > 0) {
    const key = [...labels].sort().join('\n');
    for (const e of snap.endpoints) if ([...e.identity.labels].sort().join('\n') === key) return e.identity;
    return snap.identityForLabels(labels);
  }
  return snap.identityForIP(ip ?? '0.0.0.0');
}

function who(ep: Json | undefined, ip: string | undefined): string {
  if (ep?.pod_name) return `${ep.namespace ? `${ep.namespace}/` : ''}${ep.pod_name}`;
  return ip ?? '?';
}

function httpAttributes(h: Json): HttpAttributes {
  const url = String(h.url ?? '');
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)(.*)$/i.exec(url);
  const host = m ? m[1]! : '';
  const path = m ? m[2] || '/' : url || '/';
  const headers = new Map<string, string>();
  for (const kv of (h.headers as { key?: string; value?: string }[] | undefined) ?? []) {
    if (typeof kv.key !== 'string') continue;
    const k = kv.key.toLowerCase();
    const prev = headers.get(k);
    headers.set(k, prev === undefined ? String(kv.value ?? '') : `${prev}, ${String(kv.value ?? '')}`);
  }
  return { method: String(h.method ?? ''), path, host, header: (n) => headers.get(n) };
}

/** Is this record a decision (a request, or an L3/L4 verdict)? */
function isDecision(f: Json): boolean {
  if (f.is_reply === true) return false;
  if (f.l7) return f.l7.type === 'REQUEST';
  return f.Type === 'L3_L4';
}

function oldPolicy(f: Json): string | undefined {
  for (const k of ['ingress_denied_by', 'egress_denied_by', 'ingress_allowed_by', 'egress_allowed_by']) {
    const p = (f[k] as Json[] | undefined)?.[0];
    if (p?.name) return `${p.kind ?? ''} ${p.namespace ? `${p.namespace}/` : ''}${p.name}`.trim();
  }
  return undefined;
}

/** Re-decide one recorded flow; undefined when the record is not a decision. */
export function replayFlow(snap: PolicySnapshot, f: Json, line: number): ReplayedFlow | undefined {
  if (!isDecision(f)) return undefined;
  const l4 = (f.l4?.TCP ?? f.l4?.UDP ?? f.l4?.SCTP) as Json | undefined;
  const protocol: L4Proto = f.l4?.UDP ? 'UDP' : f.l4?.SCTP ? 'SCTP' : 'TCP';
  const port = Number(l4?.destination_port ?? 0);
  const src = identityFor(snap, f.source, f.IP?.source);
  const dst = identityFor(snap, f.destination, f.IP?.destination);
  const http = f.l7?.http as Json | undefined;
  const dns = f.l7?.dns as Json | undefined;
  const q: DecisionQuery = {
    src,
    dst,
    port,
    protocol,
    ...(http ? { http: httpAttributes(http) } : {}),
    ...(dns && typeof dns.query === 'string' ? { dns: dns.query.toLowerCase().endsWith('.') ? dns.query.toLowerCase() : `${dns.query.toLowerCase()}.` } : {}),
  };
  const v: Verdict = snap.decide(q);
  const request = http ? `${http.method} ${http.url}` : dns ? `DNS ${dns.query} ${(dns.qtypes as string[] | undefined)?.join(',') ?? ''}`.trim() : 'connection';
  const oldPol = oldPolicy(f);
  return {
    line,
    ...(typeof f.uuid === 'string' ? { uuid: f.uuid } : {}),
    ...(typeof f.time === 'string' ? { time: f.time } : {}),
    from: `${who(f.source, f.IP?.source)} (identity ${src.id})`,
    to: `${who(f.destination, f.IP?.destination)} (identity ${dst.id})`,
    request,
    port: `${port}/${protocol}`,
    old: { verdict: f.verdict === 'DROPPED' ? 'DROPPED' : 'FORWARDED', ...(oldPol ? { policy: oldPol } : {}) },
    new: {
      verdict: v.allowed ? 'FORWARDED' : 'DROPPED',
      type: v.type,
      ...(v.dropReason ? { dropReason: v.dropReason } : {}),
      ...(v.rule ? { rule: formatRuleRef(v.rule), ruleRef: v.rule } : {}),
    },
  };
}

export async function runReplay(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parse(argv, {
    flows: { type: 'string' },
    config: { type: 'string', short: 'c', default: 'config' },
    output: { type: 'string', short: 'o', default: 'text' },
  });
  if (typeof values.flows !== 'string') throw new WardenError('L7W_ERR_USAGE', 'replay needs --flows FILE');
  const output = values.output as string;
  if (output !== 'text' && output !== 'json') throw new WardenError('L7W_ERR_USAGE', '-o must be text or json');
  const { snapshot, errors } = await loadAndCompile(values.config as string);
  if (!snapshot) {
    for (const e of errors) io.err(formatIssue(e));
    return EXIT.invalid;
  }
  const stream = createReadStream(values.flows, { encoding: 'utf8' });
  const opened = await new Promise<Error | undefined>((resolve) => {
    stream.once('open', () => resolve(undefined));
    stream.once('error', resolve);
  });
  if (opened) {
    io.err(`l7warden replay: ${opened.message}`);
    return EXIT.invalid;
  }
  let n = 0;
  let checked = 0;
  let unreadable = 0;
  const changed: ReplayedFlow[] = [];
  for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
    n++;
    if (!line.trim()) continue;
    let rec: Json;
    try {
      rec = JSON.parse(line) as Json;
    } catch {
      unreadable++;
      continue;
    }
    // Any JSON value can stand on a line (`null`, a number, a list): only objects with a
    // `flow` object are flows. A flow whose fields have the wrong types is unreadable,
    // not a crash of the whole replay.
    if (rec === null || typeof rec !== 'object' || !rec.flow || typeof rec.flow !== 'object') continue;
    let r: ReturnType<typeof replayFlow>;
    try {
      r = replayFlow(snapshot, rec.flow as Json, n);
    } catch {
      unreadable++;
      continue;
    }
    if (!r) continue;
    checked++;
    if (r.old.verdict !== r.new.verdict) changed.push(r);
  }
  if (output === 'json') {
    io.out(
      JSON.stringify(
        {
          config: values.config,
          policyVersion: snapshot.version,
          checked,
          changed: changed.length,
          ...(unreadable ? { unreadableLines: unreadable } : {}),
          flows: changed,
        },
        null,
        2,
      ),
    );
  } else {
    for (const c of changed) {
      io.out(`${c.old.verdict} -> ${c.new.verdict}  ${c.from} -> ${c.to} ${c.port} ${c.request}`);
      io.out(
        `  decided by: ${c.new.rule ?? 'no rule'} (${c.new.type}${c.new.dropReason ? `, ${c.new.dropReason}` : ''})` +
          `${c.old.policy ? `; was ${c.old.policy}` : ''}${c.time ? `; recorded ${c.time}` : ''} (line ${c.line})`,
      );
    }
    io.out(`${checked} decision${checked === 1 ? '' : 's'} replayed, ${changed.length} would change${unreadable ? `, ${unreadable} unreadable line(s) skipped` : ''}`);
  }
  return changed.length > 0 ? EXIT.invalid : EXIT.ok;
}
