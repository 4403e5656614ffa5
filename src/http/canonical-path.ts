/**
 * The one request-target canonicalizer. Its output is both what the policy
 * matches (`HttpAttributes.path`) and what the upstream receives, so the two can
 * never disagree (SECURITY.md §1.1, SPEC.md "Matching details that decide security").
 *
 * Rules, in order:
 *  - origin-form `/…` or absolute-form `http(s)://authority/…` (the authority is
 *    returned; the caller checks it against Host / :authority). `*` and anything
 *    else is rejected.
 *  - rejected (400): `#`, `\`, NUL, `%00`, control characters, space, raw non-ASCII,
 *    invalid percent-encoding (`%` not followed by two hex digits), encoded slash or
 *    backslash (`%2F`, `%5C`), and a segment that starts with `.` and carries `;`
 *    parameters, literal or escaped (`..;x`, `..%3Bx` — servlet containers would
 *    treat it as a dot segment).
 *  - percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are decoded once;
 *    every other escape in the path is kept with its hex digits upper-cased
 *    (`%252e` stays `%252E`: no double decoding).
 *  - dot segments are removed (RFC 3986 §5.2.4) with empty segments still in place,
 *    then duplicate slashes are merged; a trailing slash is kept. This is Envoy's
 *    order (conn_manager_utility.cc maybeNormalizePath: canonicalPath, then
 *    mergeSlashes, as Cilium configures it), so `/a//../b` is `/a/b` there and here.
 *  - the query (from the first `?`) is validated with the same character rules
 *    and kept byte for byte (Envoy leaves it untouched): it is part of the matched path.
 *
 * Hot path: one scan over the characters; a target that needs no change is returned
 * as the same string without allocating.
 */
import { isIPv6 } from 'node:net';

export type CanonicalTarget =
  | {
      readonly ok: true;
      /** Canonical path + query: matched and forwarded. */
      readonly path: string;
      /** Authority of an absolute-form target (as written), else undefined. */
      readonly authority?: string;
      readonly scheme?: 'http' | 'https';
    }
  | { readonly ok: false; readonly reason: string };

const HEX = '0123456789ABCDEF';

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function isUnreserved(c: number): boolean {
  return (
    (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) ||
    c === 45 || c === 46 || c === 95 || c === 126
  );
}

function fail(reason: string): CanonicalTarget {
  return { ok: false, reason };
}

/** Canonicalize a request-target (HTTP/1 request line target or HTTP/2 `:path`). */
export function canonicalizeTarget(target: string): CanonicalTarget {
  if (target.length === 0) return fail('empty request target');
  const first = target.charCodeAt(0);
  if (first === 47 /* / */) return canonicalizeOrigin(target, 0);
  // absolute-form: scheme "://" authority path-abempty
  let scheme: 'http' | 'https' | undefined;
  let rest = 0;
  if (target.length > 7 && target.slice(0, 7).toLowerCase() === 'http://') {
    scheme = 'http';
    rest = 7;
  } else if (target.length > 8 && target.slice(0, 8).toLowerCase() === 'https://') {
    scheme = 'https';
    rest = 8;
  } else {
    return fail('request target is neither origin-form nor absolute-form');
  }
  let end = rest;
  while (end < target.length) {
    const c = target.charCodeAt(end);
    if (c === 47 || c === 63 || c === 35) break; // / ? #
    end++;
  }
  const authority = target.slice(rest, end);
  if (authority.length === 0) return fail('absolute-form target without authority');
  if (end < target.length && target.charCodeAt(end) === 35) return fail('fragment in request target');
  let pathPart = target.slice(end);
  if (pathPart.length === 0) pathPart = '/';
  else if (pathPart.charCodeAt(0) === 63) pathPart = '/' + pathPart;
  const r = canonicalizeOrigin(pathPart, 0);
  if (!r.ok) return r;
  return { ok: true, path: r.path, authority, scheme };
}

