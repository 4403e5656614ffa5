/**
 * Hand-built HTTP/2 for inputs `node:http2` will not produce (floods, resets in the
 * same write as their HEADERS, pseudo-headers in trailers, stream IDs going
 * backwards): a frame writer, HPACK literals (no Huffman, so any bytes can be sent,
 * long lengths included) and a raw h2c connection that parses what the server sends
 * back (GOAWAY, RST_STREAM, HEADERS, DATA) and acknowledges its SETTINGS.
 */
import * as net from 'node:net';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FT = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FL = { END_STREAM: 1, ACK: 1, END_HEADERS: 4, PRIORITY: 0x20 } as const;

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK integer with an n-bit prefix (RFC 7541 §5.1). */
export function hpackInt(v: number, n: number, first = 0): Buffer {
  const max = (1 << n) - 1;
  if (v < max) return Buffer.from([first | v]);
  const out = [first | max];
  v -= max;
  while (v >= 128) {
    out.push((v & 127) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

function hpackString(s: string | Buffer): Buffer {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7), b]);
}

/** Literal field without indexing, new name. */
export function literal(name: string, value: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from([0]), hpackString(name), hpackString(value)]);
}

/** Literal field with incremental indexing, new name: enters the dynamic table at index 62. */
export function literalIndexed(name: string, value: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)]);
}

/** Indexed field (static 1–61, dynamic from 62). */
export function indexed(i: number): Buffer {
  return hpackInt(i, 7, 0x80);
}

export function block(fields: [string, string][]): Buffer {
  return Buffer.concat(fields.map(([n, v]) => literal(n, v)));
}

export function requestBlock(method: string, path: string, extra: [string, string][] = [], authority = 'deathstar'): Buffer {
  return block([[':method', method], [':scheme', 'http'], [':path', path], [':authority', authority], ...extra]);
}

export function rstStream(id: number, code: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(code);
  return frame(FT.RST_STREAM, 0, id, b);
}

export function settings(pairs: [number, number][] = []): Buffer {
  const b = Buffer.alloc(6 * pairs.length);
  pairs.forEach(([k, v], i) => {
    b.writeUInt16BE(k, i * 6);
    b.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(FT.SETTINGS, 0, 0, b);
}

export function windowUpdate(id: number, inc: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(inc);
  return frame(FT.WINDOW_UPDATE, 0, id, b);
}

/**
 * A 'data' listener that cuts a byte stream into HTTP/2 frames and hands each to
 * `onFrame` (the payload is a view: copy it to keep it). `skipPreface`: a server
 * side, whose first 24 bytes are the client preface.
 */
export function frameReader(onFrame: (type: number, flags: number, id: number, payload: Buffer) => void, skipPreface = false): (d: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  let preface = !skipPreface;
  return (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    if (!preface) {
      if (buf.length < PREFACE.length) return;
      buf = buf.subarray(PREFACE.length);
      preface = true;
    }
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3);
      if (buf.length < 9 + len) break;
      const type = buf[3]!;
      const flags = buf[4]!;
      const id = buf.readUInt32BE(5) & 0x7fffffff;
      const p = buf.subarray(9, 9 + len);
      buf = buf.subarray(9 + len);
      onFrame(type, flags, id, p);
    }
  };
}

export interface RawH2 {
  readonly sock: net.Socket;
  goaway?: { lastStreamId: number; code: number };
  readonly rst: Map<number, number>;
  /** Response :status per stream (HPACK not decoded: the first byte of the block, 0x88 = indexed 200). */
  readonly headerBlocks: Map<number, Buffer>;
  readonly dataBytes: Map<number, number>;
  readonly ended: Set<number>;
  closed: boolean;
  write(b: Buffer): Promise<void>;
}

/**
 * A raw h2c connection: sends the preface and an empty SETTINGS (plus `initial`),
 * answers SETTINGS with an ACK, and records what the server sends.
 */
export async function rawH2(port: number, from: string, initial: Buffer = Buffer.alloc(0)): Promise<RawH2> {
  const sock = net.connect({ host: '127.0.0.1', port, localAddress: from });
  sock.setNoDelay(true);
  sock.on('error', () => {});
  const c: RawH2 = {
    sock,
    rst: new Map(),
    headerBlocks: new Map(),
    dataBytes: new Map(),
    ended: new Set(),
    closed: false,
    write: (b) =>
      new Promise<void>((resolve) => {
        if (sock.destroyed) return resolve();
        if (sock.write(b)) resolve();
        else sock.once('drain', () => resolve()).once('close', () => resolve());
      }),
  };
  sock.on('close', () => (c.closed = true));
  sock.on(
    'data',
    frameReader((type, flags, id, p) => {
      if (type === FT.GOAWAY) c.goaway = { lastStreamId: p.readUInt32BE(0) & 0x7fffffff, code: p.readUInt32BE(4) };
      else if (type === FT.RST_STREAM) c.rst.set(id, p.readUInt32BE(0));
      else if (type === FT.HEADERS && !c.headerBlocks.has(id)) c.headerBlocks.set(id, Buffer.from(p));
      else if (type === FT.DATA) c.dataBytes.set(id, (c.dataBytes.get(id) ?? 0) + p.length);
      else if (type === FT.SETTINGS && (flags & FL.ACK) === 0) sock.write(frame(FT.SETTINGS, FL.ACK, 0));
      if ((type === FT.DATA || type === FT.HEADERS) && (flags & FL.END_STREAM) !== 0) c.ended.add(id);
    }),
  );
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  await c.write(Buffer.concat([PREFACE, frame(FT.SETTINGS, 0, 0), initial]));
  return c;
}

export async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}
