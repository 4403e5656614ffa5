/**
 * Differential check of how a policy's namespace scopes its selectors, against
 * Cilium's pkg/k8s/apis/cilium.io/utils/utils_test.go (commit abe5e248)
 * Test_ParseToCiliumRule and the getEndpointSelector / ParseToCiliumRule code it
 * tests (CILIUM-SEMANTICS.md §1.3). Cilium asserts the rewritten selectors; here
 * each rewritten selector is turned into the verdicts it implies, for pods in the
 * policy's namespace, in another namespace, and for reserved identities.
 *
 * Not ported: "parse-init-policy" (a subject selector naming reserved:init is not
 * pinned to the namespace). l7warden has no initializing endpoints (a Pod document
 * always has its labels), so no subject could tell the two apart.
 */
import t from 'tap';
import { compileOk, pod } from '../helpers/policy-fixtures.js';
import { Reserved } from '../../src/identity/identity.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { Identity } from '../../src/identity/identity.js';

const NAMESPACES = `---
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Namespace
metadata: {name: ns-2, labels: {team: blue}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ns-3}
`;

const PODS =
  NAMESPACES +
  pod('backend', { role: 'backend' }, '10.0.0.1') +
  pod('client', { role: 'client' }, '10.0.0.2') +
  pod('backend', { role: 'backend' }, '10.0.2.1', { ns: 'ns-2' }) +
  pod('client', { role: 'client' }, '10.0.2.2', { ns: 'ns-2' }) +
  pod('client', { role: 'client' }, '10.0.3.2', { ns: 'ns-3' });

function policy(kind: 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy', ns: string, spec: string): string {
  const meta = kind === 'CiliumNetworkPolicy' ? `{name: p, namespace: ${ns}}` : '{name: p}';
  return `---\napiVersion: cilium.io/v2\nkind: ${kind}\nmetadata: ${meta}\nspec:\n${spec}`;
}

function who(s: PolicySnapshotImpl, w: string): Identity {
  if (w === 'host') return s.identities.get(Reserved.host)!;
  if (w === 'world') return s.identityForIP('8.8.8.8');
  if (w === 'remote-node') return s.identities.get(Reserved.remoteNode)!;
  const [ns, name] = w.split('/') as [string, string];
  return s.endpointByName(ns, name)!.identity;
}

function allowed(s: PolicySnapshotImpl, from: string, to: string): boolean {
  return s.decide({ src: who(s, from), dst: who(s, to), port: 80, protocol: 'TCP' }).allowed;
}

// "parse-in-namespace": a CNP's endpointSelector selects only in the policy's namespace.
t.test('Test_ParseToCiliumRule parse-in-namespace: subject pinned to the policy namespace', async (t) => {
  const s = await compileOk({
    'p.yaml': PODS + policy('CiliumNetworkPolicy', 'default', '  endpointSelector: {matchLabels: {role: backend}}\n  ingress: [{}]\n'),
  });
  t.equal(allowed(s, 'default/client', 'default/backend'), false, 'default/backend is selected: default deny');
  t.equal(allowed(s, 'default/client', 'ns-2/backend'), true, 'ns-2/backend is not selected by a policy in default');
});

// "parse-in-namespace-with-ns-selector": a namespace match naming another namespace
// is overridden by the policy's own namespace (not added to it).
t.test('Test_ParseToCiliumRule parse-in-namespace-with-ns-selector', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      policy(
        'CiliumNetworkPolicy',
        'default',
        '  endpointSelector: {matchLabels: {role: backend, "k8s:io.kubernetes.pod.namespace": ns-2}}\n  ingress: [{}]\n',
      ),
  });
  t.equal(allowed(s, 'default/client', 'default/backend'), false, 'the policy namespace wins: default/backend selected');
  t.equal(allowed(s, 'default/client', 'ns-2/backend'), true, 'ns-2/backend is not selected');
});

// "set-any-source-for-namespace": an any:-sourced namespace key in a peer selector
// keeps Cilium from adding the policy's namespace.
t.test('Test_ParseToCiliumRule set-any-source-for-namespace', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      policy(
        'CiliumNetworkPolicy',
        'default',
        '  endpointSelector: {matchLabels: {role: backend}}\n  ingress: [{fromEndpoints: [{matchLabels: {"any:io.kubernetes.pod.namespace": ns-2}}]}]\n',
      ),
  });
  t.equal(allowed(s, 'ns-2/client', 'default/backend'), true, 'ns-2 pods selected');
  t.equal(allowed(s, 'default/client', 'default/backend'), false, 'the policy namespace is not added');
  t.equal(allowed(s, 'ns-3/client', 'default/backend'), false);
});

