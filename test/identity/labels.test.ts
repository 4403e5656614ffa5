import t from 'tap';
import { buildLookup, isIdentityLabel, makeIdentity, parseLabel, podIdentityLabels } from '../../src/identity/labels.js';
import type { PodDoc } from '../../src/config/documents.js';

const pos = { file: 'x.yaml', line: 1, col: 1 };

t.test('default label filter keeps and drops what Cilium does', async (t) => {
  const kept = [
    'app', 'org', 'k8s-app', 'io.kubernetes.pod.namespace', 'io.cilium.k8s.namespace.labels.team',
    'io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name', 'app.kubernetes.io/name',
    'io.cilium.k8s.policy.cluster', 'io.cilium.k8s.policy.serviceaccount', 'my.kubernetes.io.thing',
  ];
  const dropped = [
    'io.kubernetes.container.name', 'kubernetes.io/hostname', 'pod-template-hash', 'controller-revision-hash',
    'pod-template-generation', 'statefulset.kubernetes.io/pod-name', 'apps.kubernetes.io/pod-index',
    'batch.kubernetes.io/job-completion-index', 'batch.kubernetes.io/controller-uid', 'controller-uid',
    'beta.kubernetes.io/arch', 'failure-domain.beta.kubernetes.io/zone', 'k8s.io/foo', 'annotation.x',
    'etcd_node', 'topology.kubernetes.io/zone',
  ];
  for (const k of kept) t.ok(isIdentityLabel('k8s', k), `keeps ${k}`);
  for (const k of dropped) t.notOk(isIdentityLabel('k8s', k), `drops ${k}`);
  t.ok(isIdentityLabel('reserved', 'host'), 'reserved labels kept');
});

t.test('pod identity labels: namespace, namespace labels, service account, cluster', async (t) => {
  const pod: PodDoc = {
    name: 'p', namespace: 'prod', labels: { app: 'web', 'pod-template-hash': 'abc' }, serviceAccount: 'api',
    ips: [], hostNetwork: false, containerPorts: [], pos,
  };
  t.same(podIdentityLabels(pod, { name: 'prod', labels: { team: 'a' }, pos }), [
    'k8s:app=web',
    'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod',
    'k8s:io.cilium.k8s.namespace.labels.team=a',
    'k8s:io.cilium.k8s.policy.cluster=default',
    'k8s:io.cilium.k8s.policy.serviceaccount=api',
    'k8s:io.kubernetes.pod.namespace=prod',
  ]);
  // No Namespace document: Kubernetes still labels it with its name.
  t.ok(podIdentityLabels(pod, undefined).includes('k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod'));
});

t.test('lookup: source:key and any:key', async (t) => {
  const m = buildLookup(['k8s:app=web', 'reserved:host']);
  t.equal(m.get('k8s:app'), 'web');
  t.equal(m.get('any:app'), 'web');
  t.equal(m.get('reserved:host'), '');
  t.equal(m.get('container:app'), undefined, 'a concrete other source does not match');
  t.same(parseLabel('cidr:2001:db8::/32'), { source: 'cidr', key: '2001:db8::/32', value: '' });
  const id = makeIdentity(16777300, ['fqdn:api.github.com', 'cidr:10.0.0.0/8', 'reserved:world']);
  t.equal(id.cidr, '10.0.0.0/8');
  t.ok(id.fqdnSelectors?.has('api.github.com'));
});
