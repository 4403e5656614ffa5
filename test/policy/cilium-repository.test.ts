/**
 * Differential check against Cilium's pkg/policy/repository_test.go (the allow-rule
 * half; the deny half is cilium-repository-deny.test.ts): TestComputePolicyEnforcementAndRules,
 * TestDefaultAllow (enableDefaultDeny), TestAllowsIngress / TestAllowsEgress,
 * TestWildcardL3RulesIngress, TestWildcardL4RulesIngress, TestWildcardCIDRRulesEgress,
 * TestMinikubeGettingStarted. Cilium asserts enforcement flags or resolved L4 maps;
 * each case here states the verdicts those imply and runs them through decide().
 * Rules use `id=...` labels as Cilium's do.
 *
 * Not ported: the Kafka and l7proto ("tester") rules of TestWildcardL3RulesIngress /
 * TestWildcardL4RulesIngress (removed from Cilium 1.20, rejected by l7warden; their
 * HTTP rules are ported), the FromRequires rule of TestAllowsIngress and
 * TestL3DependentL4IngressFromRequires / EgressFromRequires (fromRequires is
 * MaxItems=0 in the current CRD), TestAllowsIngress's "no rules loaded => Denied"
 * (AllowsIngressRLocked's answer without enforcement, not a datapath verdict), and
 * the reserved:init rows of TestComputePolicyEnforcementAndRules (no l7warden
 * endpoint is initializing).
 */
import t from 'tap';
import { compileOk, http, pod } from '../helpers/policy-fixtures.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { Identity } from '../../src/identity/identity.js';
import type { HttpAttributes } from '../../src/policy/types.js';

const PODS =
  pod('foo', { id: 'foo' }, '10.0.0.1') +
  pod('bar', { id: 'bar' }, '10.0.0.2') +
  pod('bar1', { id: 'bar1' }, '10.0.0.3') +
  pod('bar2', { id: 'bar2' }, '10.0.0.4') +
  pod('baz', { id: 'baz' }, '10.0.0.5') +
  pod('app1', { id: 'app1' }, '10.0.0.11') +
  pod('app2', { id: 'app2' }, '10.0.0.12') +
  pod('app3', { id: 'app3' }, '10.0.0.13');

function cnp(name: string, spec: string): string {
  return `---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: default}\nspec:\n${spec}`;
}

function idOf(s: PolicySnapshotImpl, who: string): Identity {
  if (/^\d/.test(who)) return s.identityForIP(who);
  return s.endpointByName('default', who)!.identity;
}

function v(s: PolicySnapshotImpl, from: string, to: string, port = 80, req?: HttpAttributes) {
  return s.decide({ src: idOf(s, from), dst: idOf(s, to), port, protocol: 'TCP', ...(req ? { http: req } : {}) });
}

const fooIngress = (name: string, dd?: boolean) =>
  cnp(
    name,
    `  endpointSelector: {matchLabels: {id: foo}}\n  ingress: [{fromEndpoints: [{matchLabels: {id: foo}}]}]\n` +
      (dd === undefined ? '' : `  enableDefaultDeny: {ingress: ${dd}}\n`),
  );
const fooEgress = (name: string, dd?: boolean) =>
  cnp(
    name,
    `  endpointSelector: {matchLabels: {id: foo}}\n  egress: [{toEndpoints: [{matchLabels: {id: foo}}]}]\n` +
      (dd === undefined ? '' : `  enableDefaultDeny: {egress: ${dd}}\n`),
  );

// TestComputePolicyEnforcementAndRules: a rule with entries in one direction turns on
// enforcement in that direction only.
t.test('TestComputePolicyEnforcementAndRules', async (t) => {
  const i = await compileOk({ 'p.yaml': PODS + fooIngress('i1') + fooIngress('i2') });
  t.equal(v(i, 'bar', 'foo').ingress?.enforced, true, 'ingress rules: ingress enforced');
  t.equal(v(i, 'bar', 'foo').allowed, false);
  t.equal(v(i, 'foo', 'foo').allowed, true, 'foo => foo allowed');
  t.equal(v(i, 'foo', 'bar').egress?.enforced, false, 'no egress rules: egress not enforced');
  const e = await compileOk({ 'p.yaml': PODS + fooEgress('e1') });
  t.equal(v(e, 'bar', 'foo').ingress?.enforced, false);
  t.equal(v(e, 'foo', 'bar').egress?.enforced, true);
  t.equal(v(e, 'foo', 'bar').allowed, false);
  t.equal(v(e, 'foo', 'foo').allowed, true);
  const c = await compileOk({
    'p.yaml': PODS + cnp('c', '  endpointSelector: {matchLabels: {id: foo}}\n  ingress: [{fromEndpoints: [{matchLabels: {id: foo}}]}]\n  egress: [{toEndpoints: [{matchLabels: {id: foo}}]}]\n'),
  });
  t.equal(v(c, 'bar', 'foo').ingress?.enforced, true);
  t.equal(v(c, 'foo', 'bar').egress?.enforced, true);
  const never = await compileOk({ 'p.yaml': PODS + fooIngress('i1') }, { enforcement: 'never' });
  t.equal(v(never, 'bar', 'foo').allowed, true, 'never: not enforced');
  const always = await compileOk({ 'p.yaml': PODS }, { enforcement: 'always' });
  t.equal(v(always, 'bar', 'foo').allowed, false, 'always: enforced without rules');
});

