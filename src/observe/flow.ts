/**
 * Flow records for HTTP/gRPC decisions and L3/L4 decisions, in Hubble's JSON shape
 * (CILIUM-SEMANTICS.md §5.1): `{"flow": {...}, "node_name": …, "time": …}`.
 *
 * - One REQUEST record per decision (verdict DROPPED when denied, with
 *   `drop_reason`/`drop_reason_desc` and `*_denied_by`), and one RESPONSE record
 *   (source/destination swapped, `is_reply: true`, `code`, `latency_ns`); a denied
 *   request's response record carries the 403 (gRPC: 200 with grpc-status 7), as
 *   Cilium's access log does (Denied entry, then Response entry).
 * - `l7.http.headers`: request headers, Go-canonical keys, sorted, sensitive values
 *   `HUBBLE_REDACTED` (Authorization, Cookie, Set-Cookie, Proxy-Authorization and
 *   every header a policy matches against a Secret).
 * - gRPC calls are HTTP/2 records with an extra `l7.http.grpc: {service, method}`
 *   (Hubble's HTTP message has no gRPC fields; jq scripts ignore the extra key),
 *   plus `status` on a response the proxy answered itself (7 denied, 14 unavailable).
 * - `connection()` records a plain L3/L4 decision (a TCP connection with no HTTP):
 *   `Type: L3_L4`, event type 5 (policy verdict) or 1 (drop). Only the policy
 *   verdict carries `policy_log` (the rules' `log.value`s), as only those are
 *   correlated by Hubble.
 * - Destinations known by DNS name (egress) carry Hubble's `destination_names`
 *   (`source_names` on the reply).
 *
 * Cost: the hot path allocates one small record object holding references (peers,
 * snapshot, verdict, the raw header array); the Hubble object is built by
 * `toJSON()` when the sink serialises its batch, off the request path. Metrics are
 * counted here too (pre-bound children), with or without a flow log.
 */
import type { Identity } from '../identity/identity.js';
import type { Verdict, PolicySnapshot } from '../policy/types.js';
import type { FlowSink } from './sink.js';
import type { Metrics } from './metrics.js';
import {
  DEFAULT_REDACTED_HEADERS,
  DROP_REASON_CODE,
  EVENT,
  LazyHeaders,
  endpointPairJson,
  grpcNames,
  ipL4Json,
  isoTimeJson,
  jsonInner,
  newUuid,
  numJson,
  policyFieldsJson,
  policyLogJson,
} from './hubble.js';

export interface FlowPeer {
  readonly ip: string;
  readonly port: number;
  readonly identity: Identity;
}

export interface HttpFlowInfo {
  readonly method: string;
  readonly url: string; // scheme://authority/path
  readonly protocol: 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2';
  /** The request's raw headers `[name, value, …]` as parsed (pseudo-headers are skipped). */
  readonly headers?: readonly string[];
  /** A gRPC call (content-type application/grpc…). */
  readonly grpc?: boolean;
  /** Default INGRESS (ingress listener); the egress listener says EGRESS. */
  readonly direction?: 'INGRESS' | 'EGRESS';
  /**
   * DNS names the destination was reached by (egress: the forward-proxy host or
   * CONNECT name): Hubble's `destination_names` on requests, `source_names` on replies.
   */
  readonly names?: readonly string[];
}

export interface FlowRecorderOptions {
  readonly metrics?: Metrics;
  /** Extra header names (lowercase) whose values are redacted, e.g. secret-backed headerMatches. */
  readonly redactHeaders?: Iterable<string>;
}

/** `,"policy_match_type":n` by match type (0: none, omitted as protojson omits a zero). */
const MATCH_TYPE_JSON: readonly string[] = ['', ',"policy_match_type":1', ',"policy_match_type":2', ',"policy_match_type":3', ',"policy_match_type":4'];

const enum Kind {
  Request,
  Response,
  Connection,
}

/** One flow, serialised lazily (see the module comment). */
class HttpRecord {
  #uuid: string | undefined;
  constructor(
    private readonly kind: Kind,
    private readonly timeMs: number,
    /** The node name as JSON text (quoted once per recorder). */
    private readonly node: string,
    private readonly snapshot: PolicySnapshot,
    private readonly src: FlowPeer,
    private readonly dst: FlowPeer,
    private readonly http: HttpFlowInfo | undefined,
    private readonly v: Verdict | undefined,
    private readonly type: 'L3_L4' | 'L7',
    private readonly code: number,
    /** Nanoseconds as a Number (exact below 2^53 ns, 104 days): cheaper to print and divide than a BigInt. */
    private readonly latencyNs: number,
    private readonly redact: ReadonlySet<string>,
    private readonly reset: boolean,
    private readonly grpcStatus: number | undefined,
    private readonly transport: 'TCP' | 'UDP',
    private readonly direction: 'INGRESS' | 'EGRESS',
    private readonly names: readonly string[] | undefined,
  ) {}

  /** The record as Hubble's JSON (what the sink writes is `toLine()`). */
  toJSON(): object {
    return JSON.parse(this.toLine()) as object;
  }

