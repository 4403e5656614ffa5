/**
 * IP → identity (Cilium's ipcache): longest-prefix match over pod IPs (/32, /128),
 * CIDR-identity prefixes and, later, FQDN-learned IPs; an unknown address is
 * `world` (cilium/policy_id.h). IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is looked up as
 * IPv4, since that is how Node reports IPv4 peers on dual-stack sockets.
 *
 * Design: an immutable *base* table built with each policy snapshot, plus a
 * mutable *overlay* (`upsert` / `remove`) that the DNS proxy fills with FQDN IPs.
 * The overlay is its own object so the policy store can hand the same overlay to
 * every new snapshot: learned IPs survive a policy reload. At equal prefix length
 * the overlay wins.
 *
 * Lookup cost: one Map hit for exact addresses; otherwise one Map probe per prefix
 * length present (at most 33 / 129), with numeric keys for IPv4 and a short hex
 * string key for IPv6. Nothing else is allocated per lookup.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { WardenError } from '../core/errors.js';
import type { Identity } from './identity.js';

/** Normalise an address for exact lookups: IPv4 dotted quad, IPv6 fully expanded lowercase hex. */
export function normalizeIP(ip: string): string | undefined {
  if (isIPv4(ip)) return ipv4Str(ipv4ToInt(ip));
  const zone = ip.indexOf('%');
  const bare = zone >= 0 ? ip.slice(0, zone) : ip;
  if (!isIPv6(bare)) return undefined;
  const hex = ipv6ToHex(bare);
  if (hex.startsWith('00000000000000000000ffff')) {
    return ipv4Str(parseInt(hex.slice(24), 16) >>> 0);
  }
  return hex;
}

/** A validated dotted quad as a 32-bit number (digits read in place: no split, no array). */
function ipv4ToInt(ip: string): number {
  let n = 0;
  let part = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      n = (n * 256 + part) >>> 0;
      part = 0;
    } else part = part * 10 + (c - 48);
  }
  return (n * 256 + part) >>> 0;
}

