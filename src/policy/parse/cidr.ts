/**
 * IP addresses and prefixes, parsed the way Go's net/netip does for Cilium's
 * CIDR fields: dotted-quad IPv4 (no leading zeros), RFC 4291 IPv6 (with an
 * optional dotted IPv4 tail), `addr/bits`. Prefixes are printed in canonical
 * form (RFC 5952 for IPv6) with host bits cleared.
 */

export interface IP {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
}

export interface Prefix {
  readonly addr: IP;
  readonly bits: number;
}

function parseIPv4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    // netip rejects leading zeros (they were octal in some parsers).
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p.startsWith('0'))) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseIPv6(s: string): Uint8Array | undefined {
  if (s.includes('%')) return undefined; // zones are not allowed in prefixes
  let head = s;
  let tail4: Uint8Array | undefined;
  const lastColon = s.lastIndexOf(':');
  if (lastColon >= 0 && s.slice(lastColon + 1).includes('.')) {
    tail4 = parseIPv4(s.slice(lastColon + 1));
    if (!tail4) return undefined;
    head = s.slice(0, lastColon + 1) + '0:0';
  }
  const dbl = head.indexOf('::');
  if (dbl !== head.lastIndexOf('::')) return undefined;
  const groupsOf = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  let groups: number[];
  if (dbl >= 0) {
    const left = groupsOf(head.slice(0, dbl));
    const right = groupsOf(head.slice(dbl + 2));
    if (!left || !right || left.length + right.length > 7) return undefined;
    groups = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  } else {
    const all = groupsOf(head);
    if (!all || all.length !== 8) return undefined;
    groups = all;
  }
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  if (tail4) out.set(tail4, 12);
  return out;
}

export function parseIP(s: string): IP | undefined {
  if (s.includes(':')) {
    const b = parseIPv6(s);
    return b ? { family: 6, bytes: b } : undefined;
  }
  const b = parseIPv4(s);
  return b ? { family: 4, bytes: b } : undefined;
}

export function formatIP(ip: IP): string {
  if (ip.family === 4) return Array.from(ip.bytes).join('.');
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((ip.bytes[i * 2]! << 8) | ip.bytes[i * 2 + 1]!);
  // RFC 5952: compress the longest run (length ≥ 2) of zero groups, the first on ties.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Parse `addr/bits`; returns a reason string on failure. */
export function parsePrefix(s: string): Prefix | string {
  const slash = s.indexOf('/');
  if (slash < 0) return "no '/'";
  const addr = parseIP(s.slice(0, slash));
  if (!addr) return `bad address ${JSON.stringify(s.slice(0, slash))}`;
  const bitsText = s.slice(slash + 1);
  const max = addr.family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bitsText) || (bitsText.length > 1 && bitsText.startsWith('0')) || Number(bitsText) > max) {
    return `bad prefix length ${JSON.stringify(bitsText)}`;
  }
  return { addr, bits: Number(bitsText) };
}

/** The prefix with host bits cleared. */
export function maskPrefix(p: Prefix): Prefix {
  const bytes = new Uint8Array(p.addr.bytes);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, p.bits - i * 8));
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return { addr: { family: p.addr.family, bytes }, bits: p.bits };
}

export function formatPrefix(p: Prefix): string {
  return `${formatIP(p.addr)}/${p.bits}`;
}

export function hostBitsSet(p: Prefix): boolean {
  const m = maskPrefix(p);
  return m.addr.bytes.some((b, i) => b !== p.addr.bytes[i]);
}

/** True when `inner` lies wholly inside `outer` (same family, longer-or-equal prefix). */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  if (outer.addr.family !== inner.addr.family || inner.bits < outer.bits) return false;
  const a = maskPrefix(outer);
  const b = maskPrefix({ addr: inner.addr, bits: outer.bits });
  return a.addr.bytes.every((x, i) => x === b.addr.bytes[i]);
}

/** Normalize an IP address string to canonical form, or undefined when invalid. */
export function normalizeIP(s: string): string | undefined {
  const ip = parseIP(s);
  return ip ? formatIP(ip) : undefined;
}
