/**
 * DNS wire codec for the proxy: a strict layer that decides what is a query, what is
 * a valid answer, and builds the few messages the proxy writes itself.
 *
 * dns-packet 5.6.1 (SECURITY.md §4.2) accepts QDCOUNT 0/2, labels containing dots or
 * NUL, RDLENGTH that disagrees with the record type and trailing garbage, so the
 * checks that decide security are done here on the wire bytes:
 *  - queries: QR=0, opcode QUERY (else NOTIMP), exactly one question, no answer or
 *    authority records, at most one additional record and only OPT, no compression
 *    in the question, labels only `[A-Za-z0-9_-]`, name ≤ 255 bytes, class IN, no
 *    trailing bytes (else FORMERR); shorter than a header or QR=1 ⇒ dropped;
 *  - responses: every name is followed with strictly backward pointers (no loops),
 *    ≤ 255 bytes; every record lies inside the packet; A has RDLENGTH 4, AAAA 16,
 *    CNAME's target ends exactly at its RDLENGTH; A/AAAA/CNAME owners must follow the
 *    CNAME chain from the question name; no trailing bytes.
 * Nothing here throws on input: every function returns a result or a rejection.
 * dns-packet is used for what it is good at — type/rcode names and, through
 * `decodeLoose`, a safe wrapper for diagnostics and tests.
 */
import { createRequire } from 'node:module';
import dnsPacket from 'dns-packet';

const require = createRequire(import.meta.url);
const dnsTypes = require('dns-packet/types.js') as { toString(t: number): string };
const dnsRcodes = require('dns-packet/rcodes.js') as { toString(r: number): string };

export const RCODE = Object.freeze({
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
});

export const TYPE_A = 1;
export const TYPE_CNAME = 5;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;
export const CLASS_IN = 1;

const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_CD = 0x0010;
const HEADER = 12;
const MAX_NAME_WIRE = 255;
/** CNAME records followed from the question name before a response is rejected. */
export const MAX_CNAME_CHAIN = 16;
/** EDNS option code of Client Subnet (RFC 7871): stripped before forwarding. */
const EDNS_CLIENT_SUBNET = 8;

const typeNames = new Map<number, string>();
/** `A`, `AAAA`, …; `TYPE123` for types dns-packet does not name. */
export function typeName(t: number): string {
  let s = typeNames.get(t);
  if (s === undefined) {
    const n = dnsTypes.toString(t);
    s = n.startsWith('UNKNOWN') ? `TYPE${t}` : n;
    if (typeNames.size < 1024) typeNames.set(t, s);
  }
  return s;
}

/** `NOERROR`, `REFUSED`, … */
export function rcodeName(r: number): string {
  return dnsRcodes.toString(r);
}

/** An OPT record of a query, kept to be re-encoded (minus Client Subnet). */
export interface Edns {
  readonly udpSize: number;
  /** TTL field of the OPT record: extended rcode, version, DO and Z flags. */
  readonly ttl: number;
  /** Options in wire form, Client Subnet removed. */
  readonly options: Buffer;
}

export interface Query {
  readonly id: number;
  /** The header flags word as the client sent it. */
  readonly flags: number;
  /** The question exactly as the client sent it (name + type + class). */
  readonly question: Buffer;
  /** Name as the client wrote it (case kept), with the trailing dot. */
  readonly name: string;
  /** Lowercase FQDN with trailing dot: what policy and the FQDN cache see. */
  readonly qname: string;
  readonly qtype: number;
  readonly qclass: number;
  readonly edns?: Edns;
  /** Largest UDP answer the client accepts: 512 without EDNS, else max(512, its size). */
  readonly udpSize: number;
}

export type QueryParse =
  | { readonly ok: true; readonly query: Query }
  /** `reply` is the error answer to send; absent: drop silently. */
  | { readonly ok: false; readonly reason: string; readonly reply?: Buffer };

function allowedQueryByte(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2d || // -
    c === 0x5f // _
  );
}

