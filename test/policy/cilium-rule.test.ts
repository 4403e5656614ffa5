/**
 * Differential check against Cilium's pkg/policy/rule_test.go (cilium/cilium; the
 * revision read is the hivetest/testify one with TestICMPPolicy and
 * TestIPProtocolsWithNoTransportPorts; TestRuleCanReach and TestL3Policy's CIDR map
 * come from the 2019 revisions f368bc93 / 002e48e8, where they still existed).
 *
 * Cilium's tests assert resolved L4 filters (per-port selector maps with their L7
 * rules) or LookupFlow verdicts. Each case here builds the same rule as a
 * CiliumNetworkPolicy and asserts the verdicts that structure implies for concrete
 * (source, destination, port, protocol, request) tuples, as the proxy evaluates it
 * (CILIUM-SEMANTICS.md §2.2, §2.3): on a port, an allow selecting the remote with no
 * L7 rules allows every request; a port that carries L7 rules for the remote is
 * redirected (type L7) even when a shadowing rule makes every request allowed.
 *
 * Identities as in rule_test.go: a = {id: a}, b = {id1: b, id2: t}, c = {id: t}
 * (endpointSelectorC is `id=t`, which b does not carry). Cilium's
 * WildcardEndpointSelector `*` is written `fromEndpoints: [{}]`; in a CNP that selects
 * the pods of the policy's namespace only (CILIUM-SEMANTICS.md §1.3), so world peers
 * are checked only where the rule has no L3 part (`toPorts` alone is a true wildcard).
 *
 * Not ported: the Kafka halves of TestMergeL7PolicyIngress / TestMergeL7PolicyEgress
 * (rule2, rule3, and the rule1+rule2 parser conflict) and the l7proto "testparser"
 * rules of TestL4WildcardMerge: Kafka and l7proto are gone from Cilium 1.20 and
 * rejected by l7warden (CILIUM-SEMANTICS.md, version warning). TestMatches' host rule
 * (nodeSelector policies select the node, which l7warden does not protect),
 * TestMergeListenerReference (CiliumEnvoyConfig listeners are not supported),
 * TestRuleLog (l7warden's flow records carry no policy_log; reported, not asserted
 * here), the rule-origin bookkeeping of TestL3RuleLabels / TestL4RuleLabels beyond
 * "which rule allowed" (asserted through the verdict's rule reference).
 */
import t from 'tap';
import { compileFiles, compileOk, http, pod } from '../helpers/policy-fixtures.js';
import { Reserved } from '../../src/identity/identity.js';
import { formatIssue } from '../../src/config/issues.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { Identity } from '../../src/identity/identity.js';
import type { L4Proto } from '../../src/policy/api.js';
import type { HttpAttributes } from '../../src/policy/types.js';

const NAMED = '    ports:\n    - {name: port-80, containerPort: 80, protocol: TCP}\n    - {name: port-90, containerPort: 90, protocol: TCP}';

const PODS =
  pod('a', { id: 'a' }, '172.16.0.1') +
  pod('b', { id1: 'b', id2: 't' }, '172.16.0.2') +
  pod('c', { id: 't' }, '172.16.0.3', { ports: NAMED }) +
  pod('foo', { foo: '' }, '172.16.0.4') +
  pod('baz', { baz: '' }, '172.16.0.5');

function cnp(name: string, spec: string): string {
  return `---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: default}\nspec:\n${spec}`;
}

function idOf(s: PolicySnapshotImpl, who: string): Identity {
  if (who === 'host') return s.identities.get(Reserved.host)!;
  if (who.includes(':') || /^\d/.test(who)) return s.identityForIP(who);
  const ep = s.endpointByName('default', who);
  if (ep === undefined) throw new Error(`no pod ${who}`);
  return ep.identity;
}

function v(s: PolicySnapshotImpl, from: string, to: string, port: number, req?: HttpAttributes, protocol: L4Proto = 'TCP') {
  return s.decide({ src: idOf(s, from), dst: idOf(s, to), port, protocol, ...(req ? { http: req } : {}) });
}