  /**
   * The record's JSON line, built as text in few, long pieces (a line costs mostly
   * per piece, once to concatenate and once to flatten it for the file): literal
   * runs, the endpoint pair and policy fragments cached per snapshot, JSON.stringify
   * only for method, URL, names and header values. Byte for byte what the
   * field-by-field builder in test/observe/http-record.test.ts gives. IPs and the
   * protocol need no escaping (socket addresses, our own constants).
   */
  toLine(): string {
    const time = isoTimeJson(this.timeMs);
    this.#uuid ??= newUuid();
    const reply = this.kind === Kind.Response;
    const conn = this.kind === Kind.Connection;
    // Responses go from the destination back to the source (Hubble swaps them).
    const from = reply ? this.dst : this.src;
    const to = reply ? this.src : this.dst;
    const v = this.v;
    const reason = v !== undefined && !v.allowed ? (v.dropReason ?? 'POLICY_DENIED') : undefined;
    let s =
      (reason
        ? `{"flow":{"time":${time},"uuid":"${this.#uuid}","verdict":"DROPPED","drop_reason":${DROP_REASON_CODE[reason]},"IP":{"source":"`
        : `{"flow":{"time":${time},"uuid":"${this.#uuid}","verdict":"FORWARDED","IP":{"source":"`) +
      from.ip +
      '","destination":"' +
      to.ip +
      ipL4Json(from.ip, this.transport) +
      numJson(from.port) +
      ',"destination_port":' +
      numJson(to.port) +
      // Hubble's UDP message has no flags (flow.proto UDP).
      (conn && this.transport === 'TCP' ? ',"flags":{"SYN":true}}}' : '}}') +
      endpointPairJson(from.identity, to.identity, this.snapshot);
    if (this.names !== undefined && this.names.length > 0) s += (reply ? ',"source_names":' : ',"destination_names":') + JSON.stringify(this.names);
    s += (this.type === 'L7' ? ',"Type":"L7","node_name":' : ',"Type":"L3_L4","node_name":') + this.node;
    const h = this.http;
    let summary: string;
    if (h) {
      // The JSON text of each between its quotes: used twice (Summary).
      const method = jsonInner(h.method);
      const url = jsonInner(h.url);
      s += reply
        ? ',"l7":{"type":"RESPONSE","latency_ns":"' + this.latencyNs + '","http":{"code":' + numJson(this.code) + ',"method":"' + method + '","url":"' + url + '","protocol":"' + h.protocol + '"'
        : ',"l7":{"type":"REQUEST","http":{"method":"' + method + '","url":"' + url + '","protocol":"' + h.protocol + '"';
      if (!reply && h.headers) s += ',"headers":' + new LazyHeaders(h.headers, this.redact).json();
      if (h.grpc) {
        const g = grpcNames(h.url);
        if (g) {
          s += ',"grpc":{"service":' + JSON.stringify(g.service) + ',"method":' + JSON.stringify(g.method);
          s += this.grpcStatus !== undefined && reply ? ',"status":' + numJson(this.grpcStatus) + '}' : '}';
        }
      }
      // The deprecated `reply` bool Hubble still sets (parser.go Decode: Reply = is_reply), omitted when false.
      s += reply ? '}},"reply":true' : '}}';
      // JSON of `${protocol} ${method} ${url}` is the pieces' JSON without their quotes.
      summary = reply
        ? '"' + h.protocol + ' ' + numJson(this.code) + ' ' + Math.floor(this.latencyNs / 1e6) + 'ms (' + method + ' ' + url + ')"'
        : '"' + h.protocol + ' ' + method + ' ' + url + '"';
    } else {
      // threefour/parser.go decodeLayers: the last layer's summary, "TCP Flags: SYN" or gopacket's layer name "UDP".
      summary = this.transport === 'TCP' ? '"TCP Flags: SYN"' : '"UDP"';
    }
    // An L3/L4 denial answered with a reset (or a bare connection decision) is a
    // datapath-style drop / policy-verdict event; everything with an HTTP exchange
    // is an L7 access-log event (129).
    const drop = reason !== undefined && (this.reset || conn);
    if (drop) s += `,"event_type":{"type":${EVENT.drop},"sub_type":${DROP_REASON_CODE[reason]}}`;
    else s += conn ? `,"event_type":{"type":${EVENT.policyVerdict}}` : `,"event_type":{"type":${EVENT.l7}}`;
    s += this.direction === 'INGRESS' ? ',"traffic_direction":"INGRESS"' : ',"traffic_direction":"EGRESS"';
    // A policy-verdict event says which map entry allowed it (threefour/parser.go decodePolicyMatchType).
    if (conn && !drop && v !== undefined) s += MATCH_TYPE_JSON[(this.direction === 'INGRESS' ? v.ingress : v.egress)?.matchType ?? 0]!;
    if (reason) s += `,"drop_reason_desc":"${reason}"`;
    // Hubble does not know whether a dropped packet was a reply: a drop event has no
    // is_reply (threefour/parser.go decodeIsReply, parser_test.go TestDecodeIsReply).
    s += drop ? ',"Summary":' : reply ? ',"is_reply":true,"Summary":' : ',"is_reply":false,"Summary":';
    s += summary;
    if (v && !reply) s += policyFieldsJson(v, this.snapshot.version);
    // Hubble correlates only policy-verdict events (pkg/policy/correlation): drop
    // events and L7 access-log records have no policy_log.
    if (conn && !drop && v !== undefined) s += policyLogJson(v);
    return s + '},"node_name":' + this.node + ',"time":' + time + '}';
  }
}

