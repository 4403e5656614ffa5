/**
 * HTTP flow records as text: `toLine()` builds its line from long literal runs and
 * cached fragments; it must equal, byte for byte, what the straightforward builder
 * below gives (one template piece per field, JSON.stringify for every string: the
 * form the records had before they were tuned), for requests, responses, denials,
 * resets, bare connections, gRPC, names, IPv6 and headers that need escaping.
 */
import t from 'tap';
import { loadConfigDir } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/policy/compile.js';
import { HttpFlowRecorder, type FlowPeer, type HttpFlowInfo } from '../../src/observe/flow.js';
import type { FlowSink } from '../../src/observe/sink.js';
import type { PolicySnapshot, Verdict } from '../../src/policy/types.js';
import {
  DROP_REASON_CODE,
  EVENT,
  LazyHeaders,
  endpointJson,
  grpcNames,
  ipVersion,
  numJson,
  policyFields,
  policyLog,
} from '../../src/observe/hubble.js';
import { starWarsDir } from '../helpers/config-dir.js';

/** The record's fields (TypeScript-private, plain properties at run time). */
interface Fields {
  kind: number;
  node: string;
  snapshot: PolicySnapshot;
  src: FlowPeer;
  dst: FlowPeer;
  http: HttpFlowInfo | undefined;
  v: Verdict | undefined;
  type: 'L3_L4' | 'L7';
  code: number;
  latencyNs: number;
  redact: ReadonlySet<string>;
  reset: boolean;
  grpcStatus: number | undefined;
  transport: 'TCP' | 'UDP';
  direction: 'INGRESS' | 'EGRESS';
  names: readonly string[] | undefined;
}

/** The reference: the builder as it was, field by field (time and uuid taken from the line). */
function reference(line: string, f: Fields): string {
  const parsed = JSON.parse(line) as { time: string; flow: { uuid: string } };
  const time = JSON.stringify(parsed.time);
  const uuid = parsed.flow.uuid;
  const reply = f.kind === 1;
  const from = reply ? f.dst : f.src;
  const to = reply ? f.src : f.dst;
  const v = f.v;
  const dropped = v !== undefined && !v.allowed;
  const reason = dropped ? (v.dropReason ?? 'POLICY_DENIED') : undefined;
  let s = `{"flow":{"time":${time},"uuid":"${uuid}","verdict":"${dropped ? 'DROPPED' : 'FORWARDED'}"`;
  if (reason) s += `,"drop_reason":${DROP_REASON_CODE[reason]}`;
  s +=
    `,"IP":{"source":${JSON.stringify(from.ip)},"destination":${JSON.stringify(to.ip)},"ipVersion":"${ipVersion(from.ip)}"}` +
    `,"l4":{"${f.transport}":{"source_port":${numJson(from.port)},"destination_port":${numJson(to.port)}${f.kind === 2 && f.transport === 'TCP' ? ',"flags":{"SYN":true}' : ''}}}` +
    `,"source":${endpointJson(from.identity, f.snapshot)},"destination":${endpointJson(to.identity, f.snapshot)}`;
  if (f.names !== undefined && f.names.length > 0) s += `,"${reply ? 'source_names' : 'destination_names'}":${JSON.stringify(f.names)}`;
  s += `,"Type":"${f.type}","node_name":${f.node}`;
  const h = f.http;
  let summary: string;
  if (h) {
    let http = reply ? `{"code":${numJson(f.code)},` : '{';
    http += `"method":${JSON.stringify(h.method)},"url":${JSON.stringify(h.url)},"protocol":"${h.protocol}"`;
    if (!reply && h.headers) http += `,"headers":${JSON.stringify(new LazyHeaders(h.headers, f.redact).toJSON())}`;
    if (h.grpc) {
      const g = grpcNames(h.url);
      if (g) {
        http += `,"grpc":{"service":${JSON.stringify(g.service)},"method":${JSON.stringify(g.method)}`;
        http += f.grpcStatus !== undefined && reply ? `,"status":${numJson(f.grpcStatus)}}` : '}';
      }
    }
    s += reply ? `,"l7":{"type":"RESPONSE","latency_ns":"${f.latencyNs}","http":${http}}},"reply":true` : `,"l7":{"type":"REQUEST","http":${http}}}`;
    summary = reply ? `${h.protocol} ${f.code} ${Math.floor(f.latencyNs / 1e6)}ms (${h.method} ${h.url})` : `${h.protocol} ${h.method} ${h.url}`;
  } else {
    summary = f.transport === 'TCP' ? 'TCP Flags: SYN' : 'UDP';
  }
  const drop = reason !== undefined && (f.reset || f.kind === 2);
  if (drop) s += `,"event_type":{"type":${EVENT.drop},"sub_type":${DROP_REASON_CODE[reason]}}`;
  else if (f.kind === 2) s += `,"event_type":{"type":${EVENT.policyVerdict}}`;
  else s += `,"event_type":{"type":${EVENT.l7}}`;
  s += `,"traffic_direction":"${f.direction}"`;
  const mt = f.kind === 2 && !drop && v ? (f.direction === 'INGRESS' ? v.ingress : v.egress)?.matchType : undefined;
  if (mt) s += `,"policy_match_type":${mt}`;
  if (reason) s += `,"drop_reason_desc":"${reason}"`;
  s += `${drop ? '' : `,"is_reply":${reply}`},"Summary":${JSON.stringify(summary)}`;
  if (v && !reply) {
    const pf: Record<string, unknown> = {};
    policyFields(v, f.snapshot.version, pf);
    const j = JSON.stringify(pf);
    if (j !== '{}') s += ',' + j.slice(1, -1);
  }
  const log = f.kind === 2 && !drop && v ? policyLog(v) : undefined;
  if (log && log.length > 0) s += `,"policy_log":${JSON.stringify(log)}`;
  return `${s}},"node_name":${f.node},"time":${time}}`;
}

