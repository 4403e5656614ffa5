/**
 * The `dns` listener: UDP and TCP on the same address and port, both handed to one
 * DnsProxy (dns/server.ts).
 *
 * TCP (RFC 7766): 2-byte length prefixes, which may arrive split across segments;
 * several (pipelined) queries per connection, answered as they complete; an idle
 * timeout closes connections with nothing in flight; each connection forwards over
 * its own upstream TCP connection; the listener caps its connections at
 * `maxConnectionsPerListener`.
 * Source identity: the client's address (sourceAddress). The PROXY protocol and
 * client certificates do not exist for plain DNS, so other methods are ignored.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { DnsListener, Limits } from '../config/proxy-config.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { IPCacheOverlay } from '../identity/ipcache.js';
import { FqdnCache } from '../fqdn/cache.js';
import { IPCacheFqdnSink } from '../fqdn/ipcache-sink.js';
import { DnsProxy } from '../dns/server.js';
import type { DnsFlowRecorder } from '../dns/flow.js';
import { FrameReader, TcpUpstreamConn, frame } from '../dns/upstream.js';

/** Bytes of answers queued to one TCP client before we stop reading its queries. */
const TCP_WRITE_HIGH = 64 * 1024;
/**
 * Bytes of incomplete TCP messages held for all clients of a listener together.
 * One client may send 65,535 bytes of a message and hold them open: without a cap,
 * `maxConnectionsPerListener` (10,000) such connections held 640 MB. Real queries
 * are a few hundred bytes and complete within a segment or two.
 */
const TCP_PARTIAL_BUDGET = 16 * 1024 * 1024;

export interface DnsListenerOptions {
  readonly spec: DnsListener;
  readonly limits: Limits;
  /** The snapshot in force (undefined before the first: queries get SERVFAIL). */
  readonly snapshot: () => PolicySnapshot | undefined;
  /**
   * The FQDN cache. Absent: the listener makes one whose IPs go into the overlay of
   * the snapshot's IP cache (`ipcache.overlay`, shared across reloads by the store),
   * or into `ipOverlay` when given.
   */
  readonly fqdn?: FqdnCache;
  readonly ipOverlay?: IPCacheOverlay;
  readonly flows?: DnsFlowRecorder;
  /**
   * Subscribe to policy swaps (PolicyStore.onSwap; returns an unsubscribe). The FQDN
   * cache re-labels every learned IP inside the swap, before any connection is decided
   * under the new snapshot: learned IPs sit in the IP cache overlay, which wins over the
   * snapshot's own entries, so a stale entry would keep e.g. an address that became a
   * pod's IP (or fell under a new egressDeny toCIDR) looking like world + fqdn:… and
   * toFQDNs would keep it open. Without it, re-labelling waits for the next DNS query.
   */
  readonly onSwap?: (fn: (s: PolicySnapshot) => void) => () => void;
  /**
   * Idle timeout of client TCP connections (default min(limits.idleTimeoutMs, 10 s)).
   * Also the time a message has to arrive whole once its first byte has.
   */
  readonly tcpIdleTimeoutMs?: number;
  /** Bytes of incomplete messages held for all TCP clients together (tests; default 16 MiB). */
  readonly tcpPartialBudgetBytes?: number;
}

export interface RunningDnsListener {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly address: net.AddressInfo;
  readonly bound: boolean;
  readonly proxy: DnsProxy;
  readonly fqdn: FqdnCache;
  /** TCP client connections open now (the l7warden_open_connections gauge). */
  readonly openConnections: number;
  /** Bytes of incomplete TCP messages held now, and the connections closed over it. */
  readonly tcpPartial: { readonly bytes: number; readonly closedOverBudget: number; readonly closedSlow: number };
  close(drainMs?: number): Promise<void>;
}

/** The overlay a snapshot's IP cache writes FQDN IPs to, when it exposes one. */
function overlayOf(s: PolicySnapshot | undefined): IPCacheOverlay | undefined {
  return (s as { ipcache?: { overlay?: IPCacheOverlay } } | undefined)?.ipcache?.overlay;
}

