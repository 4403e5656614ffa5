// The directory loader: files, documents, kinds, Lists, Secrets from certs/, all errors in one run.
import t from 'tap';
import { loadConfigDir } from '../../src/config/load.js';
import { formatIssue } from '../../src/config/issues.js';

const policy = (name: string, extra = '') => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}}
spec:
  endpointSelector: {}
  ingress: [{}]${extra}
`;

const cJson = '{"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "j"}, "spec": {"endpointSelector": {}, "egress": [{"toPorts": [{"ports": [{"port": "http", "protocol": "TCP"}]}]}], "bogus": 1}}';

t.test('errors in several files and documents are all reported, in sorted file order', async (t) => {
  const dir = t.testdir({
    config: {
      'b.yaml': `${policy('ok')}---\n${policy('bad', '\n  egress: [{toEntities: [mars]}]')}`,
      'a.yml': 'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nstatus: {podIP: 10.0.0.300}\n',
      sub: { 'c.json': cJson },
      'syntax.yaml': 'a: [1, 2\nb: c\n',
      'dup.yaml': 'apiVersion: v1\nkind: Namespace\nkind: Namespace\nmetadata: {name: n}\n',
      'notes.txt': 'ignored: [',
      '.hidden': { 'x.yaml': 'not: [valid' },
    },
  });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.errors.map(formatIssue), [
    'config/a.yml:4:17: status.podIP: "10.0.0.300" is not an IP address',
    'config/b.yaml:14:26: spec.egress[0].toEntities[0]: unsupported entity: mars',
    'config/dup.yaml:3:1: YAML: Map keys must be unique',
    `config/sub/c.json:1:${cJson.indexOf('"bogus"') + 1}: spec.bogus: unknown field`,
    'config/syntax.yaml:2:1: YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
  ]);
  t.same(r.docs.policies.map((p) => p.name), ['ok']);
  t.same(r.docs.namespaces.map((n) => n.name), ['n'], 'a duplicate key does not hide the rest of the document');
});

t.test('unknown kinds warn; wrong apiVersion and missing kind are errors', async (t) => {
  const dir = t.testdir({
    config: {
      'x.yaml': 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: cilium.io/v1\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n---\nmetadata: {name: q}\n---\n',
    },
  });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.warnings.map(formatIssue), ['config/x.yaml:1:1: kind "Deployment" (apps/v1) is not used by l7warden; skipped']);
  t.same(r.errors.map(formatIssue), [
    'config/x.yaml:5:13: apiVersion: apiVersion "cilium.io/v1" is not supported for kind CiliumNetworkPolicy (want "cilium.io/v2")',
    'config/x.yaml:9:1: kind: is required',
  ]);
  t.equal(r.docs.documentCount, 2, 'the empty trailing document is not counted');
});

t.test('List and typed lists recurse into items; paths name the item', async (t) => {
  const dir = t.testdir({
    config: {
      'list.yaml': `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop, labels: {team: a}}
- apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: p, namespace: shop}
  spec: {endpointSelector: {}, ingress: [{fromEntities: [moon]}]}
- apiVersion: v1
  kind: List
  items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: inner}}
---
apiVersion: v1
kind: PodList
items:
- metadata: {name: web, namespace: shop, labels: {app: web}}
  spec: {containers: [{name: c, ports: [{containerPort: 8080, name: HTTP}]}]}
  status: {podIP: 10.0.0.5}
`,
    },
  });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.errors.map(formatIssue), ['config/list.yaml:10:58: items[1].spec.ingress[0].fromEntities[0]: unsupported entity: moon']);
  t.same(r.docs.namespaces.map((n) => [n.name, n.labels]), [['shop', { team: 'a' }], ['inner', {}]]);
  t.same(r.docs.pods.map((p) => [p.namespace, p.name, p.ips, p.containerPorts]), [
    ['shop', 'web', ['10.0.0.5'], [{ name: 'http', port: 8080, protocol: 'TCP' }]],
  ]);
});

t.test('kubectl get pod -o yaml output loads (unknown Pod fields are not errors)', async (t) => {
  const dir = t.testdir({
    config: {
      'pod.yaml': `apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: "2024-01-01T00:00:00Z"
  labels: {class: deathstar, org: empire}
  name: deathstar-1
  namespace: default
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: rs, uid: u}]
  resourceVersion: "123"
  uid: 5f0c
spec:
  containers:
  - image: quay.io/cilium/starwars
    imagePullPolicy: IfNotPresent
    name: deathstar
    ports: [{containerPort: 80, protocol: TCP}]
    resources: {}
  dnsPolicy: ClusterFirst
  nodeName: node1
  serviceAccount: empire
  serviceAccountName: empire
  tolerations: [{effect: NoExecute, key: node.kubernetes.io/not-ready, operator: Exists}]
status:
  conditions: [{type: Ready, status: "True"}]
  hostIP: 192.168.1.10
  phase: Running
  podIP: 10.0.1.7
  podIPs: [{ip: 10.0.1.7}, {ip: "fd00:0:0::7"}]
`,
    },
  });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.errors, []);
  t.same(r.docs.pods[0], {
    name: 'deathstar-1', namespace: 'default', labels: { class: 'deathstar', org: 'empire' }, serviceAccount: 'empire',
    ips: ['10.0.1.7', 'fd00::7'], hostNetwork: false, containerPorts: [{ port: 80, protocol: 'TCP' }],
    pos: { file: 'config/pod.yaml', line: 1, col: 1 },
  });
});

t.test('Secrets: documents (data, stringData) and certs/<ns>/<name>/ files; duplicates are errors', async (t) => {
  const dir = t.testdir({
    config: {
      's.yaml': `apiVersion: v1
