/**
 * Flow records for the egress listener, in the same Hubble JSON shape as the HTTP
 * ingress records (observe/flow.ts) but with `traffic_direction: "EGRESS"`, the
 * deciding direction's `*_allowed_by` / `*_denied_by`, and `destination_names`
 * (Hubble's field for the DNS names an FQDN destination was resolved from).
 *
 *  - HTTP requests (forward proxy, and each request inside an inspected tunnel):
 *    a REQUEST record per decision and a RESPONSE record with the status sent.
 *  - CONNECT: one REQUEST record (method CONNECT, url `host:port`) and a RESPONSE
 *    record with the status the CONNECT got (200, 403, 503…).
 *  - Transparent connections that are spliced or reset: one L3/L4 record (no `l7`),
 *    FORWARDED or DROPPED.
 * Nothing is built when the sink has no reader.
 */
import type { Identity } from '../identity/identity.js';
import type { RuleRef } from '../policy/api.js';
import type { PolicySnapshot, Verdict } from '../policy/types.js';
import type { FlowPeer, HttpFlowInfo } from '../observe/flow.js';
import type { FlowSink } from '../observe/sink.js';

interface HubbleEndpoint {
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

function byWhom(flow: Record<string, unknown>, v: Verdict): void {
  const dir = v.decidedBy === 'ingress' ? 'ingress' : 'egress';
  if (!v.allowed) {
    flow.drop_reason_desc = v.dropReason ?? 'POLICY_DENIED';
    if (v.rule) flow[`${dir}_denied_by`] = [policyOf(v.rule)];
  } else if (v.rule) {
    flow[`${dir}_allowed_by`] = [policyOf(v.rule)];
  }
}

export class EgressFlowRecorder {
  constructor(
    private readonly sink: FlowSink,
    private readonly nodeName: string,
  ) {}

  get active(): boolean {
    return this.sink.active;
  }

  /** REQUEST record for an HTTP request or a CONNECT. */
  request(snapshot: PolicySnapshot, src: FlowPeer, dst: FlowPeer, http: HttpFlowInfo, v: Verdict, names?: readonly string[]): void {
    if (!this.sink.active) return;
    const time = new Date().toISOString();
    const flow: Record<string, unknown> = {
      time,
      verdict: v.allowed ? 'FORWARDED' : 'DROPPED',
      IP: { source: src.ip, destination: dst.ip, ipVersion: ipVersion(dst.ip) },
      l4: { TCP: { source_port: src.port, destination_port: dst.port } },
      source: endpointOf(src.identity, snapshot),
      destination: endpointOf(dst.identity, snapshot),
      Type: v.type,
      node_name: this.nodeName,
      l7: { type: 'REQUEST', http: { method: http.method, url: http.url, protocol: http.protocol } },
      event_type: { type: 129 },
      traffic_direction: 'EGRESS',
      is_reply: false,
      Summary: `${http.protocol} ${http.method} ${http.url}`,
    };
    if (names && names.length > 0) flow.destination_names = names;
    byWhom(flow, v);
    this.sink.emit({ flow, node_name: this.nodeName, time });
  }

  /** RESPONSE record: source and destination swapped, status and latency. */
  response(
    snapshot: PolicySnapshot,
    src: FlowPeer,
    dst: FlowPeer,
    http: HttpFlowInfo,
    type: 'L3_L4' | 'L7',
    code: number,
    startNs: bigint,
    names?: readonly string[],
  ): void {
    if (!this.sink.active) return;
    const time = new Date().toISOString();
    const latency = process.hrtime.bigint() - startNs;
    const flow: Record<string, unknown> = {
      time,
      verdict: 'FORWARDED',
      IP: { source: dst.ip, destination: src.ip, ipVersion: ipVersion(dst.ip) },
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
      traffic_direction: 'EGRESS',
      is_reply: true,
      Summary: `${http.protocol} ${code} ${http.method} ${http.url}`,
    };
    if (names && names.length > 0) flow.source_names = names;
    this.sink.emit({ flow, node_name: this.nodeName, time });
  }

  /** One L3/L4 record for a transparent connection (spliced or reset). */
  connection(snapshot: PolicySnapshot, src: FlowPeer, dst: FlowPeer, v: Verdict): void {
    if (!this.sink.active) return;
    const time = new Date().toISOString();
    const flow: Record<string, unknown> = {
      time,
      verdict: v.allowed ? 'FORWARDED' : 'DROPPED',
      IP: { source: src.ip, destination: dst.ip, ipVersion: ipVersion(dst.ip) },
      l4: { TCP: { source_port: src.port, destination_port: dst.port } },
      source: endpointOf(src.identity, snapshot),
      destination: endpointOf(dst.identity, snapshot),
      Type: 'L3_L4',
      node_name: this.nodeName,
      event_type: { type: v.allowed ? 4 : 1 },
      traffic_direction: 'EGRESS',
      is_reply: false,
      Summary: `TCP ${src.ip}:${src.port} -> ${dst.ip}:${dst.port}`,
    };
    byWhom(flow, v);
    this.sink.emit({ flow, node_name: this.nodeName, time });
  }
}
