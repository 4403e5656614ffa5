/**
 * Differential check against Cilium's own merge table: pkg/policy/distillery_test.go
 * (cilium/cilium, commit 0051756b), Test_MergeRules and Test_MergeRulesWithNamedPorts.
 *
 * Cilium's test composes, for one subject endpoint `foo`, every subset of eight ingress
 * rules (generateRule: bit i set => rulesIdx[i], else an empty `ingress: [{}]` rule)
 * and asserts the BPF policy map state for it; the expectation is the 256-row
 * rawTestTable in generateMapStates (transcribed below), turned into map keys by
 * testCaseToMapState:
 *
 *   L3L4 key (foo, 80/TCP), L4 key (any, 80/TCP), L3 key (foo, any port),
 *   each absent (X) or {L3, L4, L7 (redirect to proxy), Deny}.
 *
 * The map state is turned into a verdict the way the datapath looks it up (most
 * specific port first: L3L4, then L4-only, then L3-only; the first key found decides,
 * deny or allow; none found = default deny, since `ingress: [{}]` is always there).
 * Cilium builds the table so this lookup order is exact (e.g. row 34 adds an L3L4
 * deny so an L3 deny is not bypassed by the L4 allow).
 *
 * Where the key redirects to the proxy, the HTTP verdict is the proxy's (CILIUM-
 * SEMANTICS.md §2.3, cilium/proxy network_policy.cc): any allow rule selecting the
 * remote on that port without HTTP rules (an L4-only rule on the same port, or an
 * L3-only rule, appended as port 0) allows every request; otherwise only
 * `GET /` (full match) is allowed.
 *
 * Auth-only rows of Test_MergeL3 are not ported: l7warden does not perform mutual
 * authentication (it warns and applies the rule without it, parse/peers.ts).
 */
import t, { type Test } from 'tap';
import { compileOk, http, pod } from '../helpers/policy-fixtures.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { DecisionQuery, Verdict } from '../../src/policy/types.js';

// generateMapStates rawTestTable, one row per test case: fields
// L3L4{L3,L4,L7,Deny} L4{L3,L4,L7,Deny} L3{L3,L4,L7,Deny}, X = no such key.
const RAW: readonly string[] = [
  // 0-31: allow rules only
  'XXXXXXXXXXXX', 'XXXXXXXX1000', 'XXXX0100XXXX', 'XXXX01001000',
  '1100XXXXXXXX', '1100XXXX1000', 'XXXX0100XXXX', 'XXXX01001000',
  'XXXX0110XXXX', 'XXXX01101000', 'XXXX0110XXXX', 'XXXX01101000',
  '11100110XXXX', '111001101000', '11100110XXXX', '111001101000',
  '1110XXXXXXXX', '1110XXXX1000', '11100100XXXX', '111001001000',
  '1110XXXXXXXX', '1110XXXX1000', '11100100XXXX', '111001001000',
  '11100110XXXX', '111001101000', '11100110XXXX', '111001101000',
  '11100110XXXX', '111001101000', '11100110XXXX', '111001101000',
  // 32-63: + L3 deny
  'XXXXXXXX1001', 'XXXXXXXX1001', '110101001001', '110101001001',
  'XXXXXXXX1001', 'XXXXXXXX1001', '110101001001', '110101001001',
  '110101101001', '110101101001', '110101101001', '110101101001',
  '110101101001', '110101101001', '110101101001', '110101101001',
  'XXXXXXXX1001', 'XXXXXXXX1001', '110101001001', '110101001001',
  'XXXXXXXX1001', 'XXXXXXXX1001', '110101001001', '110101001001',
  '110101101001', '110101101001', '110101101001', '110101101001',
  '110101101001', '110101101001', '110101101001', '110101101001',
  // 64-95: + L4 deny
  ...Array.from({ length: 32 }, (_, i) => (i % 2 === 0 ? 'XXXX0101XXXX' : 'XXXX01011000')),
  // 96-127: + L3 deny + L4 deny
  ...Array.from({ length: 32 }, () => 'XXXX01011001'),
  // 128-159: + L3L4 deny
  '1101XXXXXXXX', '1101XXXX1000', '11010100XXXX', '110101001000',
  '1101XXXXXXXX', '1101XXXX1000', '11010100XXXX', '110101001000',
  '11010110XXXX', '110101101000', '11010110XXXX', '110101101000',
  '11010110XXXX', '110101101000', '11010110XXXX', '110101101000',
  '1101XXXXXXXX', '1101XXXX1000', '11010100XXXX', '110101001000',
  '1101XXXXXXXX', '1101XXXX1000', '11010100XXXX', '110101001000',
  '11010110XXXX', '110101101000', '11010110XXXX', '110101101000',
  '11010110XXXX', '110101101000', '11010110XXXX', '110101101000',
  // 160-191: + L3 deny + L3L4 deny
  'XXXXXXXX1001', 'XXXXXXXX1001', '110101001001', '110101001001',
  'XXXXXXXX1001', 'XXXXXXXX1001', '110101001001', '110101001001',
  '110101101001', '110101101001', '110101101001', '110101101001',
  '110101101001', '110101101001', '110101101001', '110101101001',
  'XXXXXXXX1001', 'XXXXXXXX1001', '110101001001', '110101001001',
  'XXXXXXXX1001', 'XXXXXXXX1001', '110101001001', '110101001001',
  '110101101001', '110101101001', '110101101001', '110101101001',
  '110101101001', '110101101001', '110101101001', '110101101001',
  // 192-223: + L4 deny + L3L4 deny
  ...Array.from({ length: 32 }, (_, i) => (i % 2 === 0 ? 'XXXX0101XXXX' : 'XXXX01011000')),
  // 224-255: all three denies
  ...Array.from({ length: 32 }, () => 'XXXX11011001'),
];

