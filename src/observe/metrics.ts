/**
 * Every Prometheus metric l7warden exports, declared in this one module
 * (prom-client 15.1.3, own Registry, served on the admin address at /metrics).
 *
 * Names, labels and counting rules: Hubble's where one exists (pkg/hubble/metrics:
 * flow, drop, http (the v1 handler: requests, responses, duration), dns), each record
 * counted as Hubble's handler would count the flow record we emit for it;
 * `l7warden_*` for the proxy's own. Label values are bounded: HTTP methods outside
 * the standard set become `OTHER`, DNS qtypes outside a fixed set `OTHER`,
 * ips_returned is capped at `10+`, status codes are 100–599 (else `0`), rcodes
 * outside Hubble's table "", listener and policy names come from the configuration.
 * No paths, hosts or IPs are ever label values.
 *
 * Hot path: recorders call the methods below, which increment label children bound
 * once and looked up by a string/number/object key (no label object per request).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RuleRef } from '../policy/api.js';
import type { Verdict } from '../policy/types.js';

type Inc = { inc(v?: number): void };

/**
 * A counter child that counts in a plain number and hands the sum to prom-client
 * when a scrape collects. prom-client's bound children still hash their label
 * object on every inc(), which measured ~3 µs per DNS query on the hot path.
 */
class Deferred implements Inc {
  #n = 0;
  constructor(private readonly child: Inc) {}
  inc(v = 1): void {
    this.#n += v;
  }
  flush(): void {
    if (this.#n !== 0) {
      this.child.inc(this.#n);
      this.#n = 0;
    }
  }
}
type Obs = { observe(v: number): void };

/** Hubble's buckets (prometheus.DefBuckets). */
const DURATION_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** prom-client 15 (pinned exactly) keeps one of these per label set of a Histogram. */
interface HistogramEntry {
  labels: Record<string, string | number>;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

/**
 * A histogram child that counts observations per bucket in plain numbers and adds
 * them to prom-client's entry for its label set when a scrape collects (as
 * Deferred does for counters): prom-client's `observe()` validates and hashes the
 * label object on every call (~2 µs per HTTP response).
 */
class DeferredHistogram implements Obs {
  readonly #counts: number[];
  #sum = 0;
  #count = 0;
  constructor(
    private readonly hist: Histogram<string>,
    private readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.#counts = bounds.map(() => 0);
  }
  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    if (i < b.length) this.#counts[i]!++;
    this.#sum += v;
    this.#count++;
  }
  flush(): void {
    if (this.#count === 0) return;
    const e = this.#entry();
    for (let i = 0; i < this.bounds.length; i++) {
      const k = String(this.bounds[i]);
      e.bucketValues[k] = (e.bucketValues[k] ?? 0) + this.#counts[i]!;
      this.#counts[i] = 0;
    }
    e.sum += this.#sum;
    e.count += this.#count;
    this.#sum = 0;
    this.#count = 0;
  }
  #entry(): HistogramEntry {
    const find = (): HistogramEntry | undefined => {
      const map = (this.hist as unknown as { hashMap: Record<string, HistogramEntry> }).hashMap;
      for (const k in map) {
        const e = map[k]!;
        let same = true;
        for (const n in this.labels) if (String(e.labels[n]) !== this.labels[n]) same = false;
        if (same) return e;
      }
      return undefined;
    };
    let e = find();
    if (!e) {
      this.hist.zero(this.labels);
      e = find();
    }
    if (!e) throw new Error('prom-client Histogram internals changed (hashMap)');
    return e;
  }
}

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
const HTTP_PROTOCOLS = ['HTTP/1.0', 'HTTP/1.1', 'HTTP/2'];
const DNS_QTYPES = ['A', 'AAAA', 'CNAME', 'MX', 'TXT', 'SRV', 'PTR', 'NS', 'SOA', 'CAA', 'HTTPS', 'SVCB', 'ANY'];
/**
 * Hubble's `type` label is the record's event type, not its `Type` field
 * (flow/handler.go: 129 → L7, 1 → Drop, 5 → PolicyVerdict), and `subtype` is
 * the L7 record kind only on access-log events.
 */
const FLOW_TYPES = ['L7', 'Drop', 'PolicyVerdict'];
const FLOW_SUBTYPES = ['HTTP', 'DNS', ''];
const FLOW_VERDICTS = ['FORWARDED', 'DROPPED'];
const FLOW_PROTOCOLS = ['HTTP', 'DNS', 'TCP', 'UDP'];
/**
 * The `rcode` label of hubble_dns_responses_total: Hubble's own table
 * (pkg/hubble/metrics/dns/rcode.go); an rcode missing from it is "" there (a Go
 * map miss), which also keeps an upstream's rcode from widening the label set.
 */
const HUBBLE_RCODES: ReadonlyMap<number, string> = new Map([
  [0, 'No Error'],
  [1, 'Format Error'],
  [2, 'Server Failure'],
  [3, 'Non-Existent Domain'],
  [4, 'Not Implemented'],
  [5, 'Query Refused'],
  [6, 'Name Exists when it should not'],
  [7, 'RR Set Exists when it should not'],
  [8, 'RR Set that should exist does not'],
  [9, 'Not Authorized'],
  [10, 'Name not contained in zone'],
  [11, 'DSO-TYPE Not Implemented'],
  [16, 'Bad OPT Version'],
  [17, 'Key not recognized'],
  [18, 'Signature out of time window'],
  [19, 'Bad TKEY Mode'],
  [20, 'Duplicate key name'],
  [21, 'Algorithm not supported'],
  [22, 'Bad Truncation'],
  [23, 'Bad/missing Server Cookie'],
]);
/** Hubble's rcode label of a denied query (dns/handler.go). */
const POLICY_DENIED_RCODE = 'Policy denied';
const IPS_CAP = 10;

/** Position of `v` in `list`, or `list.length` for anything else (the fold bucket). */
function indexer(list: readonly string[]): (v: string) => number {
  const m = new Map(list.map((v, i) => [v, i]));
  return (v) => m.get(v) ?? list.length;
}
const methodIndex = indexer(HTTP_METHODS);
const protocolIndex = indexer(HTTP_PROTOCOLS);
const qtypeIndex = indexer(DNS_QTYPES);
const METHOD_LABELS = [...HTTP_METHODS, 'OTHER'];
const PROTOCOL_LABELS = [...HTTP_PROTOCOLS, ''];
const QTYPE_LABELS = [...DNS_QTYPES, 'OTHER'];
/** Known rcodes in table order, then "" for the rest. */
const RCODE_NUMBERS = [...HUBBLE_RCODES.keys()];
const RCODE_LABELS = [...HUBBLE_RCODES.values(), ''];
const rcodeIndexOf = new Map(RCODE_NUMBERS.map((r, i) => [r, i]));

/** Hubble's `reporter`: the record's traffic direction (http/handler.go reporter()). */
function reporterIndex(direction: 'INGRESS' | 'EGRESS' | undefined): number {
  return direction === 'EGRESS' ? 1 : 0;
}
const REPORTERS = ['server', 'client'];

export type FlowEventType = 'L7' | 'Drop' | 'PolicyVerdict';

export class Metrics {
  readonly registry = new Registry();

