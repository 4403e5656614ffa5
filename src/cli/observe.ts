/**
 * `l7warden observe`: read flow records from the admin API's live stream
 * (`--server host:port`, default 127.0.0.1:9901) or from a flow log file
 * (`--file F`), filter them like `hubble observe` (observe/filter.ts), print them
 * as written (`-o json`) or in Hubble's one-line form (`-o compact`).
 *
 *   --last N    the last N matching records (server: of its in-memory ring;
 *               default 20 without --follow, as hubble's)
 *   --follow    keep printing new records (server only) until interrupted
 *
 * Exit codes: 0 ok, 1 the server or file could not be read, 2 usage.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import * as http from 'node:http';
import { parseArgs } from 'node:util';
import { WardenError } from '../core/errors.js';
import { EXIT, type Io } from './args.js';
import { FILTER_FLAGS, buildFilter, type FilterFlag, type FlagValue, type FlowJson, type Predicate } from '../observe/filter.js';

const OPTIONS = {
  server: { type: 'string' },
  file: { type: 'string' },
  output: { type: 'string', short: 'o' },
  follow: { type: 'boolean', short: 'f' },
  last: { type: 'string' },
  not: { type: 'boolean' },
  ...Object.fromEntries(FILTER_FLAGS.map((f) => [f, { type: 'string', multiple: true }])),
  namespace: { type: 'string', multiple: true, short: 'n' },
  type: { type: 'string', multiple: true, short: 't' },
  label: { type: 'string', multiple: true, short: 'l' },
} as const;

/** The admin stream's ring holds at most this many; `--last` asks for all of it and filters here. */
const RING = 4096;

export interface ObserveOptions {
  readonly server?: string;
  readonly file?: string;
  readonly output: 'json' | 'compact';
  readonly follow: boolean;
  readonly last?: number;
  readonly filter: Predicate;
}

export function parseObserveArgs(argv: readonly string[]): ObserveOptions {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS as never, strict: true, tokens: true, allowPositionals: false });
  } catch (err) {
    throw new WardenError('L7W_ERR_USAGE', err instanceof Error ? err.message : String(err));
  }
  const flags: FlagValue[] = [];
  let negateNext = false;
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option') continue;
    if (t.name === 'not') {
      // flows_filter.go: `--not --not` is refused, not read as a double negation.
      if (negateNext) throw new WardenError('L7W_ERR_USAGE', 'consecutive --not statements');
      negateNext = true;
      continue;
    }
    if ((FILTER_FLAGS as readonly string[]).includes(t.name)) {
      flags.push({ flag: t.name as FilterFlag, value: t.value ?? '', negated: negateNext });
      negateNext = false;
    }
  }
  if (negateNext) throw new WardenError('L7W_ERR_USAGE', '--not must be followed by a filter flag');
  const v = parsed.values as Record<string, unknown>;
  const output = (v.output as string | undefined) ?? 'compact';
  if (output !== 'json' && output !== 'compact') throw new WardenError('L7W_ERR_USAGE', '-o must be json or compact');
  if (v.server !== undefined && v.file !== undefined) throw new WardenError('L7W_ERR_USAGE', 'give --server or --file, not both');
  let last: number | undefined;
  if (v.last !== undefined) {
    last = Number(v.last);
    if (!Number.isInteger(last) || last < 0) throw new WardenError('L7W_ERR_USAGE', `--last ${String(v.last)}: a non-negative integer`);
  }
  const follow = v.follow === true;
  if (follow && v.file !== undefined) throw new WardenError('L7W_ERR_USAGE', '--follow reads the live stream (--server), not a file');
  return {
    ...(typeof v.file === 'string' ? { file: v.file } : { server: (v.server as string | undefined) ?? '127.0.0.1:9901' }),
    output,
    follow,
    ...(last !== undefined ? { last } : {}),
    filter: buildFilter(flags),
  };
}

