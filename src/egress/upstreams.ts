/**
 * Upstream connections of the egress listener and the TLS material of interception.
 *
 * Pools: one undici Pool (upstream/h1.ts `H1Upstream`) per destination *IP*:port —
 * the address that was decided — plus, for TLS, the name verified and the CA. The
 * origin is `http(s)://IP:port`, so undici never resolves anything: a request is
 * sent exactly where policy allowed it, whatever its Host header says. Pools are
 * bounded in number (least recently used closed first) and closed when idle.
 *
 * Interception (an egress rule with `terminatingTLS`): the client's TLS is
 * terminated with the certificate in the rule's Secret (item names from the
 * TLSContext, default tls.crt / tls.key), and TLS to the destination is
 * re-originated with verification: the CA is the rule's `originatingTLS` Secret
 * (item `trustedCA`, default ca.crt), else the listener's `upstreamCA` Secret, else
 * the system roots; the name verified (and sent as SNI) is the CONNECT host name.
 */
import type { Limits } from '../config/proxy-config.js';
import type { SecretDoc } from '../config/documents.js';
import type { TLSContext } from '../policy/api.js';
import { H1Upstream } from '../upstream/h1.js';
import { ListenerCertificates, type ServerTLSOptions } from '../tls/cert-store.js';
import { originateOptions } from '../tls/originate.js';
import { WardenError } from '../core/errors.js';

export interface Destination {
  readonly scheme: 'http' | 'https';
  readonly ip: string;
  readonly port: number;
  /** https: the name the certificate must carry (a DNS name, or the IP itself). */
  readonly verifyName?: string;
  /** https: the policy's originatingTLS, if any (else the listener's upstreamCA). */
  readonly originatingTLS?: TLSContext;
}

interface PoolEntry {
  readonly up: H1Upstream;
  lastUsed: number;
  active: number;
}

function refOf(ctx: TLSContext): string {
  return `${ctx.secret.namespace}/${ctx.secret.name}`;
}

