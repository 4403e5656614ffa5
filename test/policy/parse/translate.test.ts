// Sanitizing and translation: label sources, namespace pinning (CNP vs CCNP),
// NetworkPolicy → Rule, and the Cilium examples of CILIUM-SEMANTICS.md §7.
import t from 'tap';
import { loadConfigDir } from '../../../src/config/load.js';
import { formatIssue } from '../../../src/config/issues.js';
import type { LabelSelector } from '../../../src/policy/api.js';
import type { TestT } from '../../helpers/tap.js';

async function load(t: TestT, yaml: string) {
  const dir = t.testdir({ config: { 'p.yaml': yaml } });
  t.chdir(dir);
  return loadConfigDir('config');
}

/** Requirements as compact strings, for readable assertions. */
function reqs(s: LabelSelector | undefined): string[] {
  return (s?.requirements ?? []).map((r) =>
    r.operator === 'Exists' || r.operator === 'DoesNotExist' ? `${r.key} ${r.operator}` : `${r.key} ${r.operator} ${r.values.join(',')}`);
}

t.test('CNP: subject pinned, peers get the namespace unless they name one', async (t) => {
  const r = await load(t, `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: prod}
spec:
  endpointSelector:
    matchLabels: {app: web, "k8s:io.kubernetes.pod.namespace": other}
  ingress:
  - fromEndpoints:
    - {}
    - matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, k8s-app: kube-dns}
    - matchLabels: {"io.kubernetes.pod.namespace": ops}
    - matchLabels: {"k8s:io.cilium.k8s.namespace.labels.team": a}
    - matchLabels: {"$host": ""}
    - matchLabels: {"reserved:world": ""}
    - matchExpressions: [{key: "k8s:app", operator: NotIn, values: [x]}]
`);
  t.same(r.errors, []);
  const rule = r.docs.policies[0]!.rules[0]!;
  t.same(reqs(rule.endpointSelector), ['any:app In web', 'k8s:io.kubernetes.pod.namespace In prod']);
  t.equal(rule.endpointSelector!.text, 'app=web,k8s:io.kubernetes.pod.namespace=other');
  t.same(r.warnings.map((w) => `${w.line}:${w.col}: ${w.path}: ${w.message}`), [
    '6:5: spec.endpointSelector: namespace match io.kubernetes.pod.namespace in (other) removed: '
      + 'the endpointSelector of a CiliumNetworkPolicy always applies in the policy\'s namespace "prod"',
  ]);
  const eps = rule.ingress[0]!.endpoints!;
  t.same(eps.map(reqs), [
    ['k8s:io.kubernetes.pod.namespace In prod'],
    ['k8s:io.kubernetes.pod.namespace In kube-system', 'any:k8s-app In kube-dns'],
    ['any:io.kubernetes.pod.namespace In ops'],
    ['k8s:io.cilium.k8s.namespace.labels.team In a'],
    ['reserved:host In '],
    ['reserved:world In '],
    ['k8s:app NotIn x', 'k8s:io.kubernetes.pod.namespace In prod'],
  ]);
  t.same(r.docs.policies[0]!.pos, { file: 'config/p.yaml', line: 1, col: 1 });
  t.same(rule.ingress[0]!.pos, { file: 'config/p.yaml', line: 8, col: 5 });
  t.same(rule.ref, { kind: 'CiliumNetworkPolicy', namespace: 'prod', name: 'p' });
});

t.test('CCNP: peers get namespace Exists, except reserved selectors and init subjects', async (t) => {
  const r = await load(t, `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: cw}
specs:
- endpointSelector: {}
  egress:
  - toEndpoints: [{}, {matchLabels: {"reserved:kube-apiserver": ""}}, {matchLabels: {"k8s:io.kubernetes.pod.namespace": a}}]
  - toNodes: [{matchLabels: {role: cp}}]
- endpointSelector: {matchLabels: {"reserved:init": ""}}
  egress:
  - toEndpoints: [{}]
`);
  t.same(r.errors, []);
  const [a, b] = r.docs.policies[0]!.rules;
  t.equal(r.docs.policies[0]!.namespace, '');
  t.same(reqs(a!.endpointSelector), [], 'CCNP subject is not pinned');
  t.same(a!.egress[0]!.endpoints!.map(reqs), [
    ['k8s:io.kubernetes.pod.namespace Exists'],
    ['reserved:kube-apiserver In '],
    ['k8s:io.kubernetes.pod.namespace In a'],
  ]);
  t.same(a!.egress[1]!.nodes!.map(reqs), [['any:role In cp']], 'node selectors get no namespace');
  t.same(b!.egress[0]!.endpoints!.map(reqs), [[]], 'init exception: no Exists requirement');
  t.same(a!.ref, { kind: 'CiliumClusterwideNetworkPolicy', namespace: '', name: 'cw', specIndex: 0 });
  t.equal(b!.ref.specIndex, 1);
});