/** dgram `lookup` for IP literals only (the client addresses we reply to). */
function literalLookup(
  address: string,
  _family: unknown,
  cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const family = net.isIP(address);
  if (family === 0) cb(Object.assign(new Error(`not an IP address: ${address}`), { code: 'EINVAL' }), address, 0);
  else cb(null, address, family);
}

async function bindBoth(host: string, port: number): Promise<{ udp: dgram.Socket; tcp: net.Server; port: number }> {
  const type = net.isIPv6(host) ? 'udp6' : 'udp4';
  const attempts = port === 0 ? 20 : 1;
  let lastErr: unknown;
  for (let i = 0; i < attempts; i++) {
    const tcp = net.createServer({ noDelay: true });
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, host, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      lastErr = e;
      continue;
    }
    const bound = (tcp.address() as net.AddressInfo).port;
    // Replies go to rinfo.address, always an IP literal: resolve it synchronously
    // instead of dgram's default dns.lookup, which defers every send by a nextTick.
    const udp = dgram.createSocket({ type, recvBufferSize: 4 << 20, lookup: literalLookup });
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(bound, host, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      return { udp, tcp, port: bound };
    } catch (e) {
      lastErr = e;
      udp.close();
      await new Promise<void>((r) => tcp.close(() => r()));
    }
  }
  throw lastErr instanceof Error ? lastErr : new Error(`cannot bind ${host}:${port}`);
}

