/**
 * FqdnIpSink over the IP cache overlay: an IP learned for names that toFQDNs
 * selectors select gets, as a /32 (/128) overlay entry, the identity whose labels are
 * `fqdn:<key>` for each selector plus what the IP already was — `reserved:world`, or
 * the CIDR identity's labels when a CIDR rule covers it — so toEntities/toCIDR rules
 * keep selecting it. IPs that belong to the cluster (pods, host, any identity that is
 * neither world nor CIDR) are never given FQDN labels (Cilium: toFQDNs selects only
 * world IPs), so a name resolving to an internal address cannot open it.
 */
import type { Identity } from '../identity/identity.js';
import type { IPCacheOverlay } from '../identity/ipcache.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { FqdnIpSink } from './cache.js';

function outsideCluster(labels: readonly string[]): boolean {
  for (const l of labels) {
    if (l.startsWith('cidr:') || l === 'reserved:world' || l === 'reserved:world-ipv4' || l === 'reserved:world-ipv6') continue;
    return false;
  }
  return true;
}

export class IPCacheFqdnSink implements FqdnIpSink {
  /** IPs skipped because they belong to the cluster. */
  skippedInternal = 0;
  /**
   * (the address's own identity, selector keys) → the FQDN identity, for one snapshot.
   * An answer brings up to dnsMaxIpsPerHostname addresses that nearly all share both
   * (world, the same keys): building, sorting and allocating the label set per address
   * made learning 1,000 new IPs cost tens of milliseconds of the event loop.
   */
  #identities = new Map<string, Identity>();
  #identitiesFor: PolicySnapshot | undefined;

  constructor(
    private readonly overlay: IPCacheOverlay,
    private readonly snapshot: () => PolicySnapshot,
  ) {}

  setFqdnSelectors(ip: string, keys: readonly string[]): void {
    // Look the address up without our own entry: what is it on its own?
    this.overlay.remove(ip);
    if (keys.length === 0) return;
    const snap = this.snapshot();
    const base = snap.identityForIP(ip);
    if (snap !== this.#identitiesFor) {
      this.#identitiesFor = snap;
      this.#identities = new Map();
    }
    const cacheKey = keys.length === 1 ? `${base.id}\n${keys[0]}` : `${base.id}\n${keys.join('\n')}`;
    let ident = this.#identities.get(cacheKey);
    if (ident === undefined) {
      if (!outsideCluster(base.labels)) {
        this.skippedInternal++;
        return;
      }
      const labels = base.labels.filter((l) => !l.startsWith('fqdn:'));
      for (const k of keys) labels.push(`fqdn:${k}`);
      ident = snap.identityForLabels(labels);
      this.#identities.set(cacheKey, ident);
    }
    this.overlay.upsert(ip, ident);
  }
}