t.test('NetworkPolicy translation', async (t) => {
  const r = await load(t, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: {matchLabels: {app: api}}
    - namespaceSelector: {matchLabels: {team: ops}}
      podSelector: {matchLabels: {app: backup}}
    - namespaceSelector: {}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - {port: 5432}
    - {port: metrics, protocol: UDP}
    - {port: 6000, endPort: 6010}
  - {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress}
spec:
  podSelector: {}
  policyTypes: [Egress]
`);
  t.same(r.errors, []);
  const [np, deny] = r.docs.policies;
  const rule = np!.rules[0]!;
  t.same(rule.ref, { kind: 'NetworkPolicy', namespace: 'shop', name: 'np' });
  t.same(reqs(rule.endpointSelector), ['k8s:app In db', 'k8s:io.kubernetes.pod.namespace In shop']);
  const ing = rule.ingress;
  t.equal(ing.length, 5, 'one element per peer, plus the allow-all rule');
  t.same(reqs(ing[0]!.endpoints![0]), ['k8s:io.kubernetes.pod.namespace In shop', 'k8s:app In api']);
  t.same(reqs(ing[1]!.endpoints![0]), ['k8s:io.cilium.k8s.namespace.labels.team In ops', 'k8s:app In backup']);
  t.same(reqs(ing[2]!.endpoints![0]), ['k8s:io.kubernetes.pod.namespace Exists']);
  t.same(ing[3]!.cidrSet, [{ cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] }]);
  const ports = [
    { ports: [{ port: '5432', protocol: 'TCP' }], serverNames: [] },
    { ports: [{ port: 'metrics', protocol: 'UDP' }], serverNames: [] },
    { ports: [{ port: '6000', endPort: 6010, protocol: 'TCP' }], serverNames: [] },
  ];
  for (let i = 0; i < 4; i++) t.same(ing[i]!.toPorts, ports, `ports apply to peer ${i}`);
  t.same(ing[4]!.entities, ['all'], '{} allows from everywhere');
  t.same(ing[4]!.toPorts, []);
  t.same(rule.egress.length, 1);
  t.same(rule.egress[0]!.endpoints, [], 'Egress in policyTypes without rules: default deny');
  const d = deny!.rules[0]!;
  t.same(d.ingress, [], 'Ingress not in policyTypes');
  t.same(d.egress.map((e) => [e.endpoints, e.toPorts]), [[[], []]]);
  t.same(reqs(d.endpointSelector), ['k8s:io.kubernetes.pod.namespace In default']);
});

t.test('NetworkPolicy errors', async (t) => {
  const r = await load(t, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {}
  policyTypes: [Ingres]
  ingress:
  - from:
    - {}
    - ipBlock: {cidr: 10.0.0.0/8}
      podSelector: {}
    - ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}
    ports:
    - {port: "80", protocol: tcp}
    - {port: 80, endPort: 70}
`);
  t.same(r.errors.map(formatIssue), [
    'config/p.yaml:6:17: spec.policyTypes[0]: must be one of "Ingress", "Egress", not "Ingres"',
    'config/p.yaml:14:30: spec.ingress[0].ports[0].protocol: must be one of "TCP", "UDP", "SCTP", not "tcp"',
    'config/p.yaml:14:14: spec.ingress[0].ports[0].port: "80" is not a valid port name (write the number without quotes)',
    'config/p.yaml:15:27: spec.ingress[0].ports[1].endPort: must be greater than or equal to `port`',
    'config/p.yaml:9:7: spec.ingress[0].from[0]: must specify a peer',
    'config/p.yaml:10:7: spec.ingress[0].from[1]: may not specify more than 1 peer type (ipBlock cannot be combined with podSelector or namespaceSelector)',
    'config/p.yaml:12:44: spec.ingress[0].from[2].ipBlock.except[0]: must be a strict subset of 10.0.0.0/8',
  ]);
});