/** A header-only (or header + question) reply to a message we could not use. */
function errorReply(buf: Buffer, rcode: number, question?: Buffer): Buffer {
  const qlen = question ? question.length : 0;
  const out = Buffer.allocUnsafe(HEADER + qlen);
  out[0] = buf[0] ?? 0;
  out[1] = buf[1] ?? 0;
  const f = buf.length >= 4 ? buf.readUInt16BE(2) : 0;
  // QR, the client's opcode, RD and CD; everything else zero.
  out.writeUInt16BE(FLAG_QR | (f & 0x7800) | (f & FLAG_RD) | (f & FLAG_CD) | (rcode & 0xf), 2);
  out.writeUInt16BE(question ? 1 : 0, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(0, 10);
  if (question) question.copy(out, HEADER);
  return out;
}

function reject(buf: Buffer, reason: string, rcode: number, question?: Buffer): QueryParse {
  return { ok: false, reason, reply: errorReply(buf, rcode, question) };
}

/** The dotted question name is assembled here (≤ 255 wire bytes ⇒ ≤ 254 text bytes). */
const NAME_SCRATCH = Buffer.alloc(256) as Buffer & { latin1Slice(start: number, end: number): string };

/** Parse and validate a client query (see the module comment for the rules). */
export function parseQuery(buf: Buffer): QueryParse {
  if (buf.length < HEADER) return { ok: false, reason: 'shorter than a DNS header' };
  const flags = buf.readUInt16BE(2);
  if (flags & FLAG_QR) return { ok: false, reason: 'QR=1 (not a query)' };
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return reject(buf, `opcode ${opcode} not supported`, RCODE.NOTIMP);
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  if (qd !== 1) return reject(buf, `QDCOUNT ${qd}`, RCODE.FORMERR);
  if (an !== 0 || ns !== 0) return reject(buf, 'answer/authority records in a query', RCODE.FORMERR);
  if (ar > 1) return reject(buf, `ARCOUNT ${ar}`, RCODE.FORMERR);

  // Question name: plain labels only (a pointer could only point into the header).
  let pos = HEADER;
  let n = 0; // bytes of the dotted name in NAME_SCRATCH
  let upper = false;
  for (;;) {
    if (pos >= buf.length) return reject(buf, 'truncated question', RCODE.FORMERR);
    const len = buf[pos]!;
    if (len === 0) {
      pos += 1;
      break;
    }
    if (len > 63) return reject(buf, 'compressed or extended label in the question', RCODE.FORMERR);
    const start = pos + 1;
    const end = start + len;
    if (end > buf.length) return reject(buf, 'truncated label', RCODE.FORMERR);
    if (end - HEADER + 1 > MAX_NAME_WIRE) return reject(buf, 'name longer than 255 bytes', RCODE.FORMERR);
    for (let i = start; i < end; i++) {
      const c = buf[i]!;
      if (!allowedQueryByte(c)) return reject(buf, 'label byte outside [A-Za-z0-9_-]', RCODE.FORMERR);
      if (c <= 0x5a && c >= 0x41) upper = true;
      NAME_SCRATCH[n++] = c;
    }
    NAME_SCRATCH[n++] = 0x2e;
    pos = end;
  }
  // One string for the whole name (a toString per label cost more than the rest of the parse).
  const name = n === 0 ? '.' : NAME_SCRATCH.latin1Slice(0, n);
  if (pos + 4 > buf.length) return reject(buf, 'truncated question', RCODE.FORMERR);
  const qtype = buf.readUInt16BE(pos);
  const qclass = buf.readUInt16BE(pos + 2);
  pos += 4;
  const question = buf.subarray(HEADER, pos);

  let edns: Edns | undefined;
  if (ar === 1) {
    // Only an OPT record owned by the root.
    if (pos + 11 > buf.length) return reject(buf, 'truncated additional record', RCODE.FORMERR, question);
    if (buf[pos] !== 0 || buf.readUInt16BE(pos + 1) !== TYPE_OPT) {
      return reject(buf, 'additional record other than OPT', RCODE.FORMERR, question);
    }
    const udpSize = buf.readUInt16BE(pos + 3);
    const ttl = buf.readUInt32BE(pos + 5);
    const rdlen = buf.readUInt16BE(pos + 9);
    const rdStart = pos + 11;
    const rdEnd = rdStart + rdlen;
    if (rdEnd > buf.length) return reject(buf, 'OPT RDLENGTH beyond the packet', RCODE.FORMERR, question);
    // Walk the options; drop Client Subnet.
    let o = rdStart;
    let keep: Buffer[] | undefined;
    let last = rdStart;
    while (o < rdEnd) {
      if (o + 4 > rdEnd) return reject(buf, 'truncated EDNS option', RCODE.FORMERR, question);
      const code = buf.readUInt16BE(o);
      const olen = buf.readUInt16BE(o + 2);
      const oend = o + 4 + olen;
      if (oend > rdEnd) return reject(buf, 'EDNS option beyond OPT data', RCODE.FORMERR, question);
      if (code === EDNS_CLIENT_SUBNET) {
        keep ??= [];
        if (o > last) keep.push(buf.subarray(last, o));
        last = oend;
      }
      o = oend;
    }
    let options = buf.subarray(rdStart, rdEnd);
    if (keep) {
      if (rdEnd > last) keep.push(buf.subarray(last, rdEnd));
      options = Buffer.concat(keep);
    }
    edns = { udpSize, ttl, options };
    pos = rdEnd;
  }
  if (pos !== buf.length) return reject(buf, 'trailing bytes after the message', RCODE.FORMERR, question);
  if (qclass !== CLASS_IN) return reject(buf, `class ${qclass} not served`, RCODE.REFUSED, question);

  const qname = upper ? name.toLowerCase() : name;
  const udpSize = edns ? Math.max(512, edns.udpSize) : 512;
  const query: Query = edns
    ? { id: buf.readUInt16BE(0), flags, question, name, qname, qtype, qclass, edns, udpSize }
    : { id: buf.readUInt16BE(0), flags, question, name, qname, qtype, qclass, udpSize };
  return { ok: true, query };
}

/**
 * The message sent upstream: re-encoded from the validated parts with our own ID —
 * header (opcode QUERY, the client's RD/AD/CD), the question as the client wrote it,
 * and its OPT record without Client Subnet.
 */
export function encodeForward(q: Query, id: number): Buffer {
  const e = q.edns;
  const len = HEADER + q.question.length + (e ? 11 + e.options.length : 0);
  const out = Buffer.allocUnsafe(len);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(q.flags & (FLAG_RD | 0x0020 | FLAG_CD), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(e ? 1 : 0, 10);
  q.question.copy(out, HEADER);
  if (e) {
    let p = HEADER + q.question.length;
    out[p] = 0;
    out.writeUInt16BE(TYPE_OPT, p + 1);
    out.writeUInt16BE(e.udpSize, p + 3);
    out.writeUInt32BE(e.ttl, p + 5);
    out.writeUInt16BE(e.options.length, p + 9);
    p += 11;
    e.options.copy(out, p);
  }
  return out;
}

/** An answer the proxy writes itself (REFUSED, NXDOMAIN, SERVFAIL): the client's ID and question. */
export function encodeReply(q: Query, rcode: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER + q.question.length);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(FLAG_QR | (q.flags & (FLAG_RD | FLAG_CD)) | (rcode & 0xf), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(0, 10);
  q.question.copy(out, HEADER);
  return out;
}

/** Header + question with TC set, for an answer too large for the client's UDP size. */
export function encodeTruncated(q: Query, upstreamFlags: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER + q.question.length);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE((upstreamFlags | FLAG_QR | FLAG_TC) & 0xffff, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(0, 10);
  q.question.copy(out, HEADER);
  return out;
}

/**
 * Are the bytes after the header our question (name equal ASCII case-insensitively,
 * type and class exact)? Bounds-checked.
 */
function sameQuestion(buf: Buffer, q: Query): boolean {
  const qb = q.question;
  if (buf.length < HEADER + qb.length) return false;
  for (let i = 0; i < qb.length; i++) {
    let a = buf[HEADER + i]!;
    let b = qb[i]!;
    if (a === b) continue;
    // Name bytes may differ in ASCII case only (the name ends 4 bytes before the end).
    if (i >= qb.length - 4) return false;
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (a !== b || a < 0x61 || a > 0x7a) return false;
  }
  return true;
}

/**
 * Does this upstream message answer our query? QR=1, our upstream ID, exactly one
 * question equal (ASCII case-insensitively) to the one we sent, same type and class.
 * Anything else is ignored as spoofed or stray.
 */
export function matchesQuery(buf: Buffer, id: number, q: Query): boolean {
  if (buf.length < HEADER + q.question.length) return false;
  if (buf.readUInt16BE(0) !== id) return false;
  if ((buf[2]! & 0x80) === 0) return false;
  if (buf.readUInt16BE(4) !== 1) return false;
  return sameQuestion(buf, q);
}

/** What a validated response says, for the cache and the flow record. */
export interface ResponseInfo {
  readonly rcode: number;
  readonly tc: boolean;
  /** A/AAAA addresses on the CNAME chain from the question name. */
  readonly ips: string[];
  /** CNAME targets on the chain, in order. */
  readonly cnames: string[];
  /** Minimum TTL over the chain's A/AAAA/CNAME records (0 if none). */
  readonly ttl: number;
  /** Types of the answer records, in order, without repeats. */
  readonly rrtypes: string[];
}

export type ResponseParse =
  | { readonly ok: true; readonly info: ResponseInfo }
  | { readonly ok: false; readonly reason: string };

// Name reader: sets `nameOut` and returns the offset after the name in place, or -1.
let nameOut = '';

function escapeLabel(buf: Buffer, start: number, end: number): string {
  let plain = true;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    if (!allowedQueryByte(c)) {
      plain = false;
      break;
    }
  }
  if (plain) return buf.toString('latin1', start, end).toLowerCase();
  let s = '';
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    if (allowedQueryByte(c)) s += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c | 0x20 : c);
    else s += '\\' + String(c).padStart(3, '0');
  }
  return s;
}

