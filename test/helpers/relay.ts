/**
 * A TCP relay that lets a client which cannot choose its source address (grpc-js)
 * appear as a pod: it accepts on 127.0.0.1:0 and connects onwards from `from`
 * (e.g. 127.0.0.10 = tiefighter), optionally prefixing a PROXY v1 header the way a
 * node-local redirect layer (HAProxy) would. Bytes are piped unchanged.
 */
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface Relay {
  readonly port: number;
  close(): Promise<void>;
}

export async function startRelay(target: number, opts: { from?: string; proxyV1?: { src: string; srcPort?: number } }): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const upstream = net.connect({ host: '127.0.0.1', port: target, ...(opts.from ? { localAddress: opts.from } : {}) });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    if (opts.proxyV1) upstream.write(`PROXY TCP4 ${opts.proxyV1.src} 127.0.0.1 ${opts.proxyV1.srcPort ?? 40000} ${target}\r\n`);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
