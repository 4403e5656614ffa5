// Differential check of the policy loader against Cilium's CRD OpenAPI schema, the layer
// `kubectl apply` / the API server applies before Cilium sees a policy
// (cilium/cilium pkg/k8s/apis/cilium.io/client/crds/v2/ciliumnetworkpolicies.yaml and
// ciliumclusterwidenetworkpolicies.yaml, generated from the kubebuilder markers in
// pkg/policy/api/*.go). For each constraint: one input the schema rejects (it must be a
// located error here: file:line:col, field path, message) and one it just accepts (it
// must load, or be refused as "not supported" where l7warden does not implement a field).
// Cilium's Go-side sanitisation (rule_validation.go) is ported in
// test/policy/cilium-rule-validation.test.ts and is not repeated here.
import t from 'tap';
import { loadConfigDir } from '../../../src/config/load.js';
import { formatIssue } from '../../../src/config/issues.js';
import type { TestT } from '../../helpers/tap.js';

/** line:col of the nth occurrence of `needle` in `text` (1-based, as the loader reports). */
function pos(text: string, needle: string, nth = 0): string {
  let idx = -1;
  for (let i = 0; i <= nth; i++) {
    idx = text.indexOf(needle, idx + 1);
    if (idx < 0) throw new Error(`fixture has no ${JSON.stringify(needle)}`);
  }
  const before = text.slice(0, idx);
  return `${before.split('\n').length}:${idx - before.lastIndexOf('\n')}`;
}

function doc(spec: string, kind = 'CiliumNetworkPolicy'): string {
  return `apiVersion: cilium.io/v2
kind: ${kind}
metadata:
  name: p
spec:
${spec.replace(/^\n/, '').replace(/\s+$/, '')}
`;
}

/** An egress element with one toPorts entry, `extra` indented under the PortRule. */
function egressPorts(ports: string, extra = ''): string {
  return `
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: ${ports}${extra ? `\n      ${extra.trim().split('\n').join('\n      ')}` : ''}`;
}

async function load(t: TestT, yaml: string): Promise<{ errors: string[]; warnings: string[] }> {
  const dir = t.testdir({ config: { 'p.yaml': yaml } });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  return { errors: r.errors.map(formatIssue), warnings: r.warnings.map(formatIssue) };
}

interface Reject {
  /** Schema path of the constraint (openAPIV3Schema.properties.spec…). */
  schema: string;
  name: string;
  yaml: string;
  /** The one error: where (needle, nth occurrence), field path, message pattern. */
  at: [string, number];
  path: string;
  msg: RegExp;
}

interface Accept {
  schema: string;
  name: string;
  yaml: string;
}

const S = 'spec';
const E = `${S}.egress.items`;
const I = `${S}.ingress.items`;
const PR = `${E}.toPorts.items`;
const PP = `${PR}.ports.items`;
const HTTP = `${PR}.rules.http.items`;
const SEL = `${S}.endpointSelector`;

const long = (n: number, c = 'a') => c.repeat(n);
const labelValue63 = long(63);
const fqdn = (n: number) => `${long(n - 4)}.com`; // n characters
const ports41 = `[${Array.from({ length: 41 }, (_, i) => `{port: "${1000 + i}"}`).join(', ')}]`;
const ports40 = `[${Array.from({ length: 40 }, (_, i) => `{port: "${1000 + i}"}`).join(', ')}]`;

