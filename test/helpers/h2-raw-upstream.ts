/**
 * A hand-driven h2c upstream, for answers `node:http2` will not produce: a
 * RST_STREAM(NO_ERROR) in the middle of a response, a `:status` outside 200–599,
 * a connection dropped mid-body, a peer that never closes its end. It sends its
 * SETTINGS (optionally with values such as MAX_CONCURRENT_STREAMS), acknowledges
 * the proxy's SETTINGS and PINGs, and hands every new request stream to the next
 * behaviour in `queue` (HPACK is not decoded: a behaviour answers whatever came).
 */
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { FT, FL, frame, block, frameReader, settings } from './h2-raw.js';

export type Behaviour = (write: (b: Buffer) => void, streamId: number, sock: net.Socket) => void;

export interface RawUpstream {
  readonly url: string;
  /** Behaviours for the next request streams, in order. */
  readonly queue: Behaviour[];
  /** Every request stream seen (all connections), with the RST_STREAM code the proxy sent for it (if any). */
  readonly streams: { id: number; rst?: number }[];
  connections: number;
  close(): Promise<void>;
}

export async function startRawUpstream(initialSettings: [number, number][] = []): Promise<RawUpstream> {
  const sockets = new Set<net.Socket>();
  const up: RawUpstream = {
    url: '',
    queue: [],
    streams: [],
    connections: 0,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  const server = net.createServer((sock) => {
    up.connections++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    const write = (b: Buffer) => {
      if (!sock.destroyed) sock.write(b);
    };
    write(settings(initialSettings));
    const mine = new Map<number, { id: number; rst?: number }>();
    sock.on(
      'data',
      frameReader((type, flags, id, p) => {
        if (type === FT.SETTINGS && (flags & FL.ACK) === 0) write(frame(FT.SETTINGS, FL.ACK, 0));
        else if (type === FT.PING && (flags & FL.ACK) === 0) write(frame(FT.PING, FL.ACK, 0, Buffer.from(p)));
        else if (type === FT.HEADERS && !mine.has(id)) {
          const s = { id };
          mine.set(id, s);
          up.streams.push(s);
          up.queue.shift()?.(write, id, sock);
        } else if (type === FT.RST_STREAM) {
          const s = mine.get(id);
          if (s && s.rst === undefined) s.rst = p.readUInt32BE(0);
        }
      }, true),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  (up as { url: string }).url = `h2c://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return up;
}

/** A HEADERS frame with literal fields (END_HEADERS, plus END_STREAM when `end`). */
export function headersFrame(id: number, fields: [string, string][], end = false): Buffer {
  return frame(FT.HEADERS, FL.END_HEADERS | (end ? FL.END_STREAM : 0), id, block(fields));
}

export function dataFrame(id: number, data: Buffer, end = false): Buffer {
  return frame(FT.DATA, end ? FL.END_STREAM : 0, id, data);
}
