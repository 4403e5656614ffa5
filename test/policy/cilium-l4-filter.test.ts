/**
 * Differential check against Cilium's pkg/policy/l4_filter_test.go (cilium/cilium,
 * commit 18cde1cf), the merge table at its top (cases 1-12: two ingress rules for
 * the subject `id=a` on 80/TCP, with L3 peers `*` or `id=a`/`id=c` and L7 `*` or
 * `GET /`). Cilium asserts the resolved L4Filter (selectors, L7 parser, per-selector
 * L7 rules, redirect); each expected filter is turned into the verdicts the proxy
 * gives for it (CILIUM-SEMANTICS.md §2.3): a selector with no L7 rules allows every
 * request, a redirected port is type L7.
 *
 * Cilium's WildcardEndpointSelector `*` is written `fromEndpoints: [{}]`, which in a
 * CNP selects the pods of its namespace (utils.go getEndpointSelector); the peers
 * here are pods of that namespace, so the difference does not show.
 *
 * Not ported: case 1B (`FromEndpoints: []` as an implicit wildcard: that revision
 * treats an empty list as "all", current Cilium and l7warden as "none",
 * CILIUM-SEMANTICS.md §1.4), cases 4, 5A/B and 9A/B (Kafka rules, removed from
 * Cilium 1.20 and rejected by l7warden).
 */
import t from 'tap';
import { compileOk, http, pod } from '../helpers/policy-fixtures.js';
import { Reserved } from '../../src/identity/identity.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { Identity } from '../../src/identity/identity.js';

const PODS =
  pod('a', { id: 'a' }, '10.0.0.1', { ports: '    ports:\n    - {name: http-alt, containerPort: 8080, protocol: TCP}' }) +
  pod('c', { id: 'c' }, '10.0.0.3', { ports: '    ports:\n    - {name: http-alt, containerPort: 9090, protocol: TCP}' }) +
  pod('x', { id: 'x' }, '10.0.0.9');

const ANY = '[{}]';
const A = '[{matchLabels: {id: a}}]';
const C = '[{matchLabels: {id: c}}]';
const L4 = '[{ports: [{port: "80", protocol: TCP}]}]';
const GET = '[{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/"}]}}]';

function twoRules(from1: string, to1: string, from2: string, to2: string): string {
  return `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l4, namespace: default}
spec:
  endpointSelector: {matchLabels: {id: a}}
  ingress:
  - {fromEndpoints: ${from1}, toPorts: ${to1}}
  - {fromEndpoints: ${from2}, toPorts: ${to2}}
`;
}

function idOf(s: PolicySnapshotImpl, who: string): Identity {
  if (who === 'host') return s.identities.get(Reserved.host)!;
  return s.endpointByName('default', who)!.identity;
}

/** 'L3_L4' allowed, 'L7 all' every request allowed via the proxy, 'L7 GET /' only GET /, 'denied' at L3/L4. */
type Want = 'L3_L4' | 'L7 all' | 'L7 GET /' | 'denied';

function observed(s: PolicySnapshotImpl, from: string, port = 80): Want {
  const q = (m: string, p: string) => s.decide({ src: idOf(s, from), dst: idOf(s, 'a'), port, protocol: 'TCP', http: http(m, p) });
  const get = q('GET', '/');
  const put = q('PUT', '/x');
  if (!get.allowed && get.type === 'L3_L4') return 'denied';
  if (get.type === 'L3_L4' && put.type === 'L3_L4' && put.allowed) return 'L3_L4';
  if (get.allowed && put.allowed) return 'L7 all';
  if (get.allowed && !put.allowed && put.type === 'L7') return 'L7 GET /';
  return 'denied';
}

const CASES: [string, string, Record<string, Want>][] = [
  ['1A: *, * / 80 / *, *', twoRules(ANY, L4, ANY, L4), { a: 'L3_L4', c: 'L3_L4', x: 'L3_L4' }],
  ['2A: *, * / 80 / *, GET /', twoRules(ANY, L4, ANY, GET), { a: 'L7 all', c: 'L7 all', x: 'L7 all' }],
  ['2B: *, * / 80 / GET /, *', twoRules(ANY, GET, ANY, L4), { a: 'L7 all', c: 'L7 all', x: 'L7 all' }],
  ['3: *, * / 80 / GET /, GET /', twoRules(ANY, GET, ANY, GET), { a: 'L7 GET /', c: 'L7 GET /', x: 'L7 GET /' }],
  ['6A: id=a, * / 80 / *, *', twoRules(A, L4, ANY, L4), { a: 'L3_L4', c: 'L3_L4', x: 'L3_L4' }],
  ['6B: *, id=a / 80 / *, *', twoRules(ANY, L4, A, L4), { a: 'L3_L4', c: 'L3_L4', x: 'L3_L4' }],
  ['7A: id=a, * / 80 / GET /, *', twoRules(A, GET, ANY, L4), { a: 'L7 all', c: 'L3_L4', x: 'L3_L4' }],
  ['7B: *, id=a / 80 / *, GET /', twoRules(ANY, L4, A, GET), { a: 'L7 all', c: 'L3_L4', x: 'L3_L4' }],
  ['8A: id=a, * / 80 / GET /, GET /', twoRules(A, GET, ANY, GET), { a: 'L7 GET /', c: 'L7 GET /', x: 'L7 GET /' }],
  ['8B: *, id=a / 80 / GET /, GET /', twoRules(ANY, GET, A, GET), { a: 'L7 GET /', c: 'L7 GET /', x: 'L7 GET /' }],
  ['10: id=a, id=c / 80 / GET /, GET /', twoRules(A, GET, C, GET), { a: 'L7 GET /', c: 'L7 GET /', x: 'denied' }],
  ['11: id=a, id=c / 80 / *, *', twoRules(A, L4, C, L4), { a: 'L3_L4', c: 'L3_L4', x: 'denied' }],
];

