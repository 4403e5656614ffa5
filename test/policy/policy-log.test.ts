/**
 * Rules' `log: {value}` on the engine's verdict (Cilium's RuleMeta log, which Hubble
 * copies to `policy_log`).
 *
 * Semantics (cilium/cilium):
 * - pkg/policy/rule.go `origin()`: each rule contributes `makeSingleRuleOrigin(labels,
 *   Log.Value)` to every policy-map entry it creates; pkg/policy/origin.go keeps the
 *   log values as a `stringList` that is sorted (`slices.Sort`, Go string order: by
 *   bytes) and, when entries for the same map key merge (`mergeStringList`),
 *   de-duplicated; an empty value contributes nothing (`Logs()` of "" is nil).
 * - pkg/policy/rule_test.go TestRuleLog: rule1 and rule2 (toEndpoints id1=b) and
 *   rule3 (toEndpoints namespace=default) all allow a → b on 80/TCP, so the one map
 *   entry for (b, 80/TCP) carries `[rule1 rule2 rule3]`; a → c matches only rule3's
 *   entry: `[rule3]`.
 * - pkg/policy/correlation/correlation.go CorrelatePolicy: `f.PolicyLog = info.Log`,
 *   the log of the map entry the datapath matched (by policy_match_type), for allows
 *   and for explicit denies alike ("policy log is independent of verdict").
 *
 * The engine gives each direction's log on the verdict (`egressLog`, `ingressLog`):
 * the values of the rules behind the map entry the lookup finds (the most specific
 * match type among the entries covering the peer and port, as for
 * `policy_match_type`; a deny entry when a deny rule decides), absent when no entry
 * with a log value matched (default deny, a direction nothing selects).
 */
import t from 'tap';
import { compileFiles, compileOk, http, pod } from '../helpers/policy-fixtures.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { Identity } from '../../src/identity/identity.js';
import type { DecisionQuery, Verdict } from '../../src/policy/types.js';

const PODS =
  pod('a', { id: 'a' }, '172.16.0.1') +
  pod('b', { id1: 'b', id2: 't' }, '172.16.0.2') +
  pod('c', { id: 't' }, '172.16.0.3') +
  pod('other', { id: 'o' }, '172.16.9.9', { ns: 'other' });

function cnp(name: string, spec: string, ns = 'default'): string {
  return `---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n${spec}`;
}

function ip(s: PolicySnapshotImpl, addr: string): Identity {
  return s.identityForIP(addr);
}

function decide(s: PolicySnapshotImpl, src: string, dst: string, port: number, extra: Partial<DecisionQuery> = {}): Verdict {
  return s.decide({ src: ip(s, src), dst: ip(s, dst), port, protocol: 'TCP', ...extra });
}

const A = '172.16.0.1';
const B = '172.16.0.2';
const C = '172.16.0.3';

t.test('TestRuleLog: every rule behind the matched map entry, sorted and unique', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml':
      cnp('rule1', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: rule1}
`) +
      cnp('rule2', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: rule2}
`) +
      cnp('rule3', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": default}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: rule3}
`),
  });
  const ab = decide(s, A, B, 80);
  t.equal(ab.allowed, true);
  t.same(ab.egressLog, ['rule1', 'rule2', 'rule3'], 'a -> b: rule1 and rule2 merge per selector, rule3 in the map entry');
  t.equal(ab.ingressLog, undefined, 'b has no ingress policy');
  const ac = decide(s, A, C, 80);
  t.equal(ac.allowed, true);
  t.same(ac.egressLog, ['rule3'], 'a -> c: rule3 only');
  const ac90 = decide(s, A, C, 90);
  t.equal(ac90.allowed, false, 'no entry for port 90');
  t.equal(ac90.egressLog, undefined, 'a default deny has no rule, so no log');
});

t.test('order and de-duplication as origin.go: Go string order, one value once', async (t) => {
  const logRule = (name: string, value: string) =>
    cnp(name, `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: ${JSON.stringify(value)}}
`);
  const s = await compileOk({
    'pods.yaml': PODS,
    // Document order is not the output order; "B" < "a" (bytes); U+FFFD (EF BF BD) <
    // U+1F600 (F0 9F 98 80) by UTF-8 bytes, the other way round in UTF-16 units.
    'p.yaml':
      logRule('r1', 'zeta') +
      logRule('r2', 'alpha') +
      logRule('r3', 'zeta') +
      logRule('r4', 'B') +
      logRule('r5', 'a "quoted" \\ value') +
      logRule('r6', '😀') +
      logRule('r7', '\uFFFD') +
      logRule('r8', ''),
  });
  const v = decide(s, A, B, 80);
  t.same(v.egressLog, ['B', 'a "quoted" \\ value', 'alpha', 'zeta', '\uFFFD', '😀']);
  t.ok(Object.isFrozen(v.egressLog), 'the list is part of the immutable snapshot');
  t.equal(decide(s, A, B, 80).egressLog, v.egressLog, 'the same array every time: nothing is built per decision');
});

t.test('a rule without a log value adds nothing; no value anywhere means no log', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml':
      cnp('plain', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`) +
      cnp('plain2', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id: t}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`) +
      cnp('logged', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id: t}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: only-me}
`),
  });
  t.equal(decide(s, A, B, 80).egressLog, undefined, 'b: only a rule without a log');
  t.same(decide(s, A, C, 80).egressLog, ['only-me'], 'c: the logged rule, the plain one adds nothing');
});