/**
 * Names expanded into strings by the response parser, since start. Tests read it to
 * check that crafted answers cost a bounded number of expansions (instead of timing
 * the parse, which a loaded machine makes flaky); one increment per expanded name.
 */
export const codecCounters = { namesExpanded: 0 };

/**
 * Read a possibly compressed name at `off`: the offset after it, or -1, with the name in
 * `nameOut`. The checks are skipName's (the one place that validates a name on the
 * wire): every pointer points strictly before the start of the segment being read (so
 * pointers only go backward and cannot loop) and not into the header; the expanded
 * name is at most 255 bytes. The result is lowercase with the trailing dot; label bytes
 * outside `[a-z0-9_-]` are written as `\DDD`, so a label containing a dot can never
 * equal a two-label name.
 */
function readName(buf: Buffer, off: number): number {
  codecCounters.namesExpanded++;
  const after = skipName(buf, off);
  if (after < 0) return -1;
  // Validated above: labels lie inside the packet and pointers only go backward.
  let pos = off;
  let name = '';
  for (let len = buf[pos]!; len !== 0; len = buf[pos]!) {
    if ((len & 0xc0) === 0xc0) {
      pos = ((len & 0x3f) << 8) | buf[pos + 1]!;
      continue;
    }
    name += escapeLabel(buf, pos + 1, pos + 1 + len) + '.';
    pos += 1 + len;
  }
  nameOut = name === '' ? '.' : name;
  return after;
}