for (const [name, yaml, want] of CASES) {
  t.test(`l4_filter_test.go case ${name}`, async (t) => {
    const s = await compileOk({ 'p.yaml': PODS + yaml });
    for (const [from, w] of Object.entries(want)) t.equal(observed(s, from), w, `${from} => a:80`);
    t.equal(observed(s, 'c', 81), 'denied', 'other ports stay closed');
  });
}

// Case 12 / TestAllowingLocalhostShadowsL7: with allow-localhost, the host reaches a
// port whose L7 rule selects only id=a without the L7 check (the host selector is
// added with no L7 rules), while id=a stays restricted.
t.test('l4_filter_test.go case 12 (TestAllowingLocalhostShadowsL7)', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l4, namespace: default}
spec:
  endpointSelector: {matchLabels: {id: a}}
  ingress:
  - {fromEndpoints: ${A}, toPorts: ${GET}}
`,
  });
  t.equal(observed(s, 'host'), 'L3_L4', 'host: allowed, not checked at L7');
  t.equal(observed(s, 'a'), 'L7 GET /');
  t.equal(observed(s, 'c'), 'denied');
});

// Named ports. Ingress resolves the name against the subject's own container ports
// (pkg/policy/l4.go, the endpoint's GetNamedPort). Egress resolves it over the
// identities the peer selector selects, per protocol (pkg/policy/types/namedports.go
// NamedPortMultiMap.GetNamedPort(name, proto, ids), namedports_test.go
// TestPolicyNamedPortMultiMap): one number opens that port to every identity of the
// selector; `http-alt` = 8080 (a) and 9090 (c) under one selector conflict
// (ErrDuplicateNamedPorts) and open nothing; a name no selected pod defines
// (ErrUnknownNamedPort) opens nothing.
t.test('named ports resolve per endpoint (ingress) and per selector (egress)', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      pod('y', { id: 'y' }, '10.0.0.10') +
      `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: named, namespace: default}
spec:
  endpointSelector: {matchLabels: {id: x}}
  egress:
  - toPorts: [{ports: [{port: http-alt, protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: named-a, namespace: default}
spec:
  endpointSelector: {matchLabels: {id: y}}
  egress:
  - toEndpoints: [{matchExpressions: [{key: id, operator: In, values: [a, x]}]}]
    toPorts: [{ports: [{port: http-alt, protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {id: x}}]
    toPorts: [{ports: [{port: http-alt, protocol: ANY}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: named-in, namespace: default}
spec:
  endpointSelector: {matchLabels: {id: c}}
  ingress:
  - fromEndpoints: [{matchLabels: {id: x}}]
    toPorts: [{ports: [{port: http-alt, protocol: TCP}]}]
`,
  });
  const e = (from: string, to: string, port: number) => s.decide({ src: idOf(s, from), dst: idOf(s, to), port, protocol: 'TCP' }).egress?.allowed;
  // Wildcard peer: a (8080) and c (9090) both selected, the name conflicts.
  t.equal(e('x', 'a', 8080), false, 'egress, conflicting selections: not a on 8080');
  t.equal(e('x', 'c', 9090), false, 'egress, conflicting selections: not c on 9090');
  t.equal(e('x', 'a', 9090), false, 'egress: never a on c\'s number');
  // One selector selecting a and x (each toEndpoints element is its own selector):
  // only a defines http-alt, so 8080 opens to the whole selector, x included.
  t.equal(e('y', 'a', 8080), true, 'egress, one number among the selections: a on 8080');
  t.equal(e('y', 'x', 8080), true, 'egress: and x, selected by the same selector, on 8080');
  t.equal(e('y', 'c', 8080), false, 'egress: c is not selected');
  t.equal(e('y', 'a', 9090), false, 'egress: 9090 is not the resolved number');
  const i = (port: number) => s.decide({ src: idOf(s, 'x'), dst: idOf(s, 'c'), port, protocol: 'TCP' }).ingress?.allowed;
  t.equal(i(9090), true, 'ingress: the subject c names 9090 http-alt');
  t.equal(i(8080), false, 'ingress: 8080 is another pod\'s http-alt');
});
