/**
 * Differential check against Cilium's selector tests in pkg/policy/api:
 * entity_test.go (commit 14289a46) TestEntityMatches / TestEntitySliceMatches /
 * TestEntityHostAllowsRemoteNode, and cidr_test.go (commit 02674019)
 * TestGetAsEndpointSelectors / TestGetAsEndpointSelectorsWithExceptions. Cilium
 * matches selectors against label arrays; here each label array becomes the
 * destination identity of an egress decision (egress, because ingress always
 * admits the local host), so the whole compile + decide path is exercised.
 *
 * Label translation: Cilium's local cluster "cluster1" is l7warden's `default`
 * (k8s:io.cilium.k8s.policy.cluster=default); a bare `id=foo` is a pod label
 * `k8s:id=foo`.
 *
 * Not ported: the cidrgroup rows (CiliumCIDRGroup is not a kind l7warden loads) and
 * TestEntityHostAllowsRemoteNode's treat-remote-node-as-host=true row (an agent
 * option l7warden does not have; the default, false, is ported).
 */
import t from 'tap';
import { compileOk, pod } from '../helpers/policy-fixtures.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { Identity } from '../../src/identity/identity.js';

const PODS = pod('client', { app: 'client' }, '10.0.0.2');

function egressPolicy(peer: string): string {
  return `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: sel, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - ${peer}
`;
}

function allows(s: PolicySnapshotImpl, dst: Identity): boolean {
  const src = s.endpointByName('default', 'client')!.identity;
  return s.decide({ src, dst, port: 443, protocol: 'TCP' }).allowed;
}

const CLUSTER = 'k8s:io.cilium.k8s.policy.cluster=default';

// [entities, label set, Cilium's expectation]
const ENTITY_ROWS: [string[], string[], boolean][] = [
  // TestEntityMatches
  [['host'], ['reserved:host'], true],
  [['host'], ['reserved:host', 'id:foo'], true],
  [['host'], ['reserved:world'], false],
  [['host'], ['reserved:health'], false],
  [['host'], ['reserved:unmanaged'], false],
  [['host'], ['reserved:none'], false],
  [['host'], ['k8s:id=foo'], false],
  [['all'], ['reserved:host'], true],
  [['all'], ['reserved:world'], true],
  [['all'], ['reserved:health'], true],
  [['all'], ['reserved:unmanaged'], true],
  [['all'], ['reserved:none'], true],
  [['all'], ['k8s:id=foo'], true],
  [['cluster'], ['reserved:host'], true],
  [['cluster'], ['reserved:init'], true],
  [['cluster'], ['reserved:health'], true],
  [['cluster'], ['reserved:unmanaged'], true],
  [['cluster'], ['reserved:world'], false],
  [['cluster'], ['reserved:none'], false],
  [['cluster'], [CLUSTER, 'k8s:id=foo'], true],
  [['cluster'], [CLUSTER, 'k8s:id=foo', 'k8s:id2=bar'], true],
  [['cluster'], ['k8s:id=foo'], false],
  [['world'], ['reserved:host'], false],
  [['world'], ['reserved:world'], true],
  [['world'], ['reserved:health'], false],
  [['world'], ['reserved:unmanaged'], false],
  [['world'], ['reserved:none'], false],
  [['world'], ['k8s:id=foo'], false],
  [['world'], ['k8s:id=foo', 'k8s:id2=bar'], false],
  // TestEntitySliceMatches
  [['host', 'world'], ['reserved:host'], true],
  [['host', 'world'], ['reserved:world'], true],
  [['host', 'world'], ['reserved:health'], false],
  [['host', 'world'], ['reserved:unmanaged'], false],
  [['host', 'world'], ['reserved:none'], false],
  [['host', 'world'], ['k8s:id=foo'], false],
  [['host', 'health'], ['reserved:host'], true],
  [['host', 'health'], ['reserved:world'], false],
  [['host', 'health'], ['reserved:health'], true],
  [['host', 'health'], ['reserved:unmanaged'], false],
  [['host', 'health'], ['k8s:id=foo'], false],
  // TestEntityHostAllowsRemoteNode, treatRemoteNodeAsHost=false
  [['host'], ['reserved:remote-node'], false],
];

t.test('entity_test.go: entities against label sets', async (t) => {
  const snaps = new Map<string, PolicySnapshotImpl>();
  for (const [entities, labels, want] of ENTITY_ROWS) {
    const key = entities.join(',');
    let s = snaps.get(key);
    if (!s) snaps.set(key, (s = await compileOk({ 'p.yaml': PODS + egressPolicy(`toEntities: [${key}]`) })));
    t.equal(allows(s, s.identityForLabels(labels)), want, `${key} ${want ? 'selects' : 'does not select'} [${labels.join(' ')}]`);
  }
});

