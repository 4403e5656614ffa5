/**
 * The PolicySnapshot object handed to listeners and the CLI. Immutable as far as
 * policy goes; the only run-time state is the shared IP-cache overlay (FQDN IPs)
 * and identities allocated for label sets first seen at run time.
 */
import type { DecisionQuery, FqdnSelectorInfo, PolicySnapshot, SnapshotStats, Verdict } from './types.js';
import type { Endpoint, Identity } from '../identity/identity.js';
import type { IdentityAllocator } from '../identity/allocator.js';
import { normalizeIP, type IPCache } from '../identity/ipcache.js';
import { Reserved } from '../identity/identity.js';
import { decide, type DecisionIndex } from './decide.js';
import { dumpSnapshot } from './dump.js';

export interface SnapshotInternals {
  readonly version: number;
  readonly enforcement: 'default' | 'always' | 'never';
  readonly stats: SnapshotStats;
  readonly identities: ReadonlyMap<number, Identity>;
  readonly endpoints: readonly Endpoint[];
  readonly ipcache: IPCache;
  readonly allocator: IdentityAllocator;
  readonly index: DecisionIndex;
  readonly fqdnSelectors: readonly FqdnSelectorInfo[];
}

export class PolicySnapshotImpl implements PolicySnapshot {
  readonly version: number;
  readonly stats: SnapshotStats;
  readonly enforcement: 'default' | 'always' | 'never';
  readonly identities: ReadonlyMap<number, Identity>;
  readonly endpoints: readonly Endpoint[];
  readonly fqdnSelectors: readonly FqdnSelectorInfo[];
  /** The IP cache (base + shared overlay); the DNS proxy upserts learned IPs here. */
  readonly ipcache: IPCache;
  /** @internal decision index, for dump and tests. */
  readonly internals: SnapshotInternals;
  private readonly byName = new Map<string, Endpoint>();
  private readonly byIdentity = new Map<number, Endpoint>();
  private readonly worldIPv6: Identity | undefined;

  constructor(x: SnapshotInternals) {
    this.internals = x;
    this.version = x.version;
    this.stats = x.stats;
    this.enforcement = x.enforcement;
    this.identities = x.identities;
    this.endpoints = x.endpoints;
    this.fqdnSelectors = x.fqdnSelectors;
    this.ipcache = x.ipcache;
    this.worldIPv6 = x.identities.get(Reserved.worldIPv6);
    for (const ep of x.endpoints) {
      this.byName.set(`${ep.namespace}/${ep.name}`, ep);
      if (!this.byIdentity.has(ep.identity.id)) this.byIdentity.set(ep.identity.id, ep);
    }
  }

  endpointByName(namespace: string, name: string): Endpoint | undefined {
    return this.byName.get(`${namespace}/${name}`);
  }

  endpointByIdentity(id: number): Endpoint | undefined {
    return this.byIdentity.get(id);
  }

  /**
   * An IPv6 address outside every known prefix is the IPv6 world, as Cilium's ipcache
   * maps ::/0 to reserved:world-ipv6 once IPv6 is enabled, so that 0.0.0.0/0 rules never
   * select it (pkg/policy/api cidr_test.go TestGetAsEndpointSelectors). IPv4 keeps
   * reserved:world, Cilium's number in an IPv4 cluster; IPv4-mapped IPv6 is IPv4.
   */
  identityForIP(ip: string): Identity {
    const hit = this.ipcache.lookupOrUndefined(ip);
    if (hit !== undefined) return hit;
    // Checked only on a miss, and once: a miss used to cost a second full lookup.
    if (this.worldIPv6 !== undefined && ip.includes(':') && normalizeIP(ip)?.includes('.') === false) return this.worldIPv6;
    return this.ipcache.world;
  }

  identityForLabels(labels: readonly string[]): Identity {
    return this.internals.allocator.allocate(labels);
  }

  decide(q: DecisionQuery): Verdict {
    return decide(this.internals.index, q);
  }

  dump(): string {
    return dumpSnapshot(this.internals);
  }
}
