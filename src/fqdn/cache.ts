/**
 * The FQDN cache: which IPs allowed DNS answers returned for which names, until
 * when. It is the only source of FQDN-learned IPs: the DNS proxy calls `learn()`
 * with the validated answer to an allowed query, synchronously, before the answer
 * is released to the client, and the cache pushes each affected IP's toFQDNs
 * selector keys (`fqdn:<key>` labels) into the IP cache's overlay through
 * `FqdnIpSink` — so the client's first connection to a fresh IP is already allowed.
 *
 * Rules (CILIUM-SEMANTICS.md §3.3, SECURITY.md §4.3):
 *  - an entry lives max(TTL, minTtlSeconds) seconds, at most maxTtlSeconds when that is
 *    set (SECURITY.md §4.3's clamp; off by default, as in Cilium; the TTL the client sees is not
 *    changed); re-learning extends it, never shortens it; it is still valid AT its expiry
 *    instant and gone only after it (Cilium's isExpiredBy is now.After(expiration), so a
 *    TTL-0 answer's IPs are usable the instant they are learned);
 *  - at most `maxIpsPerName` IPs per name: the ones expiring soonest are evicted;
 *  - one IP may serve many names (CDNs): its labels are the union over its live names;
 *  - expiry runs on an unref'd timer, off the request path;
 *  - on a policy swap (`setSnapshot`) every IP's labels are recomputed with the new
 *    snapshot's `fqdnSelectors`.
 * Selector matching (RE2) runs once per (name, snapshot), not per answer.
 */
import type { FqdnSelectorInfo, PolicySnapshot } from '../policy/types.js';

/** Where learned IPs go: the IP cache overlay. */
export interface FqdnIpSink {
  /**
   * Give `ip` the FQDN identity for these selector keys (sorted, non-empty), or
   * remove its FQDN entry when `keys` is empty.
   */
  setFqdnSelectors(ip: string, keys: readonly string[]): void;
}

export interface FqdnCacheOptions {
  readonly minTtlSeconds: number;
  /** Longest an entry lives, whatever the answer's TTL (0 / absent: no maximum). */
  readonly maxTtlSeconds?: number;
  readonly maxIpsPerName: number;
  /** How often expired entries are swept (default 1000 ms). */
  readonly sweepIntervalMs?: number;
  /** Clock in ms (tests). */
  readonly now?: () => number;
}

const NO_KEYS: readonly string[] = Object.freeze([]);

export class FqdnCache {
  /** name (lowercase FQDN) → ip → expiry (ms). */
  readonly #names = new Map<string, Map<string, number>>();
  /** ip → names that returned it. */
  readonly #ipNames = new Map<string, Set<string>>();
  /** ip → the keys last pushed to the sink (joined), to skip no-op updates. */
  readonly #pushed = new Map<string, string>();
  /** name → matching selector keys under the current snapshot. */
  #keysByName = new Map<string, readonly string[]>();
  #selectors: readonly FqdnSelectorInfo[] = [];
  #snapshotVersion = -1;
  #timer: NodeJS.Timeout | undefined;
  readonly #now: () => number;
  readonly #minTtlMs: number;
  readonly #maxTtlMs: number;
  readonly #maxIps: number;
  readonly #sweepMs: number;
  /** Counters for metrics and tests. */
  readonly stats = { learned: 0, evicted: 0, expired: 0, recomputed: 0 };

  constructor(
    private readonly sink: FqdnIpSink,
    opts: FqdnCacheOptions,
  ) {
    this.#now = opts.now ?? Date.now;
    this.#minTtlMs = Math.max(0, opts.minTtlSeconds) * 1000;
    // Never below the minimum (config validation refuses max < min; this keeps the cache sane anyway).
    this.#maxTtlMs = opts.maxTtlSeconds ? Math.max(opts.maxTtlSeconds * 1000, this.#minTtlMs) : Infinity;
    this.#maxIps = Math.max(1, opts.maxIpsPerName);
    this.#sweepMs = opts.sweepIntervalMs ?? 1000;
  }

