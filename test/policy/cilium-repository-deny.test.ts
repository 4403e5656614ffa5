/**
 * Differential check against Cilium's deny-rule tests, pkg/policy/repository_deny_test.go
 * (cilium/cilium, commit 01d4a092). Cilium asserts resolved L4 policy maps or
 * enforcement flags; each case here states the verdicts those maps imply and runs
 * them through decide(). Rules use `id=...` labels as Cilium's do.
 *
 * Not ported: FromRequires/ToRequires cases (TestL3DependentL4*DenyFromRequires and the
 * FromRequires half of TestPolicyDenyTrace): the fields are rejected by the current
 * CRD (MaxItems=0, CILIUM-SEMANTICS.md §1.4) and by l7warden. ICMP rows of
 * TestWildcardL3RulesEgressDeny: l7warden decides TCP/UDP/SCTP only.
 */
import t from 'tap';
import { compileOk, pod } from '../helpers/policy-fixtures.js';
import { Reserved } from '../../src/identity/identity.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { Identity } from '../../src/identity/identity.js';
import type { L4Proto } from '../../src/policy/api.js';

const PODS =
  pod('foo', { id: 'foo' }, '10.0.0.1') +
  pod('bar1', { id: 'bar1' }, '10.0.0.2') +
  pod('bar2', { id: 'bar2' }, '10.0.0.3') +
  pod('app1', { id: 'app1' }, '10.0.0.11') +
  pod('app2', { id: 'app2' }, '10.0.0.12') +
  pod('app3', { id: 'app3' }, '10.0.0.13');

function cnp(name: string, spec: string): string {
  return `---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: default}\nspec:\n${spec}`;
}

function idOf(s: PolicySnapshotImpl, who: string): Identity {
  if (who === 'host') return s.identities.get(Reserved.host)!;
  if (who.includes(":") || /^\d/.test(who)) return s.identityForIP(who);
  return s.endpointByName('default', who)!.identity;
}

function v(s: PolicySnapshotImpl, from: string, to: string, port: number, protocol: L4Proto = 'TCP') {
  return s.decide({ src: idOf(s, from), dst: idOf(s, to), port, protocol });
}

// TestComputePolicyDenyEnforcementAndRules: a deny-only rule turns on default deny
// in its own direction only; always / never modes override.
t.test('TestComputePolicyDenyEnforcementAndRules', async (t) => {
  const ingressDeny = cnp('r1', '  endpointSelector: {matchLabels: {id: foo}}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {id: foo}}]}]\n');
  const egressDeny = cnp('r2', '  endpointSelector: {matchLabels: {id: foo}}\n  egressDeny: [{toEndpoints: [{matchLabels: {id: foo}}]}]\n');
  const combined = cnp(
    'r3',
    '  endpointSelector: {matchLabels: {id: foo}}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {id: foo}}]}]\n  egressDeny: [{toEndpoints: [{matchLabels: {id: foo}}]}]\n',
  );
  const none = await compileOk({ 'p.yaml': PODS });
  t.equal(v(none, 'bar1', 'foo', 80).ingress?.enforced, false, 'no rules: ingress not enforced');
  t.equal(v(none, 'foo', 'bar1', 80).egress?.enforced, false, 'no rules: egress not enforced');

  const i = await compileOk({ 'p.yaml': PODS + ingressDeny });
  t.equal(v(i, 'bar1', 'foo', 80).ingress?.enforced, true, 'ingress deny rule: ingress enforced');
  t.equal(v(i, 'bar1', 'foo', 80).allowed, false);
  t.equal(v(i, 'bar1', 'foo', 80).dropReason, 'POLICY_DENIED', 'default deny, not the deny rule');
  t.equal(v(i, 'foo', 'bar1', 80).egress?.enforced, false, 'ingress deny rule: egress not enforced');
  t.equal(v(i, 'foo', 'bar1', 80).allowed, true);

  const e = await compileOk({ 'p.yaml': PODS + egressDeny });
  t.equal(v(e, 'bar1', 'foo', 80).ingress?.enforced, false);
  t.equal(v(e, 'bar1', 'foo', 80).allowed, true);
  t.equal(v(e, 'foo', 'bar1', 80).egress?.enforced, true);
  t.equal(v(e, 'foo', 'bar1', 80).allowed, false);
  t.equal(v(e, 'foo', 'foo', 80).egress?.dropReason, 'POLICY_DENY');

  const c = await compileOk({ 'p.yaml': PODS + combined });
  t.equal(v(c, 'bar1', 'foo', 80).ingress?.enforced, true);
  t.equal(v(c, 'foo', 'bar1', 80).egress?.enforced, true);

  const always = await compileOk({ 'p.yaml': PODS }, { enforcement: 'always' });
  t.equal(v(always, 'bar1', 'foo', 80).ingress?.enforced, true);
  t.equal(v(always, 'bar1', 'foo', 80).egress?.enforced, true);
  const never = await compileOk({ 'p.yaml': PODS + combined }, { enforcement: 'never' });
  t.equal(v(never, 'foo', 'foo', 80).allowed, true, 'never: not even deny rules apply');
});

