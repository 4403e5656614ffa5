/**
 * PROXY protocol v1 (text) and v2 (binary) header parser (haproxy's
 * proxy-protocol.txt). Used only on listeners configured to require it: a
 * connection that does not start with a valid header is rejected — the header is
 * never sniffed, or any client could claim any source address.
 *
 *   const hdr = await readProxyHeader(socket, { timeoutMs: 5000 });  // rejects: destroy the socket
 *   if (hdr.rest.length) socket.unshift(hdr.rest);                   // bytes after the header
 *   tlsServer.emit('connection', socket)  /  httpServer.emit('connection', socket)
 *
 * Strictness: v1 at most 107 bytes with exact single-space syntax and valid
 * addresses/ports; v2 version 2, known command/family/transport, the declared
 * length within `maxV2Bytes`, address block and every TLV inside the declared
 * length (TLVs are framed and skipped, not interpreted). Both addresses must be
 * unicast (see isUnicastIP), as Envoy's proxy_protocol filter requires.
 */
import { isIPv4, isIPv6, type Socket } from 'node:net';
import { WardenError } from '../core/errors.js';
import { normalizeIP } from '../identity/ipcache.js';

export interface ProxyAddress {
  readonly address: string;
  readonly port: number;
}

export interface ProxyTLV {
  readonly type: number;
  readonly value: Buffer;
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  /** LOCAL: the proxy's own connection (health check); use the real socket addresses. */
  readonly command: 'PROXY' | 'LOCAL';
  /**
   * The original client and destination. Present only for TCP over IPv4/IPv6 (v1
   * TCP4/TCP6, v2 PROXY + INET/INET6 + STREAM). Absent for LOCAL, v1 UNKNOWN, v2
   * UNSPEC/UNIX: the caller then falls back to the socket's own addresses.
   */
  readonly source?: ProxyAddress;
  readonly destination?: ProxyAddress;
  /** v2 TLVs, framed but not interpreted. */
  readonly tlvs: readonly ProxyTLV[];
  /** Bytes received after the header: unshift/replay them onto the socket. */
  readonly rest: Buffer;
}

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** v1: "the maximum line length is 107 characters including the CRLF". */
export const V1_MAX_BYTES = 107;
/** Default cap on a whole v2 header (16 + declared length). Room for common TLVs (AWS, GCP, Azure). */
export const DEFAULT_V2_MAX_BYTES = 2048;

function fail(message: string): WardenError {
  return new WardenError('L7W_ERR_PROXY_PROTOCOL', message);
}

/**
 * A unicast address: not unspecified (0.0.0.0, ::), not multicast (224.0.0.0/4,
 * ff00::/8), not the broadcast 255.255.255.255, in any spelling (an IPv4-mapped
 * address is its IPv4 address). Envoy refuses a PROXY header naming anything else
 * (proxy_protocol.cc isUnicastAddress; proxy_protocol_test.cc InvalidSrcAddress,
 * InvalidDstAddress). It matters beyond form: 0.0.0.0 and :: are "world" to the
 * policy but a connect() to them reaches this host's own loopback.
 */
export function isUnicastIP(a: string): boolean {
  const n = normalizeIP(a);
  if (n === undefined) return false;
  if (n.includes('.')) {
    const first = Number(n.slice(0, n.indexOf('.')));
    return n !== '0.0.0.0' && n !== '255.255.255.255' && (first < 224 || first > 239);
  }
  // 32 hex digits.
  return !/^0+$/.test(n) && !n.startsWith('ff');
}

function unicastOrFail(a: ProxyAddress, what: string): ProxyAddress {
  if (!isUnicastIP(a.address)) throw fail(`PROXY: ${what} ${a.address} is not a unicast address`);
  return a;
}

/** Result of feeding bytes: a header, or how many bytes are still needed at least. */
export type ParseResult = { readonly header: ProxyHeader } | { readonly needMore: true };

/**
 * Parse a PROXY header at the start of `buf`. Returns `{needMore}` when `buf` is a
 * valid but incomplete prefix; throws WardenError L7W_ERR_PROXY_PROTOCOL as soon as
 * the bytes cannot be a valid header.
 */
