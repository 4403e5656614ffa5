/**
 * The SNI of a TLS ClientHello, read without terminating TLS (as Envoy's TLS
 * inspector does for Cilium's `serverNames` on a tunnel that is not intercepted).
 *
 * Only the first TLS record is read: a ClientHello that does not fit in it (or any
 * malformed length) yields no name, and a rule with serverNames then does not match
 * (fail closed). Every length is checked against what is left; nothing is trusted.
 */
import type { Duplex } from 'node:stream';

/** The largest first record: 5-byte header + 2^14 bytes of payload (RFC 8446 §5.1). */
export const MAX_RECORD = 5 + 16384;

export type ClientHelloResult =
  | { readonly kind: 'sni'; readonly name: string }
  /** A complete ClientHello without a (valid) host_name. */
  | { readonly kind: 'none' }
  /** Not a TLS handshake record, or lengths that do not add up. */
  | { readonly kind: 'invalid' }
  /** More bytes are needed. */
  | { readonly kind: 'partial' };

/**
 * Parse the start of a client's byte stream. `partial` until the whole first record
 * has arrived.
 */
export function parseClientHello(b: Buffer): ClientHelloResult {
  if (b.length < 5) return b.length > 0 && b[0] !== 0x16 ? { kind: 'invalid' } : { kind: 'partial' };
  // TLSPlaintext: content type handshake (22), legacy version 3.x, length.
  if (b[0] !== 0x16 || b[1] !== 0x03) return { kind: 'invalid' };
  const recLen = b.readUInt16BE(3);
  if (recLen < 4 || recLen > 16384) return { kind: 'invalid' };
  if (b.length < 5 + recLen) return { kind: 'partial' };
  const end = 5 + recLen;
  let p = 5;
  // Handshake: type client_hello (1), uint24 length (must fit in this record).
  if (b[p] !== 0x01) return { kind: 'invalid' };
  const hsLen = (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!;
  p += 4;
  if (p + hsLen > end) return { kind: 'invalid' };
  const hsEnd = p + hsLen;
  // The structure BoringSSL's ssl_client_hello_init (behind Envoy's TLS inspector)
  // accepts, no looser: a hello it refuses has no SNI in Cilium, and one read in two
  // ways (a second server_name after the extensions block) must not pass here.
  // legacy_version: TLS 1.0 to 1.3 (Envoy 1.39 tls_inspector_enforce_client_tls_version).
  if (hsLen < 34) return { kind: 'invalid' };
  const version = b.readUInt16BE(p);
  if (version < 0x0301 || version > 0x0304) return { kind: 'invalid' };
  p += 34; // legacy_version (2) + random (32)
  if (p + 1 > hsEnd || b[p]! > 32) return { kind: 'invalid' };
  p += 1 + b[p]!; // legacy_session_id, at most 32 bytes
  if (p + 2 > hsEnd) return { kind: 'invalid' };
  const suites = b.readUInt16BE(p);
  if (suites < 2 || suites % 2 !== 0) return { kind: 'invalid' };
  p += 2 + suites; // cipher_suites
  if (p + 1 > hsEnd || b[p] === 0) return { kind: 'invalid' };
  p += 1 + b[p]!; // legacy_compression_methods, at least one
  if (p === hsEnd) return { kind: 'none' }; // no extensions
  if (p + 2 > hsEnd) return { kind: 'invalid' };
  const extEnd = p + 2 + b.readUInt16BE(p);
  p += 2;
  // The extensions block ends the ClientHello: nothing after it.
  if (extEnd !== hsEnd) return { kind: 'invalid' };
  let found: string | undefined;
  const seen = new Set<number>();
  while (p < extEnd) {
    if (p + 4 > extEnd) return { kind: 'invalid' };
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) return { kind: 'invalid' };
    // No extension type twice (RFC 8446 §4.2), whatever the type.
    if (seen.has(type)) return { kind: 'invalid' };
    seen.add(type);
    if (type === 0) {
      const name = serverName(b, p, p + len);
      if (name === null) return { kind: 'invalid' };
      found = name;
    }
    p += len;
  }
  return found ? { kind: 'sni', name: found } : { kind: 'none' };
}

/**
 * ServerNameList → the host_name, lowercased; null when malformed. As BoringSSL's
 * extract_sni: exactly one entry, of type host_name — an entry of another type, before
 * or after it, is refused rather than skipped (a server that takes the first entry
 * whatever its type would see another name).
 */
function serverName(b: Buffer, p: number, end: number): string | null {
  if (p + 2 > end) return null;
  const listEnd = p + 2 + b.readUInt16BE(p);
  p += 2;
  if (listEnd !== end || p + 3 > listEnd) return null;
  const type = b[p]!;
  const len = b.readUInt16BE(p + 1);
  p += 3;
  if (type !== 0 || p + len !== listEnd || len === 0 || len > 253) return null;
  // A DNS name in ASCII (RFC 6066 §3): letters, digits, '-', '.', '_' only.
  for (let i = p; i < p + len; i++) {
    const c = b[i]!;
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f;
    if (!ok) return null;
  }
  const host = b.toString('latin1', p, p + len).toLowerCase();
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

/**
 * Read a client's first TLS record from `socket` (after `head`, bytes already read),
 * bounded in time and size. Resolves with the parse and every byte read (to be sent
 * on first), or undefined when the client went away or the time ran out.
 */
export function readClientHello(socket: Duplex, head: Buffer, timeoutMs: number): Promise<{ result: ClientHelloResult; bytes: Buffer } | undefined> {
  return new Promise((resolve) => {
    // Chunks are kept apart and joined only once the record header says the record
    // could be complete: a ClientHello trickled a byte per segment was re-joined on
    // every segment (~134 MB copied for a 16 KB record).
    let buf = head;
    const more: Buffer[] = [];
    let have = head.length;
    let done = false;
    const finish = (v: { result: ClientHelloResult; bytes: Buffer } | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('end', onClose);
      socket.pause();
      resolve(v);
    };
    const check = () => {
      if (more.length > 0) {
        more.unshift(buf);
        buf = Buffer.concat(more, have);
        more.length = 0;
      }
      const result = parseClientHello(buf);
      if (result.kind !== 'partial') finish({ result, bytes: buf });
      else if (buf.length >= MAX_RECORD) finish({ result: { kind: 'invalid' }, bytes: buf });
    };
    /** Bytes the first record needs (header included), once its header is in `buf`. */
    const needed = () => (buf.length >= 5 ? Math.min(5 + buf.readUInt16BE(3), MAX_RECORD) : 0);
    const onData = (d: Buffer) => {
      if (buf.length === 0) buf = d;
      else more.push(d);
      have += d.length;
      // Parse when nothing needs joining, the header is incomplete (≤ 5 bytes to join)
      // or the record may be complete; a partial record's parse stops at its header.
      if (more.length === 0 || buf.length < 5 || have >= needed()) check();
    };
    const onClose = () => finish(undefined);
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('end', onClose);
    check();
    if (!done) socket.resume();
  });
}