// getEndpointSelector, CNP branch: a peer selector without a namespace key gets the
// policy's namespace, so `{}` is "every pod in this namespace" and a label match
// does not reach pods with the same labels elsewhere.
t.test('CNP peer selectors are scoped to the policy namespace', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      policy('CiliumNetworkPolicy', 'default', '  endpointSelector: {matchLabels: {role: backend}}\n  ingress: [{fromEndpoints: [{}]}]\n') +
      policy('CiliumNetworkPolicy', 'ns-2', '  endpointSelector: {matchLabels: {role: backend}}\n  ingress: [{fromEndpoints: [{matchLabels: {role: client}}]}]\n').replace('name: p,', 'name: q,') +
      policy('CiliumNetworkPolicy', 'default', '  endpointSelector: {matchLabels: {role: client}}\n  egress: [{toEndpoints: [{}]}]\n').replace('name: p,', 'name: e,'),
  });
  t.equal(allowed(s, 'default/client', 'default/backend'), true, '{} selects default/client');
  t.equal(allowed(s, 'ns-2/client', 'default/backend'), false, '{} in a CNP does not select other namespaces');
  t.equal(allowed(s, 'world', 'default/backend'), false, '{} in a CNP does not select world');
  t.equal(allowed(s, 'ns-2/client', 'ns-2/backend'), true, 'role=client in ns-2 policy selects ns-2/client');
  t.equal(allowed(s, 'ns-3/client', 'ns-2/backend'), false, 'not ns-3/client with the same labels');
  t.equal(allowed(s, 'default/client', 'ns-2/backend'), false, 'nor default/client');
  t.equal(allowed(s, 'default/client', 'ns-2/backend'), false);
  // egress {} from default/client: only pods of default.
  const eg = (to: string) => s.decide({ src: who(s, 'default/client'), dst: who(s, to), port: 80, protocol: 'TCP' }).egress?.allowed;
  t.equal(eg('default/backend'), true);
  t.equal(eg('ns-2/backend'), false, 'toEndpoints {} in a CNP: not other namespaces');
  t.equal(eg('world'), false, 'toEndpoints {} in a CNP: not world');
  t.equal(eg('host'), false, 'toEndpoints {} in a CNP: not the host');
});

// getEndpointSelector: a namespace-labels key keeps the policy namespace out, so the
// selector reaches pods of every namespace carrying that label.
t.test('CNP peer selector on namespace labels is not pinned', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      policy(
        'CiliumNetworkPolicy',
        'default',
        '  endpointSelector: {matchLabels: {role: backend}}\n  ingress: [{fromEndpoints: [{matchLabels: {"k8s:io.cilium.k8s.namespace.labels.team": blue}}]}]\n',
      ),
  });
  t.equal(allowed(s, 'ns-2/client', 'default/backend'), true, 'ns-2 has team=blue');
  t.equal(allowed(s, 'ns-3/client', 'default/backend'), false);
  t.equal(allowed(s, 'default/client', 'default/backend'), false, 'the policy namespace is not added');
});

// "wildcard-to-from-endpoints-with-ccnp": a CCNP's `{}` peer becomes
// `io.kubernetes.pod.namespace Exists`: every pod of every namespace, no reserved identity.
t.test('Test_ParseToCiliumRule wildcard-to-from-endpoints-with-ccnp', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      policy('CiliumClusterwideNetworkPolicy', '', '  endpointSelector: {matchLabels: {role: client}}\n  egress: [{toEndpoints: [{}]}]\n'),
  });
  const eg = (from: string, to: string) => s.decide({ src: who(s, from), dst: who(s, to), port: 80, protocol: 'TCP' }).egress?.allowed;
  t.equal(eg('default/client', 'default/backend'), true);
  t.equal(eg('default/client', 'ns-2/backend'), true, 'CCNP {} selects other namespaces');
  t.equal(eg('ns-3/client', 'ns-2/backend'), true, 'and subjects in every namespace');
  t.equal(eg('default/client', 'world'), false, 'CCNP {} does not select world');
  t.equal(eg('default/client', 'host'), false, 'CCNP {} does not select the host');
  t.equal(eg('default/client', 'remote-node'), false, 'nor remote nodes');
});

// CCNP endpointSelector: no namespace is added, so a label match selects in every namespace.
t.test('CCNP subject selector is not pinned to a namespace', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      policy('CiliumClusterwideNetworkPolicy', '', '  endpointSelector: {matchLabels: {role: backend}}\n  ingress: [{fromEndpoints: [{matchLabels: {role: client}}]}]\n'),
  });
  t.equal(allowed(s, 'ns-3/client', 'default/backend'), true, 'CCNP peer role=client: any namespace');
  t.equal(allowed(s, 'default/client', 'ns-2/backend'), true);
  t.equal(allowed(s, 'world', 'ns-2/backend'), false, 'ns-2/backend selected: default deny');
});

// A reserved: key leaves the selector untouched, in a CNP as in a CCNP.
t.test('CNP peer selector with a reserved: key is not pinned', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      policy('CiliumNetworkPolicy', 'default', '  endpointSelector: {matchLabels: {role: client}}\n  egress: [{toEndpoints: [{matchLabels: {"reserved:world": ""}}]}]\n'),
  });
  const eg = (to: string) => s.decide({ src: who(s, 'default/client'), dst: who(s, to), port: 80, protocol: 'TCP' }).egress?.allowed;
  t.equal(eg('world'), true, 'reserved:world selects world');
  t.equal(eg('default/backend'), false);
});
