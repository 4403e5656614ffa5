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
import type { FqdnCache } from '../fqdn/cache.js';
import { DnsProxy } from '../dns/server.js';
import type { DnsFlowRecorder } from '../dns/flow.js';
import { FrameReader, TcpUpstreamConn, frame } from '../dns/upstream.js';

export interface DnsListenerOptions {
  readonly spec: DnsListener;
  readonly limits: Limits;
  readonly snapshot: () => PolicySnapshot;
  readonly fqdn?: FqdnCache;
  readonly flows?: DnsFlowRecorder;
  /** Idle timeout of client TCP connections (default min(limits.idleTimeoutMs, 10 s)). */
  readonly tcpIdleTimeoutMs?: number;
}

export interface RunningDnsListener {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly proxy: DnsProxy;
  close(): Promise<void>;
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
    const udp = dgram.createSocket({ type, recvBufferSize: 4 << 20 });
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
  const proxy = new DnsProxy(opts);
  await proxy.start();
  let sockets: { udp: dgram.Socket; tcp: net.Server; port: number };
  try {
    sockets = await bindBoth(spec.host, spec.port);
  } catch (e) {
    proxy.close();
    throw e;
  }
  const { udp, tcp } = sockets;
  udp.on('error', () => {
    /* a send to a vanished client; nothing to do */
  });
  udp.on('message', (msg, rinfo) => {
    proxy.handle(msg, { address: rinfo.address, port: rinfo.port, transport: 'UDP' }, (out) => {
      udp.send(out, rinfo.port, rinfo.address);
    });
  });

  const idleMs = opts.tcpIdleTimeoutMs ?? Math.min(limits.idleTimeoutMs, 10_000);
  const conns = new Set<net.Socket>();
  tcp.maxConnections = limits.maxConnectionsPerListener;
  tcp.on('connection', (sock) => {
    conns.add(sock);
    const reader = new FrameReader();
    const upstream = new TcpUpstreamConn(spec.upstream.host, spec.upstream.port, limits.dnsUpstreamTimeoutMs, proxy.upstreamStats);
    const address = sock.remoteAddress ?? '';
    const port = sock.remotePort ?? 0;
    let open = true;
    sock.setNoDelay(true);
    sock.setTimeout(idleMs, () => {
      // Idle: nothing read or written for idleMs. Keep it while answers are pending.
      if (upstream.inFlight === 0) sock.destroy();
    });
    sock.on('data', (chunk) => {
      const msgs = reader.push(chunk);
      for (const m of msgs) {
        if (!open) return;
        // Copy: the codec keeps subarrays of the message and the answer is written in place.
        proxy.handle(Buffer.from(m), { address, port, transport: 'TCP' }, (out) => {
          if (open && !sock.destroyed) sock.write(frame(out));
        }, upstream);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      open = false;
      conns.delete(sock);
      upstream.close();
    });
  });
  tcp.on('error', () => {});

  return {
    name: spec.name,
    host: spec.host,
    port: sockets.port,
    proxy,
    async close() {
      for (const c of conns) c.destroy();
      await Promise.all([
        new Promise<void>((r) => tcp.close(() => r())),
        new Promise<void>((r) => udp.close(() => r())),
      ]);
      proxy.close();
    },
  };
}