export class HttpFlowRecorder {
  readonly #metrics: Metrics | undefined;
  readonly #redact: Set<string>;
  readonly #nodeJson: string;

  constructor(
    private readonly sink: FlowSink,
    nodeName: string,
    opts: FlowRecorderOptions = {},
  ) {
    this.#metrics = opts.metrics;
    this.#nodeJson = JSON.stringify(nodeName);
    this.#redact = new Set([...DEFAULT_REDACTED_HEADERS, ...[...(opts.redactHeaders ?? [])].map((h) => h.toLowerCase())]);
  }

  /**
   * Secret-backed header names of a reloaded configuration (hot reload). Names are
   * only ever added: redacting a header that is no longer secret-backed is safe.
   */
  addRedactedHeaders(names: Iterable<string>): void {
    for (const n of names) this.#redact.add(n.toLowerCase());
  }

  /** Should callers gather flow data at all (a flow reader or metrics)? */
  get active(): boolean {
    return this.sink.active || this.#metrics !== undefined;
  }

  /**
   * The REQUEST record for a decision. `reset`: the listener answers an L3/L4
   * denial with a TCP reset (no HTTP response, no RESPONSE record follows).
   */
  request(snapshot: PolicySnapshot, src: FlowPeer, dst: FlowPeer, http: HttpFlowInfo, v: Verdict, reset = false): void {
    const m = this.#metrics;
    if (m) {
      m.decision(v);
      // Labelled from the record's event type as Hubble does: a reset denial is a drop event (L4 TCP), anything else an L7 one.
      if (v.allowed) m.flow('L7', 'HTTP', 'FORWARDED', 'HTTP');
      else if (reset) {
        m.flow('Drop', '', 'DROPPED', 'TCP');
        m.drop(v.dropReason ?? 'POLICY_DENIED', 'TCP');
      } else {
        m.flow('L7', 'HTTP', 'DROPPED', 'HTTP');
        m.drop(v.dropReason ?? 'POLICY_DENIED', 'HTTP');
      }
      m.httpRequest(http.method, http.protocol, http.direction);
    }
    if (!this.sink.active) return;
    this.sink.emit(
      new HttpRecord(Kind.Request, Date.now(), this.#nodeJson, snapshot, src, dst, http, v, v.type, 0, 0, this.#redact, reset && !v.allowed, undefined, 'TCP', http.direction ?? 'INGRESS', http.names),
    );
  }

  /**
   * The RESPONSE record: source and destination swapped, the status and latency
   * added. `grpcStatus`: set when the proxy answered a gRPC call itself.
   */
  response(
    snapshot: PolicySnapshot,
    src: FlowPeer,
    dst: FlowPeer,
    http: HttpFlowInfo,
    type: 'L3_L4' | 'L7',
    code: number,
    startNs: bigint,
    grpcStatus?: number,
  ): void {
    const latency = Number(process.hrtime.bigint() - startNs);
    const m = this.#metrics;
    if (m) {
      m.flow('L7', 'HTTP', 'FORWARDED', 'HTTP');
      m.httpResponse(http.method, http.protocol, code, latency / 1e9, http.direction);
    }
    if (!this.sink.active) return;
    this.sink.emit(
      new HttpRecord(Kind.Response, Date.now(), this.#nodeJson, snapshot, src, dst, http, undefined, type, code, latency, this.#redact, false, grpcStatus, 'TCP', http.direction ?? 'INGRESS', http.names),
    );
  }

  /**
   * An L3/L4 decision on a connection that carries no HTTP the proxy parses (egress
   * tunnels, TCP). `names`: the DNS names the destination was reached by.
   */
  connection(
    snapshot: PolicySnapshot,
    src: FlowPeer,
    dst: FlowPeer,
    v: Verdict,
    direction: 'INGRESS' | 'EGRESS',
    transport: 'TCP' | 'UDP' = 'TCP',
    names?: readonly string[],
  ): void {
    const m = this.#metrics;
    if (m) {
      m.decision(v);
      m.flow(v.allowed ? 'PolicyVerdict' : 'Drop', '', v.allowed ? 'FORWARDED' : 'DROPPED', transport);
      if (!v.allowed) m.drop(v.dropReason ?? 'POLICY_DENIED', transport);
    }
    if (!this.sink.active) return;
    this.sink.emit(
      new HttpRecord(Kind.Connection, Date.now(), this.#nodeJson, snapshot, src, dst, undefined, v, 'L3_L4', 0, 0, this.#redact, false, undefined, transport, direction, names),
    );
  }

  /** An upstream failure (connect, timeout, reset, …) on a listener. */
  upstreamError(listener: string, kind: string): void {
    this.#metrics?.upstreamError(listener, kind);
  }
}
