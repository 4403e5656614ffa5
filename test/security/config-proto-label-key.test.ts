/**
 * A label key `__proto__` (matchLabels, Pod labels, Secret data keys) was read into
 * a plain object: the assignment `out["__proto__"] = "admin"` sets nothing, so the
 * key vanished without an error. A peer selector `matchLabels: {__proto__: admin}`
 * became `{}` — every pod of the namespace — and the policy allowed sources it was
 * written to exclude. The key must be kept as an ordinary key: a selector on a label
 * no pod carries selects nothing.
 */
import t from 'tap';
import { loadConfigDir } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/policy/compile.js';

const pods = `apiVersion: v1
kind: Pod
metadata: {name: api, labels: {app: api}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
status: {podIP: 10.0.0.2}
`;

const policy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: only-admins}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints:
    - matchLabels:
        __proto__: admin
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
`;

t.test('matchLabels with a __proto__ key does not widen to every pod', async (t) => {
  const dir = t.testdir({ 'pods.yaml': pods, 'policy.yaml': policy });
  const r = await loadConfigDir(dir);
  t.same(r.errors, []);
  const { snapshot } = compileSnapshot(r.docs);
  t.ok(snapshot);
  const api = snapshot!.endpointByName('default', 'api')!;
  const client = snapshot!.endpointByName('default', 'client')!;
  const v = snapshot!.decide({ src: client.identity, dst: api.identity, port: 80, protocol: 'TCP' });
  t.equal(v.allowed, false, 'a pod without the label is not selected');
});

t.test('a __proto__ label and a __proto__ Secret data key are kept as keys', async (t) => {
  const dir = t.testdir({
    'x.yaml': `apiVersion: v1
kind: Pod
metadata: {name: p, labels: {__proto__: admin}}
---
apiVersion: v1
kind: Secret
metadata: {name: s}
data: {__proto__: YWJj}
`,
  });
  const r = await loadConfigDir(dir);
  t.same(r.errors, []);
  t.same(Object.entries(r.docs.pods[0]!.labels), [['__proto__', 'admin']]);
  const data = r.docs.secrets[0]!.data;
  t.same(Object.keys(data), ['__proto__']);
  t.equal(data['__proto__']?.toString(), 'abc');
  t.equal(Object.getPrototypeOf(data), null, 'no Buffer prototype sneaks in');
  t.equal(data['constructor'], undefined, 'inherited names are not data items');
});