const starWars = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1}
spec:
  description: "L7 policy to restrict access to specific HTTP call"
  endpointSelector: {matchLabels: {org: empire, class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: "POST", path: "/v1/request-landing"}]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-empire}
spec:
  endpointSelector: {matchLabels: {org: empire}}
  ingress: [{}]
`;

t.test('Star Wars policy (CILIUM-SEMANTICS §7.1)', async (t) => {
  const r = await load(t, starWars);
  t.same(r.errors, []);
  t.same(r.warnings, []);
  const rule = r.docs.policies[0]!.rules[0]!;
  t.equal(rule.description, 'L7 policy to restrict access to specific HTTP call');
  t.same(reqs(rule.endpointSelector), ['any:org In empire', 'any:class In deathstar', 'k8s:io.kubernetes.pod.namespace In default']);
  const el = rule.ingress[0]!;
  t.same(el.endpoints!.map(reqs), [['any:org In empire', 'k8s:io.kubernetes.pod.namespace In default']]);
  t.same(el.toPorts, [{
    ports: [{ port: '80', protocol: 'TCP' }],
    rules: { http: [{ method: 'POST', path: '/v1/request-landing', headers: [], headerMatches: [] }] },
    serverNames: [],
  }]);
  const deny = r.docs.policies[1]!.rules[0]!;
  t.same(deny.ingress.map((e) => [e.endpoints, e.toPorts]), [[undefined, []]], 'ingress: [{}] is one empty entry');
});

t.test('other Cilium examples (CILIUM-SEMANTICS §7.2) load without errors', async (t) => {
  const examples = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l7-simple}
spec:
  endpointSelector: {matchLabels: {app: service}}
  ingress:
  - fromEndpoints: [{matchLabels: {env: prod}}]
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET, path: "/public"}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: http-headers}
spec:
  endpointSelector: {matchLabels: {app: myService}}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        HTTP:
        - {method: GET, path: "/path1$"}
        - {method: PUT, path: "/path2$", headers: ["X-My-Header: true"]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l7-multi}
specs:
- endpointSelector: {matchLabels: {app: service}}
  ingress:
  - fromEndpoints: [{matchLabels: {env: prod}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET, path: "/public"}]}
- endpointSelector: {matchLabels: {env: prod}}
  egress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: POST, host: "^external-service.org$"}]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: fqdn}
spec:
  endpointSelector: {matchLabels: {"any:org": alliance}}
  egress:
  - toEndpoints:
    - matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns:
        - matchName: "cilium.io"
        - matchPattern: "*.cilium.io"
        - matchPattern: "*.api.cilium.io"
  - toFQDNs:
    - matchName: "cilium.io"
    - matchName: "sub.cilium.io"
    - matchName: "service1.api.cilium.io"
    - matchPattern: "special*service.api.cilium.io"
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: dns-l7}
spec:
  endpointSelector: {matchLabels: {org: empire, class: mediabot}}
  egress:
  - toFQDNs: [{matchPattern: "*.twitter.com"}]
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET}]}
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules: {dns: [{matchPattern: "*"}]}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: from-world-deny}
spec:
  endpointSelector: {}
  ingressDeny:
  - fromEntities: [world]
  ingress:
  - fromEntities: [all]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cidr}
spec:
  endpointSelector: {matchLabels: {app: myService}}
  egress:
  - toCIDR: [20.1.1.1/32]
  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.96.0.0/12]}]
`;
  const r = await load(t, examples);
  t.same(r.errors.map(formatIssue), []);
  t.equal(r.docs.policies.length, 7);
  t.equal(r.docs.documentCount, 7);
  const http = r.docs.policies[1]!.rules[0]!.ingress[0]!.toPorts[0]!.rules!.http!;
  t.same(http[1], { method: 'PUT', path: '/path2$', headers: ['X-My-Header: true'], headerMatches: [] }, 'capitalised HTTP key (Cilium\'s http.yaml)');
  const fqdn = r.docs.policies[3]!.rules[0]!;
  t.same(reqs(fqdn.endpointSelector), ['any:org In alliance', 'k8s:io.kubernetes.pod.namespace In default']);
  t.same(fqdn.egress[0]!.toPorts[0]!.rules!.dns!.length, 3);
  t.same(fqdn.egress[1]!.fqdns![3], { matchPattern: 'special*service.api.cilium.io' });
  const cw = r.docs.policies[5]!.rules[0]!;
  t.same([cw.ingressDeny[0]!.entities, cw.ingress[0]!.entities], [['world'], ['all']]);
});