interface Key {
  readonly l7: boolean;
  readonly deny: boolean;
}
function keyOf(f: string): Key | undefined {
  if (f[0] === 'X') return undefined;
  return { l7: f[2] === '1', deny: f[3] === '1' };
}

/** rulesIdx in generateRule, in bit order. `port` is "80" or the named port. */
function ruleYaml(bit: number, port: string): string {
  const foo = '[{matchLabels: {foo: ""}}]';
  const p80 = `[{ports: [{port: "${port}", protocol: TCP}]}]`;
  const p80http = `[{ports: [{port: "${port}", protocol: TCP}], rules: {http: [{method: GET, path: "/"}]}}]`;
  switch (bit) {
    case 0: return `  ingress: [{fromEndpoints: ${foo}}]`; // ruleL3____Allow
    case 1: return `  ingress: [{toPorts: ${p80}}]`; // rule__L4__Allow
    case 2: return `  ingress: [{fromEndpoints: ${foo}, toPorts: ${p80}}]`; // ruleL3L4__Allow
    case 3: return `  ingress: [{toPorts: ${p80http}}]`; // rule__L4L7Allow
    case 4: return `  ingress: [{fromEndpoints: ${foo}, toPorts: ${p80http}}]`; // ruleL3L4L7Allow
    // Deny rules are never written with named ports in Cilium's table (denyPort80).
    case 5: return '  ingressDeny: [{fromEndpoints: [{matchLabels: {foo: ""}}]}]'; // ruleL3_____Deny
    case 6: return '  ingressDeny: [{toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]'; // rule__L4___Deny
    case 7: return '  ingressDeny: [{fromEndpoints: [{matchLabels: {foo: ""}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]'; // ruleL3L4___Deny
    default: throw new Error(String(bit));
  }
}

function policyFor(tc: number, port: string): string {
  const specs: string[] = [];
  // generateRule walks bits 7..0; an unset bit contributes an empty ingress rule
  // (rule_____NoDeny / rule____NoAllow are both `ingress: [{}]`).
  for (let bit = 7; bit >= 0; bit--) {
    const body = (tc >> bit) & 1 ? ruleYaml(bit, port) : '  ingress: [{}]';
    specs.push(`- endpointSelector: {matchLabels: {foo: ""}}\n${body.replace(/^ {2}/, '  ')}`);
  }
  return `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: distillery-${tc}, namespace: default}
specs:
${specs.join('\n')}
`;
}

const PODS =
  pod('foo', { foo: '', blue: '' }, '10.0.0.1', { ports: '    ports:\n    - {name: port-80, containerPort: 80, protocol: TCP}' }) +
  pod('bar', { bar: '', blue: '' }, '10.0.0.2');

interface Expect {
  readonly allowed: boolean;
  readonly type: 'L3_L4' | 'L7';
  readonly dropReason?: 'POLICY_DENIED' | 'POLICY_DENY';
}

/** The verdict Cilium's expected map state (plus the proxy for redirected keys) gives. */
function expected(tc: number, remote: 'foo' | 'bar', port: number, proto: 'TCP' | 'UDP', req?: 'GET /' | 'PUT /x' | 'GET /x'): Expect {
  const row = RAW[tc] as string;
  const l3l4 = keyOf(row.slice(0, 4));
  const l4 = keyOf(row.slice(4, 8));
  const l3 = keyOf(row.slice(8, 12));
  const onPort = port === 80 && proto === 'TCP';
  const found = (remote === 'foo' && onPort ? l3l4 : undefined) ?? (onPort ? l4 : undefined) ?? (remote === 'foo' ? l3 : undefined);
  if (found === undefined) return { allowed: false, type: 'L3_L4', dropReason: 'POLICY_DENIED' };
  if (found.deny) return { allowed: false, type: 'L3_L4', dropReason: 'POLICY_DENY' };
  if (!found.l7) return { allowed: true, type: 'L3_L4' };
  if (req === undefined) return { allowed: true, type: 'L7' };
  const bit = (b: number) => ((tc >> b) & 1) === 1;
  const l7Free = (remote === 'foo' && (bit(0) || bit(2))) || bit(1);
  const ok = l7Free || req === 'GET /';
  return ok ? { allowed: true, type: 'L7' } : { allowed: false, type: 'L7', dropReason: 'POLICY_DENIED' };
}