/**
 * What is known of the name starting at an offset of the message being parsed, once a
 * walk through it succeeded: its wire length and the loop steps from it to its root
 * (valid while `memoGen[offset] === memoGeneration`; parseResponse starts a new
 * generation per message). A name reached again through a pointer is then not walked
 * again: thousands of owners pointing at one 240-byte name cost ~25 ms per 64 KB
 * answer when each walked it. The steps are kept so the 256-step bound is the same
 * as a full walk's.
 */
const memoWire = new Uint16Array(65536);
const memoSteps = new Uint16Array(65536);
const memoGen = new Uint32Array(65536);
let memoGeneration = 0;
/** Pointer targets of the walk in progress, with the step and wire length on arrival. */
const hopAt = new Int32Array(256);
const hopStep = new Int32Array(256);
const hopWire = new Int32Array(256);

function newMemoGeneration(): void {
  if (++memoGeneration === 0xffffffff) {
    memoGen.fill(0);
    memoGeneration = 1;
  }
}

/** Remember the walk's pointer targets, given the step of its root and its wire length. */
function remember(hops: number, rootStep: number, wire: number): void {
  for (let i = 0; i < hops; i++) {
    const at = hopAt[i]!;
    memoGen[at] = memoGeneration;
    memoSteps[at] = rootStep - hopStep[i]!;
    memoWire[at] = wire - hopWire[i]! + 1;
  }
}

