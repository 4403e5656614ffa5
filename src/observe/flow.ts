/**
 * Flow records for HTTP decisions, in Hubble's JSON shape (CILIUM-SEMANTICS.md §5.1):
 * `{"flow": {...}, "node_name": …, "time": …}`. One REQUEST record per decision
 * (verdict DROPPED when denied) and one RESPONSE record (source/destination swapped,
 * `is_reply: true`, `code`, `latency_ns`). Records are plain objects handed to the
 * FlowSink, which serialises them in batches off the request path; nothing here
 * runs when the sink has no reader.
 */
import type { Identity } from '../identity/identity.js';
import type { RuleRef } from '../policy/api.js';
import type { Verdict, PolicySnapshot } from '../policy/types.js';
import type { FlowSink } from './sink.js';

export interface FlowPeer {
  readonly ip: string;
  readonly port: number;
  readonly identity: Identity;
}

export interface HttpFlowInfo {
  readonly method: string;
  readonly url: string; // scheme://authority/path
  readonly protocol: 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2';
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

function ipVersion(ip: string): 'IPv4' | 'IPv6' {
  return ip.includes(':') ? 'IPv6' : 'IPv4';
}

export class HttpFlowRecorder {
  constructor(
    private readonly sink: FlowSink,
    private readonly nodeName: string,
  ) {}

  get active(): boolean {
    return this.sink.active;
  }

  /** The REQUEST record for a decision. */
  request(snapshot: PolicySnapshot, src: FlowPeer, dst: FlowPeer, http: HttpFlowInfo, v: Verdict): void {
    if (!this.sink.active) return;
    const time = new Date().toISOString();
    const flow: Record<string, unknown> = {
      time,
      verdict: v.allowed ? 'FORWARDED' : 'DROPPED',
      IP: { source: src.ip, destination: dst.ip, ipVersion: ipVersion(src.ip) },
      l4: { TCP: { source_port: src.port, destination_port: dst.port } },
      source: endpointOf(src.identity, snapshot),
      destination: endpointOf(dst.identity, snapshot),
      Type: v.type,
      node_name: this.nodeName,
      l7: { type: 'REQUEST', http: { method: http.method, url: http.url, protocol: http.protocol } },
      event_type: { type: 129 },
      traffic_direction: 'INGRESS',
      is_reply: false,
      Summary: `${http.protocol} ${http.method} ${http.url}`,
    };
    if (!v.allowed) {
      flow.drop_reason_desc = v.dropReason ?? 'POLICY_DENIED';
      if (v.rule) flow.ingress_denied_by = [policyOf(v.rule)];
    } else if (v.rule) {
      flow.ingress_allowed_by = [policyOf(v.rule)];
    }
    this.sink.emit({ flow, node_name: this.nodeName, time });
  }

  /** The RESPONSE record: source and destination swapped, the status and latency added. */
  response(
    snapshot: PolicySnapshot,
    src: FlowPeer,
    dst: FlowPeer,
    http: HttpFlowInfo,
    type: 'L3_L4' | 'L7',
    code: number,
    startNs: bigint,
  ): void {
    if (!this.sink.active) return;
    const time = new Date().toISOString();
    const latency = process.hrtime.bigint() - startNs;
    const flow = {
      time,
      verdict: 'FORWARDED',
      IP: { source: dst.ip, destination: src.ip, ipVersion: ipVersion(src.ip) },
      l4: { TCP: { source_port: dst.port, destination_port: src.port } },
      source: endpointOf(dst.identity, snapshot),
      destination: endpointOf(src.identity, snapshot),
      Type: type,
      node_name: this.nodeName,
      l7: {
        type: 'RESPONSE',
        latency_ns: latency.toString(),
        http: { code, method: http.method, url: http.url, protocol: http.protocol },
      },
      event_type: { type: 129 },
      traffic_direction: 'INGRESS',
      is_reply: true,
      Summary: `${http.protocol} ${code} ${http.method} ${http.url}`,
    };
    this.sink.emit({ flow, node_name: this.nodeName, time });
  }
}