export function parseProxyHeader(buf: Buffer, maxV2Bytes = DEFAULT_V2_MAX_BYTES): ParseResult {
  if (buf.length === 0) return { needMore: true };
  if (buf[0] === 0x0d) {
    const n = Math.min(buf.length, V2_SIGNATURE.length);
    if (!buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) throw fail('bad PROXY v2 signature');
    return parseV2(buf, maxV2Bytes);
  }
  if (buf[0] === 0x50) {
    const n = Math.min(buf.length, V1_PREFIX.length);
    if (!buf.subarray(0, n).equals(V1_PREFIX.subarray(0, n))) throw fail('bad PROXY v1 prefix');
    return parseV1(buf);
  }
  throw fail('connection does not start with a PROXY protocol header');
}

const PORT_RE = /^(0|[1-9][0-9]{0,4})$/;

function parsePort(s: string): number {
  if (!PORT_RE.test(s)) throw fail(`PROXY v1: bad port ${JSON.stringify(s)}`);
  const n = Number(s);
  if (n > 65535) throw fail(`PROXY v1: port out of range ${s}`);
  return n;
}

function parseV1(buf: Buffer): ParseResult {
  const limit = Math.min(buf.length, V1_MAX_BYTES);
  let lf = -1;
  for (let i = 0; i < limit; i++) {
    const c = buf[i]!;
    if (c === 0x0a) { lf = i; break; }
    // Printable ASCII only (and the CR of CRLF): no NUL, no tabs, no UTF-8.
    if ((c < 0x20 || c > 0x7e) && c !== 0x0d) throw fail('PROXY v1: invalid byte in header');
  }
  if (lf < 0) {
    if (buf.length >= V1_MAX_BYTES) throw fail(`PROXY v1: no CRLF within ${V1_MAX_BYTES} bytes`);
    return { needMore: true };
  }
  if (lf === 0 || buf[lf - 1] !== 0x0d) throw fail('PROXY v1: line must end with CRLF');
  const line = buf.toString('latin1', 0, lf - 1);
  if (line.indexOf('\r') >= 0) throw fail('PROXY v1: stray CR');
  const rest = buf.subarray(lf + 1);
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') {
    // "the receiver must ignore anything presented before the CRLF is found"
    return { header: { version: 1, command: 'PROXY', tlvs: [], rest } };
  }
  if (parts.length !== 6) throw fail('PROXY v1: expected "PROXY TCP4|TCP6 src dst sport dport"');
  const [, proto, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const valid = proto === 'TCP4' ? isIPv4 : proto === 'TCP6' ? isIPv6 : undefined;
  if (!valid) throw fail(`PROXY v1: unknown protocol ${JSON.stringify(proto)}`);
  for (const a of [src, dst]) {
    if (!valid(a) || a.includes('%')) throw fail(`PROXY v1: bad ${proto} address ${JSON.stringify(a)}`);
  }
  const norm = proto === 'TCP6' ? normalizeIPv6 : (a: string) => a;
  return {
    header: {
      version: 1,
      command: 'PROXY',
      source: unicastOrFail({ address: norm(src), port: parsePort(sport) }, 'source'),
      destination: unicastOrFail({ address: norm(dst), port: parsePort(dport) }, 'destination'),
      tlvs: [],
      rest,
    },
  };
}

/** Canonical (RFC 5952) text of an IPv6 address written in any valid form. */
function normalizeIPv6(a: string): string {
  // WHATWG URL serializes IPv6 hosts in RFC 5952 form (lowercase, longest zero run compressed).
  return new URL(`http://[${a}]/`).hostname.slice(1, -1);
}

function ipv6FromBytes(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return normalizeIPv6(groups.join(':'));
}

// Family (high nibble): 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX; transport: 0 UNSPEC, 1 STREAM, 2 DGRAM.
const FAM_INET = 1, FAM_INET6 = 2, FAM_UNIX = 3;
const TRANS_STREAM = 1, TRANS_DGRAM = 2;

