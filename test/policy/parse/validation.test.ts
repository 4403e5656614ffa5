// Cilium's rule validation errors, each with its exact message and position.
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

function cnp(spec: string, kind = 'CiliumNetworkPolicy'): string {
  return `apiVersion: cilium.io/v2
kind: ${kind}
metadata:
  name: p
spec:
${spec.replace(/^\n/, '').replace(/\s+$/, '')}
`;
}

async function errorsOf(t: TestT, yaml: string): Promise<string[]> {
  const dir = t.testdir({ config: { 'p.yaml': yaml } });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  return r.errors.map(formatIssue);
}


interface Case {
  name: string;
  yaml: string;
  /** [needle, nth occurrence, path, message] */
  want: [string, number, string, string][];
}

const cases: Case[] = [
  {
    name: 'no direction',
    yaml: cnp(`
  endpointSelector: {}
  ingress: []`),
    want: [['endpointSelector', 0, 'spec', 'rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny']],
  },
  {
    name: 'neither selector',
    yaml: cnp(`
  ingress: [{}]`),
    want: [['ingress', 0, 'spec', 'rule must have one of EndpointSelector or NodeSelector']],
  },
  {
    name: 'both selectors (CCNP)',
    yaml: cnp(`
  endpointSelector: {}
  nodeSelector: {}
  ingress: [{}]`, 'CiliumClusterwideNetworkPolicy'),
    want: [['{}', 1, 'spec.nodeSelector', 'rule cannot have both EndpointSelector and NodeSelector']],
  },
  {
    name: 'nodeSelector in a namespaced policy',
    yaml: cnp(`
  nodeSelector: {}
  ingress: [{}]`),
    want: [['{}', 0, 'spec.nodeSelector', 'nodeSelector is only allowed in a CiliumClusterwideNetworkPolicy']],
  },
  {
    name: 'L7 needs explicit TCP',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports:
      - port: "80"
      rules:
        http: [{method: GET}]`),
    want: [['port: "80"', 0, 'spec.ingress[0].toPorts[0].ports[0].protocol', 'L7 rules can only apply to TCP (not ANY) except for DNS rules']],
  },
  {
    name: 'L7 with UDP',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "80", protocol: UDP}]
      rules: {http: [{}]}`),
    want: [['UDP', 0, 'spec.egress[0].toPorts[0].ports[0].protocol', 'L7 rules can only apply to TCP (not UDP) except for DNS rules']],
  },
  {
    name: 'L7 on port 0',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "0", protocol: TCP}]
      rules: {http: [{path: /x}]}`),
    want: [['"0"', 0, 'spec.ingress[0].toPorts[0].ports[0].port', 'L7 rules can not be used when a port is 0']],
  },
  {
    name: 'DNS on ingress',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*"}]`),
    want: [['[{matchPattern', 0, 'spec.ingress[0].toPorts[0].rules.dns', 'DNS rules are not allowed on ingress']],
  },
  {
    name: 'DNS without a port',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toPorts:
    - rules:
        dns: [{matchName: cilium.io}]`),
    want: [['[{matchName', 0, 'spec.egress[0].toPorts[0].rules.dns', 'Port 53 must be specified for DNS rules']],
  },
  {
    name: 'DNS with a port range',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "53", endPort: 60}]
      rules:
        dns: [{matchName: cilium.io}]`),
    want: [['60', 0, 'spec.egress[0].toPorts[0].ports[0].endPort', 'DNS rules do not support port ranges']],
  },
  {
    name: 'two L7 types',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "53", protocol: TCP}]
      rules:
        http: [{}]
        dns: [{matchName: a.b}]`),
    want: [['http', 0, 'spec.egress[0].toPorts[0].rules', 'multiple L7 protocol rule types specified in single rule']],
  },
  {
    name: 'toFQDNs with toEndpoints',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toEndpoints: [{}]
    toFQDNs: [{matchName: a.example}]`),
    want: [['toEndpoints', 0, 'spec.egress[0]', 'Combining ToEndpoints and ToFQDNs is not supported yet']],
  },
  {
    name: 'fromEndpoints with fromCIDR',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{}]
    fromCIDR: [10.0.0.0/8]`),
    want: [['fromEndpoints', 0, 'spec.ingress[0]', 'Combining FromEndpoints and FromCIDR is not supported yet']],
  },
  {
    name: 'fromCIDR with fromCIDRSet',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - fromCIDRSet: [{cidr: 10.0.0.0/8}]
    fromCIDR: [10.0.0.0/8]`),
    want: [['fromCIDRSet', 0, 'spec.ingress[0]', 'Combining FromCIDRSet and FromCIDR is not supported yet']],
  },
  {
    name: 'deny with L7 rules',
    yaml: cnp(`
  endpointSelector: {}
  ingressDeny:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{}]}`),
    want: [['rules', 0, 'spec.ingressDeny[0].toPorts[0].rules', 'L7 rules is not allowed in deny rules (deny rules are L3/L4 only)']],
  },
  {
    name: 'egressDeny with toFQDNs',
    yaml: cnp(`
  endpointSelector: {}
  egressDeny:
  - toFQDNs: [{matchName: a.example}]`),
    want: [['toFQDNs', 0, 'spec.egressDeny[0].toFQDNs', 'toFQDNs is not allowed in egressDeny rules']],
  },
  {
    name: 'fromRequires',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - fromRequires: [{matchLabels: {env: prod}}]`),
    want: [['[{matchLabels', 0, 'spec.ingress[0].fromRequires',
      'Too many: 1: must have at most 0 items (fromRequires was removed from Cilium; use fromEndpoints with matchExpressions)']],
  },
  {
    name: 'invalid regex in path, at the field',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http:
        - method: GET
          path: "/a(b"`),
    want: [['"/a(b"', 0, 'spec.ingress[0].toPorts[0].rules.http[0].path', 'invalid RE2 pattern "/a(b": missing ): ^(?:\\/a(b)$']],
  },
  {
    name: 'backreference is rejected (not linear time)',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http:
        - host: '(a)\\1'`),
    want: [["'(a)", 0, 'spec.ingress[0].toPorts[0].rules.http[0].host', 'invalid RE2 pattern "(a)\\\\1": invalid escape sequence: \\1']],
  },
  {
    name: 'serverNames with L7 but no terminatingTLS',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "443", protocol: TCP}]
      serverNames: [api.example.com]
      rules: {http: [{method: GET}]}`),
    want: [['[api.example.com]', 0, 'spec.egress[0].toPorts[0].serverNames', 'ServerNames are not allowed with L7 rules without TLS termination']],
  },
  {
    name: 'empty server name',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "443", protocol: TCP}]
      serverNames: [""]`),
    want: [['""', 0, 'spec.egress[0].toPorts[0].serverNames[0]', 'Empty server name is not allowed']],
  },
  {
    name: 'icmps with toPorts',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - icmps: [{fields: [{type: 8, family: IPv4}]}]
    toPorts: [{ports: [{port: "80"}]}]`),
    want: [['icmps', 0, 'spec.ingress[0]', 'The ICMPs block may only be present without ToPorts. Define a separate rule to use ToPorts.']],
  },
  {
    name: 'bad port, bad protocol, endPort below port, too many ports',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports:
      - {port: "80.5"}
      - {port: "99999"}
      - {port: "80", protocol: ICMP}
      - {port: "90", endPort: 80}
      - {port: "080"}
      - {port: http-alt}
      - {port: "x-"}`),
    want: [
      ['"80.5"', 0, 'spec.ingress[0].toPorts[0].ports[0].port', '"80.5" is not a port (a number 0-65535 or an IANA service name)'],
      ['"99999"', 0, 'spec.ingress[0].toPorts[0].ports[1].port', '"99999" is not a port (a number 0-65535 or an IANA service name)'],
      ['ICMP', 0, 'spec.ingress[0].toPorts[0].ports[2].protocol', 'must be one of "TCP", "UDP", "SCTP", "ANY" (or "VRRP", "IGMP", which l7warden does not support), not "ICMP"'],
      ['80}', 0, 'spec.ingress[0].toPorts[0].ports[3].endPort', 'endPort 80 must not be less than port 90'],
      ['"080"', 0, 'spec.ingress[0].toPorts[0].ports[4].port', '"080" has a leading zero (Cilium would read it as an octal number)'],
      ['"x-"', 0, 'spec.ingress[0].toPorts[0].ports[6].port', '"x-" is not a port (a number 0-65535 or an IANA service name)'],
    ],
  },
  {
    name: 'more than 40 ports',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [${Array.from({ length: 41 }, (_, i) => `{port: "${i + 1}"}`).join(', ')}]`),
    want: [['[{port', 0, 'spec.ingress[0].toPorts[0].ports', 'too many ports, the max is 40']],
  },
  {
    name: 'entities',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toEntities: [world, cluster, galaxy]`),
    want: [['galaxy', 0, 'spec.egress[0].toEntities[2]', 'unsupported entity: galaxy']],
  },
  {
    name: 'CIDRs',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toCIDR: [10.0.0.0/33, "1.2.3", ""]
  - toCIDRSet:
    - cidr: 10.0.0.1
    - cidr: 10.0.0.0/8
      except: [11.0.0.0/16, 10.1.0.0/16, 10.0.0.0/4]`),
    want: [
      ['10.0.0.0/33', 0, 'spec.egress[0].toCIDR[0]', 'unable to parse CIDR: "10.0.0.0/33": bad prefix length "33"'],
      ['"1.2.3"', 0, 'spec.egress[0].toCIDR[1]', `unable to parse CIDR: "1.2.3": no '/'`],
      ['""', 0, 'spec.egress[0].toCIDR[2]', 'IP must be specified'],
      ['10.0.0.1', 0, 'spec.egress[1].toCIDRSet[0].cidr', `Unable to parse CIDRRule "10.0.0.1": no '/'`],
      ['11.0.0.0/16', 0, 'spec.egress[1].toCIDRSet[1].except[0]', 'allow CIDR prefix 10.0.0.0/8 does not contain exclude CIDR prefix 11.0.0.0/16'],
      ['10.0.0.0/4', 0, 'spec.egress[1].toCIDRSet[1].except[2]', 'allow CIDR prefix 10.0.0.0/8 does not contain exclude CIDR prefix 10.0.0.0/4'],
    ],
  },
  {
    name: 'toFQDNs and DNS rules',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toFQDNs:
    - matchName: "bad name"
    - matchPattern: "*.ex$ample.com"
    - {matchName: a.example, matchPattern: "*.example"}
    - {}
  - toPorts:
    - ports: [{port: "53", protocol: UDP}]
      rules:
        dns: [{matchPattern: "a/b"}]`),
    want: [
      ['"bad name"', 0, 'spec.egress[0].toFQDNs[0].matchName', '"bad name" may only contain [-a-zA-Z0-9_.]'],
      ['"*.ex$ample.com"', 0, 'spec.egress[0].toFQDNs[1].matchPattern', '"*.ex$ample.com" may only contain [-a-zA-Z0-9_.*]'],
      ['{matchName: a.example', 0, 'spec.egress[0].toFQDNs[2]', 'only one of MatchName or MatchPattern is allowed in an FQDNSelector'],
      ['{}', 1, 'spec.egress[0].toFQDNs[3]', 'one of matchName or matchPattern is required'],
      ['"a/b"', 0, 'spec.egress[1].toPorts[0].rules.dns[0].matchPattern', '"a/b" may only contain [-a-zA-Z0-9_.*]'],
    ],
  },
  {
    name: 'headerMatches',
    yaml: cnp(`
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http:
        - headerMatches:
          - {value: x}
          - {name: X-Token, mismatch: DROP}
          - {name: X-Ok, secret: {namespace: ns}}`),
    want: [
      ['{value: x}', 0, 'spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].name', 'is required'],
      ['DROP', 0, 'spec.ingress[0].toPorts[0].rules.http[0].headerMatches[1].mismatch', 'must be one of "LOG", "ADD", "DELETE", "REPLACE", not "DROP"'],
      ['{namespace: ns}', 0, 'spec.ingress[0].toPorts[0].rules.http[0].headerMatches[2].secret.name', 'is required'],
    ],
  },
  {
    name: 'unknown fields, with a hint',
    yaml: cnp(`
  endpointSelector: {matchLabel: {a: b}}
  ingress:
  - fromEndpoint: [{}]
    toPorts:
    - ports: [{port: "80", proto: TCP}]`),
    want: [
      ['matchLabel', 0, 'spec.endpointSelector.matchLabel', 'unknown field (did you mean "matchLabels"?)'],
      ['fromEndpoint', 0, 'spec.ingress[0].fromEndpoint', 'unknown field (did you mean "fromEndpoints"?)'],
      ['proto', 0, 'spec.ingress[0].toPorts[0].ports[0].proto', 'unknown field (did you mean "protocol"?)'],
    ],
  },
  {
    name: 'egress peer in ingress, label value not a string',
    yaml: cnp(`
  endpointSelector: {matchLabels: {version: 1}}
  ingress:
  - toEndpoints: [{}]`),
    want: [
      ['1}', 0, 'spec.endpointSelector.matchLabels.version', 'must be a string, not a number (quote it: "1")'],
      ['toEndpoints', 0, 'spec.ingress[0].toEndpoints', 'toEndpoints is an egress peer; use the from* fields in ingress'],
    ],
  },
  {
    name: 'matchExpressions',
    yaml: cnp(`
  endpointSelector:
    matchExpressions:
    - {key: a, operator: In}
    - {key: b, operator: Exists, values: [x]}
    - {key: c, operator: Equals, values: [x]}
  egress: [{}]`),
    want: [
      ['{key: a', 0, 'spec.endpointSelector.matchExpressions[0].values', `must be specified when \`operator\` is 'In' or 'NotIn'`],
      ['[x]', 0, 'spec.endpointSelector.matchExpressions[1].values', `may not be specified when \`operator\` is 'Exists' or 'DoesNotExist'`],
      ['Equals', 0, 'spec.endpointSelector.matchExpressions[2].operator', 'must be one of "In", "NotIn", "Exists", "DoesNotExist", not "Equals"'],
    ],
  },
  {
    name: 'host policy with L7',
    yaml: cnp(`
  nodeSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{}]}`, 'CiliumClusterwideNetworkPolicy'),
    want: [['{http', 0, 'spec.ingress[0].toPorts[0].rules', 'host policies do not support L7 rules yet']],
  },
  {
    name: 'unsupported peers and listener',
    yaml: cnp(`
  endpointSelector: {}
  egress:
  - toServices: [{k8sService: {serviceName: s}}]
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: x}, name: l}`),
    want: [
      ['[{k8sService', 0, 'spec.egress[0].toServices', 'toServices is not supported by l7warden (Kubernetes Services are not loaded)'],
      ['listener', 0, 'spec.egress[1].toPorts[0].listener', 'listener (CiliumEnvoyConfig redirection) is not supported by l7warden'],
    ],
  },
  {
    name: 'empty policy',
    yaml: `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n`,
    want: [['apiVersion', 0, '', 'Invalid CiliumNetworkPolicy spec(s): empty policy']],
  },
  {
    name: 'specs index in paths',
    yaml: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
specs:
- endpointSelector: {}
  ingress: [{}]
- endpointSelector: {}
  egress: [{toEntities: [moon]}]
`,
    want: [['moon', 0, 'specs[1].egress[0].toEntities[0]', 'unsupported entity: moon']],
  },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const got = await errorsOf(t, c.yaml);
    const want = c.want.map(([needle, nth, path, msg]) => {
      const where = `config/p.yaml:${pos(c.yaml, needle, nth)}`;
      return path ? `${where}: ${path}: ${msg}` : `${where}: ${msg}`;
    });
    t.same(got, want);
  });
}

t.test('valid variants of the same fields load without errors', async (t) => {
  const yaml = cnp(`
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "53", protocol: ANY}, {port: dns, protocol: UDP}]
      rules:
        dns: [{matchPattern: "*"}]
  - toCIDR: [10.1.2.3/32, "2001:db8::1/128"]
  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.96.0.0/12]}]
  - toPorts:
    - ports: [{port: "8000", endPort: 8080, protocol: TCP}]
  - toFQDNs: [{matchPattern: "**.example.com"}]
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
      terminatingTLS: {secret: {name: t}}
      originatingTLS: {secret: {namespace: kube-system, name: ca}, trustedCA: ca.pem}
      serverNames: ["*.example.com"]
      rules: {http: [{method: "GET|HEAD", headers: ["X-A: 1"]}]}`);
  const dir = t.testdir({ config: { 'p.yaml': yaml } });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.errors, []);
  const egress = r.docs.policies[0]!.rules[0]!.egress;
  t.same(egress[0]!.toPorts[0]!.ports, [{ port: '53', protocol: 'ANY' }, { port: 'dns', protocol: 'UDP' }]);
  t.same(egress[1]!.cidrSet, [{ cidr: '10.1.2.3/32', except: [] }, { cidr: '2001:db8::1/128', except: [] }]);
  t.same(egress[2]!.cidrSet, [{ cidr: '10.0.0.0/8', except: ['10.96.0.0/12'] }]);
  t.same(egress[3]!.toPorts[0]!.ports, [{ port: '8000', endPort: 8080, protocol: 'TCP' }]);
  const tls = egress[4]!.toPorts[0]!;
  t.same(tls.terminatingTLS, { secret: { namespace: 'default', name: 't' } }, 'secret namespace defaults to the policy namespace');
  t.same(tls.originatingTLS, { secret: { namespace: 'kube-system', name: 'ca' }, trustedCA: 'ca.pem' });
  t.same(tls.serverNames, ['*.example.com']);
  t.same(tls.rules, { http: [{ method: 'GET|HEAD', headers: ['X-A: 1'], headerMatches: [] }] });
  t.same(egress[4]!.fqdns, [{ matchPattern: '**.example.com' }]);
  t.equal(r.warnings.length, 2, 'secrets t and ca are not defined: warnings');
});

t.test('CIDR with host bits is normalized with a warning', async (t) => {
  const yaml = cnp(`
  endpointSelector: {}
  egress:
  - toCIDR: [10.1.2.3/8]`);
  const dir = t.testdir({ config: { 'p.yaml': yaml } });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.errors, []);
  t.same(r.docs.policies[0]!.rules[0]!.egress[0]!.cidrSet, [{ cidr: '10.0.0.0/8', except: [] }]);
  t.same(r.warnings.map(formatIssue), [`config/p.yaml:${pos(yaml, '10.1.2.3/8')}: spec.egress[0].toCIDR[0]: 10.1.2.3/8 has host bits set; it means 10.0.0.0/8`]);
});

t.test('icmps-only element allows nothing, with a warning', async (t) => {
  const yaml = cnp(`
  endpointSelector: {}
  ingress:
  - fromEntities: [world]
    icmps: [{fields: [{type: 8, family: IPv4}]}]`);
  const dir = t.testdir({ config: { 'p.yaml': yaml } });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.errors, []);
  const el = r.docs.policies[0]!.rules[0]!.ingress[0]!;
  t.same(el.endpoints, []);
  t.equal(el.entities, undefined);
  t.same(el.toPorts, []);
  t.match(r.warnings[0]!.message, /icmps rules are not enforced/);
});