function run(s: PolicySnapshotImpl, remote: 'foo' | 'bar', port: number, proto: 'TCP' | 'UDP', req?: string): Verdict {
  const ep = (n: string) => s.endpointByName('default', n)!.identity;
  const q: DecisionQuery = {
    src: ep(remote),
    dst: ep('foo'),
    port,
    protocol: proto,
    ...(req ? { http: http(req.split(' ')[0] as string, req.split(' ')[1] as string) } : {}),
  };
  return s.decide(q);
}

const PROBES: readonly [remote: 'foo' | 'bar', port: number, proto: 'TCP' | 'UDP', req?: 'GET /' | 'PUT /x' | 'GET /x'][] = [
  ['foo', 80, 'TCP'],
  ['foo', 80, 'TCP', 'GET /'],
  ['foo', 80, 'TCP', 'PUT /x'],
  ['foo', 80, 'TCP', 'GET /x'],
  ['bar', 80, 'TCP'],
  ['bar', 80, 'TCP', 'GET /'],
  ['bar', 80, 'TCP', 'PUT /x'],
  ['bar', 80, 'TCP', 'GET /x'],
  ['foo', 81, 'TCP'],
  ['bar', 81, 'TCP'],
  ['foo', 80, 'UDP'],
  ['bar', 80, 'UDP'],
];

async function checkTable(t: Test, portName: string, cases: readonly number[]): Promise<void> {
  for (const tc of cases) {
    const s = await compileOk({ 'p.yaml': PODS + policyFor(tc, portName) });
    const bad: string[] = [];
    for (const [remote, port, proto, req] of PROBES) {
      const want = expected(tc, remote, port, proto, req);
      const got = run(s, remote, port, proto, req);
      const gotE: Expect = { allowed: got.allowed, type: got.type, ...(got.dropReason ? { dropReason: got.dropReason } : {}) };
      if (JSON.stringify(gotE) !== JSON.stringify(want)) {
        bad.push(`${remote}->foo ${port}/${proto} ${req ?? ''}: got ${JSON.stringify(gotE)}, Cilium ${JSON.stringify(want)}`);
      }
    }
    t.same(bad, [], `permutation_${tc} (${portName})`);
  }
}

// Test_MergeRules: all 256 rows.
t.test('distillery Test_MergeRules: 256 rule combinations', async (t) => {
  await checkTable(t, '80', Array.from({ length: 256 }, (_, i) => i));
});

// Test_MergeRulesWithNamedPorts: the allow rules name the subject's container port
// "port-80" (80/TCP); Cilium expects the same map state as with the number (its
// explicit rows 0-31 are Test_MergeRules' with rule*npL4*).
t.test('distillery Test_MergeRulesWithNamedPorts: named port-80', async (t) => {
  await checkTable(t, 'port-80', Array.from({ length: 32 }, (_, i) => i));
});

// The expectation function must itself be able to tell cases apart: a few rows
// whose Cilium verdicts differ, checked directly so a broken table cannot pass
// by agreeing with everything.
t.test('the transcribed table distinguishes the cases it should', async (t) => {
  t.same(expected(0, 'foo', 80, 'TCP'), { allowed: false, type: 'L3_L4', dropReason: 'POLICY_DENIED' });
  t.same(expected(8, 'bar', 80, 'TCP', 'PUT /x'), { allowed: false, type: 'L7', dropReason: 'POLICY_DENIED' });
  t.same(expected(9, 'foo', 80, 'TCP', 'PUT /x'), { allowed: true, type: 'L7' }, 'L3-only foo gets all of L7 on the redirected port');
  t.same(expected(34, 'foo', 80, 'TCP'), { allowed: false, type: 'L3_L4', dropReason: 'POLICY_DENY' });
  t.same(expected(34, 'bar', 80, 'TCP'), { allowed: true, type: 'L3_L4' });
  t.same(expected(65, 'foo', 81, 'TCP'), { allowed: true, type: 'L3_L4' });
  t.same(expected(65, 'foo', 80, 'TCP'), { allowed: false, type: 'L3_L4', dropReason: 'POLICY_DENY' });
});