/** Loader/compiler errors of a policy set, formatted. */
async function errorsOf(yaml: string): Promise<string[]> {
  const c = await compileFiles({ 'p.yaml': yaml });
  return [...c.loadErrors, ...c.errors].map(formatIssue);
}

const GET = http('GET', '/');
const PUT = http('PUT', '/x');

// TestL4Policy, rule1: ingress 80/TCP and 8080/TCP with `GET /` for every peer (nil
// FromEndpoints + ToPorts = wildcard selector, L7 rules per wildcard); egress 3000/ANY
// expands to 3000/TCP, 3000/UDP and 3000/SCTP for every peer, no L7.
t.test('TestL4Policy rule1: L7 on two ports for every peer, egress ANY expands to TCP, UDP, SCTP', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp(
        'rule1',
        `  endpointSelector: {matchLabels: {id: a}}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}, {port: "8080", protocol: TCP}]
      rules: {http: [{method: GET, path: "/"}]}
  egress:
  - toPorts: [{ports: [{port: "3000", protocol: ANY}]}]
`,
      ),
  });
  for (const port of [80, 8080]) {
    t.equal(v(s, 'b', 'a', port, GET).allowed, true, `b GET / on ${port}`);
    t.equal(v(s, 'b', 'a', port, GET).type, 'L7', `${port} is redirected`);
    t.equal(v(s, 'b', 'a', port, PUT).allowed, false, `b PUT /x on ${port}: L7 deny`);
    t.equal(v(s, 'b', 'a', port, http('GET', '/x')).allowed, false, `GET /x on ${port}: path is a full match`);
    t.equal(v(s, '8.8.8.8', 'a', port, GET).allowed, true, `world GET / on ${port} (wildcard peer)`);
  }
  t.equal(v(s, 'b', 'a', 81, GET).allowed, false, '81 is not in the rule');
  for (const proto of ['TCP', 'UDP', 'SCTP'] as const) {
    t.equal(v(s, 'a', 'c', 3000, undefined, proto).allowed, true, `a => c 3000/${proto}`);
    t.equal(v(s, 'a', '8.8.8.8', 3000, undefined, proto).allowed, true, `a => world 3000/${proto}`);
    t.equal(v(s, 'a', 'c', 3000, undefined, proto).type, 'L3_L4', `3000/${proto} has no L7`);
  }
  t.equal(v(s, 'a', 'c', 3001).allowed, false, '3001 is not in the rule');
});

// TestL4Policy, rule2: an L4-only rule and a `GET /` rule on 80/TCP for the same
// (wildcard) peer merge into one selector policy with HTTP [{GET /}, {}]: every
// request allowed, still redirected (CILIUM-SEMANTICS.md §2.2).
t.test('TestL4Policy rule2: L4-only and L7 on the same port and peer wildcard the L7 rules', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp(
        'rule2',
        `  endpointSelector: {matchLabels: {id: a}}
  ingress:
  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET, path: "/"}]}
  egress:
  - toPorts: [{ports: [{port: "3000", protocol: ANY}]}]
`,
      ),
  });
  t.equal(v(s, 'b', 'a', 80, PUT).allowed, true, 'b PUT /x on 80');
  t.equal(v(s, 'b', 'a', 80, PUT).type, 'L7', 'still via the proxy');
  t.equal(v(s, '8.8.8.8', 'a', 80, PUT).allowed, true, 'world PUT /x on 80');
  t.equal(v(s, 'b', 'a', 8080, GET).allowed, false, '8080 is not in rule2');
  t.equal(v(s, 'a', 'c', 3000, undefined, 'SCTP').allowed, true, 'egress 3000/SCTP');
});