// TestDefaultAllow: iDeny = rule with enableDefaultDeny true, iAllow = false (same
// for egress). Enforcement is on in all non-empty cases, but with only default-allow
// rules a wildcard allow is added; any default-deny rule removes that wildcard.
t.test('TestDefaultAllow', async (t) => {
  const cases: [string, string, boolean][] = [
    ['ingress [iDeny]', fooIngress('d', true), false],
    ['ingress [iAllow]', fooIngress('a', false), true],
    ['ingress [iDeny, iAllow]', fooIngress('d', true) + fooIngress('a', false), false],
  ];
  for (const [name, yaml, barAllowed] of cases) {
    const s = await compileOk({ 'p.yaml': PODS + yaml });
    t.equal(v(s, 'bar', 'foo').allowed, barAllowed, `${name}: bar => foo`);
    t.equal(v(s, 'foo', 'foo').allowed, true, `${name}: foo => foo`);
  }
  const ecases: [string, string, boolean][] = [
    ['egress [eDeny]', fooEgress('d', true), false],
    ['egress [eAllow]', fooEgress('a', false), true],
    ['egress [eDeny, eAllow]', fooEgress('d', true) + fooEgress('a', false), false],
  ];
  for (const [name, yaml, barAllowed] of ecases) {
    const s = await compileOk({ 'p.yaml': PODS + yaml });
    t.equal(v(s, 'foo', 'bar').allowed, barAllowed, `${name}: foo => bar`);
    t.equal(v(s, 'foo', '8.8.8.8').allowed, barAllowed, `${name}: foo => world`);
    t.equal(v(s, 'foo', 'foo').allowed, true, `${name}: foo => foo`);
  }
  // A default-allow rule in one direction leaves the other direction alone.
  const s = await compileOk({ 'p.yaml': PODS + fooIngress('a', false) + fooEgress('d', true) });
  t.equal(v(s, 'foo', 'bar').allowed, false, 'egress stays default deny');
});

// TestAllowsIngress / TestAllowsEgress: bar and bar2 admit foo (and only foo).
t.test('TestAllowsIngress / TestAllowsEgress', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp('r1', '  endpointSelector: {matchLabels: {id: bar}}\n  ingress: [{fromEndpoints: [{matchLabels: {id: foo}}]}]\n') +
      cnp('r3', '  endpointSelector: {matchLabels: {id: bar2}}\n  ingress: [{fromEndpoints: [{matchLabels: {id: foo}}]}]\n') +
      cnp('e1', '  endpointSelector: {matchLabels: {id: baz}}\n  egress: [{toEndpoints: [{matchLabels: {id: bar}}]}]\n'),
  });
  t.equal(v(s, 'foo', 'bar').allowed, true, 'foo=>bar is OK');
  t.equal(v(s, 'foo', 'bar2').allowed, true, 'foo=>bar2 is OK');
  t.equal(v(s, 'baz', 'bar').ingress?.allowed, false, 'baz=>bar: no ingress rule');
  t.equal(v(s, 'baz', 'bar').egress?.allowed, true, 'baz=>bar: egress OK');
  t.equal(v(s, 'baz', 'foo').egress?.allowed, false, 'baz=>foo: no egress rule');
});

// TestWildcardL3RulesIngress (HTTP part): an L3-only rule for bar1 and an L3-dependent
// HTTP rule for bar2 on 80/TCP. bar1 may send anything on any port (the L3 rule is a
// port-0 entry appended to 80), bar2 only `GET /` on 80.
t.test('TestWildcardL3RulesIngress', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp('l3', '  endpointSelector: {matchLabels: {id: foo}}\n  ingress: [{fromEndpoints: [{matchLabels: {id: bar1}}]}]\n') +
      cnp(
        'http',
        `  endpointSelector: {matchLabels: {id: foo}}
  ingress:
  - fromEndpoints: [{matchLabels: {id: bar2}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/"}]}}]
`,
      ),
  });
  t.equal(v(s, 'bar1', 'foo', 80, http('PUT', '/x')).allowed, true, 'bar1 any request on 80');
  t.equal(v(s, 'bar1', 'foo', 9092).allowed, true, 'bar1 any port');
  t.equal(v(s, 'bar2', 'foo', 80, http('GET', '/')).allowed, true, 'bar2 GET /');
  t.equal(v(s, 'bar2', 'foo', 80, http('GET', '/')).type, 'L7', 'bar2 is redirected');
  t.equal(v(s, 'bar2', 'foo', 80, http('PUT', '/')).allowed, false, 'bar2 PUT / denied at L7');
  t.equal(v(s, 'bar2', 'foo', 80, http('PUT', '/')).type, 'L7');
  t.equal(v(s, 'bar2', 'foo', 9092).allowed, false, 'bar2 other port');
  t.equal(v(s, 'baz', 'foo', 80, http('GET', '/')).allowed, false, 'baz selected by nothing');
});