// TestDeniesIngress / TestDeniesEgress (FromEndpoints parts): a deny plus nothing
// else denies everything; the deny selects only its peer.
t.test('TestDeniesIngress / TestDeniesEgress', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp('in', '  endpointSelector: {matchLabels: {id: bar1}}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {id: foo}}]}]\n') +
      cnp('out', '  endpointSelector: {matchLabels: {id: foo}}\n  egressDeny: [{toEndpoints: [{matchLabels: {id: bar1}}]}]\n'),
  });
  t.equal(v(s, 'foo', 'bar1', 80).ingress?.dropReason, 'POLICY_DENY', 'foo=>bar ingress: deny rule');
  t.equal(v(s, 'foo', 'bar1', 80).egress?.dropReason, 'POLICY_DENY', 'foo=>bar egress: deny rule');
  t.equal(v(s, 'app1', 'bar1', 80).ingress?.dropReason, 'POLICY_DENIED', 'no allow rule => denied');
  t.equal(v(s, 'foo', 'bar2', 80).egress?.dropReason, 'POLICY_DENIED', 'foo=>bar3, no rule => denied');
});

// TestWildcardL3RulesIngressDeny: 0/ANY filter, bar1 IsDeny.
t.test('TestWildcardL3RulesIngressDeny', async (t) => {
  const s = await compileOk({
    'p.yaml': PODS + cnp('l3', '  endpointSelector: {matchLabels: {id: foo}}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {id: bar1}}]}]\n'),
  });
  for (const [port, proto] of [[80, 'TCP'], [53, 'UDP'], [9092, 'TCP'], [1, 'SCTP']] as const) {
    t.equal(v(s, 'bar1', 'foo', port, proto).dropReason, 'POLICY_DENY', `bar1 ${port}/${proto}`);
  }
  t.equal(v(s, 'bar2', 'foo', 80).dropReason, 'POLICY_DENIED');
});

// TestWildcardL4RulesIngressDeny: 80/TCP and 9092/TCP filters, bar1 IsDeny.
t.test('TestWildcardL4RulesIngressDeny', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp(
        'l4',
        `  endpointSelector: {matchLabels: {id: foo}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {id: bar1}}]
    toPorts: [{ports: [{port: "9092", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {id: bar1}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
      ),
  });
  t.equal(v(s, 'bar1', 'foo', 80).dropReason, 'POLICY_DENY');
  t.equal(v(s, 'bar1', 'foo', 9092).dropReason, 'POLICY_DENY');
  t.equal(v(s, 'bar1', 'foo', 80, 'UDP').dropReason, 'POLICY_DENIED', 'only TCP is denied by rule; UDP falls to default deny');
  t.equal(v(s, 'bar1', 'foo', 81).dropReason, 'POLICY_DENIED');
});

// TestWildcardL4RulesEgressDeny: 80/TCP and 53/UDP filters to bar1.
t.test('TestWildcardL4RulesEgressDeny', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp(
        'l4',
        `  endpointSelector: {matchLabels: {id: foo}}
  egressDeny:
  - toEndpoints: [{matchLabels: {id: bar1}}]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
  - toEndpoints: [{matchLabels: {id: bar1}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
      ),
  });
  t.equal(v(s, 'foo', 'bar1', 53, 'UDP').egress?.dropReason, 'POLICY_DENY');
  t.equal(v(s, 'foo', 'bar1', 53, 'TCP').egress?.dropReason, 'POLICY_DENIED');
  t.equal(v(s, 'foo', 'bar1', 80).egress?.dropReason, 'POLICY_DENY');
});

// TestWildcardCIDRRulesEgressDeny: toCIDR 192.0.0.0/3 denied on 80/TCP and on 0/ANY.
t.test('TestWildcardCIDRRulesEgressDeny', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp(
        'cidr',
        `  endpointSelector: {matchLabels: {id: foo}}
  egressDeny:
  - toCIDR: ["192.0.0.0/3"]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - toCIDR: ["192.0.0.0/3"]
`,
      ),
  });
  for (const ip of ['192.0.0.1', '223.255.255.254', '200.1.2.3']) {
    t.equal(v(s, 'foo', ip, 80).dropReason, 'POLICY_DENY', `${ip}:80`);
    t.equal(v(s, 'foo', ip, 443).dropReason, 'POLICY_DENY', `${ip}:443`);
  }
  t.equal(v(s, 'foo', '191.255.255.255', 80).dropReason, 'POLICY_DENIED', 'outside the /3: default deny only');
  t.equal(v(s, 'foo', '224.0.0.1', 80).dropReason, 'POLICY_DENIED');
  t.equal(v(s, 'foo', 'bar1', 80).dropReason, 'POLICY_DENIED', 'CIDR rules never select pods');
});