export async function startDnsListener(opts: DnsListenerOptions): Promise<RunningDnsListener> {
  const { spec, limits } = opts;
  let fqdn = opts.fqdn;
  const ownsFqdn = fqdn === undefined;
  if (!fqdn) {
    const fixed = opts.ipOverlay;
    const current = (): PolicySnapshot => {
      const s = opts.snapshot();
      if (!s) throw new Error('no policy snapshot');
      return s;
    };
    const sinkOverlay = {
      upsert: (p: string, id: Parameters<IPCacheOverlay['upsert']>[1]) => (fixed ?? overlayOf(current()))?.upsert(p, id),
      remove: (p: string) => (fixed ?? overlayOf(current()))?.remove(p) ?? false,
    } as IPCacheOverlay;
    fqdn = new FqdnCache(new IPCacheFqdnSink(sinkOverlay, current), {
      minTtlSeconds: limits.dnsMinTtlSeconds,
      maxTtlSeconds: limits.dnsMaxTtlSeconds,
      maxIpsPerName: limits.dnsMaxIpsPerHostname,
    });
    fqdn.start();
  }
  const proxy = new DnsProxy({ ...opts, fqdn });
  await proxy.start();
  const learned = fqdn;
  const unsubscribe = opts.onSwap?.((s) => {
    try {
      learned.setSnapshot(s);
    } catch {
      /* the swap stands; the next query retries the re-labelling (DnsProxy.handle) */
    }
  });
  let sockets: { udp: dgram.Socket; tcp: net.Server; port: number };
  try {
    sockets = await bindBoth(spec.host, spec.port);
  } catch (e) {
    unsubscribe?.();
    proxy.close();
    if (ownsFqdn) fqdn.stop();
    throw e;
  }
  const { udp, tcp } = sockets;
  udp.on('error', () => {
    /* a send to a vanished client; nothing to do */
  });
  udp.on('message', (msg, rinfo) => {
    // Source port 0 (a raw-socket spoof) cannot be answered, and dgram's send throws
    // ERR_SOCKET_BAD_PORT synchronously for it — an uncaught exception out of this
    // handler or the upstream socket's, i.e. a one-packet crash. Drop such datagrams
    // before anything is decided or forwarded.
    if (rinfo.port === 0) return;
    proxy.handle(msg, { address: rinfo.address, port: rinfo.port, transport: 'UDP' }, (out) => {
      try {
        udp.send(out, rinfo.port, rinfo.address);
      } catch {
        /* a synchronous send error must not escape into the socket callbacks */
      }
    });
  });

  const idleMs = opts.tcpIdleTimeoutMs ?? Math.min(limits.idleTimeoutMs, 10_000);
  const conns = new Set<net.Socket>();
  const partialBudget = opts.tcpPartialBudgetBytes ?? TCP_PARTIAL_BUDGET;
  const partial = { bytes: 0, closedOverBudget: 0, closedSlow: 0 };
  tcp.maxConnections = limits.maxConnectionsPerListener;
  tcp.on('connection', (sock) => {
    conns.add(sock);
    const reader = new FrameReader();
    /** What this connection counts in partial.bytes. */
    let held = 0;
    /**
     * A message must arrive whole within idleMs of its first byte: the idle timer
     * alone restarts on every byte, so a message trickled a byte every few seconds
     * would hold its buffer (and its share of the budget) indefinitely.
     */
    let slow: NodeJS.Timeout | undefined;
    const release = (): void => {
      partial.bytes -= held;
      held = 0;
      if (slow !== undefined) clearTimeout(slow);
      slow = undefined;
    };
    const drop = (why: 'closedOverBudget' | 'closedSlow'): void => {
      partial[why]++;
      open = false;
      release();
      sock.destroy();
    };
    const upstream = new TcpUpstreamConn(spec.upstream.host, spec.upstream.port, limits.dnsUpstreamTimeoutMs, proxy.upstreamStats);
    const address = sock.remoteAddress ?? '';
    const port = sock.remotePort ?? 0;
    let open = true;
    sock.setNoDelay(true);
    sock.setTimeout(idleMs, () => {
      // Idle: nothing read or written for idleMs. Keep it while answers are pending.
      if (upstream.inFlight === 0) sock.destroy();
    });
    // Backpressure: a client that pipelines queries and never reads its answers must
    // not make us queue them without limit (a ~30-byte query can fetch a 64 KB answer).
    // Past TCP_WRITE_HIGH bytes queued we stop reading from it until the queue drains;
    // what is already in flight still lands (bounded by dnsMaxInFlight), and a client
    // that stays stalled is closed by the idle timeout.
    const reply = (out: Buffer): void => {
      if (!open || sock.destroyed) return;
      sock.write(frame(out));
      if (sock.writableLength > TCP_WRITE_HIGH && !sock.isPaused()) sock.pause();
    };
    sock.on('drain', () => {
      if (open && sock.isPaused()) sock.resume();
    });
    sock.on('data', (chunk) => {
      if (!open) return;
      const msgs = reader.push(chunk);
      const now = reader.buffered;
      partial.bytes += now - held;
      held = now;
      if (msgs.length > 0 && slow !== undefined) {
        clearTimeout(slow);
        slow = undefined;
      }
      if (held > 0 && partial.bytes > partialBudget) {
        // Whoever takes the listener past the budget loses its connection (and what it held).
        drop('closedOverBudget');
        return;
      }
      if (held > 0 && slow === undefined) {
        slow = setTimeout(() => drop('closedSlow'), idleMs);
        slow.unref();
      }
      for (const m of msgs) {
        if (!open) return;
        // Copy: the codec keeps subarrays of the message and the answer is written in place.
        proxy.handle(Buffer.from(m), { address, port, transport: 'TCP' }, reply, upstream);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      open = false;
      release();
      conns.delete(sock);
      upstream.close();
    });
  });
  tcp.on('error', () => {});

  let bound = true;
  return {
    name: spec.name,
    host: spec.host,
    port: sockets.port,
    address: { address: spec.host, family: net.isIPv6(spec.host) ? 'IPv6' : 'IPv4', port: sockets.port },
    get bound() {
      return bound;
    },
    get openConnections() {
      return conns.size;
    },
    tcpPartial: partial,
    proxy,
    fqdn,
    async close(drainMs = 0) {
      bound = false;
      // Stop taking new queries; give the ones in flight up to drainMs to finish.
      tcp.close();
      udp.removeAllListeners('message');
      const until = Date.now() + Math.max(0, drainMs);
      while (proxy.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      for (const c of conns) c.destroy();
      await new Promise<void>((r) => udp.close(() => r()));
      unsubscribe?.();
      proxy.close();
      if (ownsFqdn) fqdn.stop();
    },
  };
}