// TestWildcardL4RulesIngress (HTTP part): an L4-only rule for every peer on 80/TCP
// and an HTTP rule for bar2 on 80/TCP: the L4 wildcard shadows the HTTP rule, so
// everyone may send anything on 80 (bar2 still via the proxy); 9092 stays closed.
t.test('TestWildcardL4RulesIngress', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp('l4', '  endpointSelector: {matchLabels: {id: foo}}\n  ingress: [{toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]\n') +
      cnp(
        'http',
        `  endpointSelector: {matchLabels: {id: foo}}
  ingress:
  - fromEndpoints: [{matchLabels: {id: bar2}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/"}]}}]
`,
      ),
  });
  t.equal(v(s, 'bar1', 'foo', 80, http('PUT', '/x')).allowed, true, 'bar1 any request on 80');
  t.equal(v(s, 'bar2', 'foo', 80, http('PUT', '/x')).allowed, true, 'bar2 any request on 80');
  t.equal(v(s, 'bar2', 'foo', 80, http('PUT', '/x')).type, 'L7', 'bar2 via the proxy');
  t.equal(v(s, '8.8.8.8', 'foo', 80).allowed, true, 'L4-only wildcard includes world');
  t.equal(v(s, 'bar1', 'foo', 9092).allowed, false);
});

// TestWildcardCIDRRulesEgress: toCIDR 192.0.0.0/3 with an HTTP rule (GET / with
// X-My-Header: true) on 80/TCP, and the same CIDR as an L3-only rule: the L3 rule
// (port 0) is appended to port 80, so every request to the CIDR is allowed.
t.test('TestWildcardCIDRRulesEgress', async (t) => {
  const http80 = cnp(
    'http',
    `  endpointSelector: {matchLabels: {id: foo}}
  egress:
  - toCIDR: ["192.0.0.0/3"]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/", headers: ["X-My-Header: true"]}]}}]
`,
  );
  const only = await compileOk({ 'p.yaml': PODS + http80 });
  t.equal(v(only, 'foo', '192.0.0.1', 80, http('GET', '/', { 'x-my-header': 'true' })).allowed, true, 'HTTP rule alone: match');
  t.equal(v(only, 'foo', '192.0.0.1', 80, http('GET', '/')).allowed, false, 'HTTP rule alone: header missing');
  t.equal(v(only, 'foo', '192.0.0.1', 443).allowed, false, 'HTTP rule alone: other port');
  t.equal(v(only, 'foo', '10.0.0.2', 80, http('GET', '/', { 'x-my-header': 'true' })).allowed, false, 'outside the CIDR');
  const both = await compileOk({
    'p.yaml': PODS + http80 + cnp('l3', '  endpointSelector: {matchLabels: {id: foo}}\n  egress: [{toCIDR: ["192.0.0.0/3"]}]\n'),
  });
  t.equal(v(both, 'foo', '192.0.0.1', 80, http('PUT', '/x')).allowed, true, 'with the L3 rule: anything on 80');
  t.equal(v(both, 'foo', '200.1.2.3', 443).allowed, true, 'with the L3 rule: any port');
  t.equal(v(both, 'foo', '8.8.8.8', 80).allowed, false, '8.8.8.8 is outside 192.0.0.0/3');
});

// TestMinikubeGettingStarted: app1 admits app2 on 80/TCP for GET / only (the rule is
// added twice, which must not widen it); app3 has no rule.
t.test('TestMinikubeGettingStarted', async (t) => {
  const rule = `  endpointSelector: {matchLabels: {id: app1}}
  ingress:
  - fromEndpoints: [{matchLabels: {id: app2}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/"}]}}]
`;
  const s = await compileOk({ 'p.yaml': PODS + cnp('a', rule) + cnp('b', rule) });
  t.equal(v(s, 'app2', 'app1', 80, http('GET', '/')).allowed, true);
  t.equal(v(s, 'app2', 'app1', 80, http('GET', '/')).type, 'L7');
  t.equal(v(s, 'app2', 'app1', 80, http('POST', '/')).allowed, false);
  t.equal(v(s, 'app2', 'app1', 80, http('GET', '/private')).allowed, false);
  t.equal(v(s, 'app2', 'app1', 81).allowed, false);
  t.equal(v(s, 'app3', 'app1', 80, http('GET', '/')).allowed, false);
  t.equal(v(s, 'app3', 'app1', 80, http('GET', '/')).type, 'L3_L4');
});