// TestWildcardL3RulesIngressDenyFromEntities / TestWildcardL3RulesEgressDenyToEntities:
// world (and world-ipv4/-ipv6) denied on 0/ANY.
t.test('TestWildcardL3Rules{Ingress,Egress}Deny{From,To}Entities (world)', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp('in', '  endpointSelector: {matchLabels: {id: foo}}\n  ingressDeny: [{fromEntities: [world]}]\n') +
      cnp('out', '  endpointSelector: {matchLabels: {id: bar1}}\n  egressDeny: [{toEntities: [world]}]\n'),
  });
  t.equal(v(s, '8.8.8.8', 'foo', 80).dropReason, 'POLICY_DENY');
  t.equal(v(s, '2001:db8::1', 'foo', 80).dropReason, 'POLICY_DENY', 'IPv6 world');
  for (const r of [Reserved.world, Reserved.worldIPv4, Reserved.worldIPv6]) {
    const src = s.identities.get(r)!;
    t.equal(s.decide({ src, dst: idOf(s, 'foo'), port: 80, protocol: 'TCP' }).dropReason, 'POLICY_DENY', `reserved identity ${r}`);
  }
  t.equal(v(s, 'bar2', 'foo', 80).dropReason, 'POLICY_DENIED', 'pods are not world');
  t.equal(v(s, 'bar1', '8.8.8.8', 443).egress?.dropReason, 'POLICY_DENY');
  t.equal(v(s, 'bar1', 'bar2', 443).egress?.dropReason, 'POLICY_DENIED');
});

// TestMinikubeGettingStartedDeny: app2 denied on 80/TCP, app3 has no rules (and so
// is default-denied, since app1 is selected).
t.test('TestMinikubeGettingStartedDeny', async (t) => {
  const rule = '  endpointSelector: {matchLabels: {id: app1}}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {id: app2}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]\n';
  const s = await compileOk({ 'p.yaml': PODS + cnp('a', rule) + cnp('b', rule) });
  t.equal(v(s, 'app2', 'app1', 80).dropReason, 'POLICY_DENY');
  t.equal(v(s, 'app2', 'app1', 81).dropReason, 'POLICY_DENIED');
  t.equal(v(s, 'app3', 'app1', 80).dropReason, 'POLICY_DENIED');
});

// TestPolicyDenyTrace (FromEndpoints part): buildDenyRule denies from reserved:host and
// from a label, with `ports: [{port: "80"}]` (protocol unset = ANY).
t.test('TestPolicyDenyTrace', async (t) => {
  const deny = (from: string, port: string) =>
    cnp(
      `deny-${from}-${port || 'any'}`,
      `  endpointSelector: {matchLabels: {id: bar1}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {"reserved:host": ""}}, {matchLabels: {id: ${from}}}]
${port ? `    toPorts: [{ports: [{port: "${port}"}]}]\n` : ''}`,
    );
  const s = await compileOk({ 'p.yaml': PODS + deny('foo', '') + deny('bar2', '80') });
  t.equal(v(s, 'foo', 'bar1', 0).dropReason, 'POLICY_DENY', 'foo=>bar denied');
  t.equal(v(s, 'foo', 'bar1', 80).dropReason, 'POLICY_DENY', 'foo=>bar:80 denied');
  t.equal(v(s, 'bar2', 'bar1', 80).dropReason, 'POLICY_DENY', 'baz=>bar:80 denied');
  t.equal(v(s, 'bar2', 'bar1', 80, 'UDP').dropReason, 'POLICY_DENY', 'port without protocol is ANY');
  t.equal(v(s, 'bar2', 'bar1', 81).dropReason, 'POLICY_DENIED', 'baz=>bar:81: no allow rule');
  t.equal(v(s, 'bar1', 'bar1', 80).dropReason, 'POLICY_DENIED', 'bar=>bar:80: no rule');
  // The host deny also overrides the implicit allow-localhost for ingress.
  t.equal(v(s, 'host', 'bar1', 80).dropReason, 'POLICY_DENY', 'reserved:host denied despite allow-localhost');
  t.equal(v(s, 'host', 'foo', 80).allowed, true, 'foo is not selected: open');
});
