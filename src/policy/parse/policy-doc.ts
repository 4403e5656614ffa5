/**
 * A policy document (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy or
 * NetworkPolicy) into a PolicyDoc. The envelope (apiVersion/kind) has already
 * been checked by the loader.
 */
import type { PolicyDoc } from '../../config/documents.js';
import { readMetadata } from '../../config/metadata.js';
import type { Fields } from '../../config/reader.js';
import type { PolicyKind } from '../api.js';
import { readNetworkPolicyRule } from './network-policy.js';
import { readCiliumPolicyRules } from './rule.js';

export function readPolicyDoc(top: Fields, kind: PolicyKind): PolicyDoc | undefined {
  const rep = top.rep;
  const before = rep.errorCount;
  // `status` is written by the cluster (Cilium's derivativePolicies, conditions); ignored.
  top.checkKnown(kind === 'NetworkPolicy'
    ? ['apiVersion', 'kind', 'metadata', 'spec', 'status']
    : ['apiVersion', 'kind', 'metadata', 'spec', 'specs', 'status']);
  const meta = readMetadata(top, { strict: true });
  if (!meta) return undefined;
  let namespace = meta.namespace ?? 'default';
  if (kind === 'CiliumClusterwideNetworkPolicy') {
    if (meta.namespace) {
      const m = top.map('metadata');
      if (m) rep.warn(m.at('namespace'), 'metadata.namespace', 'ignored: CiliumClusterwideNetworkPolicy is cluster-scoped');
    }
    namespace = '';
  }
  const rules = kind === 'NetworkPolicy'
    ? (() => {
        const r = readNetworkPolicyRule(top, meta.name, namespace);
        return r ? [r] : undefined;
      })()
    : readCiliumPolicyRules({ kind, name: meta.name, namespace }, top);
  if (!rules || rep.errorCount !== before) return undefined;
  return { kind, name: meta.name, namespace, rules, pos: rep.pos(top.loc) };
}