// ---- compact output (cilium/cilium hubble/pkg/printer/printer.go, CompactOutput) ----

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Go's time.StampMilli (`Jan _2 15:04:05.000`, day space-padded), in UTC as AsTime() gives. */
function stamp(iso: unknown): string {
  const d = new Date(typeof iso === 'string' ? iso : NaN);
  if (Number.isNaN(d.getTime())) return 'N/A';
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}`;
}

/** pkg/identity reservedIdentityNames: printed by name, every other identity as ID:n. */
const RESERVED_IDENTITY: Record<number, string> = { 0: 'unknown', 1: 'host', 2: 'world', 3: 'unmanaged', 4: 'health', 5: 'init', 6: 'remote-node', 7: 'kube-apiserver', 8: 'ingress', 9: 'world-ipv4', 10: 'world-ipv6' };
/** monitor/api drop.go, the reasons a proxy's records carry. */
const DROP_REASONS: Record<number, string> = { 133: 'Policy denied', 181: 'Policy denied by denylist', 189: 'Authentication required' };
const TRACE_POINT_NAMES = ['to-endpoint', 'to-proxy', 'to-host', 'to-stack', 'to-overlay', 'from-endpoint', 'from-proxy', 'from-host', 'from-stack', 'from-overlay', 'from-network', 'to-network', 'from-crypto', 'to-crypto'];
const POLICY_MATCH = ['none', 'L3-Only', 'L3-L4', 'L4-Only', 'all', 'L3-Proto', 'Proto-Only'];

function fmtIdentity(id: unknown): string {
  const n = typeof id === 'number' ? id : 0;
  return RESERVED_IDENTITY[n] !== undefined ? `(${RESERVED_IDENTITY[n]})` : `(ID:${n})`;
}

/** printer.go Hostname: pod, else service, else DNS names, else the IP; `:port` unless 0. */
function hostname(ip: string, port: number | undefined, ns: string, pod: string, svc: string, names: unknown): string {
  let host = ip;
  const join = (a: string, b: string) => (a ? `${a}/${b}` : b);
  if (pod) host = join(ns, pod);
  else if (svc) host = join(ns, svc);
  else if (Array.isArray(names) && names.length > 0) host = names.join(',');
  if (!port) return host;
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function hostNames(f: FlowJson): [string, string] {
  if (!f.IP) return ['', ''];
  const l4 = (f.l4?.TCP ?? f.l4?.UDP ?? f.l4?.SCTP) as { source_port?: number; destination_port?: number } | undefined;
  const side = (ep: FlowJson | undefined, svc: FlowJson | undefined, ip: unknown, port: number | undefined, names: unknown) =>
    hostname(String(ip ?? ''), port, String(svc?.namespace ?? ep?.namespace ?? ''), String(ep?.pod_name ?? ''), String(svc?.name ?? ''), names);
  return [
    side(f.source, f.source_service, f.IP.source, l4?.source_port, f.source_names),
    side(f.destination, f.destination_service, f.IP.destination, l4?.destination_port, f.destination_names),
  ];
}

/** printer.go GetFlowType. */
function flowType(f: FlowJson): string {
  const l7 = f.l7;
  if (l7) {
    let type = String(l7.type ?? 'UNKNOWN_L7_TYPE').toLowerCase();
    let proto = 'l7';
    if (l7.http) proto = 'http';
    else if (l7.dns) {
      proto = 'dns';
      type += ` ${l7.dns.observation_source ?? ''}`;
    } else if (l7.kafka) proto = 'kafka';
    return `${proto}-${type}`;
  }
  const sub = Number(f.event_type?.sub_type ?? 0) & 0xff;
  switch (f.event_type?.type) {
    case 4:
      return TRACE_POINT_NAMES[sub] ?? String(sub);
    case 1:
      return DROP_REASONS[sub] ?? `${sub}, 0`;
    case 5:
      return `policy-verdict:${POLICY_MATCH[Number(f.policy_match_type ?? 0)] ?? 'unknown'} ${f.traffic_direction ?? 'TRAFFIC_DIRECTION_UNKNOWN'}`;
  }
  return 'UNKNOWN';
}

/** printer.go getVerdict: a policy-verdict event says ALLOWED / DENIED / AUDITED. */
function verdict(f: FlowJson): string {
  const v = String(f.verdict ?? 'VERDICT_UNKNOWN');
  if (f.event_type?.type !== 5) return v;
  if (v === 'FORWARDED' || v === 'REDIRECTED') return 'ALLOWED';
  if (v === 'DROPPED' || v === 'ERROR') return 'DENIED';
  if (v === 'AUDIT') return 'AUDITED';
  return v;
}

/** Hubble's compact line for one flow (without colour; ESC and CR escaped as terminal.go does). */
export function compactLine(f: FlowJson): string {
  // A record protojson could not have produced (labels not a list of strings) is refused
  // as Hubble's decoder would; select() skips it.
  for (const ep of [f.source, f.destination]) {
    const l = ep?.labels;
    if (l !== undefined && (!Array.isArray(l) || l.some((x) => typeof x !== 'string'))) throw new TypeError('labels is not a list of strings');
  }
  let [src, dst] = hostNames(f);
  let [srcId, dstId] = [fmtIdentity(f.source?.identity), fmtIdentity(f.destination?.identity)];
  let arrow = '->';
  if (f.is_reply === undefined || f.is_reply === null) arrow = '<>';
  else if (f.is_reply === true) {
    [src, dst] = [dst, src];
    [srcId, dstId] = [dstId, srcId];
    arrow = '<-';
  }
  const line = `${stamp(f.time)}: ${src} ${srcId} ${arrow} ${dst} ${dstId} ${flowType(f)} ${verdict(f)} (${f.Summary ?? ''})`;
  return line.replace(/\x1b/g, '^[').replace(/\r/g, '\\r');
}

// ---- sources -----------------------------------------------------------------------

function render(output: 'json' | 'compact', line: string, f: FlowJson): string {
  return output === 'json' ? line : compactLine(f);
}

/**
 * The record's output line when it passes the filters, else undefined. A record is
 * JSON someone else may have written: a field of the wrong type (labels that are not a
 * list, say) made the filters or the compact form throw and ended `observe` with a
 * stack trace; such a record is skipped like a line that is not JSON.
 */
function select(o: ObserveOptions, line: string, f: FlowJson): string | undefined {
  try {
    return o.filter(f) ? render(o.output, line, f) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Keep the last `n` lines: trimmed in halves, not with a shift per line (quadratic
 * over a large file with a large --last).
 */
function keepLast(keep: string[], line: string, n: number): void {
  keep.push(line);
  if (keep.length >= 2 * n + 1024) keep.splice(0, keep.length - n);
}

function lastOf(keep: string[], n: number): string[] {
  return keep.length > n ? keep.slice(keep.length - n) : keep;
}

/** Parse a line; records without `flow` (lost_events, markers) are reported as such. */
function parseLine(line: string): { rec?: { flow: FlowJson }; lost?: number } {
  if (!line.trim()) return {};
  try {
    const o = JSON.parse(line) as Record<string, any>;
    if (o.flow && typeof o.flow === 'object') return { rec: o as { flow: FlowJson } };
    if (o.lost_events) return { lost: Number(o.lost_events.num_events_lost ?? 0) };
  } catch {
    /* not JSON: skipped */
  }
  return {};
}

async function fromFile(o: ObserveOptions, io: Io): Promise<number> {
  const stream = createReadStream(o.file!, { encoding: 'utf8' });
  const opened = await new Promise<Error | undefined>((resolve) => {
    stream.once('open', () => resolve(undefined));
    stream.once('error', resolve);
  });
  if (opened) {
    io.err(`l7warden observe: ${opened.message}`);
    return EXIT.invalid;
  }
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  const keep: string[] = [];
  for await (const line of rl) {
    const { rec } = parseLine(line);
    if (!rec) continue;
    const out = select(o, line, rec.flow);
    if (out === undefined) continue;
    if (o.last === undefined) io.out(out);
    else keepLast(keep, out, o.last);
  }
  if (o.last !== undefined) for (const l of lastOf(keep, o.last)) io.out(l);
  return EXIT.ok;
}

function hostPort(s: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s.replace(/^https?:\/\//, '').replace(/\/$/, ''));
  if (!m) throw new WardenError('L7W_ERR_USAGE', `--server ${s}: host:port`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** GET a path on the admin server, calling `onLine` per line; resolves when the body ends. */
function getLines(server: string, path: string, onLine: (l: string) => void, signal?: AbortSignal): Promise<void> {
  const { host, port } = hostPort(server);
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, agent: false, timeout: 10_000, ...(signal ? { signal } : {}) }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`${server}${path}: HTTP ${res.statusCode}`));
        return;
      }
      req.setTimeout(0);
      const rl = createInterface({ input: res, crlfDelay: Infinity });
      rl.on('line', onLine);
      rl.on('close', () => resolve());
      // An abort (Ctrl-C, tests) ends the body with an error; that is the normal end of --follow.
      rl.on('error', () => resolve());
      res.on('error', () => resolve());
    });
    req.on('timeout', () => req.destroy(new Error(`${server}: no answer in 10 s`)));
    req.on('error', (e) => (signal?.aborted ? resolve() : reject(e)));
  });
}

async function fromServer(o: ObserveOptions, io: Io, signal?: AbortSignal): Promise<number> {
  const last = o.last ?? (o.follow ? 0 : 20);
  const keep: string[] = [];
  let backlogDone = last === 0;
  const flushBacklog = () => {
    for (const l of lastOf(keep, last)) io.out(l);
    keep.length = 0;
    backlogDone = true;
  };
  const onLine = (line: string) => {
    const p = parseLine(line);
    if (p.lost !== undefined && o.follow) {
      io.err(`l7warden observe: ${p.lost} flows lost (this reader was too slow)`);
      return;
    }
    if (!p.rec) {
      if (line.includes('"backlog_end"')) flushBacklog();
      return;
    }
    const out = select(o, line, p.rec.flow);
    if (out === undefined) return;
    if (backlogDone) io.out(out);
    else keepLast(keep, out, last);
  };
  const path = o.follow ? `/flows?follow=1&last=${last > 0 ? RING : 0}&marker=1` : `/flows?last=${RING}`;
  try {
    await getLines(o.server!, path, onLine, signal);
  } catch (e) {
    io.err(`l7warden observe: ${e instanceof Error ? e.message : String(e)}`);
    return EXIT.invalid;
  }
  if (!backlogDone) flushBacklog();
  return EXIT.ok;
}

/** Run with an abort signal (tests stop a --follow this way; the CLI stops on SIGINT/SIGTERM). */
export async function observe(argv: readonly string[], io: Io, signal?: AbortSignal): Promise<number> {
  const o = parseObserveArgs(argv);
  return o.file !== undefined ? fromFile(o, io) : fromServer(o, io, signal);
}

export async function runObserve(argv: readonly string[], io: Io): Promise<number> {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await observe(argv, io, ac.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