// TestMergeL4PolicyIngress: foo and baz on 80/TCP merge into one filter with both
// selectors and no L7.
t.test('TestMergeL4PolicyIngress', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp(
        'r',
        `  endpointSelector: {matchLabels: {id: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {foo: ""}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {baz: ""}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
      ),
  });
  t.equal(v(s, 'foo', 'a', 80, PUT).allowed, true, 'foo on 80');
  t.equal(v(s, 'foo', 'a', 80, PUT).type, 'L3_L4', 'no redirect');
  t.equal(v(s, 'baz', 'a', 80).allowed, true, 'baz on 80');
  t.equal(v(s, 'c', 'a', 80).allowed, false, 'c is selected by neither');
  t.equal(v(s, 'foo', 'a', 81).allowed, false, 'foo on 81');
});

// TestMergeL4PolicyEgress: a may reach b and c on 80/TCP.
t.test('TestMergeL4PolicyEgress', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp(
        'r',
        `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {id: t}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
      ),
  });
  t.equal(v(s, 'a', 'b', 80).allowed, true, 'a => b 80');
  t.equal(v(s, 'a', 'c', 80).allowed, true, 'a => c 80');
  t.equal(v(s, 'a', 'foo', 80).allowed, false, 'a => foo 80');
  t.equal(v(s, 'a', 'b', 81).allowed, false, 'a => b 81');
  t.equal(v(s, 'a', '8.8.8.8', 80).allowed, false, 'a => world 80');
});

// TestMergeL7PolicyIngress rule1: L4-only 80 (wildcard) + `GET /` (wildcard) + `GET /`
// from b. Cilium: wildcard selector HTTP [{GET /}, {}], b [{GET /}]. The proxy runs
// every rule selecting the remote, so b is also allowed everything by the wildcard's
// empty item.
t.test('TestMergeL7PolicyIngress rule1', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp(
        'rule1',
        `  endpointSelector: {matchLabels: {id: a}}
  ingress:
  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET, path: "/"}]}
  - fromEndpoints: [{matchLabels: {id1: b}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET, path: "/"}]}
`,
      ),
  });
  for (const from of ['b', 'c', '8.8.8.8']) {
    t.equal(v(s, from, 'a', 80, PUT).allowed, true, `${from} PUT /x on 80`);
    t.equal(v(s, from, 'a', 80, PUT).type, 'L7', `${from}: redirected`);
  }
  t.equal(v(s, 'b', 'a', 81).allowed, false, '81 closed');
});

// TestMergeL7PolicyEgress rule1: L4-only 80 (wildcard) + `GET /public` (wildcard) +
// `GET /private` to b. Cilium: wildcard [{GET /public}, {}], b [{GET /private}];
// every destination, b included, gets every request.
t.test('TestMergeL7PolicyEgress rule1', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp(
        'rule1',
        `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET, path: "/public"}]}
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET, path: "/private"}]}
`,
      ),
  });
  for (const to of ['b', 'c', '8.8.8.8']) {
    t.equal(v(s, 'a', to, 80, http('POST', '/other')).allowed, true, `a => ${to} POST /other`);
    t.equal(v(s, 'a', to, 80, http('POST', '/other')).egress?.type, 'L7', `a => ${to}: redirected`);
  }
  t.equal(v(s, 'a', 'b', 443).allowed, false, '443 closed');
});

// TestMergeL7PolicyEgressWithMultipleSelectors: b L4-only; c gets [{GET}, {host foo}]
// (the two rules for c merge, b's stays without L7: the regression this test guards
// was c's merge leaking into b's entry).
t.test('TestMergeL7PolicyEgressWithMultipleSelectors', async (t) => {
  const s = await compileOk({
    'p.yaml':
      PODS +
      cnp(
        'rule1',
        `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {id: t}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET}]}
  - toEndpoints: [{matchLabels: {id: t}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{host: foo}]}
`,
      ),
  });
  const b = v(s, 'a', 'b', 80, http('POST', '/x', {}, 'bar'));
  t.equal(b.allowed, true, 'a => b POST, any host: b has no L7 rules');
  t.equal(b.type, 'L3_L4', 'a => b not redirected');
  t.equal(v(s, 'a', 'c', 80, http('GET', '/x', {}, 'bar')).allowed, true, 'a => c GET (first item)');
  t.equal(v(s, 'a', 'c', 80, http('POST', '/x', {}, 'foo')).allowed, true, 'a => c POST host foo (second item)');
  const denied = v(s, 'a', 'c', 80, http('POST', '/x', {}, 'bar'));
  t.equal(denied.allowed, false, 'a => c POST host bar: neither item');
  t.equal(denied.type, 'L7');
});

