/**
 * Differential check against Cilium's rule sanitization tests,
 * pkg/policy/api/rule_validation_test.go (cilium/cilium, commit 9b71c6a7). Every rule
 * Cilium rejects must be rejected by the loader with a located error
 * (`file:line:col: path: message`); every rule it accepts must load. Cilium's Go
 * rule values are written as the CNP YAML a user would apply.
 *
 * Not ported: TestL7Rules (l7proto / l7 key-value rules: removed from Cilium 1.20 and
 * rejected by l7warden), the Kafka half of TestL7RuleDirectionalitySupport (same),
 * the Listener cases of TestL7RulesWithNonTCPProtocols (CiliumEnvoyConfig listeners
 * are not supported, SPEC.md), TestToServicesSanitize (the answer differs between
 * Cilium versions: old ones reject toServices + toPorts, current ones accept it;
 * l7warden has no Services), the FromRequires / ToRequires rows of
 * TestInvalidEndpointSelectors (rejected outright, MaxItems=0) and
 * TestL7RulesWithNodeSelector's valid host-egress DNS row (that revision accepts DNS
 * rules in host egress policies, older ones reject every L7 rule in a host policy;
 * l7warden has no host endpoint to redirect and keeps rejecting them).
 */
import t from 'tap';
import { loadConfigDir } from '../../src/config/load.js';
import { formatIssue } from '../../src/config/issues.js';
import type { TestT } from '../helpers/tap.js';

function cnp(spec: string, kind = 'CiliumNetworkPolicy'): string {
  return `apiVersion: cilium.io/v2\nkind: ${kind}\nmetadata:\n  name: p\nspec:\n${spec.replace(/^\n/, '').replace(/\s+$/, '')}\n`;
}

type Tst = TestT;

async function errorsOf(t: Tst, yaml: string): Promise<string[]> {
  const dir = t.testdir({ config: { 'p.yaml': yaml } });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  return r.errors.map(formatIssue);
}

/** Cilium rejects: one located error at `path`, its message matching `msg`. */
async function rejects(t: Tst, name: string, yaml: string, path: string, msg: RegExp): Promise<void> {
  const errs = await errorsOf(t, yaml);
  const hit = errs.find((e) => e.includes(`: ${path}: `));
  t.ok(hit, `${name}: an error at ${path} (got ${JSON.stringify(errs)})`);
  if (hit) {
    t.match(hit, /^config\/p\.yaml:\d+:\d+: /, `${name}: located`);
    t.match(hit, msg, `${name}: message`);
  }
}

async function accepts(t: Tst, name: string, yaml: string): Promise<void> {
  t.same(await errorsOf(t, yaml), [], `${name}: loads`);
}

const WILD_IN = '  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    toPorts:\n';
const WILD_OUT = '  endpointSelector: {}\n  egress:\n  - toEndpoints: [{}]\n    toPorts:\n';