export class EgressUpstreams {
  readonly #pools = new Map<string, PoolEntry>();
  readonly #terminators = new Map<string, ServerTLSOptions>();
  readonly #secrets: ReadonlyMap<string, SecretDoc>;
  readonly #limits: Limits;
  readonly #upstreamCA: string | undefined;
  readonly #maxPools: number;
  readonly #idleMs: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: { limits: Limits; secrets: readonly SecretDoc[]; upstreamCA?: string; maxPools?: number; idleMs?: number }) {
    this.#limits = opts.limits;
    const m = new Map<string, SecretDoc>();
    for (const s of opts.secrets) m.set(`${s.namespace}/${s.name}`, s);
    this.#secrets = m;
    this.#upstreamCA = opts.upstreamCA;
    this.#maxPools = opts.maxPools ?? 256;
    this.#idleMs = opts.idleMs ?? 60_000;
    if (opts.upstreamCA && !m.has(opts.upstreamCA)) {
      throw new WardenError('L7W_ERR_TLS', `upstreamCA ${opts.upstreamCA}: secret not found`);
    }
    this.#timer = setInterval(() => this.#sweep(), Math.min(this.#idleMs, 10_000));
    this.#timer.unref();
  }

  /**
   * The pool for a destination, created on first use. Throws WardenError L7W_ERR_TLS
   * when the CA named for origination cannot be used (the caller answers 502).
   */
  pool(d: Destination): { up: H1Upstream; release: () => void } {
    const tlsKey = d.scheme === 'https' ? `${d.verifyName ?? d.ip}|${d.originatingTLS ? `${refOf(d.originatingTLS)}#${d.originatingTLS.trustedCA ?? ''}` : (this.#upstreamCA ?? '')}` : '';
    const key = `${d.scheme}|${d.ip}|${d.port}|${tlsKey}`;
    let e = this.#pools.get(key);
    if (e) {
      // Most recently used last.
      this.#pools.delete(key);
      this.#pools.set(key, e);
    } else {
      e = { up: this.#create(d), lastUsed: 0, active: 0 };
      this.#pools.set(key, e);
      this.#evict();
    }
    const entry = e;
    entry.active++;
    entry.lastUsed = Date.now();
    let released = false;
    return {
      up: entry.up,
      release: () => {
        if (released) return;
        released = true;
        entry.active--;
        entry.lastUsed = Date.now();
      },
    };
  }

  #create(d: Destination): H1Upstream {
    const host = d.ip;
    const hostInUrl = host.includes(':') ? `[${host}]` : host;
    if (d.scheme === 'http') {
      return new H1Upstream({
        upstream: { url: `http://${hostInUrl}:${d.port}`, protocol: 'http', host, port: d.port },
        limits: this.#limits,
        connections: 32,
      });
    }
    const verifyName = d.verifyName ?? d.ip;
    let secrets: ReadonlyMap<string, SecretDoc> = this.#secrets;
    let caRef: string | undefined = this.#upstreamCA;
    if (d.originatingTLS) {
      const ref = refOf(d.originatingTLS);
      const doc = this.#secrets.get(ref);
      if (!doc) throw new WardenError('L7W_ERR_TLS', `originatingTLS secret ${ref}: not found`);
      const item = d.originatingTLS.trustedCA ?? 'ca.crt';
      const ca = doc.data[item];
      if (!ca) throw new WardenError('L7W_ERR_TLS', `originatingTLS secret ${ref}: ${item} is missing`);
      // A one-secret view with the CA under the standard item name.
      secrets = new Map([[ref, { ...doc, data: { 'ca.crt': ca } }]]);
      caRef = ref;
    }
    const o = originateOptions({ host: verifyName }, caRef ? { secret: caRef, insecureSkipVerify: false } : undefined, secrets);
    return new H1Upstream({
      upstream: { url: `https://${hostInUrl}:${d.port}`, protocol: 'https', host, port: d.port },
      limits: this.#limits,
      connect: { ...o.undiciConnect, ALPNProtocols: ['http/1.1'] },
      ...(o.servername ? { servername: o.servername } : {}),
      insecureSkipVerify: false,
      connections: 32,
    });
  }

  /**
   * Server TLS options for terminating a client's TLS with a rule's terminatingTLS
   * (cached per context). Offers ALPN http/1.1 only: inspected tunnels speak HTTP/1.1.
   * Throws WardenError L7W_ERR_TLS for a missing or unusable certificate.
   */
  terminating(ctx: TLSContext): ServerTLSOptions {
    const ref = refOf(ctx);
    const certItem = ctx.certificate ?? 'tls.crt';
    const keyItem = ctx.privateKey ?? 'tls.key';
    const key = `${ref}|${certItem}|${keyItem}`;
    const hit = this.#terminators.get(key);
    if (hit) return hit;
    const doc = this.#secrets.get(ref);
    if (!doc) throw new WardenError('L7W_ERR_TLS', `terminatingTLS secret ${ref}: not found`);
    const crt = doc.data[certItem];
    const k = doc.data[keyItem];
    if (!crt || !k) throw new WardenError('L7W_ERR_TLS', `terminatingTLS secret ${ref}: ${!crt ? certItem : keyItem} is missing`);
    const view: SecretDoc = { ...doc, data: { 'tls.crt': crt, 'tls.key': k } };
    const opts = ListenerCertificates.load({ secret: ref }, [view]).serverOptions();
    const out: ServerTLSOptions = { ...opts, ALPNProtocols: ['http/1.1'], requestCert: false, rejectUnauthorized: false };
    this.#terminators.set(key, out);
    return out;
  }

  #evict(): void {
    if (this.#pools.size <= this.#maxPools) return;
    for (const [k, e] of this.#pools) {
      if (this.#pools.size <= this.#maxPools) break;
      if (e.active > 0) continue;
      this.#pools.delete(k);
      void e.up.close();
    }
  }

  #sweep(): void {
    const now = Date.now();
    for (const [k, e] of this.#pools) {
      if (e.active === 0 && now - e.lastUsed > this.#idleMs) {
        this.#pools.delete(k);
        void e.up.close();
      }
    }
  }

  get size(): number {
    return this.#pools.size;
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    const all = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(all.map((e) => e.up.close()));
  }
}