  readonly flowsProcessed = new Counter({
    name: 'hubble_flows_processed_total',
    help: 'Total number of flows processed',
    labelNames: ['type', 'subtype', 'verdict', 'protocol'] as const,
    registers: [this.registry],
    collect: (): void => this.#flush(),
  });
  readonly drops = new Counter({
    name: 'hubble_drop_total',
    help: 'Number of drops',
    labelNames: ['reason', 'protocol'] as const,
    registers: [this.registry],
    collect: (): void => this.#flush(),
  });
  readonly httpRequests = new Counter({
    name: 'hubble_http_requests_total',
    help: 'Count of HTTP requests',
    labelNames: ['method', 'protocol', 'reporter'] as const,
    registers: [this.registry],
    collect: (): void => this.#flush(),
  });
  readonly httpResponses = new Counter({
    name: 'hubble_http_responses_total',
    help: 'Count of HTTP responses',
    labelNames: ['method', 'protocol', 'status', 'reporter'] as const,
    registers: [this.registry],
    collect: (): void => this.#flush(),
  });
  readonly httpDuration = new Histogram({
    name: 'hubble_http_request_duration_seconds',
    help: 'Quantiles of HTTP request duration in seconds',
    labelNames: ['method', 'reporter'] as const,
    buckets: [...DURATION_BUCKETS],
    registers: [this.registry],
    collect: (): void => this.#flush(),
  });
  readonly dnsQueries = new Counter({
    name: 'hubble_dns_queries_total',
    help: 'Number of DNS queries observed',
    labelNames: ['rcode', 'qtypes', 'ips_returned'] as const,
    registers: [this.registry],
    collect: (): void => this.#flush(),
  });
  readonly dnsResponses = new Counter({
    name: 'hubble_dns_responses_total',
    help: 'Number of DNS responses observed',
    labelNames: ['rcode', 'qtypes', 'ips_returned'] as const,
    registers: [this.registry],
    collect: (): void => this.#flush(),
  });
  readonly decisions = new Counter({
    name: 'l7warden_policy_decisions_total',
    help: 'Policy decisions by verdict, deciding direction and policy (namespace/name; "" when no rule decided)',
    labelNames: ['verdict', 'direction', 'policy'] as const,
    registers: [this.registry],
    collect: (): void => this.#flush(),
  });
  readonly reloads = new Counter({
    name: 'l7warden_policy_reloads_total',
    help: 'Policy snapshots swapped in (initial load included)',
    // --workers: every worker reloads in lockstep; the cluster total is one worker's.
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly reloadErrors = new Counter({
    name: 'l7warden_policy_reload_errors_total',
    help: 'Policy reloads refused because the configuration was invalid',
    // --workers: every worker reloads in lockstep; the cluster total is one worker's.
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly upstreamErrors = new Counter({
    name: 'l7warden_upstream_errors_total',
    help: 'Upstream failures by listener and kind (connect, timeout, reset, protocol, ...)',
    labelNames: ['listener', 'kind'] as const,
    registers: [this.registry],
  });
  readonly flowRecordsDropped: Gauge = new Gauge({
    name: 'l7warden_flow_records_dropped',
    help: 'Flow records dropped because the flow log queue was full (since start)',
    registers: [this.registry],
    collect: (): void => this.flowRecordsDropped.set(this.#sum(this.flowRecordsDropped)),
  });
  readonly flowReadersDropped: Gauge = new Gauge({
    name: 'l7warden_flow_stream_dropped',
    help: 'Flow records dropped for slow /flows readers (since start, all readers)',
    registers: [this.registry],
    collect: (): void => this.flowReadersDropped.set(this.#sum(this.flowReadersDropped)),
  });
  readonly openConnections: Gauge<'listener' | 'mode'> = new Gauge({
    name: 'l7warden_open_connections',
    help: 'Open client connections per listener',
    labelNames: ['listener', 'mode'] as const,
    registers: [this.registry],
    collect: (): void => {
      for (const c of this.#conn) this.openConnections.labels(c.listener, c.mode).set(c.count());
    },
  });

  readonly #conn: { listener: string; mode: string; count: () => number }[] = [];
  /**
   * The process's own memory and CPU, read when scraped (Prometheus' standard
   * process_* / nodejs_* names, as prom-client's default collectors use them). Those
   * collectors are not used: each instance starts an event-loop timer and a GC
   * observer that nothing can stop, one per proxy a test process starts.
   */
  readonly processResident: Gauge = new Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes',
    registers: [this.registry],
    collect: (): void => this.processResident.set(process.memoryUsage.rss()),
  });
  #cpuSeen = 0;
  readonly processCpu: Counter = new Counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds',
    registers: [this.registry],
    collect: (): void => {
      const u = process.cpuUsage();
      const now = (u.user + u.system) / 1e6;
      if (now > this.#cpuSeen) this.processCpu.inc(now - this.#cpuSeen);
      this.#cpuSeen = now;
    },
  });
  readonly heapUsed: Gauge = new Gauge({
    name: 'nodejs_heap_size_used_bytes',
    help: 'Process heap size used from Node.js in bytes',
    registers: [this.registry],
    collect: (): void => this.heapUsed.set(process.memoryUsage().heapUsed),
  });
  readonly processStart: Gauge = new Gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the process since unix epoch in seconds',
    registers: [this.registry],
    // --workers: the earliest start among the processes, not a sum of them.
    aggregator: 'min',
    collect: (): void => this.processStart.set(Math.round(performance.timeOrigin / 1000)),
  });
  readonly #gauges: { gauge: Gauge; read: () => number }[] = [];

  #sum(g: Gauge): number {
    let total = 0;
    for (const x of this.#gauges) if (x.gauge === g) total += x.read();
    return total;
  }

  readonly #deferred: Array<{ flush(): void }> = [];

  #defer(child: Inc): Inc {
    const d = new Deferred(child);
    this.#deferred.push(d);
    return d;
  }

  /** Collect hook of every hot-path counter: move the plain-number counts into prom-client. */
  #flush(): void {
    for (const d of this.#deferred) d.flush();
  }

  // Bound children, built once.
  readonly #flow: Inc[] = [];
  /** By method × protocol × reporter index, made on first use (no zero series before). */
  readonly #httpReq: (Inc | undefined)[] = [];
  /** By method × protocol × reporter index, then by status code. */
  readonly #httpResp: (Map<number, Inc> | undefined)[] = [];
  /** By method × reporter index. */
  readonly #httpDur: (Obs | undefined)[] = [];
  /** By qtype × (allowed, denied). */
  readonly #dnsQ: (Inc | undefined)[] = [];
  /** By (qtype × rcode label) × ips_returned index. */
  readonly #dnsR: (Inc | undefined)[] = [];
  readonly #drop = new Map<string, Map<string, Inc>>();
  readonly #decisionByRule = new WeakMap<RuleRef, Inc[]>();
  readonly #decisionNoRule: Inc[];
  readonly #upstream = new Map<string, Inc>();
  readonly #reloads: Inc;
  readonly #reloadErrors: Inc;

  constructor() {
    for (const type of FLOW_TYPES) {
      for (const subtype of FLOW_SUBTYPES) {
        for (const verdict of FLOW_VERDICTS) {
          for (const protocol of FLOW_PROTOCOLS) this.#flow.push(this.#defer(this.flowsProcessed.labels(type, subtype, verdict, protocol)));
        }
      }
    }
    this.#decisionNoRule = this.#decisionChildren('');
    this.#reloads = this.reloads;
    this.#reloadErrors = this.reloadErrors;
  }

  /**
   * One flow record's worth of `hubble_flows_processed_total`, labelled as Hubble's
   * flow handler labels that record: `type` from its event type, `subtype` the L7
   * kind on access-log (L7) events only, `protocol` the L7 protocol on L7 events
   * and the L4 one otherwise (pkg/hubble/api/v1 FlowProtocol).
   */
  flow(type: FlowEventType, subtype: 'HTTP' | 'DNS' | '', verdict: 'FORWARDED' | 'DROPPED', protocol: 'HTTP' | 'DNS' | 'TCP' | 'UDP'): void {
    const i =
      ((FLOW_TYPES.indexOf(type) * FLOW_SUBTYPES.length + FLOW_SUBTYPES.indexOf(subtype)) * FLOW_VERDICTS.length +
        FLOW_VERDICTS.indexOf(verdict)) *
        FLOW_PROTOCOLS.length +
      FLOW_PROTOCOLS.indexOf(protocol);
    this.#flow[i]?.inc();
  }

  /** A DROPPED record: `protocol` as for flow() (HTTP/DNS on L7 events, TCP/UDP otherwise). */
  drop(reason: string, protocol: string): void {
    let byProto = this.#drop.get(reason);
    if (!byProto) {
      byProto = new Map();
      this.#drop.set(reason, byProto);
    }
    let c = byProto.get(protocol);
    if (!c) {
      c = this.#defer(this.drops.labels(reason, protocol));
      byProto.set(protocol, c);
    }
    c.inc();
  }

  /** A decision: verdict, the deciding direction and the deciding policy. */
  decision(v: Verdict): void {
    const children = v.rule ? this.#ruleChildren(v.rule) : this.#decisionNoRule;
    const dirIndex = v.decidedBy === 'egress' ? 1 : v.decidedBy === 'ingress' ? 0 : 2;
    children[(v.allowed ? 0 : 3) + dirIndex]!.inc();
  }

  #ruleChildren(r: RuleRef): Inc[] {
    let c = this.#decisionByRule.get(r);
    if (!c) {
      c = this.#decisionChildren(r.namespace ? `${r.namespace}/${r.name}` : r.name);
      this.#decisionByRule.set(r, c);
    }
    return c;
  }