t.test('TestL7RulesWithNonTCPProtocols', async (t) => {
  await accepts(t, 'HTTP on 80/TCP and 81/TCP', cnp(WILD_IN + '    - ports: [{port: "80", protocol: TCP}, {port: "81", protocol: TCP}]\n      rules: {http: [{method: GET, path: "/"}]}'));
  await rejects(t, 'DNS without ports', cnp(WILD_OUT + '    - rules: {dns: [{matchName: domain.com}]}'), 'spec.egress[0].toPorts[0].rules.dns', /Port 53 must be specified for DNS rules/);
  await accepts(t, 'DNS on 53/TCP and 53/UDP', cnp(WILD_OUT + '    - ports: [{port: "53", protocol: TCP}, {port: "53", protocol: UDP}]\n      rules: {dns: [{matchName: domain.com}]}'));
  await accepts(t, 'SCTP without L7', cnp(WILD_OUT + '    - ports: [{port: "4000", protocol: SCTP}]'));
  await rejects(t, 'HTTP on UDP', cnp(WILD_IN + '    - ports: [{port: "80", protocol: UDP}]\n      rules: {http: [{method: GET, path: "/"}]}'), 'spec.ingress[0].toPorts[0].ports[0].protocol', /L7 rules can only apply to TCP \(not UDP\) except for DNS rules/);
  await rejects(t, 'DNS on ingress', cnp(WILD_IN + '    - ports: [{port: "53", protocol: ANY}]\n      rules: {dns: [{matchName: domain.com}]}'), 'spec.ingress[0].toPorts[0].rules.dns', /DNS rules are not allowed on ingress/);
  await rejects(t, 'HTTP on ANY', cnp(WILD_IN + '    - ports: [{port: "80", protocol: ANY}]\n      rules: {http: [{method: GET, path: "/"}]}'), 'spec.ingress[0].toPorts[0].ports[0].protocol', /L7 rules can only apply to TCP \(not ANY\)/);
  await rejects(t, 'HTTP on TCP + UDP', cnp(WILD_IN + '    - ports: [{port: "80", protocol: TCP}, {port: "12345", protocol: UDP}]\n      rules: {http: [{method: GET, path: "/"}]}'), 'spec.ingress[0].toPorts[0].ports[1].protocol', /not UDP/);
  await rejects(t, 'HTTP on UDP + TCP', cnp(WILD_IN + '    - ports: [{port: "80", protocol: UDP}, {port: "12345", protocol: TCP}]\n      rules: {http: [{method: GET, path: "/"}]}'), 'spec.ingress[0].toPorts[0].ports[0].protocol', /not UDP/);
  await accepts(t, 'serverNames without L7', cnp(WILD_OUT + '    - ports: [{port: "443", protocol: TCP}]\n      serverNames: [foo.bar.com, bar.foo.com]'));
  await rejects(t, 'empty server name', cnp(WILD_OUT + '    - ports: [{port: "443", protocol: TCP}]\n      serverNames: [""]'), 'spec.egress[0].toPorts[0].serverNames[0]', /Empty server name is not allowed/);
  await rejects(t, 'serverNames + L7 without terminatingTLS', cnp(WILD_OUT + '    - ports: [{port: "443", protocol: TCP}]\n      serverNames: [foo.bar.com]\n      rules: {http: [{method: GET, path: "/"}]}'), 'spec.egress[0].toPorts[0].serverNames', /ServerNames are not allowed with L7 rules without TLS termination/);
  await accepts(t, 'serverNames + L7 with terminatingTLS', cnp(WILD_OUT + '    - ports: [{port: "443", protocol: TCP}]\n      terminatingTLS: {secret: {name: test-secret}}\n      serverNames: [foo.bar.com, bar.foo.com]\n      rules: {http: [{method: GET, path: "/"}]}'));
});

t.test('TestL7RuleRejectsEmptyPort', async (t) => {
  await rejects(t, 'HTTP on port 0', cnp(WILD_IN + '    - ports: [{port: "0", protocol: TCP}]\n      rules: {http: [{}]}'), 'spec.ingress[0].toPorts[0].ports[0].port', /L7 rules can not be used when a port is 0/);
});

t.test('TestHTTPRuleRegexes', async (t) => {
  await rejects(t, 'path "*"', cnp(WILD_IN + '    - ports: [{port: "80", protocol: TCP}, {port: "81", protocol: TCP}]\n      rules: {http: [{method: GET, path: "*"}]}'), 'spec.ingress[0].toPorts[0].rules.http[0].path', /./);
  await rejects(t, 'method "*"', cnp(WILD_IN + '    - ports: [{port: "80", protocol: TCP}, {port: "81", protocol: TCP}]\n      rules: {http: [{method: "*", path: "/"}]}'), 'spec.ingress[0].toPorts[0].rules.http[0].method', /./);
});

t.test('TestCIDRsanitize', async (t) => {
  for (const c of ['0.0.0.0/0', '10.0.0.0/24', '192.0.2.3/32', '::/0', 'ff02::/64', '2001:0db8:85a3:0000:0000:8a2e:0370:7334/128']) {
    await accepts(t, c, cnp(`  endpointSelector: {}\n  egress: [{toCIDRSet: [{cidr: "${c}"}]}]`));
  }
  await rejects(t, 'non-contiguous mask', cnp('  endpointSelector: {}\n  egress: [{toCIDRSet: [{cidr: "10.0.0.0/254.0.0.255"}]}]'), 'spec.egress[0].toCIDRSet[0].cidr', /Unable to parse CIDRRule/);
});

t.test('TestL7RulesWithNodeSelector', async (t) => {
  const ccnp = (s: string) => cnp(s, 'CiliumClusterwideNetworkPolicy');
  await rejects(t, 'host ingress HTTP', ccnp('  nodeSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    toPorts:\n    - ports: [{port: "80", protocol: TCP}]\n      rules: {http: [{method: PUT, path: "/"}]}'), 'spec.ingress[0].toPorts[0].rules', /host/);
  await rejects(t, 'host egress HTTP', ccnp('  nodeSelector: {}\n  egress:\n  - toEndpoints: [{}]\n    toPorts:\n    - ports: [{port: "80", protocol: TCP}]\n      rules: {http: [{method: PUT, path: "/"}]}'), 'spec.egress[0].toPorts[0].rules', /host/);
  await accepts(t, 'host ingress L3 only', ccnp('  nodeSelector: {}\n  ingress: [{fromEndpoints: [{}]}]'));
});