/**
 * Validate a possibly compressed name without building it: the offset after the
 * name, or -1 (the checks readName relies on). Used alone for names whose text is never
 * used (every owner, authority and additional records, CNAME data off the chain):
 * expanding each into a string let one 64 KB upstream message of pointers to long
 * names cost ~100 ms of the event loop.
 */
function skipName(buf: Buffer, off: number): number {
  let pos = off;
  let segStart = off;
  let after = -1;
  let wire = 1;
  let hops = 0;
  for (let steps = 0; steps < 256; steps++) {
    if (pos >= buf.length) return -1;
    const len = buf[pos]!;
    if (len === 0) {
      remember(hops, steps, wire);
      return after < 0 ? pos + 1 : after;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) return -1;
      const ptr = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (after < 0) after = pos + 2;
      if (ptr < HEADER || ptr >= segStart) return -1;
      if (memoGen[ptr] === memoGeneration) {
        // Walked before in this message: where a full walk would end, and how long.
        const rootStep = steps + 1 + memoSteps[ptr]!;
        const total = wire - 1 + memoWire[ptr]!;
        if (rootStep >= 256 || total > MAX_NAME_WIRE) return -1;
        remember(hops, rootStep, total);
        return after;
      }
      hopAt[hops] = ptr;
      hopStep[hops] = steps + 1;
      hopWire[hops] = wire;
      hops++;
      segStart = ptr;
      pos = ptr;
      continue;
    }
    if (kind !== 0) return -1;
    pos += 1 + len;
    wire += len + 1;
    if (wire > MAX_NAME_WIRE || pos > buf.length) return -1;
  }
  return -1;
}

/**
 * Are the names at `a` and `b` (both already validated by skipName/readName, so
 * pointers only go backward) equal, ASCII case-insensitively — the equality of
 * readName's strings, compared on the wire without allocating.
 */
function sameNameAt(buf: Buffer, a: number, b: number): boolean {
  for (let steps = 0; steps < 256; steps++) {
    while ((buf[a]! & 0xc0) === 0xc0) a = ((buf[a]! & 0x3f) << 8) | buf[a + 1]!;
    while ((buf[b]! & 0xc0) === 0xc0) b = ((buf[b]! & 0x3f) << 8) | buf[b + 1]!;
    if (a === b) return true;
    const len = buf[a]!;
    if (len !== buf[b]!) return false;
    if (len === 0) return true;
    for (let i = 1; i <= len; i++) {
      let x = buf[a + i]!;
      let y = buf[b + i]!;
      if (x === y) continue;
      if (x >= 0x41 && x <= 0x5a) x |= 0x20;
      if (y >= 0x41 && y <= 0x5a) y |= 0x20;
      if (x !== y) return false;
    }
    a += len + 1;
    b += len + 1;
  }
  return false;
}

/** Distinct answer types kept for the flow record (a message could carry thousands). */
const MAX_RRTYPES = 16;

function formatIPv6(buf: Buffer, off: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(off + i * 2));
  // RFC 5952: the longest run (≥ 2) of zero groups becomes "::", the first one on ties.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number, b: number) => g.slice(a, b).map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

/**
 * Validate a whole response (already matched with `matchesQuery`) and extract what
 * the FQDN cache may learn. A response that fails any check is rejected as a whole.
 */