function canonicalizeOrigin(t: string, start: number): CanonicalTarget {
  const n = t.length;
  let changed = false; // percent-decoding or hex case changed something
  let needsSegments = false; // "//" or a dot segment may be present
  let q = -1;
  // Pass 1: validate, detect whether any rewriting is needed.
  let prevSlash = false;
  for (let i = start; i < n; i++) {
    const c = t.charCodeAt(i);
    if (c === 63 /* ? */) {
      q = i;
      break;
    }
    if (c <= 32 || c >= 127) return fail('control, space or non-ASCII character in path');
    if (c === 35) return fail('fragment (#) in request target');
    if (c === 92) return fail('backslash in path');
    if (c === 37 /* % */) {
      if (i + 2 >= n) return fail('invalid percent-encoding in path');
      const h = hexVal(t.charCodeAt(i + 1));
      const l = hexVal(t.charCodeAt(i + 2));
      if (h < 0 || l < 0) return fail('invalid percent-encoding in path');
      const v = h * 16 + l;
      if (v === 0) return fail('encoded NUL in path');
      if (v === 0x2f || v === 0x5c) return fail('encoded slash or backslash in path');
      changed = true; // decoded or re-cased below (cheap to redo, rare)
      i += 2;
      prevSlash = false;
      continue;
    }
    if (c === 47) {
      if (prevSlash) needsSegments = true;
      prevSlash = true;
      continue;
    }
    if (c === 46 /* . */ && prevSlash) needsSegments = true; // segment starting with '.'
    if (c === 59 /* ; */) needsSegments = true; // checked per segment below
    prevSlash = false;
  }
  let query = '';
  if (q >= 0) {
    for (let i = q + 1; i < n; i++) {
      const c = t.charCodeAt(i);
      if (c <= 32 || c >= 127) return fail('control, space or non-ASCII character in query');
      if (c === 35) return fail('fragment (#) in request target');
      if (c === 37) {
        if (i + 2 >= n) return fail('invalid percent-encoding in query');
        const h = hexVal(t.charCodeAt(i + 1));
        const l = hexVal(t.charCodeAt(i + 2));
        if (h < 0 || l < 0) return fail('invalid percent-encoding in query');
        if (h === 0 && l === 0) return fail('encoded NUL in query');
        i += 2;
      }
    }
    query = t.slice(q);
  }
  if (!changed && !needsSegments) return { ok: true, path: start === 0 ? t : t.slice(start) };

  let path = q >= 0 ? t.slice(start, q) : t.slice(start);
  if (changed) {
    // Decode unreserved escapes once, upper-case the hex of the others.
    let out = '';
    let last = 0;
    for (let i = 0; i < path.length; i++) {
      if (path.charCodeAt(i) !== 37) continue;
      const h = hexVal(path.charCodeAt(i + 1));
      const l = hexVal(path.charCodeAt(i + 2));
      const v = h * 16 + l;
      out += path.slice(last, i);
      if (isUnreserved(v)) out += String.fromCharCode(v);
      else out += '%' + HEX[h] + HEX[l];
      i += 2;
      last = i + 1;
    }
    path = out + path.slice(last);
  }
  // Remove dot segments, then merge slashes; refuse ".;" / "..;" segments. Empty
  // segments stay until the dot segments are resolved: merging first made
  // `/a//../b` `/b` where Envoy (and RFC 3986 §5.2.4) give `/a/b`.
  const segs = path.split('/');
  const out: string[] = [];
  const lastIdx = segs.length - 1;
  for (let i = 1; i <= lastIdx; i++) {
    const s = segs[i]!;
    const isLast = i === lastIdx;
    if (s === '.') {
      if (isLast) out.push('');
      continue;
    }
    if (s === '..') {
      out.pop();
      if (isLast) out.push('');
      continue;
    }
    // `;` or its escape (`..%3B`: a backend that decodes before stripping `;params`
    // sees `..`). Escapes are upper-cased above, so `%3b` is `%3B` here.
    if (s.charCodeAt(0) === 46 && (s.includes(';') || s.includes('%3B'))) return fail('dot segment with parameters');
    out.push(s);
  }
  let merged = '';
  for (const s of out) if (s !== '') merged += '/' + s;
  if (out.length === 0 || out[out.length - 1] === '') merged += '/';
  return { ok: true, path: merged + query };
}

/**
 * Validate an authority (Host / :authority / absolute-form) as RFC 3986
 * `host [":" port]`: reg-name (ALPHA DIGIT - . _ ~ and sub-delims other than
 * those that confuse routers) or an IP literal, port 1–65535; no userinfo, no
 * `/ ? # @ %`, no whitespace; brackets hold only an IPv6 address. Returns false for
 * anything else.
 */
export function isValidAuthority(a: string): boolean {
  const n = a.length;
  if (n === 0 || n > 255 + 6) return false;
  let i = 0;
  if (a.charCodeAt(0) === 91 /* [ */) {
    const close = a.indexOf(']');
    if (close < 2) return false;
    for (let j = 1; j < close; j++) {
      const c = a.charCodeAt(j);
      const ok = (c >= 48 && c <= 58) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102) || c === 46;
      if (!ok) return false;
    }
    // RFC 3986 IP-literal: only an IPv6 address goes in brackets. `[1.2.3.4]` or
    // `[1:1]` matched no Host rule and reached the upstream as written (Envoy
    // Url.ParsingForConnectTest refuses them; egress had its own check, e.g. 1e8651e).
    if (!isIPv6(a.slice(1, close))) return false;
    i = close + 1;
    if (i === n) return true;
    if (a.charCodeAt(i) !== 58) return false;
  } else {
    for (; i < n; i++) {
      const c = a.charCodeAt(i);
      if (c === 58) break;
      const ok =
        (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) ||
        c === 45 || c === 46 || c === 95 || c === 126;
      if (!ok) return false;
    }
    if (i === 0) return false;
    if (i === n) return true;
  }
  // ":" port
  const portStart = i + 1;
  if (portStart >= n || n - portStart > 5) return false;
  let port = 0;
  for (let j = portStart; j < n; j++) {
    const c = a.charCodeAt(j);
    if (c < 48 || c > 57) return false;
    port = port * 10 + (c - 48);
  }
  return port >= 1 && port <= 65535;
}

/** Compare form of an authority: lowercase, trailing dot removed, default port stripped. */
export function authorityKey(a: string, scheme: 'http' | 'https'): string {
  let s = a.toLowerCase();
  const def = scheme === 'https' ? ':443' : ':80';
  if (s.endsWith(def)) s = s.slice(0, -def.length);
  if (s.endsWith('.')) s = s.slice(0, -1);
  return s;
}