t.test('the entry the datapath finds: a broader entry does not add its rules', async (t) => {
  // L3-L4 (b on 80), L4-only (anyone on 80), L3-only (b, all ports): for a -> b:80
  // the L3-L4 entry wins (policy_match_type 2), as bpf/lib/policy.h looks up the most
  // specific key first; each entry keeps only its own rules' values.
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml':
      cnp('l3l4', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: l3l4}
`) +
      cnp('l4only', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: l4only}
`) +
      cnp('l3only', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
  log: {value: l3only}
`),
  });
  const ab = decide(s, A, B, 80);
  t.equal(ab.egress?.matchType, 2);
  t.same(ab.egressLog, ['l3l4']);
  const ac = decide(s, A, C, 80);
  t.equal(ac.egress?.matchType, 3);
  t.same(ac.egressLog, ['l4only'], 'c on 80: the L4-only entry');
  const ab90 = decide(s, A, B, 90);
  t.equal(ab90.egress?.matchType, 1);
  t.same(ab90.egressLog, ['l3only'], 'b on 90: the L3-only entry');
});

t.test('ingress and egress each carry their own entry', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml':
      cnp('out', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: out}
`) +
      cnp('in', `  endpointSelector: {matchLabels: {id1: b}}
  ingress:
  - fromEndpoints: [{matchLabels: {id: a}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: in}
`),
  });
  const v = decide(s, A, B, 80);
  t.equal(v.allowed, true);
  t.same(v.egressLog, ['out']);
  t.same(v.ingressLog, ['in']);
});

t.test('deny rules: the deny entry\'s values (correlation sets policy_log on POLICY_DENY too)', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml':
      cnp('allow', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: allow}
`) +
      cnp('deny1', `  endpointSelector: {matchLabels: {id: a}}
  egressDeny:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: deny1}
`) +
      cnp('deny2', `  endpointSelector: {matchLabels: {id: a}}
  egressDeny:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: deny2}
`),
  });
  const v = decide(s, A, B, 80);
  t.equal(v.allowed, false);
  t.equal(v.dropReason, 'POLICY_DENY');
  t.same(v.egressLog, ['deny1', 'deny2'], 'both deny rules of the entry, not the overridden allow');
});

t.test('L7 ports: the redirect entry\'s rules, whichever HTTP rule matched', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml':
      cnp('get', `  endpointSelector: {matchLabels: {id1: b}}
  ingress:
  - fromEndpoints: [{matchLabels: {id: a}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
  log: {value: get}
`) +
      cnp('post', `  endpointSelector: {matchLabels: {id1: b}}
  ingress:
  - fromEndpoints: [{matchLabels: {id: a}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: POST}]}}]
  log: {value: post}
`),
  });
  const get = decide(s, A, B, 80, { http: http('GET', '/') });
  t.equal(get.allowed, true);
  t.equal(get.type, 'L7');
  t.same(get.ingressLog, ['get', 'post']);
  const put = decide(s, A, B, 80, { http: http('PUT', '/') });
  t.equal(put.allowed, false, 'an L7 miss');
  t.same(put.ingressLog, ['get', 'post'], 'the L3/L4 entry still matched (the connection was redirected by it)');
  const conn = decide(s, A, B, 80);
  t.same(conn.ingressLog, ['get', 'post'], 'an L3/L4 question on the L7 port');
});

t.test('DNS rules: the values reach DNS decisions too', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS + pod('kube-dns', { 'k8s-app': 'kube-dns' }, '172.16.0.53', { ns: 'kube-system' }),
    'p.yaml': cnp('dns', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*.example.com"}]}}]
  log: {value: dns-rule}
`),
  });
  const kd = s.identityForIP('172.16.0.53');
  const v = s.decide({ src: ip(s, A), dst: kd, port: 53, protocol: 'UDP', dns: 'www.example.com.' });
  t.equal(v.allowed, true);
  t.same(v.egressLog, ['dns-rule']);
});

t.test('enableDefaultDeny false: the synthesized allow-all has no rule and no log', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml': cnp('audit', `  endpointSelector: {matchLabels: {id: a}}
  enableDefaultDeny: {egress: false}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: audit}
`),
  });
  t.same(decide(s, A, B, 80).egressLog, ['audit']);
  const other = decide(s, A, C, 80);
  t.equal(other.allowed, true, 'not default-deny');
  t.equal(other.egressLog, undefined, 'matched only the synthesized allow-all entry');
});

t.test('CCNP and specs[]: every rule carries its own value', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml': `---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: cw}
specs:
- endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: first}
- endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: second}
`,
  });
  t.same(decide(s, A, B, 80).egressLog, ['first', 'second']);
});

t.test('the loader still rejects values Cilium\'s CRD rejects', async (t) => {
  const c = await compileFiles({
    'pods.yaml': PODS,
    'p.yaml': cnp('bad', `  endpointSelector: {matchLabels: {id: a}}
  egress: [{toEndpoints: [{}]}]
  log: {value: "${'x'.repeat(33)}"}
`),
  });
  t.equal(c.snapshot, undefined);
  t.match(c.loadErrors.map((e) => e.message).join('\n'), /32 printable/);
});

t.test('identities unknown at compile time (the run-time view) get the same lists', async (t) => {
  const s = await compileOk({
    'pods.yaml': PODS,
    'p.yaml':
      cnp('one', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {id1: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: one}
`) +
      cnp('two', `  endpointSelector: {matchLabels: {id: a}}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": default}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: two}
`),
  });
  const fresh = s.identityForLabels(['k8s:id1=b', 'k8s:id2=new', 'k8s:io.kubernetes.pod.namespace=default']);
  t.notOk(s.identities.has(fresh.id), 'not a compile-time identity');
  const v = s.decide({ src: ip(s, A), dst: fresh, port: 80, protocol: 'TCP' });
  t.equal(v.allowed, true);
  t.same(v.egressLog, ['one', 'two']);
  t.same(decide(s, A, B, 80).egressLog, ['one', 'two'], 'as for the known identity with the same selections');
});