// TestL4WildcardMerge: `GET /` from c and an L4-only wildcard on 80/TCP. Cilium:
// {wildcard: nil, c: [{GET /}]}: c is redirected, but the wildcard entry (no L7)
// selects c too, so every request from c is allowed; other peers are not redirected.
// rule2 is the reverse order; rule3/rule4 write the wildcard as fromEndpoints [{}].
t.test('TestL4WildcardMerge', async (t) => {
  const cGet = `  - fromEndpoints: [{matchLabels: {id: t}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET, path: "/"}]}
`;
  const l4 = '  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n';
  const l4Explicit = '  - fromEndpoints: [{}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n';
  const variants: [string, string, boolean][] = [
    ['rule1: L7 for c, then L4-only', cGet + l4, true],
    ['rule2: L4-only, then L7 for c', l4 + cGet, true],
    ['rule3: L7 for c, then fromEndpoints [{}]', cGet + l4Explicit, false],
    ['rule4: fromEndpoints [{}], then L7 for c', l4Explicit + cGet, false],
  ];
  for (const [name, ingress, worldToo] of variants) {
    const s = await compileOk({ 'p.yaml': PODS + cnp('r', `  endpointSelector: {matchLabels: {id: a}}\n  ingress:\n${ingress}`) });
    t.equal(v(s, 'c', 'a', 80, PUT).allowed, true, `${name}: c PUT /x allowed (wildcard entry)`);
    t.equal(v(s, 'c', 'a', 80, PUT).type, 'L7', `${name}: c redirected`);
    t.equal(v(s, 'b', 'a', 80, PUT).allowed, true, `${name}: b PUT /x allowed`);
    t.equal(v(s, 'b', 'a', 80, PUT).type, 'L3_L4', `${name}: b not redirected`);
    t.equal(v(s, '8.8.8.8', 'a', 80).allowed, worldToo, `${name}: world on 80`);
    t.equal(v(s, 'c', 'a', 81).allowed, false, `${name}: 81 closed`);
  }
});

// TestL3L4L7Merge: `GET /` for every peer and an L4-only rule for c on 80/TCP (both
// orders). Cilium: {c: nil, wildcard: [{GET /}]}: c may send anything (the test's
// TODO says so too), every other peer only `GET /`.
t.test('TestL3L4L7Merge', async (t) => {
  const wildGet = `  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET, path: "/"}]}
`;
  const cL4 = '  - fromEndpoints: [{matchLabels: {id: t}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n';
  for (const [name, ingress] of [['rule1', wildGet + cL4], ['rule2', cL4 + wildGet]] as const) {
    const s = await compileOk({ 'p.yaml': PODS + cnp('r', `  endpointSelector: {matchLabels: {id: a}}\n  ingress:\n${ingress}`) });
    t.equal(v(s, 'c', 'a', 80, PUT).allowed, true, `${name}: c PUT /x allowed`);
    t.equal(v(s, 'c', 'a', 80, PUT).type, 'L7', `${name}: c is redirected (the wildcard's L7 covers it)`);
    t.equal(v(s, 'b', 'a', 80, GET).allowed, true, `${name}: b GET /`);
    t.equal(v(s, 'b', 'a', 80, PUT).allowed, false, `${name}: b PUT /x denied at L7`);
    t.equal(v(s, 'b', 'a', 80, PUT).type, 'L7', `${name}: b is redirected`);
    t.equal(v(s, '8.8.8.8', 'a', 80, PUT).allowed, false, `${name}: world PUT /x denied at L7`);
    t.equal(v(s, '8.8.8.8', 'a', 80, GET).allowed, true, `${name}: world GET /`);
  }
});