function parseV2(buf: Buffer, maxV2Bytes: number): ParseResult {
  if (buf.length < 16) return { needMore: true };
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) throw fail(`PROXY v2: unsupported version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) throw fail(`PROXY v2: unknown command ${cmd}`);
  const famByte = buf[13]!;
  const family = famByte >> 4;
  const transport = famByte & 0x0f;
  if (family > FAM_UNIX || transport > TRANS_DGRAM) throw fail(`PROXY v2: unknown family/transport 0x${famByte.toString(16)}`);
  const len = buf.readUInt16BE(14);
  const total = 16 + len;
  if (total > maxV2Bytes) throw fail(`PROXY v2: header of ${total} bytes exceeds the ${maxV2Bytes}-byte limit`);
  if (buf.length < total) return { needMore: true };
  const body = buf.subarray(16, total);
  const rest = buf.subarray(total);

  let addrLen = 0;
  let source: ProxyAddress | undefined;
  let destination: ProxyAddress | undefined;
  if (cmd === 1) {
    if (transport === TRANS_DGRAM) throw fail('PROXY v2: DGRAM transport on a stream listener');
    if ((family === FAM_INET || family === FAM_INET6) && transport !== TRANS_STREAM) {
      throw fail('PROXY v2: INET/INET6 needs the STREAM transport');
    }
    addrLen = family === FAM_INET ? 12 : family === FAM_INET6 ? 36 : family === FAM_UNIX ? 216 : 0;
    if (len < addrLen) throw fail(`PROXY v2: length ${len} shorter than the ${addrLen}-byte address block`);
    if (family === FAM_INET) {
      source = { address: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8) };
      destination = { address: [...body.subarray(4, 8)].join('.'), port: body.readUInt16BE(10) };
    } else if (family === FAM_INET6) {
      source = { address: ipv6FromBytes(body.subarray(0, 16)), port: body.readUInt16BE(32) };
      destination = { address: ipv6FromBytes(body.subarray(16, 32)), port: body.readUInt16BE(34) };
    }
    // UNSPEC / UNIX: no IP addresses to report; the caller uses the socket's.
    if (source) unicastOrFail(source, 'source');
    if (destination) unicastOrFail(destination, 'destination');
  } else {
    // LOCAL: "the receiver must accept this connection as valid and must use the real
    // connection endpoints and discard the protocol block including the family".
    // The declared length is still honoured so the bytes after it are not mis-read.
    addrLen = len;
  }

  const tlvs: ProxyTLV[] = [];
  let off = addrLen;
  // Bounded: each iteration consumes at least 3 bytes of at most 65535.
  while (off < len) {
    if (len - off < 3) throw fail('PROXY v2: truncated TLV header');
    const type = body[off]!;
    const vlen = body.readUInt16BE(off + 1);
    if (off + 3 + vlen > len) throw fail(`PROXY v2: TLV 0x${type.toString(16)} overruns the header`);
    tlvs.push({ type, value: body.subarray(off + 3, off + 3 + vlen) });
    off += 3 + vlen;
  }
  return {
    header: {
      version: 2,
      command: cmd === 1 ? 'PROXY' : 'LOCAL',
      ...(source ? { source } : {}),
      ...(destination ? { destination } : {}),
      tlvs,
      rest,
    },
  };
}

export interface ReadProxyHeaderOptions {
  /** Deadline for the whole header (from the call). */
  readonly timeoutMs: number;
  readonly maxV2Bytes?: number;
}

/**
 * Read a PROXY header off a freshly accepted socket, within a deadline. On success
 * the socket is paused with our listeners removed; `rest` holds any bytes read past
 * the header. Rejects with WardenError L7W_ERR_PROXY_PROTOCOL on a malformed,
 * oversized or missing header, a timeout, or the peer closing first; the caller
 * destroys the socket. Attach your own 'error' handler before calling: ours is
 * removed when this settles.
 */
export function readProxyHeader(socket: Socket, opts: ReadProxyHeaderOptions): Promise<ProxyHeader> {
  const maxV2 = opts.maxV2Bytes ?? DEFAULT_V2_MAX_BYTES;
  return new Promise<ProxyHeader>((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (err: WardenError | undefined, header?: ProxyHeader): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      socket.pause();
      if (err) reject(err);
      else resolve(header!);
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      try {
        const r = parseProxyHeader(buf, maxV2);
        if ('header' in r) finish(undefined, r.header);
        // Defence in depth: parseProxyHeader already bounds both versions.
        else if (buf.length > Math.max(maxV2, V1_MAX_BYTES)) finish(fail('PROXY header too long'));
      } catch (err) {
        finish(err instanceof WardenError ? err : fail(String(err)));
      }
    };
    const onEnd = (): void => finish(fail('connection closed before the PROXY header was complete'));
    const onError = (err: Error): void => finish(new WardenError('L7W_ERR_PROXY_PROTOCOL', `socket error while reading the PROXY header: ${err.message}`, { cause: err }));
    const timer = setTimeout(() => finish(fail(`no complete PROXY header within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    if (socket.destroyed) onEnd();
  });
}