kind: Secret
metadata: {name: api-ca, namespace: prod}
type: kubernetes.io/tls
data:
  ca.crt: ${Buffer.from('CA PEM').toString('base64')}
  tls.key: "not base64!"
stringData:
  token: hunter2
---
apiVersion: v1
kind: Secret
metadata: {name: web-tls}
stringData: {tls.crt: CERT}
`,
    },
    certs: {
      default: { 'web-tls': { 'tls.crt': 'FILE CERT', 'tls.key': 'FILE KEY' }, empty: {} },
      prod: { edge: { 'ca.crt': 'EDGE CA' } },
    },
  });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.errors.map(formatIssue), [
    'config/s.yaml:7:12: data["tls.key"]: is not valid base64',
    'certs/default/web-tls:1:1: duplicate Secret default/web-tls (first defined at config/s.yaml:11:1)',
  ]);
  t.same(r.warnings.map(formatIssue), ['certs/default/empty:1:1: no tls.crt, tls.key, ca.crt in this directory; skipped']);
  const byName = Object.fromEntries(r.docs.secrets.map((s) => [`${s.namespace}/${s.name}`, Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, v.toString()]))]));
  t.same(byName, { 'default/web-tls': { 'tls.crt': 'CERT' }, 'prod/edge': { 'ca.crt': 'EDGE CA' } });

  const alt = await loadConfigDir('config', { certsDir: 'nowhere' });
  t.same(alt.errors.map((e) => e.file), ['config/s.yaml', 'nowhere'], 'an explicit certsDir must exist');
});

t.test('a good api-ca Secret decodes data and merges stringData', async (t) => {
  const dir = t.testdir({
    config: {
      's.yaml': `apiVersion: v1\nkind: Secret\nmetadata: {name: a}\ndata:\n  ca.crt: |\n    ${Buffer.from('x'.repeat(80)).toString('base64').replace(/(.{40})/g, '$1\n    ')}\nstringData: {ca.crt: override, k: v}\n`,
    },
  });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.errors, []);
  t.same(Object.fromEntries(Object.entries(r.docs.secrets[0]!.data).map(([k, v]) => [k, v.toString()])), { 'ca.crt': 'override', k: 'v' });
});

t.test('duplicate policies, strict metadata, missing config dir', async (t) => {
  const dir = t.testdir({
    config: {
      'a.yaml': policy('same'),
      'b.yaml': `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: same, lables: {a: b}}
spec: {endpointSelector: {}, ingress: [{}]}
---
${policy('same')}`,
    },
  });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.errors.map(formatIssue), [
    'config/b.yaml:3:24: metadata.lables: unknown field (did you mean "labels"?)',
    'config/b.yaml:6:1: duplicate CiliumNetworkPolicy default/same (first defined at config/a.yaml:1:1)',
  ]);
  const missing = await loadConfigDir('no-such-dir');
  t.same(missing.errors.map(formatIssue), ['no-such-dir:1:1: config directory does not exist or is not a directory']);
});

t.test('YAML anchors and merge keys work; alias bombs do not', async (t) => {
  const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
  for (let i = 0; i < 8; i++) bomb.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`);
  const dir = t.testdir({
    config: {
      'anchors.yaml': `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: p
    labels: &l {app: web}
- apiVersion: v1
  kind: Namespace
  metadata:
    name: n
    labels:
      <<: *l
      team: a
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: *l}
`,
      'bomb.yaml': `${bomb.join('\n')}\napiVersion: v1\nkind: Namespace\nmetadata: {name: boom}\n`,
    },
  });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.docs.pods[0]!.labels, { app: 'web' });
  t.same(r.docs.namespaces.map((n) => [n.name, n.labels]), [['n', { team: 'a', app: 'web' }], ['other', {}]], 'anchors do not cross documents');
  t.same(r.errors.map(formatIssue), [
    'config/anchors.yaml:19:33: YAML: unresolved alias *l',
    'config/bomb.yaml:1:1: YAML: more than 100000 nodes after alias expansion (an alias bomb, or a document to split); document skipped',
  ]);
});

t.test('at most one ProxyConfig; ProxyConfig references are checked', async (t) => {
  const pc = (name: string) => `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: {name: ${name}}
spec:
  listeners:
  - name: api
    mode: ingress
    address: 127.0.0.1:0
    endpoint: {pod: deathstar}
    upstream: http://127.0.0.1:8080
    tls: {secret: default/deathstar-tls}
`;
  const dir = t.testdir({ config: { 'pc.yaml': `${pc('one')}---\n${pc('two')}` } });
  t.chdir(dir);
  const r = await loadConfigDir('config');
  t.same(r.errors.map(formatIssue), [
    'config/pc.yaml:13:1: only one ProxyConfig is allowed (first defined at config/pc.yaml:1:1)',
    'config/pc.yaml:9:15: spec.listeners[0].endpoint: Pod default/deathstar is not defined by any Pod document',
    'config/pc.yaml:11:10: spec.listeners[0].tls: Secret default/deathstar-tls is not defined (no Secret document and no certs/default/deathstar-tls/ directory)',
  ]);
  t.equal(r.docs.proxyConfig?.name, 'one');
});