// TestGetAsEndpointSelectorsWithExceptions: matchesLabels / notMatchesLabels as CIDR
// identities (cidr:<prefix> with reserved:world, as the ipcache allocates them).
t.test('cidr_test.go TestGetAsEndpointSelectorsWithExceptions', async (t) => {
  const rows: [string, string[], string[]][] = [
    ['{cidr: 1.0.0.0/24}', ['1.0.0.0/24', '1.0.0.0/25'], ['2.0.0.0/24']],
    ['{cidr: 1.0.0.0/24, except: [1.0.0.4/30]}', ['1.0.0.0/24', '1.0.0.0/25', '1.0.0.1/32'], ['2.0.0.0/24', '1.0.0.4/30', '1.0.0.4/32', '1.0.0.5/32']],
  ];
  for (const [rule, yes, no] of rows) {
    const s = await compileOk({ 'p.yaml': PODS + egressPolicy(`toCIDRSet: [${rule}]`) });
    const cidrId = (p: string) => ({ ...s.identityForLabels([`cidr:${p}`, 'reserved:world']), cidr: p });
    for (const p of yes) t.equal(allows(s, cidrId(p)), true, `${rule} selects cidr:${p}`);
    for (const p of no) t.equal(allows(s, cidrId(p)), false, `${rule} does not select cidr:${p}`);
    // The same through the IP cache: addresses inside and outside the except.
    t.equal(allows(s, s.identityForIP('1.0.0.1')), true, `${rule}: 1.0.0.1`);
    t.equal(allows(s, s.identityForIP('1.0.0.5')), !rule.includes('except'), `${rule}: 1.0.0.5`);
    t.equal(allows(s, s.identityForIP('2.0.0.1')), false, `${rule}: 2.0.0.1`);
  }
});

// TestGetAsEndpointSelectors: 0.0.0.0/0 selects the IPv4 world (cidr:0.0.0.0/0,
// reserved:world-ipv4; reserved:world itself in an IPv4-only cluster) and never the
// IPv6 world; ::/0 the reverse (cidr:::/0, reserved:world-ipv6).
t.test('cidr_test.go TestGetAsEndpointSelectors: a /0 selects its own family only', async (t) => {
  const v4 = await compileOk({ 'p.yaml': PODS + egressPolicy('toCIDR: ["0.0.0.0/0"]') });
  t.equal(allows(v4, v4.identityForIP('8.8.8.8')), true, '0.0.0.0/0: IPv4 world');
  t.equal(allows(v4, v4.identityForIP('2001:db8::1')), false, '0.0.0.0/0: not the IPv6 world');
  t.equal(allows(v4, v4.identityForLabels(['reserved:world-ipv4'])), true, 'selects reserved:world-ipv4');
  t.equal(allows(v4, v4.identityForLabels(['reserved:world-ipv6'])), false, 'not reserved:world-ipv6');
  const v6 = await compileOk({ 'p.yaml': PODS + egressPolicy('toCIDR: ["::/0"]') });
  t.equal(allows(v6, v6.identityForIP('2001:db8::1')), true, '::/0: IPv6 world');
  t.equal(allows(v6, v6.identityForIP('8.8.8.8')), false, '::/0: not the IPv4 world');
  t.equal(allows(v6, v6.identityForLabels(['reserved:world-ipv6'])), true);
  t.equal(allows(v6, v6.identityForLabels(['reserved:world-ipv4'])), false);
  // The shape that matters: "the internet except the metadata address", written for
  // IPv4, must not open IPv6 (e.g. fd00:ec2::254, the IPv6 metadata endpoint).
  const ex = await compileOk({ 'p.yaml': PODS + egressPolicy('toCIDRSet: [{cidr: 0.0.0.0/0, except: [169.254.169.254/32]}]') });
  t.equal(allows(ex, ex.identityForIP('1.1.1.1')), true);
  t.equal(allows(ex, ex.identityForIP('169.254.169.254')), false);
  t.equal(allows(ex, ex.identityForIP('fd00:ec2::254')), false);
  // Both families named: both worlds.
  const both = await compileOk({ 'p.yaml': PODS + egressPolicy('toCIDR: ["0.0.0.0/0", "::/0"]') });
  t.equal(allows(both, both.identityForIP('8.8.8.8')), true);
  t.equal(allows(both, both.identityForIP('2001:db8::1')), true);
  // The world entity stays family-agnostic (EntitySelectorMapping: world, world-ipv4, world-ipv6).
  const w = await compileOk({ 'p.yaml': PODS + egressPolicy('toEntities: [world]') });
  t.equal(allows(w, w.identityForIP('8.8.8.8')), true);
  t.equal(allows(w, w.identityForIP('2001:db8::1')), true);
  // The family entities (EntitySelectorMapping world-ipv4 / world-ipv6): IPv4 addresses
  // outside every prefix are reserved:world here, so world-ipv4 must select them.
  const w4 = await compileOk({ 'p.yaml': PODS + egressPolicy('toEntities: [world-ipv4]') });
  t.equal(allows(w4, w4.identityForIP('8.8.8.8')), true, 'world-ipv4: an IPv4 address');
  t.equal(allows(w4, w4.identityForIP('2001:db8::1')), false, 'world-ipv4: not an IPv6 one');
  const w6 = await compileOk({ 'p.yaml': PODS + egressPolicy('toEntities: [world-ipv6]') });
  t.equal(allows(w6, w6.identityForIP('2001:db8::1')), true, 'world-ipv6: an IPv6 address');
  t.equal(allows(w6, w6.identityForIP('8.8.8.8')), false, 'world-ipv6: not an IPv4 one');
});