const rejects: Reject[] = [
  // --- rule level ---------------------------------------------------------------------
  {
    schema: `${S}.oneOf[endpointSelector|nodeSelector]`, name: 'both endpointSelector and nodeSelector',
    yaml: doc(`
  endpointSelector: {}
  nodeSelector: {}
  ingress: [{}]`, 'CiliumClusterwideNetworkPolicy'),
    at: ['{}', 1], path: 'spec.nodeSelector', msg: /both/,
  },
  {
    schema: `${S}.oneOf[endpointSelector|nodeSelector]`, name: 'neither selector',
    yaml: doc(`
  ingress: [{}]`),
    at: ['ingress', 0], path: 'spec', msg: /EndpointSelector or NodeSelector/,
  },
  {
    schema: `${S}.anyOf[ingress|ingressDeny|egress|egressDeny]`, name: 'no section',
    yaml: doc(`
  endpointSelector: {}
  description: x`),
    at: ['endpointSelector', 0], path: 'spec', msg: /at least one of/,
  },
  {
    schema: `${S}.description.type=string`, name: 'description is a number',
    yaml: doc(`
  endpointSelector: {}
  description: 5
  ingress: [{}]`),
    at: ['5', 0], path: 'spec.description', msg: /must be a string/,
  },
  {
    schema: `${S}.properties (unknown field)`, name: 'unknown rule field',
    yaml: doc(`
  endpointSelector: {}
  ingres: [{}]
  ingress: [{}]`),
    at: ['ingres:', 0], path: 'spec.ingres', msg: /unknown field/,
  },
  {
    schema: `${S}.enableDefaultDeny.ingress.type=boolean`, name: 'enableDefaultDeny string',
    yaml: doc(`
  endpointSelector: {}
  enableDefaultDeny: {ingress: "false"}
  ingress: [{}]`),
    at: ['"false"', 0], path: 'spec.enableDefaultDeny.ingress', msg: /true or false/,
  },
  {
    schema: `${S}.labels.items.required[key]`, name: 'rule label without key',
    yaml: doc(`
  endpointSelector: {}
  labels: [{value: x}]
  ingress: [{}]`),
    at: ['{value: x}', 0], path: 'spec.labels[0].key', msg: /required/,
  },
  {
    schema: `${S}.log.value.maxLength=32`, name: 'log value of 33 characters',
    yaml: doc(`
  endpointSelector: {}
  log: {value: ${long(33)}}
  ingress: [{}]`),
    at: [long(33), 0], path: 'spec.log.value', msg: /32/,
  },
  {
    schema: `${S}.log.value.pattern=^\\PC*$`, name: 'log value with a control character',
    yaml: doc(`
  endpointSelector: {}
  log: {value: "a\\tb"}
  ingress: [{}]`),
    at: ['"a\\tb"', 0], path: 'spec.log.value', msg: /printable/,
  },
  // --- label selectors ----------------------------------------------------------------
  {
    schema: `${SEL}.matchLabels.additionalProperties.pattern`, name: 'label value with a space',
    yaml: doc(`
  endpointSelector: {matchLabels: {app: "foo bar"}}
  ingress: [{}]`),
    at: ['"foo bar"', 0], path: 'spec.endpointSelector.matchLabels.app', msg: /label value/,
  },
  {
    schema: `${SEL}.matchLabels.additionalProperties.pattern`, name: 'label value starting with a dash',
    yaml: doc(`
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {app: -x}}]`),
    at: ['-x', 0], path: 'spec.ingress[0].fromEndpoints[0].matchLabels.app', msg: /label value/,
  },
  {
    schema: `${SEL}.matchLabels.additionalProperties.maxLength=63`, name: 'label value of 64 characters',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toEndpoints: [{matchLabels: {app: ${long(64)}}}]`),
    at: [long(64), 0], path: 'spec.egress[0].toEndpoints[0].matchLabels.app', msg: /63/,
  },
  {
    schema: `${SEL}.matchLabels.additionalProperties.type=string`, name: 'label value is a number',
    yaml: doc(`
  endpointSelector: {matchLabels: {tier: 1}}
  ingress: [{}]`),
    at: ['1}}', 0], path: 'spec.endpointSelector.matchLabels.tier', msg: /must be a string/,
  },
  {
    schema: `${SEL}.matchExpressions.items.operator.enum`, name: 'operator in lower case',
    yaml: doc(`
  endpointSelector: {matchExpressions: [{key: app, operator: in, values: [a]}]}
  ingress: [{}]`),
    at: ['in,', 0], path: 'spec.endpointSelector.matchExpressions[0].operator', msg: /must be one of/,
  },
  {
    schema: `${SEL}.matchExpressions.items.required[key]`, name: 'expression without key',
    yaml: doc(`
  endpointSelector: {matchExpressions: [{operator: Exists}]}
  ingress: [{}]`),
    at: ['{operator', 0], path: 'spec.endpointSelector.matchExpressions[0].key', msg: /required/,
  },
  {
    schema: `${S}.nodeSelector.matchLabels.additionalProperties.pattern`, name: 'node selector label value',
    yaml: doc(`
  nodeSelector: {matchLabels: {role: "a/b"}}
  ingress: [{}]`, 'CiliumClusterwideNetworkPolicy'),
    at: ['"a/b"', 0], path: 'spec.nodeSelector.matchLabels.role', msg: /label value/,
  },
  // --- peers --------------------------------------------------------------------------
  {
    schema: `${E}.toEntities.items.enum`, name: 'entity in another case',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toEntities: [World]`),
    at: ['World', 0], path: 'spec.egress[0].toEntities[0]', msg: /World/,
  },
  {
    schema: `${E}.toCIDR.items.format=cidr`, name: 'toCIDR bare IPv4 address',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toCIDR: [10.0.0.1]`),
    at: ['10.0.0.1', 0], path: 'spec.egress[0].toCIDR[0]', msg: /prefix length/,
  },
  {
    schema: `${I}.fromCIDR.items.format=cidr`, name: 'fromCIDR bare IPv6 address',
    yaml: doc(`
  endpointSelector: {}
  ingress:
  - fromCIDR: ["2001:db8::1"]`),
    at: ['"2001:db8::1"', 0], path: 'spec.ingress[0].fromCIDR[0]', msg: /prefix length/,
  },
  {
    schema: `${E}.toCIDR.items.format=cidr`, name: 'toCIDR prefix too long',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toCIDR: [10.0.0.0/33]`),
    at: ['10.0.0.0/33', 0], path: 'spec.egress[0].toCIDR[0]', msg: /33/,
  },
  {
    schema: `${E}.toCIDRSet.items.oneOf[cidr|cidrGroupRef|cidrGroupSelector]`, name: 'toCIDRSet item without cidr',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toCIDRSet: [{except: [10.0.0.0/9]}]`),
    at: ['{except', 0], path: 'spec.egress[0].toCIDRSet[0].cidr', msg: /required/,
  },
  {
    schema: `${E}.toCIDRSet.items.except.items.format=cidr`, name: 'except bare address',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.0.0.1]}]`),
    at: ['10.0.0.1', 0], path: 'spec.egress[0].toCIDRSet[0].except[0]', msg: /10\.0\.0\.1/,
  },
  {
    schema: `${E}.toFQDNs.items.oneOf[matchName|matchPattern]`, name: 'toFQDNs with both (one empty)',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchName: "", matchPattern: "*.example.com"}]`),
    at: ['{matchName', 0], path: 'spec.egress[0].toFQDNs[0]', msg: /only one of/,
  },
  {
    schema: `${E}.toFQDNs.items.oneOf[matchName|matchPattern]`, name: 'toFQDNs item with neither',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toFQDNs: [{}]`),
    at: ['{}]', 0], path: 'spec.egress[0].toFQDNs[0]', msg: /one of matchName or matchPattern/,
  },
  {
    schema: `${E}.toFQDNs.items.matchName.pattern=^([-a-zA-Z0-9_]+[.]?)+$`, name: 'matchName with an empty label',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchName: "a..example.com"}]`),
    at: ['"a..example.com"', 0], path: 'spec.egress[0].toFQDNs[0].matchName', msg: /a\.\.example\.com/,
  },
  {
    schema: `${E}.toFQDNs.items.matchName.pattern=^([-a-zA-Z0-9_]+[.]?)+$`, name: 'matchName with a leading dot',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchName: ".example.com"}]`),
    at: ['".example.com"', 0], path: 'spec.egress[0].toFQDNs[0].matchName', msg: /example/,
  },
  {
    schema: `${E}.toFQDNs.items.matchName.maxLength=255`, name: 'matchName of 256 characters',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchName: ${fqdn(256)}}]`),
    at: [fqdn(256), 0], path: 'spec.egress[0].toFQDNs[0].matchName', msg: /255/,
  },
  {
    schema: `${E}.toFQDNs.items.matchPattern.pattern=^([-a-zA-Z0-9_*]+[.]?)+$`, name: 'matchPattern "."',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchPattern: "."}]`),
    at: ['"."', 0], path: 'spec.egress[0].toFQDNs[0].matchPattern', msg: /"\."/,
  },
  {
    schema: `${E}.toFQDNs.items.matchPattern.pattern=^([-a-zA-Z0-9_*]+[.]?)+$`, name: 'matchPattern with an empty label',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchPattern: "*..example.com"}]`),
    at: ['"*..example.com"', 0], path: 'spec.egress[0].toFQDNs[0].matchPattern', msg: /example/,
  },
  {
    schema: `${E}.toGroups`, name: 'toGroups (not supported)',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toGroups: [{aws: {securityGroupsIds: [sg-1]}}]`),
    at: ['[{aws', 0], path: 'spec.egress[0].toGroups', msg: /not supported/,
  },
  {
    schema: `${E}.toServices`, name: 'toServices (not supported)',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toServices: [{k8sService: {serviceName: a, namespace: b}}]`),
    at: ['[{k8sService', 0], path: 'spec.egress[0].toServices', msg: /not supported/,
  },
  {
    schema: `${E}.toRequires.maxItems=0`, name: 'toRequires with an item',
    yaml: doc(`
  endpointSelector: {}
  egress:
  - toRequires: [{matchLabels: {a: b}}]`),
    at: ['[{matchLabels', 0], path: 'spec.egress[0].toRequires', msg: /at most 0/,
  },
  {
    schema: `${I}.authentication.required[mode]`, name: 'authentication without mode',
    yaml: doc(`
  endpointSelector: {}
  ingress:
  - authentication: {}`),
    at: ['{}', 1], path: 'spec.ingress[0].authentication.mode', msg: /required/,
  },
  {
    schema: `${I}.authentication.mode.enum`, name: 'authentication mode in another case',
    yaml: doc(`
  endpointSelector: {}
  ingress:
  - authentication: {mode: Required}`),
    at: ['Required', 0], path: 'spec.ingress[0].authentication.mode', msg: /must be one of/,
  },
  {
    schema: `${I}.icmps.items.fields.items.type.pattern`, name: 'ICMP type name not in the list',
    yaml: doc(`
  endpointSelector: {}
  ingress:
  - icmps: [{fields: [{type: Ping}]}]`),
    at: ['Ping', 0], path: 'spec.ingress[0].icmps[0].fields[0].type', msg: /Ping/,
  },
  {
    schema: `${I}.icmps.items.fields.items.type.pattern`, name: 'ICMP type "256" as a string',
    yaml: doc(`
  endpointSelector: {}
  ingress:
  - icmps: [{fields: [{type: "256"}]}]`),
    at: ['"256"', 0], path: 'spec.ingress[0].icmps[0].fields[0].type', msg: /256/,
  },
  {
    schema: `${I}.icmps.items.fields.items.family.enum`, name: 'ICMP family in lower case',
    yaml: doc(`
  endpointSelector: {}
  ingress:
  - icmps: [{fields: [{type: 8, family: ipv4}]}]`),
    at: ['ipv4', 0], path: 'spec.ingress[0].icmps[0].fields[0].family', msg: /must be one of/,
  },
  {
    schema: `${I}.icmps.items.fields.items.required[type]`, name: 'ICMP field without type',
    yaml: doc(`
  endpointSelector: {}
  ingress:
  - icmps: [{fields: [{family: IPv4}]}]`),
    at: ['{family', 0], path: 'spec.ingress[0].icmps[0].fields[0].type', msg: /required/,
  },
  // --- toPorts ------------------------------------------------------------------------
  {
    schema: `${PP}.port.type=string`, name: 'port written as a YAML integer',
    yaml: doc(egressPorts('[{port: 80}]')),
    at: ['80', 0], path: 'spec.egress[0].toPorts[0].ports[0].port', msg: /string/,
  },
  {
    schema: `${PP}.port.pattern`, name: 'empty port',
    yaml: doc(egressPorts('[{port: ""}]')),
    at: ['""', 0], path: 'spec.egress[0].toPorts[0].ports[0].port', msg: /Port must be specified/,
  },
  {
    schema: `${PP}.port.pattern`, name: 'port with a space',
    yaml: doc(egressPorts('[{port: " 80"}]')),
    at: ['" 80"', 0], path: 'spec.egress[0].toPorts[0].ports[0].port', msg: /not a port/,
  },
  {
    schema: `${PP}.endPort.minimum=0`, name: 'endPort -1',
    yaml: doc(egressPorts('[{port: "80", endPort: -1}]')),
    at: ['-1', 0], path: 'spec.egress[0].toPorts[0].ports[0].endPort', msg: /at least 0/,
  },
  {
    schema: `${PP}.endPort.maximum=65535`, name: 'endPort 65536',
    yaml: doc(egressPorts('[{port: "80", endPort: 65536}]')),
    at: ['65536', 0], path: 'spec.egress[0].toPorts[0].ports[0].endPort', msg: /at most 65535/,
  },
  {
    schema: `${PP}.endPort.type=integer`, name: 'endPort as a string',
    yaml: doc(egressPorts('[{port: "80", endPort: "90"}]')),
    at: ['"90"', 0], path: 'spec.egress[0].toPorts[0].ports[0].endPort', msg: /integer/,
  },
  {
    schema: `${PP}.protocol.enum`, name: 'protocol in lower case',
    yaml: doc(egressPorts('[{port: "80", protocol: tcp}]')),
    at: ['tcp', 0], path: 'spec.egress[0].toPorts[0].ports[0].protocol', msg: /"tcp"/,
  },
  {
    schema: `${PP}.protocol.enum`, name: 'protocol ICMP',
    yaml: doc(egressPorts('[{port: "0", protocol: ICMP}]')),
    at: ['ICMP', 0], path: 'spec.egress[0].toPorts[0].ports[0].protocol', msg: /ICMP/,
  },
  {
    schema: `${PP}.protocol.enum (VRRP accepted, not supported here)`, name: 'protocol VRRP',
    yaml: doc(egressPorts('[{port: "0", protocol: VRRP}]')),
    at: ['VRRP', 0], path: 'spec.egress[0].toPorts[0].ports[0].protocol', msg: /not supported/,
  },
  {
    schema: `${PR}.ports.maxItems=40`, name: '41 ports',
    yaml: doc(egressPorts(ports41)),
    at: ['[{port', 0], path: 'spec.egress[0].toPorts[0].ports', msg: /40/,
  },
  {
    schema: `${PR}.rules.oneOf[http|dns]`, name: 'rules with neither http nor dns',
    yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', 'rules: {}')),
    at: ['{}', 1], path: 'spec.egress[0].toPorts[0].rules', msg: /http or dns/,
  },
  {
    schema: `${PR}.rules (http and HTTP together)`, name: 'both http and HTTP keys',
    yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', 'rules: {http: [{method: GET}], HTTP: [{method: PUT}]}')),
    at: ['[{method: PUT}]', 0], path: 'spec.egress[0].toPorts[0].rules.HTTP', msg: /both "http" and "HTTP"/,
  },
  {
    schema: `${PR}.rules.oneOf[http|dns]`, name: 'rules with both http and dns',
    yaml: doc(egressPorts('[{port: "53", protocol: TCP}]', 'rules: {http: [], dns: [{matchName: a.com}]}')),
    at: ['{http', 0], path: 'spec.egress[0].toPorts[0].rules', msg: /multiple L7/,
  },
  {
    schema: `${HTTP}.headerMatches.items.mismatch.enum`, name: 'mismatch empty',
    yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', 'rules: {http: [{headerMatches: [{name: X, mismatch: ""}]}]}')),
    at: ['""', 0], path: 'spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch', msg: /must be one of/,
  },
  {
    schema: `${HTTP}.headerMatches.items.mismatch.enum`, name: 'mismatch in lower case',
    yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', 'rules: {http: [{headerMatches: [{name: X, mismatch: log}]}]}')),
    at: ['log', 0], path: 'spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch', msg: /must be one of/,
  },
  {
    schema: `${HTTP}.headerMatches.items.name.minLength=1`, name: 'header match with an empty name',
    yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', 'rules: {http: [{headerMatches: [{name: ""}]}]}')),
    at: ['""', 0], path: 'spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].name', msg: /empty/,
  },
  {
    schema: `${HTTP}.headerMatches.items.secret.required[name]`, name: 'header secret without name',
    yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', 'rules: {http: [{headerMatches: [{name: X, secret: {namespace: a}}]}]}')),
    at: ['{namespace', 0], path: 'spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].secret.name', msg: /required/,
  },
  {
    schema: `${HTTP}.headers.items.type=string`, name: 'header as a map',
    yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', 'rules: {http: [{headers: [{X: y}]}]}')),
    at: ['{X', 0], path: 'spec.egress[0].toPorts[0].rules.http[0].headers[0]', msg: /must be a string/,
  },
  {
    schema: `${PR}.rules.dns.items.matchPattern.pattern`, name: 'DNS matchPattern with an empty label',
    yaml: doc(egressPorts('[{port: "53", protocol: ANY}]', 'rules: {dns: [{matchPattern: "a..*"}]}')),
    at: ['"a..*"', 0], path: 'spec.egress[0].toPorts[0].rules.dns[0].matchPattern', msg: /a\.\.\*/,
  },
  {
    schema: `${PR}.serverNames.minItems=1`, name: 'serverNames empty list',
    yaml: doc(egressPorts('[{port: "443", protocol: TCP}]', 'serverNames: []')),
    at: ['[]', 0], path: 'spec.egress[0].toPorts[0].serverNames', msg: /at least 1/,
  },
  {
    schema: `${PR}.serverNames.x-kubernetes-list-type=set`, name: 'serverNames duplicate',
    yaml: doc(egressPorts('[{port: "443", protocol: TCP}]', 'serverNames: [a.com, a.com]')),
    at: ['a.com', 1], path: 'spec.egress[0].toPorts[0].serverNames[1]', msg: /[Dd]uplicate/,
  },
  {
    schema: `${PR}.serverNames.items.pattern`, name: 'server name with an empty label',
    yaml: doc(egressPorts('[{port: "443", protocol: TCP}]', 'serverNames: ["a..com"]')),
    at: ['"a..com"', 0], path: 'spec.egress[0].toPorts[0].serverNames[0]', msg: /a\.\.com/,
  },
  {
    schema: `${PR}.serverNames.items.maxLength=255`, name: 'server name of 256 characters',
    yaml: doc(egressPorts('[{port: "443", protocol: TCP}]', `serverNames: [${fqdn(256)}]`)),
    at: [fqdn(256), 0], path: 'spec.egress[0].toPorts[0].serverNames[0]', msg: /255/,
  },
  {
    schema: `${PR}.terminatingTLS.required[secret]`, name: 'terminatingTLS without secret',
    yaml: doc(egressPorts('[{port: "443", protocol: TCP}]', 'terminatingTLS: {trustedCA: ca.crt}')),
    at: ['{trustedCA', 0], path: 'spec.egress[0].toPorts[0].terminatingTLS.secret', msg: /required/,
  },
  {
    schema: `${PR}.listener`, name: 'listener (not supported)',
    yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', 'listener: {envoyConfig: {name: x}, name: l}')),
    at: ['listener', 0], path: 'spec.egress[0].toPorts[0].listener', msg: /not supported/,
  },
  {
    schema: `${S}.egressDeny.items.toPorts.items.properties (PortDenyRule has no rules)`, name: 'L7 rules in a deny rule',
    yaml: doc(`
  endpointSelector: {}
  egressDeny:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{}]}`),
    at: ['rules', 0], path: 'spec.egressDeny[0].toPorts[0].rules', msg: /not allowed in deny/,
  },
  {
    schema: 'specs.items.oneOf[endpointSelector|nodeSelector]', name: 'specs item without selector',
    yaml: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
specs:
- endpointSelector: {}
  ingress: [{}]
- ingress: [{}]
`,
    at: ['ingress: [{}]\n', 1], path: 'specs[1]', msg: /EndpointSelector or NodeSelector/,
  },
  {
    schema: 'required[metadata]', name: 'no metadata',
    yaml: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
spec:
  endpointSelector: {}
  ingress: [{}]
`,
    at: ['apiVersion', 0], path: 'metadata', msg: /required/,
  },
];

const accepts: Accept[] = [
  { schema: `${S}.oneOf / anyOf`, name: 'endpointSelector and one section', yaml: doc(`
  endpointSelector: {}
  ingress: [{}]`) },
  { schema: `${S}.oneOf`, name: 'CCNP with nodeSelector', yaml: doc(`
  nodeSelector: {matchLabels: {role: worker}}
  ingress: [{fromEntities: [cluster]}]`, 'CiliumClusterwideNetworkPolicy') },
  { schema: `${S}.log.value`, name: 'log value of 32 characters, and non-ASCII printable', yaml: doc(`
  endpointSelector: {}
  log: {value: "${long(28)}café"}
  ingress: [{}]`) },
  { schema: `${S}.labels`, name: 'rule labels with key only, and enableDefaultDeny', yaml: doc(`
  endpointSelector: {}
  labels: [{key: k}, {key: k2, value: v, source: unspec}]
  enableDefaultDeny: {ingress: false, egress: true}
  ingress: [{}]`) },
  { schema: `${SEL}.matchLabels.additionalProperties`, name: 'label values at the limits', yaml: doc(`
  endpointSelector: {matchLabels: {a: ${labelValue63}, b: "", c: A.b_c-9, "k8s:io.kubernetes.pod.namespace": default}}
  ingress: [{}]`) },
  { schema: `${SEL}.matchExpressions`, name: 'every operator; values are not label-checked', yaml: doc(`
  endpointSelector:
    matchExpressions:
    - {key: a, operator: In, values: ["any value / at all"]}
    - {key: b, operator: NotIn, values: [x]}
    - {key: c, operator: Exists}
    - {key: d, operator: DoesNotExist}
  ingress: [{}]`) },
  { schema: `${I}.fromEntities.items.enum`, name: 'every entity of the enum', yaml: doc(`
  endpointSelector: {}
  ingress:
  - fromEntities: [all, world, cluster, host, init, ingress, unmanaged, remote-node, health, none, kube-apiserver]`) },
  { schema: `${E}.toCIDR.items.format=cidr`, name: 'prefixes, IPv4 and IPv6, /0 and host-length', yaml: doc(`
  endpointSelector: {}
  egress:
  - toCIDR: [10.0.0.0/8, 0.0.0.0/0, 10.0.0.1/32, "2001:db8::/32", "::/0"]
  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.96.0.0/12, 10.0.0.1/32]}]`) },
  { schema: `${E}.toFQDNs`, name: 'names and patterns at the limits', yaml: doc(`
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchName: "a_b-c.example.com."}, {matchName: ${fqdn(255)}}, {matchPattern: "**.example.com"}, {matchPattern: "*"}, {matchPattern: "sub*.example.com"}]`) },
  { schema: `${E}.toRequires.maxItems=0`, name: 'toRequires empty', yaml: doc(`
  endpointSelector: {}
  egress:
  - toRequires: []
    toEndpoints: [{}]`) },
  { schema: `${I}.authentication.mode.enum`, name: 'authentication disabled', yaml: doc(`
  endpointSelector: {}
  ingress:
  - authentication: {mode: disabled}
    fromEndpoints: [{}]`) },
  { schema: `${I}.icmps.items.fields.items.type`, name: 'ICMP types as number, numeric string and names', yaml: doc(`
  endpointSelector: {}
  ingress:
  - icmps: [{fields: [{type: 8}, {type: "255"}, {type: EchoRequest, family: IPv4}, {type: "ExtendedEcho Reply"}, {type: NeighborSolicitation, family: IPv6}]}]`) },
  { schema: `${PP}.port.pattern`, name: 'numeric and named ports', yaml: doc(egressPorts('[{port: "0"}, {port: "65535"}, {port: http-alt}, {port: "1", endPort: 65535, protocol: UDP}]')) },
  { schema: `${PP}.protocol.enum`, name: 'each supported protocol', yaml: doc(egressPorts('[{port: "80", protocol: TCP}, {port: "80", protocol: UDP}, {port: "80", protocol: SCTP}, {port: "81", protocol: ANY}, {port: "82"}]')) },
  { schema: `${PR}.ports.maxItems=40`, name: '40 ports', yaml: doc(egressPorts(ports40)) },
  // Where CILIUM-SEMANTICS.md (the contract) and this CRD copy differ, the contract
  // wins: its entity table (§1.4) has world-ipv4, world-ipv6 and cluster-mesh, and its
  // toPorts (§1.6) reads protocol "" as ANY.
  { schema: `${I}.fromEntities (contract §1.4)`, name: 'entities world-ipv4, world-ipv6, cluster-mesh', yaml: doc(`
  endpointSelector: {}
  ingress:
  - fromEntities: [world-ipv4, world-ipv6, cluster-mesh]`) },
  { schema: `${PP}.protocol (contract §1.6)`, name: 'protocol "" is ANY', yaml: doc(egressPorts('[{port: "80", protocol: ""}]')) },
  { schema: `${PR}.rules.oneOf`, name: 'http: [] (no L7 restriction)', yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', 'rules: {http: []}')) },
  // The one deliberate leniency: the CRD would refuse `HTTP:` through kubectl, but Cilium's
  // Go decoding takes it and its own examples/policies/l7/http/http.yaml is written so
  // (CILIUM-SEMANTICS.md §7.2).
  { schema: `${PR}.rules.properties.http (as HTTP)`, name: 'capitalised HTTP key, as in Cilium\'s http.yaml', yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', 'rules: {HTTP: [{method: GET}]}')) },
  { schema: `${HTTP}`, name: 'every HTTP field, every mismatch action', yaml: doc(egressPorts('[{port: "80", protocol: TCP}]', `rules:
  http:
  - {method: GET, path: "/a.*", host: "api\\\\.example\\\\.com", headers: ["X-A: 1", X-B]}
  - headerMatches:
    - {name: A}
    - {name: B, value: v, mismatch: LOG}
    - {name: C, value: v, mismatch: ADD}
    - {name: D, value: v, mismatch: DELETE}
    - {name: E, secret: {name: s}, mismatch: REPLACE}`)) },
  { schema: `${PR}.rules.dns`, name: 'DNS rules', yaml: doc(egressPorts('[{port: "53", protocol: ANY}]', 'rules: {dns: [{matchName: example.com}, {matchPattern: "*.example.com"}]}')) },
  { schema: `${PR}.serverNames`, name: 'server names at the limits', yaml: doc(egressPorts('[{port: "443", protocol: TCP}]', `serverNames: ["*", "**.example.com", ${fqdn(255)}]`)) },
  { schema: `${PR}.terminatingTLS / originatingTLS`, name: 'TLS contexts', yaml: doc(egressPorts('[{port: "443", protocol: TCP}]', `terminatingTLS: {secret: {name: t}, certificate: c.crt, privateKey: c.key}
originatingTLS: {secret: {namespace: ns, name: ca}, trustedCA: ca.crt}
rules: {http: [{}]}`)) },
  { schema: 'specs.items', name: 'specs list', yaml: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
specs:
- endpointSelector: {}
  ingress: [{}]
- endpointSelector: {matchLabels: {app: x}}
  egressDeny: [{toPorts: [{ports: [{port: "22", protocol: TCP}]}]}]
` },
];

for (const c of rejects) {
  t.test(`rejects: ${c.name} (${c.schema})`, async (t) => {
    const { errors } = await load(t, c.yaml);
    const where = `config/p.yaml:${pos(c.yaml, c.at[0], c.at[1])}: ${c.path}: `;
    t.equal(errors.length, 1, 'exactly one error');
    const e = errors[0] ?? '';
    t.equal(e.slice(0, where.length), where, 'file:line:col and field path');
    t.match(e.slice(where.length), c.msg, 'message');
  });
}

for (const c of accepts) {
  t.test(`accepts: ${c.name} (${c.schema})`, async (t) => {
    const { errors } = await load(t, c.yaml);
    t.same(errors, []);
  });
}
