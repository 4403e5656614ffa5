/**
 * The DNS proxy's request path, independent of sockets (listeners/dns.ts binds them):
 *
 *   bytes ─▶ parseQuery (strict) ─▶ in-flight bound ─▶ source identity (client IP)
 *         ─▶ destination = the DNS server's identity, port = the upstream's port
 *         ─▶ snapshot.decide({src, dst, port, protocol, dns: qname})
 *   denied  ─▶ REFUSED (or NXDOMAIN), nothing sent upstream, one DROPPED record
 *   allowed ─▶ upstream (same transport, our random ID) ─▶ matchesQuery + parseResponse
 *           ─▶ learn IPs into the FQDN cache (synchronously, before the answer leaves)
 *           ─▶ answer with the client's ID and exact question bytes
 *              (UDP answers over the client's size: header + question with TC)
 *   upstream timeout / error / invalid answer ─▶ SERVFAIL
 *   over dnsMaxInFlight ─▶ SERVFAIL at once (Cilium's newest behaviour)
 *
 * The snapshot is read once per query when it arrives.
 */
import type { DnsListener, Limits } from '../config/proxy-config.js';
import type { Identity } from '../identity/identity.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { FqdnCache } from '../fqdn/cache.js';
import {
  RCODE,
  encodeReply,
  encodeTruncated,
  parseQuery,
  parseResponse,
  restoreClientView,
  typeName,
  type Query,
} from './codec.js';
import type { DnsFlowRecorder, DnsPeer, DnsResponseFlow } from './flow.js';
import { UdpUpstream, type UpstreamCallback, type UpstreamStats } from './upstream.js';

export type Transport = 'UDP' | 'TCP';

export interface ClientInfo {
  readonly address: string;
  readonly port: number;
  readonly transport: Transport;
}

/** Where a TCP client's allowed queries go (its own upstream connection). */
export interface QuerySender {
  send(q: Query, cb: UpstreamCallback): void;
}

export interface DnsProxyOptions {
  readonly spec: DnsListener;
  readonly limits: Limits;
  /** The current policy snapshot (read once per query); undefined ⇒ SERVFAIL. */
  readonly snapshot: () => PolicySnapshot | undefined;
  readonly fqdn?: FqdnCache;
  readonly flows?: DnsFlowRecorder;
}

export interface DnsProxyStats {
  queries: number;
  allowed: number;
  denied: number;
  /** Queries refused by the codec (FORMERR / NOTIMP / REFUSED for class) or dropped. */
  malformed: number;
  dropped: number;
  overLimit: number;
  servfail: number;
  /** Upstream answers that failed validation (answered SERVFAIL, nothing learned). */
  badAnswers: number;
  truncated: number;
}

export class DnsProxy {
  readonly stats: DnsProxyStats = {
    queries: 0,
    allowed: 0,
    denied: 0,
    malformed: 0,
    dropped: 0,
    overLimit: 0,
    servfail: 0,
    badAnswers: 0,
    truncated: 0,
  };
  readonly udp: UdpUpstream;
  readonly upstreamStats: UpstreamStats;
  #inFlight = 0;
  readonly #rejectRcode: number;
  readonly #maxInFlight: number;
  /** Destination identity per snapshot (the DNS server does not change per query). */
  #dstFor: PolicySnapshot | undefined;
  #dst: Identity | undefined;
  #dstKnown = false;
  #fqdnFor: PolicySnapshot | undefined;

  constructor(private readonly opts: DnsProxyOptions) {
    this.#rejectRcode = opts.spec.rejectResponseCode === 'nameError' ? RCODE.NXDOMAIN : RCODE.REFUSED;
    this.#maxInFlight = Math.max(1, opts.limits.dnsMaxInFlight);
    this.udp = new UdpUpstream({
      host: opts.spec.upstream.host,
      port: opts.spec.upstream.port,
      timeoutMs: opts.limits.dnsUpstreamTimeoutMs,
    });
    this.upstreamStats = this.udp.stats;
  }

  async start(): Promise<void> {
    await this.udp.start();
  }

  close(): void {
    this.udp.close();
  }