t.test('toLine equals the field-by-field builder', async (t) => {
  const cfg = await starWarsDir({ upstream: 'http://127.0.0.1:9' });
  t.teardown(cfg.cleanup);
  const loaded = await loadConfigDir(cfg.dir);
  const compiled = compileSnapshot(loaded.docs);
  const snap = compiled.snapshot!;
  const tie = snap.identityForIP('127.0.0.10');
  const xwing = snap.identityForIP('127.0.0.11');
  const ds = snap.endpointByName('default', 'deathstar')!.identity;
  const recs: Array<{ toLine(): string }> = [];
  const sink = { active: true, emit: (r: { toLine(): string }) => recs.push(r) } as unknown as FlowSink;
  const fr = new HttpFlowRecorder(sink, 'node "1"', { redactHeaders: ['x-api-key'] });
  const headers = ['Host', 'deathstar', 'x-request-id', 'a"b\\c', 'Authorization', 'Bearer x', 'accept', '*/*', 'X-Api-Key', 'k', 'accept', 'text/é', ':path', '/x', 'Connection', 'close'];
  const cases: Array<{ name: string; src: FlowPeer; dst: FlowPeer; info: HttpFlowInfo; method: string; path: string }> = [
    { name: 'allowed HTTP/1.1', src: { ip: '127.0.0.10', port: 40000, identity: tie }, dst: { ip: '10.0.0.20', port: 80, identity: ds }, info: { method: 'POST', url: 'http://deathstar/v1/request-landing', protocol: 'HTTP/1.1', headers }, method: 'POST', path: '/v1/request-landing' },
    { name: 'denied, quotes in the URL', src: { ip: '127.0.0.10', port: 40001, identity: tie }, dst: { ip: '10.0.0.20', port: 80, identity: ds }, info: { method: 'PUT', url: 'http://deathstar/v1/"exhaust"\\port?q=é', protocol: 'HTTP/2', headers: [] }, method: 'PUT', path: '/v1/exhaust-port' },
    { name: 'L3 denial', src: { ip: '::ffff:127.0.0.11', port: 40002, identity: xwing }, dst: { ip: 'fd00::20', port: 80, identity: ds }, info: { method: 'GET', url: 'http://deathstar/', protocol: 'HTTP/1.0' }, method: 'GET', path: '/' },
    { name: 'gRPC egress with names', src: { ip: '127.0.0.10', port: 40003, identity: tie }, dst: { ip: '10.0.0.20', port: 80, identity: ds }, info: { method: 'POST', url: 'http://deathstar/starwars.Deathstar/RequestLanding', protocol: 'HTTP/2', grpc: true, direction: 'EGRESS', names: ['deathstar.example'] }, method: 'POST', path: '/v1/request-landing' },
  ];
  let n = 0;
  const check = (label: string) => {
    const r = recs[n++]!;
    const line = r.toLine();
    t.equal(line, reference(line, r as unknown as Fields), label);
  };
  for (const c of cases) {
    const v = snap.decide({ src: c.src.identity, dst: ds, port: 80, protocol: 'TCP', http: { method: c.method, path: c.path, host: 'deathstar', header: () => undefined } });
    fr.request(snap, c.src, c.dst, c.info, v);
    check(`${c.name}: request`);
    fr.request(snap, c.src, c.dst, c.info, v, true);
    check(`${c.name}: request answered with a reset`);
    fr.response(snap, c.src, c.dst, c.info, v.type, v.allowed ? 200 : 403, process.hrtime.bigint() - 3_500_000n, c.info.grpc ? 7 : undefined);
    check(`${c.name}: response`);
    fr.connection(snap, c.src, c.dst, v, c.info.direction ?? 'INGRESS', 'TCP', c.info.names);
    check(`${c.name}: connection`);
    fr.connection(snap, c.src, c.dst, v, c.info.direction ?? 'INGRESS', 'UDP', c.info.names);
    check(`${c.name}: UDP connection`);
  }
});