  #decisionChildren(policy: string): Inc[] {
    const out: Inc[] = [];
    for (const verdict of ['allowed', 'denied']) {
      for (const dir of ['ingress', 'egress', '']) out.push(this.#defer(this.decisions.labels(verdict, dir, policy)));
    }
    return out;
  }

  /**
   * A REQUEST record (Hubble's http handler, v1: requests are counted on REQUEST
   * records, responses and the latency on RESPONSE records). `direction`: the
   * record's traffic_direction, which Hubble reports as `reporter` (INGRESS
   * server, EGRESS client).
   */
  httpRequest(method: string, protocol: string, direction?: 'INGRESS' | 'EGRESS'): void {
    const mi = methodIndex(method);
    const pi = protocolIndex(protocol);
    const ri = reporterIndex(direction);
    const i = (mi * PROTOCOL_LABELS.length + pi) * REPORTERS.length + ri;
    let c = this.#httpReq[i];
    if (!c) {
      c = this.#defer(this.httpRequests.labels(METHOD_LABELS[mi]!, PROTOCOL_LABELS[pi]!, REPORTERS[ri]!));
      this.#httpReq[i] = c;
    }
    c.inc();
  }

  /** A RESPONSE record: its status and the request's latency in seconds. */
  httpResponse(method: string, protocol: string, status: number, seconds: number, direction?: 'INGRESS' | 'EGRESS'): void {
    const mi = methodIndex(method);
    const pi = protocolIndex(protocol);
    const ri = reporterIndex(direction);
    const i = (mi * PROTOCOL_LABELS.length + pi) * REPORTERS.length + ri;
    let byCode = this.#httpResp[i];
    if (!byCode) {
      byCode = new Map();
      this.#httpResp[i] = byCode;
    }
    // Codes come from the upstream: outside 100-599 they share one label value.
    const code = status >= 100 && status <= 599 ? status : 0;
    let c = byCode.get(code);
    if (!c) {
      c = this.#defer(this.httpResponses.labels(METHOD_LABELS[mi]!, PROTOCOL_LABELS[pi]!, String(code), REPORTERS[ri]!));
      byCode.set(code, c);
    }
    c.inc();
    const di = mi * REPORTERS.length + ri;
    let d = this.#httpDur[di];
    if (!d) {
      const h = new DeferredHistogram(this.httpDuration, { method: METHOD_LABELS[mi]!, reporter: REPORTERS[ri]! }, DURATION_BUCKETS);
      this.#deferred.push(h);
      d = h;
      this.#httpDur[di] = d;
    }
    d.observe(seconds);
  }

