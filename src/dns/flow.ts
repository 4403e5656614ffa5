/**
 * DNS flow records in Hubble's JSON shape (CILIUM-SEMANTICS.md §5.1): requests carry
 * `query`, `observation_source: "proxy"`, `qtypes`; responses add `ips`, `ttl`,
 * `cnames`, `rcode`, `rrtypes`, with source and destination swapped and
 * `is_reply: true`. Always `traffic_direction: EGRESS`. A denied query yields one
 * DROPPED request record (`drop_reason`, `drop_reason_desc`, `egress_denied_by`)
 * and no response record.
 *
 * Like the HTTP recorder (observe/flow.ts): the hot path only allocates a small
 * record holding references; the Hubble object is built by `toJSON()` when the
 * sink serialises its batch. Metrics (`hubble_dns_*`, flows, drops, decisions) are
 * counted with or without a flow log.
 */
import type { Identity } from '../identity/identity.js';
import type { PolicySnapshot, Verdict } from '../policy/types.js';
import type { FlowSink } from '../observe/sink.js';
import type { Metrics } from '../observe/metrics.js';
import { rcodeName } from '../observe/metrics.js';
import { DROP_REASON_CODE, EVENT, endpointOf, ipVersion, newUuid, policyFields } from '../observe/hubble.js';

export interface DnsPeer {
  readonly ip: string;
  readonly port: number;
  readonly identity: Identity;
}

export interface DnsResponseFlow {
  readonly rcode: number;
  readonly ips: readonly string[];
  readonly ttl: number;
  readonly cnames: readonly string[];
  readonly rrtypes: readonly string[];
}

class DnsRecord {
  #uuid: string | undefined;
  constructor(
    private readonly timeMs: number,
    private readonly node: string,
    private readonly snapshot: PolicySnapshot,
    private readonly src: DnsPeer,
    private readonly dst: DnsPeer,
    private readonly transport: 'UDP' | 'TCP',
    private readonly query: string,
    private readonly qtype: string,
    private readonly v: Verdict | undefined,
    private readonly r: DnsResponseFlow | undefined,
    private readonly latencyNs: bigint,
  ) {}

  toJSON(): object {
    const time = new Date(this.timeMs).toISOString();
    this.#uuid ??= newUuid();
    const r = this.r;
    const reply = r !== undefined;
    const from = reply ? this.dst : this.src;
    const to = reply ? this.src : this.dst;
    const v = this.v;
    const reason = v && !v.allowed ? (v.dropReason ?? 'POLICY_DENIED') : undefined;
    const f: Record<string, unknown> = { time, uuid: this.#uuid, verdict: reason ? 'DROPPED' : 'FORWARDED' };
    if (reason) f.drop_reason = DROP_REASON_CODE[reason];
    f.IP = { source: from.ip, destination: to.ip, ipVersion: ipVersion(from.ip) };
    f.l4 = { [this.transport]: { source_port: from.port, destination_port: to.port } };
    f.source = endpointOf(from.identity, this.snapshot);
    f.destination = endpointOf(to.identity, this.snapshot);
    f.Type = 'L7';
    f.node_name = this.node;
    const dns: Record<string, unknown> = { query: this.query };
    if (r) {
      if (r.ips.length) dns.ips = r.ips;
      if (r.ttl) dns.ttl = r.ttl;
      if (r.cnames.length) dns.cnames = r.cnames;
    }
    dns.observation_source = 'proxy';
    if (r?.rcode) dns.rcode = r.rcode;
    dns.qtypes = [this.qtype];
    if (r?.rrtypes.length) dns.rrtypes = r.rrtypes;
    f.l7 = reply ? { type: 'RESPONSE', latency_ns: this.latencyNs.toString(), dns } : { type: 'REQUEST', dns };
    f.event_type = { type: EVENT.l7 };
    f.traffic_direction = 'EGRESS';
    if (reason) f.drop_reason_desc = reason;
    f.is_reply = reply;
    f.Summary = r
      ? r.rcode
        ? `DNS Answer RCode: ${rcodeName(r.rcode)} TTL: ${r.ttl} (Proxy ${this.query} ${this.qtype})`
        : `DNS Answer "${r.ips.join(',')}" TTL: ${r.ttl} (Proxy ${this.query} ${this.qtype})`
      : `DNS Query ${this.query} ${this.qtype}`;
    if (v) policyFields(v, this.snapshot.version, f);
    return { flow: f, node_name: this.node, time };
  }
}

export class DnsFlowRecorder {
  readonly #metrics: Metrics | undefined;

  constructor(
    private readonly sink: FlowSink,
    private readonly nodeName: string,
    opts: { readonly metrics?: Metrics } = {},
  ) {
    this.#metrics = opts.metrics;
  }

  /** Should callers gather flow data at all (a flow reader or metrics)? */
  get active(): boolean {
    return this.sink.active || this.#metrics !== undefined;
  }

  request(
    snapshot: PolicySnapshot,
    src: DnsPeer,
    dst: DnsPeer,
    transport: 'UDP' | 'TCP',
    query: string,
    qtype: string,
    v: Verdict,
  ): void {
    const m = this.#metrics;
    if (m) {
      m.decision(v);
      m.flow('L7', 'DNS', v.allowed ? 'FORWARDED' : 'DROPPED', 'DNS');
      if (!v.allowed) m.drop(v.dropReason ?? 'POLICY_DENIED', transport);
      m.dnsQuery(qtype);
    }
    if (!this.sink.active) return;
    this.sink.emit(new DnsRecord(Date.now(), this.nodeName, snapshot, src, dst, transport, query, qtype, v, undefined, 0n));
  }

  response(
    snapshot: PolicySnapshot,
    src: DnsPeer,
    dst: DnsPeer,
    transport: 'UDP' | 'TCP',
    query: string,
    qtype: string,
    r: DnsResponseFlow,
    startNs: bigint,
  ): void {
    const m = this.#metrics;
    if (m) {
      m.flow('L7', 'DNS', 'FORWARDED', 'DNS');
      m.dnsResponse(r.rcode, qtype, r.ips.length);
    }
    if (!this.sink.active) return;
    const latency = process.hrtime.bigint() - startNs;
    this.sink.emit(new DnsRecord(Date.now(), this.nodeName, snapshot, src, dst, transport, query, qtype, undefined, r, latency));
  }

  /** The resolver did not answer (timeout, socket error): counted per listener. */
  upstreamError(listener: string, kind: string): void {
    this.#metrics?.upstreamError(listener, kind);
  }
}
