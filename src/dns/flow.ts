/**
 * DNS flow records in Hubble's JSON shape (CILIUM-SEMANTICS.md §5.1): requests carry
 * `query`, `observation_source: "proxy"`, `qtypes`; responses add `ips`, `ttl`,
 * `cnames`, `rcode`, `rrtypes`, with source and destination swapped and
 * `is_reply: true`. Always `traffic_direction: EGRESS`. A denied query yields one
 * DROPPED request record and no response record. Nothing is built when the sink has
 * no reader.
 */
import type { Identity } from '../identity/identity.js';
import type { RuleRef } from '../policy/api.js';
import type { PolicySnapshot, Verdict } from '../policy/types.js';
import type { FlowSink } from '../observe/sink.js';

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

interface HubbleEndpoint {
  ID?: number;
  identity: number;
  namespace?: string;
  labels: readonly string[];
  pod_name?: string;
}

function endpointOf(id: Identity, snapshot: PolicySnapshot): HubbleEndpoint {
  const ep = snapshot.endpointByIdentity(id.id);
  const e: HubbleEndpoint = { identity: id.id, labels: id.labels };
  if (id.namespace) e.namespace = id.namespace;
  if (ep) e.pod_name = ep.name;
  return e;
}

function policyOf(r: RuleRef): { name: string; namespace?: string; kind: string } {
  return r.namespace ? { name: r.name, namespace: r.namespace, kind: r.kind } : { name: r.name, kind: r.kind };
}

const ipVersion = (ip: string) => (ip.includes(':') ? 'IPv6' : 'IPv4');

export class DnsFlowRecorder {
  constructor(
    private readonly sink: FlowSink,
    private readonly nodeName: string,
  ) {}

  get active(): boolean {
    return this.sink.active;
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
    if (!this.sink.active) return;
    const time = new Date().toISOString();
    const flow: Record<string, unknown> = {
      time,
      verdict: v.allowed ? 'FORWARDED' : 'DROPPED',
      IP: { source: src.ip, destination: dst.ip, ipVersion: ipVersion(src.ip) },
      l4: { [transport]: { source_port: src.port, destination_port: dst.port } },
      source: endpointOf(src.identity, snapshot),
      destination: endpointOf(dst.identity, snapshot),
      Type: 'L7',
      node_name: this.nodeName,
      l7: { type: 'REQUEST', dns: { query, observation_source: 'proxy', qtypes: [qtype] } },
      event_type: { type: 129 },
      traffic_direction: 'EGRESS',
      is_reply: false,
      Summary: `DNS Query ${query} ${qtype}`,
    };
    if (!v.allowed) {
      flow.drop_reason_desc = v.dropReason ?? 'POLICY_DENIED';
      if (v.rule) flow.egress_denied_by = [policyOf(v.rule)];
    } else if (v.rule) {
      flow.egress_allowed_by = [policyOf(v.rule)];
    }
    this.sink.emit({ flow, node_name: this.nodeName, time });
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
    if (!this.sink.active) return;
    const time = new Date().toISOString();
    const dns: Record<string, unknown> = { query, observation_source: 'proxy', qtypes: [qtype] };
    if (r.ips.length) dns.ips = r.ips;
    if (r.ttl) dns.ttl = r.ttl;
    if (r.cnames.length) dns.cnames = r.cnames;
    if (r.rcode) dns.rcode = r.rcode;
    if (r.rrtypes.length) dns.rrtypes = r.rrtypes;
    const flow = {
      time,
      verdict: 'FORWARDED',
      IP: { source: dst.ip, destination: src.ip, ipVersion: ipVersion(src.ip) },
      l4: { [transport]: { source_port: dst.port, destination_port: src.port } },
      source: endpointOf(dst.identity, snapshot),
      destination: endpointOf(src.identity, snapshot),
      Type: 'L7',
      node_name: this.nodeName,
      l7: { type: 'RESPONSE', latency_ns: (process.hrtime.bigint() - startNs).toString(), dns },
      event_type: { type: 129 },
      traffic_direction: 'EGRESS',
      is_reply: true,
      Summary: `DNS Answer "${r.ips.join(',')}" TTL: ${r.ttl} (Proxy ${query} ${qtype})`,
    };
    this.sink.emit({ flow, node_name: this.nodeName, time });
  }
}