  /**
   * A DNS REQUEST record. Hubble counts a DROPPED one with rcode "Policy denied"
   * and an allowed one with rcode "" (dns/handler.go), both ips_returned "0".
   */
  dnsQuery(qtype: string, denied = false): void {
    const qi = qtypeIndex(qtype);
    const i = qi * 2 + (denied ? 1 : 0);
    let c = this.#dnsQ[i];
    if (!c) {
      c = this.#defer(this.dnsQueries.labels(denied ? POLICY_DENIED_RCODE : '', QTYPE_LABELS[qi]!, '0'));
      this.#dnsQ[i] = c;
    }
    c.inc();
  }

  /** A DNS RESPONSE record: its rcode and the number of addresses it returned. */
  dnsResponse(rcode: number, qtype: string, ips: number): void {
    const qi = qtypeIndex(qtype);
    const ri = rcodeIndexOf.get(rcode) ?? RCODE_NUMBERS.length;
    const ni = ips >= IPS_CAP ? IPS_CAP : ips > 0 ? ips : 0;
    const i = (qi * RCODE_LABELS.length + ri) * (IPS_CAP + 1) + ni;
    let c = this.#dnsR[i];
    if (!c) {
      c = this.#defer(this.dnsResponses.labels(RCODE_LABELS[ri]!, QTYPE_LABELS[qi]!, ni === IPS_CAP ? `${IPS_CAP}+` : String(ni)));
      this.#dnsR[i] = c;
    }
    c.inc();
  }

  upstreamError(listener: string, kind: string): void {
    const key = `${listener}|${kind}`;
    let c = this.#upstream.get(key);
    if (!c) {
      c = this.upstreamErrors.labels(listener, kind);
      this.#upstream.set(key, c);
    }
    c.inc();
  }

  /** A policy reload: swapped in (ok) or refused (errors). */
  policyReload(ok: boolean): void {
    (ok ? this.#reloads : this.#reloadErrors).inc();
  }

  /** Report a listener's open connections at every scrape. */
  trackConnections(listener: string, mode: string, count: () => number): void {
    this.#conn.push({ listener, mode, count });
  }

  /** A gauge read from a counter kept elsewhere (sink drops), at every scrape. */
  trackGauge(gauge: Gauge, read: () => number): void {
    this.#gauges.push({ gauge, read });
  }

  /** The exposition text (`GET /metrics`). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
