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
import { DROP_REASON_CODE, endpointPairJson, goQuote, ipL4Json, isoTimeJson, newUuid, numJson, policyFieldsJson, summaryRcode } from '../observe/hubble.js';

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
    /** The node name as JSON text (quoted once per recorder). */
    private readonly node: string,
    private readonly snapshot: PolicySnapshot,
    private readonly src: DnsPeer,
    private readonly dst: DnsPeer,
    private readonly transport: 'UDP' | 'TCP',
    private readonly query: string,
    private readonly qtype: string,
    private readonly v: Verdict | undefined,
    private readonly r: DnsResponseFlow | undefined,
    /** Nanoseconds as a Number (see observe/flow.ts). */
    private readonly latencyNs: number,
  ) {}

  /** The record as Hubble's JSON (what the sink writes is `toLine()`). */
  toJSON(): object {
    return JSON.parse(this.toLine()) as object;
  }

  /**
   * The record's JSON line, built as text: byte for byte what JSON.stringify of the
   * Hubble object gives (test/dns/flow.test.ts holds that object form). Few and long
   * pieces: the cost of a line is mostly per piece (building the string, then
   * flattening it to write it out), so the constant runs are joined into literals,
   * the endpoint pair is one cached fragment, and JSON.stringify runs only for the
   * query name and CNAMEs. IPs, qtype and rrtype names need no escaping: they are
   * socket addresses and our codec's own formatting (digits, hex, '.', ':', letters).
   */
  toLine(): string {
    const time = isoTimeJson(this.timeMs);
    this.#uuid ??= newUuid();
    const r = this.r;
    const v = this.v;
    const reply = r !== undefined;
    const from = reply ? this.dst : this.src;
    const to = reply ? this.src : this.dst;
    const reason = v && !v.allowed ? (v.dropReason ?? 'POLICY_DENIED') : undefined;
    const query = JSON.stringify(this.query);
    const qInner = query.slice(1, -1);
    const head = reason
      ? `{"flow":{"time":${time},"uuid":"${this.#uuid}","verdict":"DROPPED","drop_reason":${DROP_REASON_CODE[reason]},"IP":{"source":"`
      : `{"flow":{"time":${time},"uuid":"${this.#uuid}","verdict":"FORWARDED","IP":{"source":"`;
    let s =
      head +
      from.ip +
      '","destination":"' +
      to.ip +
      ipL4Json(from.ip, this.transport) +
      numJson(from.port) +
      ',"destination_port":' +
      numJson(to.port) +
      '}}' +
      endpointPairJson(from.identity, to.identity, this.snapshot) +
      ',"Type":"L7","node_name":' +
      this.node;
    if (r === undefined) {
      s +=
        ',"l7":{"type":"REQUEST","dns":{"query":' +
        query +
        ',"observation_source":"proxy","qtypes":["' +
        this.qtype +
        (reason
          ? `"]}},"event_type":{"type":129},"traffic_direction":"EGRESS","drop_reason_desc":"${reason}","is_reply":false,"Summary":"DNS Query `
          : '"]}},"event_type":{"type":129},"traffic_direction":"EGRESS","is_reply":false,"Summary":"DNS Query ') +
        qInner +
        ' ' +
        this.qtype +
        '"';
    } else {
      s += ',"l7":{"type":"RESPONSE","latency_ns":"' + this.latencyNs + '","dns":{"query":' + query;
      if (r.ips.length) s += ',"ips":["' + r.ips.join('","') + '"]';
      if (r.ttl) s += ',"ttl":' + numJson(r.ttl);
      if (r.cnames.length) s += ',"cnames":' + JSON.stringify(r.cnames);
      s += r.rcode ? ',"observation_source":"proxy","rcode":' + numJson(r.rcode) + ',"qtypes":["' : ',"observation_source":"proxy","qtypes":["';
      s += this.qtype;
      s += r.rrtypes.length ? '"],"rrtypes":["' + r.rrtypes.join('","') + '"]}}' : '"]}}';
      // `reply`: the deprecated bool Hubble still sets on replies (seven/parser.go Decode).
      s += ',"reply":true,"event_type":{"type":129},"traffic_direction":"EGRESS","is_reply":true,"Summary":"DNS Answer ';
      // seven/dns.go dnsSummary: gopacket's rcode text, else the %q-quoted IPs and
      // `CNAMEs: %q`, each only when present, joined by a space.
      if (r.rcode) s += 'RCode: ' + summaryRcode(r.rcode);
      else {
        if (r.ips.length) s += '\\"' + r.ips.join(',') + '\\"';
        if (r.cnames.length) s += (r.ips.length ? ' CNAMEs: ' : 'CNAMEs: ') + JSON.stringify(goQuote(r.cnames.join(','))).slice(1, -1);
      }
      s += ' TTL: ' + r.ttl + ' (Proxy ' + qInner + ' ' + this.qtype + ')"';
    }
    if (v) s += policyFieldsJson(v, this.snapshot.version);
    return s + '},"node_name":' + this.node + ',"time":' + time + '}';
  }
}

export class DnsFlowRecorder {
  readonly #metrics: Metrics | undefined;
  readonly #nodeJson: string;

  constructor(
    private readonly sink: FlowSink,
    nodeName: string,
    opts: { readonly metrics?: Metrics } = {},
  ) {
    this.#metrics = opts.metrics;
    this.#nodeJson = JSON.stringify(nodeName);
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
      if (!v.allowed) m.drop(v.dropReason ?? 'POLICY_DENIED', 'DNS');
      m.dnsQuery(qtype, !v.allowed);
    }
    if (!this.sink.active) return;
    this.sink.emit(new DnsRecord(Date.now(), this.#nodeJson, snapshot, src, dst, transport, query, qtype, v, undefined, 0));
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
    const latency = Number(process.hrtime.bigint() - startNs);
    this.sink.emit(new DnsRecord(Date.now(), this.#nodeJson, snapshot, src, dst, transport, query, qtype, undefined, r, latency));
  }

  /** The resolver did not answer (timeout, socket error): counted per listener. */
  upstreamError(listener: string, kind: string): void {
    this.#metrics?.upstreamError(listener, kind);
  }
}