  /** Start the expiry sweep (unref'd: it never keeps the process alive). */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.sweep(), this.#sweepMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Adopt a new policy snapshot: recompute the labels of every learned IP. */
  setSnapshot(snapshot: PolicySnapshot): void {
    if (snapshot.version === this.#snapshotVersion && snapshot.fqdnSelectors === this.#selectors) return;
    this.#selectors = snapshot.fqdnSelectors;
    this.#keysByName = new Map();
    // Identities are re-derived from the new snapshot even when the keys did not change.
    for (const ip of this.#ipNames.keys()) this.#push(ip, true);
    // Only once every IP is re-labelled: a throw above leaves the version behind, so
    // the next call (the next query) re-labels again instead of returning early.
    this.#snapshotVersion = snapshot.version;
    this.stats.recomputed++;
  }

  /** The selector keys that select `name` (cached per snapshot). */
  keysFor(name: string): readonly string[] {
    let keys = this.#keysByName.get(name);
    if (keys === undefined) {
      const out: string[] = [];
      for (const s of this.#selectors) if (s.matches(name)) out.push(s.key);
      keys = out.length ? out.sort() : NO_KEYS;
      this.#keysByName.set(name, keys);
    }
    return keys;
  }

  /**
   * Record the IPs a validated answer to an allowed query returned for `name`
   * (lowercase FQDN), with the answer's TTL in seconds. Synchronous: when it
   * returns, the IP cache overlay already has the IPs.
   */
  learn(name: string, ips: readonly string[], ttlSeconds: number): void {
    if (ips.length === 0) return;
    // More than the cap in one answer: the surplus would be pushed to the IP cache
    // and evicted again at once (thousands of overlay updates for one 64 KB answer,
    // ~100 ms of the event loop per query). Keep the first maxIps.
    if (ips.length > this.#maxIps) ips = ips.slice(0, this.#maxIps);
    const now = this.#now();
    const expires = now + Math.min(Math.max(ttlSeconds * 1000, this.#minTtlMs), this.#maxTtlMs);
    let entry = this.#names.get(name);
    if (!entry) {
      entry = new Map();
      this.#names.set(name, entry);
    }
    for (const ip of ips) {
      const old = entry.get(ip);
      if (old !== undefined) {
        if (expires > old) entry.set(ip, expires);
        continue;
      }
      entry.set(ip, expires);
      this.stats.learned++;
      let names = this.#ipNames.get(ip);
      if (!names) {
        names = new Set();
        this.#ipNames.set(ip, names);
      }
      names.add(name);
      this.#push(ip);
    }
    if (entry.size > this.#maxIps) this.#evict(name, entry, ips);
  }

  /** Drop the soonest-expiring IPs of a name until the cap holds (the fresh answer's IPs last). */
  #evict(name: string, entry: Map<string, number>, fresh: readonly string[]): void {
    const freshSet = new Set(fresh);
    const order = [...entry].sort((a, b) => {
      const fa = freshSet.has(a[0]) ? 1 : 0;
      const fb = freshSet.has(b[0]) ? 1 : 0;
      return fa - fb || a[1] - b[1];
    });
    for (let i = 0; entry.size > this.#maxIps && i < order.length; i++) {
      const ip = order[i]![0];
      entry.delete(ip);
      this.#unlink(ip, name);
      this.stats.evicted++;
    }
  }

  #unlink(ip: string, name: string): void {
    const names = this.#ipNames.get(ip);
    if (!names) return;
    names.delete(name);
    if (names.size === 0) this.#ipNames.delete(ip);
    this.#push(ip);
  }

  /** Compute the IP's keys (union over its names) and push them if they changed. */
  #push(ip: string, force = false): void {
    const names = this.#ipNames.get(ip);
    let keys: readonly string[] = NO_KEYS;
    if (names) {
      if (names.size === 1) {
        for (const n of names) keys = this.keysFor(n);
      } else {
        const set = new Set<string>();
        for (const n of names) for (const k of this.keysFor(n)) set.add(k);
        keys = [...set].sort();
      }
    }
    const joined = keys.join('\n');
    const prev = this.#pushed.get(ip);
    if (prev === joined && !force) return;
    if (prev === undefined && keys.length === 0) return;
    if (keys.length === 0) this.#pushed.delete(ip);
    else this.#pushed.set(ip, joined);
    this.sink.setFqdnSelectors(ip, keys);
  }

  /** Remove expired entries (called by the timer; callable by tests). */
  sweep(now = this.#now()): void {
    for (const [name, entry] of this.#names) {
      for (const [ip, exp] of entry) {
        if (exp < now) {
          entry.delete(ip);
          this.#unlink(ip, name);
          this.stats.expired++;
        }
      }
      if (entry.size === 0) this.#names.delete(name);
    }
  }

  /** Live IPs of a name (expired ones excluded even before the sweep). */
  lookup(name: string, now = this.#now()): string[] {
    const entry = this.#names.get(name);
    if (!entry) return [];
    const out: string[] = [];
    for (const [ip, exp] of entry) if (exp >= now) out.push(ip);
    return out;
  }

  /**
   * Live names an IP was returned for (flow records' destination_names). An expired name
   * the sweep has not reached yet is left out, as Cilium's LookupIP leaves it out.
   */
  namesFor(ip: string, now = this.#now()): string[] {
    const names = this.#ipNames.get(ip);
    if (!names) return [];
    const out: string[] = [];
    for (const n of names) {
      const exp = this.#names.get(n)?.get(ip);
      if (exp !== undefined && exp >= now) out.push(n);
    }
    return out.sort();
  }

  /** Expiry (ms) of one (name, ip) pair. */
  expiresAt(name: string, ip: string): number | undefined {
    return this.#names.get(name)?.get(ip);
  }

  get size(): { names: number; ips: number } {
    return { names: this.#names.size, ips: this.#ipNames.size };
  }
}
