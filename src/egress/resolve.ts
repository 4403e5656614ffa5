/**
 * Name resolution for the egress listener, through the proxy's own DNS path.
 *
 * A name in an absolute-form request or a CONNECT target is resolved by handing a
 * DNS query — built here, on behalf of the client — to the configured `dns`
 * listener's DnsProxy (`DnsProxy.handle`), exactly as if the client had sent it to
 * that listener over UDP from its own address. So the query is:
 *
 *  - decided with the *source's* DNS policy (`decide({…, dns: qname})` inside the DNS
 *    proxy; the source is the client's address — the PROXY source on a PROXY
 *    listener — looked up in the IP cache, as the DNS proxy always does);
 *  - forwarded to that listener's upstream only when allowed, and validated;
 *  - learned into the same FQDN cache (and so the same IP-cache overlay) before the
 *    answer is released — the IPs carry their `fqdn:` selector labels by the time the
 *    egress listener asks `identityForIP(ip)`;
 *  - recorded as a DNS flow, like any query.
 *
 * Nothing here decides: a REFUSED answer is the DNS proxy's policy verdict (or the
 * upstream's own refusal); the egress listener answers it with 403 and dials nothing.
 */
import { randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import type { DnsProxy } from '../dns/server.js';
import { RCODE, TYPE_A, TYPE_AAAA, TYPE_OPT, CLASS_IN, parseQuery, parseResponse } from '../dns/codec.js';

export type ResolveFailure = 'refused' | 'nxdomain' | 'nodata' | 'servfail' | 'invalid' | 'no-resolver';

export type ResolveOutcome =
  | { readonly ok: true; readonly ips: readonly string[]; readonly ttl: number }
  | { readonly ok: false; readonly reason: ResolveFailure };

export interface ResolveClient {
  readonly address: string;
  readonly port: number;
}

const EDNS_UDP_SIZE = 4096;
const MAX_NAME_WIRE = 255;

/**
 * A query for `name` (no trailing dot needed) of `qtype`: RD set, one OPT record
 * advertising a 4096-byte UDP size (so the DNS proxy does not truncate ordinary
 * answers). Undefined when the name cannot be a DNS name.
 */
export function encodeQuery(name: string, qtype: number, id: number): Buffer | undefined {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n.length === 0) return undefined;
  const labels = n.split('.');
  let wire = 1;
  for (const l of labels) {
    if (l.length === 0 || l.length > 63) return undefined;
    wire += l.length + 1;
  }
  if (wire > MAX_NAME_WIRE) return undefined;
  const out = Buffer.alloc(12 + wire + 4 + 11);
  out.writeUInt16BE(id & 0xffff, 0);
  out.writeUInt16BE(0x0100, 2); // RD
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(1, 10);
  let p = 12;
  for (const l of labels) {
    out[p++] = l.length;
    // latin1: a non-ASCII character becomes a byte parseQuery rejects.
    out.write(l, p, 'latin1');
    p += l.length;
  }
  out[p++] = 0;
  out.writeUInt16BE(qtype, p);
  out.writeUInt16BE(CLASS_IN, p + 2);
  p += 4;
  out[p] = 0; // OPT owner: root
  out.writeUInt16BE(TYPE_OPT, p + 1);
  out.writeUInt16BE(EDNS_UDP_SIZE, p + 3);
  // TTL (extended rcode, version, flags) 0 and RDLENGTH 0: already zero.
  return out;
}

/** One query through the DNS proxy; resolves with the validated outcome. Never rejects. */
function queryOnce(proxy: DnsProxy, name: string, qtype: number, client: ResolveClient, timeoutMs: number): Promise<ResolveOutcome> {
  const buf = encodeQuery(name, qtype, randomInt(0, 0x10000));
  if (!buf) return Promise.resolve({ ok: false, reason: 'invalid' });
  const parsed = parseQuery(buf);
  if (!parsed.ok) return Promise.resolve({ ok: false, reason: 'invalid' });
  const q = parsed.query;
  return new Promise<ResolveOutcome>((resolve) => {
    let done = false;
    const finish = (r: ResolveOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    // The DNS proxy answers SERVFAIL on its own upstream timeout; this is a backstop.
    const timer = setTimeout(() => finish({ ok: false, reason: 'servfail' }), timeoutMs);
    timer.unref();
    try {
      proxy.handle(buf, { address: client.address, port: client.port, transport: 'UDP' }, (out) => {
        const r = parseResponse(out, q);
        if (!r.ok || r.info.tc) {
          finish({ ok: false, reason: 'servfail' });
          return;
        }
        const rc = r.info.rcode;
        if (rc === RCODE.REFUSED) finish({ ok: false, reason: 'refused' });
        else if (rc === RCODE.NXDOMAIN) finish({ ok: false, reason: 'nxdomain' });
        else if (rc !== RCODE.NOERROR) finish({ ok: false, reason: 'servfail' });
        else if (r.info.ips.length === 0) finish({ ok: false, reason: 'nodata' });
        else finish({ ok: true, ips: r.info.ips, ttl: r.info.ttl });
      });
    } catch {
      finish({ ok: false, reason: 'servfail' });
    }
  });
}

/**
 * Resolve `name` (lowercase, no brackets) for `client`: A first, AAAA when the name
 * has no A records. IP literals are returned as they are, without any query.
 */
export async function resolveThroughDns(
  proxy: DnsProxy | undefined,
  name: string,
  client: ResolveClient,
  timeoutMs: number,
): Promise<ResolveOutcome> {
  if (isIP(name) !== 0) return { ok: true, ips: [name], ttl: 0 };
  if (!proxy) return { ok: false, reason: 'no-resolver' };
  const a = await queryOnce(proxy, name, TYPE_A, client, timeoutMs);
  if (a.ok || a.reason !== 'nodata') return a;
  return queryOnce(proxy, name, TYPE_AAAA, client, timeoutMs);
}

/**
 * Per-connection memo of resolutions, so keep-alive requests to the same host do not
 * each cost a DNS round trip. Entries live for the answer's TTL (at most 30 s, never
 * longer than the FQDN cache keeps the IPs, which is max(TTL, min TTL)) and only for
 * the snapshot they were made under. Bounded to a few names.
 */
export class ResolveMemo {
  readonly #m = new Map<string, { ips: readonly string[]; expires: number; version: number }>();
  static readonly MAX = 8;

  get(name: string, version: number, now: number): readonly string[] | undefined {
    const e = this.#m.get(name);
    if (!e) return undefined;
    if (e.expires <= now || e.version !== version) {
      this.#m.delete(name);
      return undefined;
    }
    return e.ips;
  }

  set(name: string, ips: readonly string[], ttlSeconds: number, version: number, now: number): void {
    if (ttlSeconds <= 0) return;
    if (this.#m.size >= ResolveMemo.MAX && !this.#m.has(name)) {
      const first = this.#m.keys().next();
      if (!first.done) this.#m.delete(first.value);
    }
    this.#m.set(name, { ips, expires: now + Math.min(ttlSeconds, 30) * 1000, version });
  }
}