  /**
   * Names a learned IP was returned for, without the trailing dot: flow records'
   * destination_names, as Hubble's GetNamesOf trims the FQDN cache's names.
   */
  namesFor(ip: string): readonly string[] {
    const names = this.opts.fqdn?.namesFor(ip);
    return names ? names.map((n) => (n.endsWith('.') ? n.slice(0, -1) : n)) : [];
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** The DNS server's identity: the serverEndpoint pod, else the upstream IP in the IP cache. */
  #serverIdentity(snap: PolicySnapshot): Identity | undefined {
    if (this.#dstFor === snap && this.#dstKnown) return this.#dst;
    const ep = this.opts.spec.serverEndpoint;
    this.#dst = ep
      ? snap.endpointByName(ep.namespace, ep.pod)?.identity
      : snap.identityForIP(this.opts.spec.upstream.host);
    this.#dstFor = snap;
    this.#dstKnown = true;
    return this.#dst;
  }

  /**
   * Handle one client message. `reply` sends bytes back on the client's transport;
   * `sender` forwards allowed queries (the UDP pool, or the TCP client's upstream
   * connection). Never throws.
   */
  handle(buf: Buffer, client: ClientInfo, reply: (b: Buffer) => void, sender: QuerySender = this.udp): void {
    // The latency clock only when a flow record will carry it (a BigInt per query otherwise).
    const start = this.opts.flows?.active === true ? process.hrtime.bigint() : 0n;
    this.stats.queries++;
    const parsed = parseQuery(buf);
    if (!parsed.ok) {
      if (parsed.reply) {
        this.stats.malformed++;
        reply(parsed.reply);
      } else this.stats.dropped++;
      return;
    }
    const q = parsed.query;
    if (this.#inFlight >= this.#maxInFlight) {
      this.stats.overLimit++;
      this.stats.servfail++;
      reply(encodeReply(q, RCODE.SERVFAIL));
      return;
    }
    let snap: PolicySnapshot | undefined;
    let src: Identity;
    let dst: Identity | undefined;
    try {
      snap = this.opts.snapshot();
      if (!snap) throw new Error('no policy snapshot');
      // A policy swap: re-label every learned IP under the new toFQDNs selectors
      // (once per swap; the reference compare is all a query pays otherwise).
      if (snap !== this.#fqdnFor && this.opts.fqdn) {
        this.#fqdnFor = snap;
        this.opts.fqdn.setSnapshot(snap);
      }
      src = snap.identityForIP(client.address);
      dst = this.#serverIdentity(snap);
    } catch {
      this.stats.servfail++;
      reply(encodeReply(q, RCODE.SERVFAIL));
      return;
    }
    if (!dst) {
      // serverEndpoint names a pod the policy does not know: an internal error.
      this.stats.servfail++;
      reply(encodeReply(q, RCODE.SERVFAIL));
      return;
    }
    const upstream = this.opts.spec.upstream;
    let verdict;
    try {
      verdict = snap.decide({ src, dst, port: upstream.port, protocol: client.transport, dns: q.qname });
    } catch {
      this.stats.servfail++;
      reply(encodeReply(q, RCODE.SERVFAIL));
      return;
    }
    const flows = this.opts.flows;
    const recording = flows !== undefined && flows.active;
    let srcPeer: DnsPeer | undefined;
    let dstPeer: DnsPeer | undefined;
    if (recording) {
      srcPeer = { ip: client.address, port: client.port, identity: src };
      dstPeer = { ip: upstream.host, port: upstream.port, identity: dst };
      flows.request(snap, srcPeer, dstPeer, client.transport, q.qname, typeName(q.qtype), verdict);
    }
    if (!verdict.allowed) {
      this.stats.denied++;
      reply(encodeReply(q, this.#rejectRcode));
      return;
    }
    this.stats.allowed++;
    this.#inFlight++;
    sender.send(q, (err, answer) => {
      this.#inFlight--;
      let out: Buffer;
      let info: DnsResponseFlow | undefined;
      if (err || !answer) {
        out = encodeReply(q, RCODE.SERVFAIL);
        this.stats.servfail++;
        flows?.upstreamError(this.opts.spec.name, err ?? 'error');
      } else {
        const a = this.#answer(q, answer, client.transport);
        out = a.out;
        info = a.info;
      }
      reply(out);
      if (recording && srcPeer && dstPeer) {
        const r = info ?? { rcode: out[3]! & 0xf, ips: [], ttl: 0, cnames: [], rrtypes: [] };
        flows.response(snap, srcPeer, dstPeer, client.transport, q.qname, typeName(q.qtype), r, start);
      }
    });
  }

  /** Validate the upstream answer, learn from it, and build what the client gets. */
  #answer(q: Query, answer: Buffer, transport: Transport): { out: Buffer; info?: DnsResponseFlow } {
    const parsed = parseResponse(answer, q);
    if (!parsed.ok) {
      this.stats.badAnswers++;
      // A truncated UDP answer that does not parse: tell the client to retry over TCP.
      if (transport === 'UDP' && (answer[2]! & 0x02) !== 0) {
        this.stats.truncated++;
        return { out: encodeTruncated(q, answer.readUInt16BE(2) & ~0x000f) };
      }
      this.stats.servfail++;
      return { out: encodeReply(q, RCODE.SERVFAIL) };
    }
    const info = parsed.info;
    if (transport === 'UDP' && answer.length > q.udpSize) {
      // Too large for the client: it retries over TCP, where the answer is learned.
      this.stats.truncated++;
      return { out: encodeTruncated(q, answer.readUInt16BE(2)) };
    }
    if (info.rcode === RCODE.NOERROR && info.ips.length > 0 && this.opts.fqdn) {
      try {
        this.opts.fqdn.learn(q.qname, info.ips, info.ttl);
      } catch {
        this.stats.servfail++;
        return { out: encodeReply(q, RCODE.SERVFAIL) };
      }
    }
    return { out: restoreClientView(answer, q), info };
  }
}
