/**
 * Numeric identity allocation (CILIUM-SEMANTICS.md §6).
 *
 * Reserved identities keep Cilium's numbers. Every other label set gets a number
 * derived from the label set itself, so that the same labels get the same number
 * in every process and after every restart, without any shared state:
 *
 *   canonical = sorted labels joined with "\n"
 *   h         = first 4 bytes (big endian) of SHA-256(canonical)
 *   cluster   = 256 + h mod (65535 - 256 + 1)          (pod label sets)
 *   local     = (1 << 24) | (1 + h mod (2^24 - 1))       (sets with cidr: / fqdn: labels)
 *
 * Two different label sets can hash to the same slot. Collisions are resolved by
 * linear probing (next number, wrapping inside the range), and a batch is always
 * allocated in sorted canonical order, so a given configuration yields the same
 * numbers regardless of document order or process. A number can only move when a
 * *colliding* label set appears or disappears (probability ~ n^2 / 130560 for n
 * pod identities), which is the price of needing no persisted state.
 */
import { createHash } from 'node:crypto';
import { WardenError } from '../core/errors.js';
import { LOCAL_SCOPE, MAX_ALLOCATED, MIN_ALLOCATED, RESERVED_NAMES, type Identity } from './identity.js';
import { makeIdentity, sortLabels } from './labels.js';

const CLUSTER_SIZE = MAX_ALLOCATED - MIN_ALLOCATED + 1;
const LOCAL_SIZE = (1 << 24) - 1;

/** The canonical string of a label set: sorted, de-duplicated, newline-joined. */
export function canonicalLabels(labels: readonly string[]): string {
  return sortLabels(labels).join('\n');
}

function hash32(canonical: string): number {
  return createHash('sha256').update(canonical).digest().readUInt32BE(0);
}

/** True when the label set belongs in the node-local scope (CIDR and FQDN identities). */
export function isLocalScope(labels: readonly string[]): boolean {
  return labels.some((l) => l.startsWith('cidr:') || l.startsWith('fqdn:'));
}

/** The first number tried for a label set (before collision probing). */
export function preferredNumber(labels: readonly string[]): number {
  const h = hash32(canonicalLabels(labels));
  return isLocalScope(labels) ? LOCAL_SCOPE | (1 + (h % LOCAL_SIZE)) : MIN_ALLOCATED + (h % CLUSTER_SIZE);
}

/**
 * Holds the identities of one snapshot: reserved ones, and every allocated label
 * set. `allocateBatch` is used at compile time; `allocate` at run time (FQDN
 * identities), probing past every number already in use.
 */
export class IdentityAllocator {
  private readonly byId = new Map<number, Identity>();
  private readonly byLabels = new Map<string, Identity>();

  constructor() {
    for (const [num, name] of Object.entries(RESERVED_NAMES)) {
      this.insert(makeIdentity(Number(num), [`reserved:${name}`]));
    }
  }

  private insert(ident: Identity): void {
    this.byId.set(ident.id, ident);
    this.byLabels.set(ident.labels.join('\n'), ident);
  }

  /** Allocate many label sets at once, in sorted canonical order (deterministic). */
  allocateBatch(sets: readonly (readonly string[])[]): Identity[] {
    const canon = [...new Set(sets.map((s) => canonicalLabels(s)))].sort();
    for (const c of canon) this.allocate(c === '' ? [] : c.split('\n'));
    return sets.map((s) => this.allocate(s));
  }

  /** The identity of a label set, allocating a number when the set is new. */
  allocate(labels: readonly string[]): Identity {
    const sorted = sortLabels(labels);
    const canon = sorted.join('\n');
    const known = this.byLabels.get(canon);
    if (known) return known;
    const local = isLocalScope(sorted);
    const base = local ? LOCAL_SCOPE : MIN_ALLOCATED;
    const size = local ? LOCAL_SIZE : CLUSTER_SIZE;
    const h = hash32(canon);
    const start = local ? 1 + (h % size) : h % size;
    for (let i = 0; i < size; i++) {
      const off = (start - (local ? 1 : 0) + i) % size;
      const id = local ? base | (off + 1) : base + off;
      if (!this.byId.has(id)) {
        const ident = makeIdentity(id, sorted);
        this.insert(ident);
        return ident;
      }
    }
    throw new WardenError('L7W_ERR_IDENTITY', `identity space exhausted allocating ${JSON.stringify(sorted)}`);
  }

  get(id: number): Identity | undefined {
    return this.byId.get(id);
  }

  lookupLabels(labels: readonly string[]): Identity | undefined {
    return this.byLabels.get(canonicalLabels(labels));
  }

  /** Every identity, sorted by number. */
  all(): Identity[] {
    return [...this.byId.values()].sort((a, b) => a.id - b.id);
  }
}