export function parseResponse(buf: Buffer, q: Query): ResponseParse {
  if (buf.length < HEADER) return { ok: false, reason: 'short' };
  newMemoGeneration();
  const flags = buf.readUInt16BE(2);
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  let pos = HEADER;
  // Fast path: one question, byte-equal to ours but for the case of letters (what
  // matchesQuery accepts). Its name then reads as q.qname: it is our validated,
  // pointer-free question, and readName lowercases — no string is built for it.
  const known = qd === 1 && sameQuestion(buf, q);
  if (known) pos = HEADER + q.question.length;
  else {
    for (let i = 0; i < qd; i++) {
      pos = readName(buf, pos);
      if (pos < 0 || pos + 4 > buf.length) return { ok: false, reason: 'bad question' };
      pos += 4;
    }
  }
  // The current end of the CNAME chain, as the offset of its name in the message
  // (compared on the wire), or -1 while it is our question name but the message's
  // question is not ours (compared as text).
  let tailOff = known ? HEADER : -1;
  const ips: string[] = [];
  const cnames: string[] = [];
  const rrtypes: string[] = [];
  let ttl = -1;
  const total = an + ns + ar;
  for (let i = 0; i < total; i++) {
    const ownerOff = pos;
    pos = skipName(buf, pos);
    if (pos < 0) return { ok: false, reason: 'bad owner name' };
    if (pos + 10 > buf.length) return { ok: false, reason: 'truncated record header' };
    const type = buf.readUInt16BE(pos);
    const rawTtl = buf.readUInt32BE(pos + 4);
    const rttl = rawTtl > 0x7fffffff ? 0 : rawTtl; // RFC 2181 §8: a TTL with the top bit set is 0
    const rdlen = buf.readUInt16BE(pos + 8);
    const rd = pos + 10;
    const end = rd + rdlen;
    if (end > buf.length) return { ok: false, reason: 'RDLENGTH beyond the packet' };
    if (type === TYPE_A && rdlen !== 4) return { ok: false, reason: `A with RDLENGTH ${rdlen}` };
    if (type === TYPE_AAAA && rdlen !== 16) return { ok: false, reason: `AAAA with RDLENGTH ${rdlen}` };
    if (type === TYPE_CNAME && (rdlen === 0 || skipName(buf, rd) !== end)) {
      return { ok: false, reason: 'CNAME target does not fill its RDLENGTH' };
    }
    if (i < an) {
      if (rrtypes.length < MAX_RRTYPES) {
        const tn = typeName(type);
        if (!rrtypes.includes(tn)) rrtypes.push(tn);
      }
      if (type === TYPE_A || type === TYPE_AAAA || type === TYPE_CNAME) {
        const onChain = tailOff >= 0 ? sameNameAt(buf, ownerOff, tailOff) : readName(buf, ownerOff) >= 0 && nameOut === q.qname;
        if (!onChain) {
          readName(buf, ownerOff);
          return { ok: false, reason: `answer ${nameOut} is not on the CNAME chain from ${q.qname}` };
        }
        if (ttl < 0 || rttl < ttl) ttl = rttl;
        if (type === TYPE_CNAME) {
          // At most MAX_CNAME_CHAIN + 1 targets are read as text: each must be on the chain.
          readName(buf, rd);
          const target = nameOut;
          if (cnames.length >= MAX_CNAME_CHAIN) return { ok: false, reason: 'CNAME chain too long' };
          if (target === q.qname || cnames.includes(target)) return { ok: false, reason: 'CNAME loop' };
          cnames.push(target);
          tailOff = rd;
        } else if (type === TYPE_A) {
          ips.push(`${buf[rd]}.${buf[rd + 1]}.${buf[rd + 2]}.${buf[rd + 3]}`);
        } else {
          ips.push(formatIPv6(buf, rd));
        }
      }
    }
    pos = end;
  }
  if (pos !== buf.length) return { ok: false, reason: 'trailing bytes after the message' };
  return {
    ok: true,
    info: { rcode: flags & 0xf, tc: (flags & FLAG_TC) !== 0, ips, cnames, ttl: ttl < 0 ? 0 : ttl, rrtypes },
  };
}

/** Write the client's ID and exact question bytes into an upstream answer (in place). */
export function restoreClientView(buf: Buffer, q: Query): Buffer {
  buf.writeUInt16BE(q.id, 0);
  q.question.copy(buf, HEADER);
  return buf;
}

/** The rcode of a message the proxy relays (header only). */
export function headerRcode(buf: Buffer): number {
  return buf.length >= 4 ? buf[3]! & 0xf : RCODE.SERVFAIL;
}

/** dns-packet's decoder, wrapped: a decoded packet or undefined, never a throw. */
export function decodeLoose(buf: Buffer): dnsPacket.Packet | undefined {
  try {
    return dnsPacket.decode(buf);
  } catch {
    return undefined;
  }
}
