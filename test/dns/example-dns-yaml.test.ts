/**
 * Cilium's examples/policies/l7/dns/dns.yaml (CILIUM-SEMANTICS.md §7.2) through
 * `startProxy` (what `l7warden run` starts), names pointed at loopback hosts. The
 * policy is the example verbatim except the DNS port, which is the test upstream's.
 * Expected: DNS for the three patterns allowed, anything else REFUSED; toFQDNs lets
 * the pod reach only IPs returned for cilium.io, sub.cilium.io,
 * service1.api.cilium.io and special*service.api.cilium.io.
 */
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxy } from '../../src/cli/run.js';
import { TestDnsUpstream } from '../helpers/dns-upstream.js';
import { KUBE_DNS, dig, podYaml } from '../helpers/dns-harness.js';

const EXAMPLE = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: "tofqdn-dns-visibility"
spec:
  endpointSelector:
    matchLabels:
      any:org: alliance
  egress:
  - toEndpoints:
    - matchLabels:
       "k8s:io.kubernetes.pod.namespace": kube-system
       "k8s:k8s-app": kube-dns
    toPorts:
      - ports:
         - port: "PORT"
           protocol: ANY
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
      - ports:
         - port: "80"
           protocol: TCP
`;

const XWING = { name: 'xwing', labels: { org: 'alliance', class: 'xwing' }, ip: '127.0.0.30' };
const TIE = { name: 'tiefighter', labels: { org: 'empire', class: 'tiefighter' }, ip: '127.0.0.31' };

const upstream = await TestDnsUpstream.start();
const dir = await mkdtemp(join(tmpdir(), 'l7w-dns-example-'));
await writeFile(join(dir, 'dns.yaml'), EXAMPLE.replace('PORT', String(upstream.port)));
await writeFile(join(dir, 'pods.yaml'), [KUBE_DNS, XWING, TIE].map(podYaml).join('---\n'));
await writeFile(
  join(dir, 'proxy.yaml'),
  `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: dns-example }
spec:
  listeners:
    - name: dns
      mode: dns
      address: 127.0.0.1:0
      upstream: ${upstream.address}
      serverEndpoint: { namespace: kube-system, pod: kube-dns }
`,
);
const flows: string[] = [];
const proxy = await startProxy({ configDir: dir, ephemeralPorts: true, flowLogFile: '', onFlow: (l) => flows.push(l) });
t.teardown(async () => {
  await proxy.close(0);
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});
const port = proxy.listeners.find((l) => l.mode === 'dns')!.address.port;

const hosts: Record<string, string> = {
  'cilium.io': '127.0.0.40',
  'sub.cilium.io': '127.0.0.41',
  'anothersub.cilium.io': '127.0.0.42',
  'service1.api.cilium.io': '127.0.0.43',
  'special-region1-service.api.cilium.io': '127.0.0.44',
  'region1-service.api.cilium.io': '127.0.0.45',
  'github.com': '127.0.0.46',
};
for (const [n, ip] of Object.entries(hosts)) upstream.setRecord(n, { a: [ip] });

function reachable(fromIp: string, ip: string): boolean {
  const s = proxy.snapshot()!;
  return s.decide({ src: s.identityForIP(fromIp), dst: s.identityForIP(ip), port: 80, protocol: 'TCP' }).allowed;
}

t.test('before any DNS answer, no toFQDNs IP is reachable', async (t) => {
  for (const ip of Object.values(hosts)) t.notOk(reachable(XWING.ip, ip), ip);
});

t.test('DNS allowed for the three patterns, REFUSED otherwise', async (t) => {
  for (const n of Object.keys(hosts)) {
    const r = await dig(port, n, { from: XWING.ip });
    if (n === 'github.com') {
      t.equal(r.status, 'REFUSED', n);
      t.equal(upstream.queriesFor(n).length, 0, 'nothing sent upstream for a refused name');
    } else {
      t.equal(r.status, 'NOERROR', n);
      t.same(r.answers.map((a) => a.data), [hosts[n]]);
    }
  }
  const deep = await dig(port, 'a.b.cilium.io', { from: XWING.ip });
  t.equal(deep.status, 'REFUSED', '*.cilium.io is one label deep');
});

t.test('toFQDNs: only IPs of selected names are reachable, on port 80 only', async (t) => {
  t.ok(reachable(XWING.ip, hosts['cilium.io']!), 'cilium.io');
  t.ok(reachable(XWING.ip, hosts['sub.cilium.io']!), 'sub.cilium.io');
  t.ok(reachable(XWING.ip, hosts['service1.api.cilium.io']!), 'service1.api.cilium.io');
  t.ok(reachable(XWING.ip, hosts['special-region1-service.api.cilium.io']!), 'special-region1-service.api.cilium.io');
  t.notOk(reachable(XWING.ip, hosts['anothersub.cilium.io']!), 'anothersub.cilium.io: DNS allowed, connection dropped');
  t.notOk(reachable(XWING.ip, hosts['region1-service.api.cilium.io']!), 'region1-service.api.cilium.io not selected');
  t.notOk(reachable(XWING.ip, hosts['github.com']!), 'never resolved through an allowed answer');
  const s = proxy.snapshot()!;
  const v = s.decide({
    src: s.identityForIP(XWING.ip),
    dst: s.identityForIP(hosts['cilium.io']!),
    port: 443,
    protocol: 'TCP',
  });
  t.notOk(v.allowed, 'port 443 not in the toFQDNs rule');
});

t.test('the empire pod is not selected by the policy', async (t) => {
  const r = await dig(port, 'github.com', { from: TIE.ip });
  t.equal(r.status, 'NOERROR');
});

t.test('flow records from the run path', async (t) => {
  await new Promise((r) => setTimeout(r, 20));
  const recs = flows.map((l) => JSON.parse(l).flow).filter((f) => f.l7?.dns);
  const dropped = recs.filter((f) => f.verdict === 'DROPPED');
  t.ok(dropped.some((f) => f.l7.dns.query === 'github.com.' && f.source.pod_name === 'xwing'));
  t.notOk(
    recs.some((f) => f.l7.type === 'RESPONSE' && f.l7.dns.query === 'github.com.' && f.destination?.pod_name === 'xwing'),
    'no response record for a denied query',
  );
  t.ok(recs.every((f) => f.traffic_direction === 'EGRESS'));
});