t.test('TestInvalidEndpointSelectors / TestNodeSelector', async (t) => {
  const bad = '{matchLabels: {"any.foo": bar, "k8s.baz": alice}, matchExpressions: [{key: "any.foo", operator: asdfasdfasdf, values: [default]}]}';
  await rejects(t, 'endpointSelector', cnp(`  endpointSelector: ${bad}\n  ingress: [{}]`), 'spec.endpointSelector.matchExpressions[0].operator', /not "asdfasdfasdf"/);
  await rejects(t, 'fromEndpoints', cnp(`  endpointSelector: {}\n  ingress: [{fromEndpoints: [${bad}]}]`), 'spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator', /asdfasdfasdf/);
  await rejects(t, 'toEndpoints', cnp(`  endpointSelector: {}\n  egress: [{toEndpoints: [${bad}]}]`), 'spec.egress[0].toEndpoints[0].matchExpressions[0].operator', /asdfasdfasdf/);
  await rejects(t, 'nodeSelector', cnp(`  nodeSelector: ${bad}\n  ingress: [{}]`, 'CiliumClusterwideNetworkPolicy'), 'spec.nodeSelector.matchExpressions[0].operator', /asdfasdfasdf/);
  await rejects(t, 'both selectors', cnp('  endpointSelector: {}\n  nodeSelector: {}\n  ingress: [{}]', 'CiliumClusterwideNetworkPolicy'), 'spec.nodeSelector', /rule cannot have both EndpointSelector and NodeSelector/);
  const none = await errorsOf(t, cnp('  ingress: [{}]'));
  t.match(none.join('\n'), /^config\/p\.yaml:\d+:\d+: spec: rule must have one of EndpointSelector or NodeSelector/m, 'no selector');
});

t.test('TestTooManyPortsRule', async (t) => {
  const ports = Array.from({ length: 41 }, (_, i) => `{port: "${80 + i}", protocol: TCP}`).join(', ');
  await rejects(t, '41 ports', cnp(`${WILD_IN}    - ports: [${ports}]`), 'spec.ingress[0].toPorts[0].ports', /too many ports, the max is 40/);
  const forty = Array.from({ length: 40 }, (_, i) => `{port: "${80 + i}", protocol: TCP}`).join(', ');
  await accepts(t, '40 ports', cnp(`${WILD_IN}    - ports: [${forty}]`));
});

t.test('TestTooManyICMPFields', async (t) => {
  const fields = Array.from({ length: 41 }, (_, i) => `{type: ${i + 1}}`).join(', ');
  await rejects(t, '41 ICMP fields', cnp(`  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    icmps: [{fields: [${fields}]}]`), 'spec.ingress[0].icmps[0].fields', /too many types, the max is 40/);
});

t.test('TestWrongICMPFieldFamily', async (t) => {
  await rejects(t, 'family hoge', cnp('  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    icmps: [{fields: [{family: hoge, type: 0}]}]'), 'spec.ingress[0].icmps[0].fields[0].family', /hoge/);
});

t.test('TestICMPRuleWithOtherRuleFailed', async (t) => {
  const msg = /The ICMPs block may only be present without ToPorts/;
  await rejects(t, 'ingress', cnp('  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n    icmps: [{fields: [{type: 8}]}]'), 'spec.ingress[0]', msg);
  await rejects(t, 'egress', cnp('  endpointSelector: {}\n  egress:\n  - toEndpoints: [{}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n    icmps: [{fields: [{type: 8}]}]'), 'spec.egress[0]', msg);
});

t.test('TestL7RuleDirectionalitySupport (DNS)', async (t) => {
  await rejects(t, 'DNS ingress', cnp('  endpointSelector: {}\n  ingress:\n  - toPorts:\n    - ports: [{port: "53", protocol: TCP}, {port: "53", protocol: UDP}]\n      rules: {dns: [{matchName: empire.gov}]}'), 'spec.ingress[0].toPorts[0].rules.dns', /DNS rules are not allowed on ingress/);
});