function ipv4Str(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** 32 lowercase hex digits for an IPv6 address (embedded IPv4 tail allowed). */
function ipv6ToHex(ip: string): string {
  let addr = ip.toLowerCase();
  const lastColon = addr.lastIndexOf(':');
  const tail = addr.slice(lastColon + 1);
  if (tail.includes('.')) {
    const n = ipv4ToInt(tail);
    addr = `${addr.slice(0, lastColon + 1)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const dbl = addr.indexOf('::');
  let groups: string[];
  if (dbl >= 0) {
    const head = addr.slice(0, dbl).split(':').filter((g) => g !== '');
    const rest = addr.slice(dbl + 2).split(':').filter((g) => g !== '');
    groups = [...head, ...Array<string>(8 - head.length - rest.length).fill('0'), ...rest];
  } else {
    groups = addr.split(':');
  }
  return groups.map((g) => g.padStart(4, '0')).join('');
}

const HEX = '0123456789abcdef';

/** RFC 5952 text of 32 hex digits: leading zeros dropped, the longest zero run as `::`. */
function hexToV6Text(hex: string): string {
  const groups: string[] = [];
  for (let i = 0; i < 32; i += 4) groups.push(parseInt(hex.slice(i, i + 4), 16).toString(16));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** The hex key of an IPv6 address masked to `len` bits (keeps only the significant nibbles). */
function v6Key(hex: string, len: number): string {
  const full = len >> 2;
  const rem = len & 3;
  if (rem === 0) return hex.slice(0, full);
  const nib = parseInt(hex[full] ?? '0', 16) & ((0xf << (4 - rem)) & 0xf);
  return hex.slice(0, full) + HEX[nib];
}

function v4Mask(n: number, len: number): number {
  return len === 0 ? 0 : (n & (~0 << (32 - len))) >>> 0;
}

export interface ParsedPrefix {
  readonly family: 4 | 6;
  readonly len: number;
  /** Canonical text, e.g. `10.0.0.0/8`, `2001:db8::/32` as given but with host bits cleared. */
  readonly key: number | string;
  readonly text: string;
}

/** Parse `a.b.c.d/len`, `x::/len`, or a bare address (full length). Throws WardenError on junk. */
export function parsePrefix(prefix: string): ParsedPrefix {
  const slash = prefix.indexOf('/');
  const addr = slash >= 0 ? prefix.slice(0, slash) : prefix;
  const norm = normalizeIP(addr);
  if (norm === undefined) throw new WardenError('L7W_ERR_IDENTITY', `not an IP prefix: ${JSON.stringify(prefix)}`);
  const v4 = !norm.includes(':') && norm.includes('.');
  const max = v4 ? 32 : 128;
  const lenText = slash >= 0 ? prefix.slice(slash + 1) : String(max);
  let len = /^\d{1,3}$/.test(lenText) ? Number(lenText) : NaN;
  if (!(len >= 0 && len <= max)) throw new WardenError('L7W_ERR_IDENTITY', `bad prefix length in ${JSON.stringify(prefix)}`);
  // An IPv4-mapped IPv6 prefix is an IPv4 prefix.
  if (v4 && !isIPv4(addr)) len = Math.max(0, len - 96);
  if (v4) {
    const n = v4Mask(ipv4ToInt(norm), len);
    return { family: 4, len, key: n, text: `${ipv4Str(n)}/${len}` };
  }
  const k = v6Key(norm, len);
  return { family: 6, len, key: k, text: `${hexToV6Text(k.padEnd(32, '0'))}/${len}` };
}

/** True when prefix `inner` lies inside prefix `outer` (same family, inner at least as long). */
export function prefixContains(outer: string, inner: string): boolean {
  const o = parsePrefix(outer);
  const i = parsePrefix(inner);
  if (o.family !== i.family || i.len < o.len) return false;
  if (o.family === 4) return v4Mask(i.key as number, o.len) === o.key;
  return (i.key as string).length >= (o.key as string).length && v6Key((i.key as string).padEnd(32, '0'), o.len) === o.key;
}

/** One table of prefixes: exact addresses plus per-length maps, per family. */
class PrefixTable {
  readonly exact = new Map<string, Identity>();
  readonly v4 = new Map<number, Map<number, Identity>>(); // len → masked addr → identity
  readonly v6 = new Map<number, Map<string, Identity>>(); // len → masked hex → identity
  v4Lens: number[] = [];
  v6Lens: number[] = [];
  readonly texts = new Map<string, Identity>(); // canonical prefix text → identity (for listing/removal)

  set(p: ParsedPrefix, ident: Identity): void {
    this.texts.set(p.text, ident);
    if ((p.family === 4 && p.len === 32) || (p.family === 6 && p.len === 128)) {
      this.exact.set(p.family === 4 ? ipv4Str(p.key as number) : (p.key as string), ident);
      return;
    }
    if (p.family === 4) {
      let m = this.v4.get(p.len);
      if (!m) this.v4.set(p.len, (m = new Map()));
      m.set(p.key as number, ident);
    } else {
      let m = this.v6.get(p.len);
      if (!m) this.v6.set(p.len, (m = new Map()));
      m.set(p.key as string, ident);
    }
    this.reindex();
  }

  delete(p: ParsedPrefix): boolean {
    if (!this.texts.delete(p.text)) return false;
    if ((p.family === 4 && p.len === 32) || (p.family === 6 && p.len === 128)) {
      this.exact.delete(p.family === 4 ? ipv4Str(p.key as number) : (p.key as string));
      return true;
    }
    if (p.family === 4) {
      const m = this.v4.get(p.len);
      m?.delete(p.key as number);
      if (m && m.size === 0) this.v4.delete(p.len);
    } else {
      const m = this.v6.get(p.len);
      m?.delete(p.key as string);
      if (m && m.size === 0) this.v6.delete(p.len);
    }
    this.reindex();
    return true;
  }

  private reindex(): void {
    this.v4Lens = [...this.v4.keys()].sort((a, b) => b - a);
    this.v6Lens = [...this.v6.keys()].sort((a, b) => b - a);
  }
}

/**
 * The mutable part of the IP cache: entries added at run time (FQDN-learned IPs).
 * Share one overlay between snapshots so entries survive reloads.
 */
export class IPCacheOverlay {
  /** @internal */ readonly table = new PrefixTable();

  /** Add or replace the identity of a prefix (`1.2.3.4`, `1.2.3.4/32`, `2001:db8::/64`). */
  upsert(prefix: string, identity: Identity): void {
    this.table.set(parsePrefix(prefix), identity);
  }

  /** Remove a prefix; returns whether it was present. */
  remove(prefix: string): boolean {
    return this.table.delete(parsePrefix(prefix));
  }

  /** Current entries, canonical prefix text → identity. */
  entries(): ReadonlyMap<string, Identity> {
    return this.table.texts;
  }
}

/** Longest-prefix IP → identity map: immutable base + shared mutable overlay. */
export class IPCache {
  private readonly base = new PrefixTable();
  readonly overlay: IPCacheOverlay;
  /** The identity of addresses nothing covers. */
  readonly world: Identity;

  /**
   * @param entries base prefixes (later entries win on identical prefixes)
   * @param world the identity of unknown addresses
   */
  constructor(entries: Iterable<readonly [string, Identity]>, world: Identity, overlay?: IPCacheOverlay) {
    for (const [prefix, ident] of entries) this.base.set(parsePrefix(prefix), ident);
    this.world = world;
    this.overlay = overlay ?? new IPCacheOverlay();
  }

  /** Add or replace an overlay entry (see IPCacheOverlay.upsert). */
  upsert(prefix: string, identity: Identity): void {
    this.overlay.upsert(prefix, identity);
  }

  remove(prefix: string): boolean {
    return this.overlay.remove(prefix);
  }

  /** The identity of an address; `world` when nothing covers it or the text is not an IP. */
  lookup(ip: string): Identity {
    return this.lookupOrUndefined(ip) ?? this.world;
  }

  /** Like lookup, but undefined instead of world for uncovered addresses. */
  lookupOrUndefined(ip: string): Identity | undefined {
    const ov = this.overlay.table;
    // Fast path: the common IPv4 text form is already canonical for the exact maps.
    let hit = ov.exact.get(ip) ?? this.base.exact.get(ip);
    if (hit) return hit;
    const norm = normalizeIP(ip);
    if (norm === undefined) return undefined;
    if (norm !== ip) {
      hit = ov.exact.get(norm) ?? this.base.exact.get(norm);
      if (hit) return hit;
    }
    if (norm.includes('.')) {
      const n = ipv4ToInt(norm);
      return lpm4(ov, this.base, n);
    }
    return lpm6(ov, this.base, norm);
  }

  /** Every base and overlay prefix with its identity (overlay last), for dumps. */
  entries(): Array<[string, Identity]> {
    return [...this.base.texts, ...this.overlay.table.texts];
  }
}

function lpm4(a: PrefixTable, b: PrefixTable, n: number): Identity | undefined {
  let i = 0;
  let j = 0;
  const al = a.v4Lens;
  const bl = b.v4Lens;
  // Walk both descending length lists together; at equal length the overlay wins.
  while (i < al.length || j < bl.length) {
    const la = al[i] ?? -1;
    const lb = bl[j] ?? -1;
    const len = la >= lb ? la : lb;
    const key = v4Mask(n, len);
    if (la === len) {
      const hit = a.v4.get(len)?.get(key);
      if (hit) return hit;
      i++;
    }
    if (lb === len) {
      const hit = b.v4.get(len)?.get(key);
      if (hit) return hit;
      j++;
    }
  }
  return undefined;
}

function lpm6(a: PrefixTable, b: PrefixTable, hex: string): Identity | undefined {
  let i = 0;
  let j = 0;
  const al = a.v6Lens;
  const bl = b.v6Lens;
  while (i < al.length || j < bl.length) {
    const la = al[i] ?? -1;
    const lb = bl[j] ?? -1;
    const len = la >= lb ? la : lb;
    const key = v6Key(hex, len);
    if (la === len) {
      const hit = a.v6.get(len)?.get(key);
      if (hit) return hit;
      i++;
    }
    if (lb === len) {
      const hit = b.v6.get(len)?.get(key);
      if (hit) return hit;
      j++;
    }
  }
  return undefined;
}
