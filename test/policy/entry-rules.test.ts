/**
 * Which policies a verdict names for Hubble's `*_allowed_by` / `*_denied_by`.
 *
 * Semantics (cilium/cilium):
 * - pkg/hubble/parser/.../correlation.go: a policy-verdict event is correlated with
 *   the policy-map entry the datapath matched (`lookupPolicyForKey` by
 *   policy_match_type), and `toProto` turns that entry's `derivedFrom` into the
 *   list: every policy whose rules made the entry, once ("derivedFrom may contain
 *   duplicate policies if the policy had multiple rules that contributed to the
 *   same policy map entry... derivedFrom is sorted").
 * - The sort is labels.LabelArrayList's: each policy's labels
 *   (`io.cilium.k8s.policy.derived-from`, `.name`, `.namespace`) compared label by
 *   label, key then value (Go: bytes), a shorter array first (LabelArray.Less).
 *
 * The engine puts the list on the verdict (`egressRules` / `ingressRules`) when more
 * than one policy is behind the entry; the direction's `rule` names the only one
 * otherwise. L7 verdicts keep naming the rule whose L7 rule matched.
 */
import t from 'tap';
import { compileOk, http, pod } from '../helpers/policy-fixtures.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { DecisionQuery, Verdict } from '../../src/policy/types.js';
import { policyFields } from '../../src/observe/hubble.js';

const PODS = pod('a', { id: 'a' }, '172.16.0.1') + pod('b', { id: 'b' }, '172.16.0.2', { ns: 'other' });
const A = '172.16.0.1';
const B = '172.16.0.2';

function policy(kind: string, name: string, ns: string | undefined, spec: string): string {
  return `---\napiVersion: cilium.io/v2\nkind: ${kind}\nmetadata: {name: ${name}${ns ? `, namespace: ${ns}` : ''}}\nspec:\n${spec}`;
}

const toB80 = `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id: b, k8s:io.kubernetes.pod.namespace: other}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

function decide(s: PolicySnapshotImpl, port: number, extra: Partial<DecisionQuery> = {}): Verdict {
  return s.decide({ src: s.identityForIP(A), dst: s.identityForIP(B), port, protocol: 'TCP', ...extra });
}

function names(v: Verdict, field: string): string[] {
  const o: Record<string, unknown> = {};
  policyFields(v, 1, o);
  return ((o[field] as Array<{ kind: string; namespace?: string; name: string }> | undefined) ?? []).map((p) => `${p.kind}/${p.namespace ?? ''}/${p.name}`);
}

t.test('every policy behind the entry, once, in derivedFrom order', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml':
      policy('CiliumNetworkPolicy', 'zeta', 'default', toB80) +
      // Two rules of one policy on the same entry: named once.
      policy('CiliumNetworkPolicy', 'alpha', 'default', toB80 + `  - toEndpoints: [{matchLabels: {id: b, k8s:io.kubernetes.pod.namespace: other}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n`) +
      policy('CiliumClusterwideNetworkPolicy', 'zeta', undefined, toB80) +
      // Another entry (every port): not part of the 80/TCP entry's list.
      policy('CiliumNetworkPolicy', 'wide', 'default', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id: b, k8s:io.kubernetes.pod.namespace: other}}]
`),
  });
  const v = decide(s, 80);
  t.equal(v.allowed, true);
  t.same(
    names(v, 'egress_allowed_by'),
    ['CiliumClusterwideNetworkPolicy//zeta', 'CiliumNetworkPolicy/default/alpha', 'CiliumNetworkPolicy/default/zeta'],
    'derived-from first (Clusterwide < Network), then name; "alpha" once',
  );
  t.same(names(decide(s, 81), 'egress_allowed_by'), ['CiliumNetworkPolicy/default/wide'], 'port 81: only the L3 entry, one policy');
  t.equal(decide(s, 81).egressRules, undefined, 'one policy: no list, the rule names it');
});

t.test('deny entries list their policies; L7 verdicts name the matching rule', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml':
      policy('CiliumNetworkPolicy', 'deny-b', 'default', `  endpointSelector: {matchLabels: {id: a}}
  egressDeny:
  - toEndpoints: [{matchLabels: {id: b, k8s:io.kubernetes.pod.namespace: other}}]
    toPorts: [{ports: [{port: "90", protocol: TCP}]}]
`) +
      policy('CiliumNetworkPolicy', 'block-b', 'default', `  endpointSelector: {matchLabels: {id: a}}
  egressDeny:
  - toEndpoints: [{matchLabels: {id: b, k8s:io.kubernetes.pod.namespace: other}}]
    toPorts: [{ports: [{port: "90", protocol: TCP}]}]
`) +
      policy('CiliumNetworkPolicy', 'web-get', 'default', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id: b, k8s:io.kubernetes.pod.namespace: other}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
`) +
      policy('CiliumNetworkPolicy', 'web-post', 'default', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id: b, k8s:io.kubernetes.pod.namespace: other}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: POST}]}}]
`),
  });
  const denied = decide(s, 90);
  t.equal(denied.dropReason, 'POLICY_DENY');
  t.same(names(denied, 'egress_denied_by'), ['CiliumNetworkPolicy/default/block-b', 'CiliumNetworkPolicy/default/deny-b']);
  const post = decide(s, 80, { http: http('POST', '/x') });
  t.equal(post.allowed, true);
  t.same(names(post, 'egress_allowed_by'), ['CiliumNetworkPolicy/default/web-post'], 'the rule whose L7 rule matched, not the entry');
  const put = decide(s, 80, { http: http('PUT', '/x') });
  t.equal(put.allowed, false);
  t.equal(names(put, 'egress_denied_by').length, 1, 'an L7 miss names one rule, as before');
});
