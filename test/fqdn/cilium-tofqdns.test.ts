/**
 * Cilium's pkg/fqdn/namemanager/manager_test.go Test_deriveLabelsForNames and
 * TestMapIPsToSelectors, end to end: names resolved through the running DNS listener,
 * and the learned IPs decided by `decide()` against toFQDNs rules with a matchName
 * (`cilium.io`, port 80) and a matchPattern (`*cilium.io.`, port 8080). Expected, as there:
 * cilium.io. carries both labels, awesomecilium.io. only the pattern's, github.com. and
 * nomatch.local. none (resolvable, not reachable). test/fqdn/cilium-cache.test.ts checks the
 * same rows on the cache alone.
 */
import t from 'tap';
import { DnsHarness, dig, dnsPolicy } from '../helpers/dns-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };

const h = await DnsHarness.start({
  pods: [APP],
  policies:
    dnsPolicy('dns', { app: 'client' }, ['matchPattern: "*"']) +
    `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: fqdn, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toFQDNs: [{ matchName: cilium.io }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]
    - toFQDNs: [{ matchPattern: "*cilium.io." }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }] }]
`,
});
t.teardown(() => h.close());

function reachable(ip: string, port: number): boolean {
  const src = h.snapshot.identityForIP(APP.ip);
  return h.snapshot.decide({ src, dst: h.snapshot.identityForIP(ip), port, protocol: 'TCP' }).allowed;
}

t.test('namemanager Test_deriveLabelsForNames through the listener and decide()', async (t) => {
  const rows: [string, string[], boolean, boolean][] = [
    // name, its addresses, reachable on 80 (matchName), on 8080 (matchPattern)
    ['nomatch.local', ['10.10.0.1'], false, false],
    ['github.com', ['10.20.0.1'], false, false],
    ['cilium.io', ['10.30.0.1'], true, true],
    ['awesomecilium.io', ['10.30.0.4', '10.30.0.2'], false, true],
  ];
  for (const [name, ips] of rows) {
    h.upstream.setRecord(name, { a: ips });
    for (const ip of ips) t.notOk(reachable(ip, 80) || reachable(ip, 8080), `${ip} not reachable before ${name} is resolved`);
  }
  for (const [name, ips, on80, on8080] of rows) {
    const r = await dig(h.port, name, { from: APP.ip });
    t.equal(r.status, 'NOERROR', `${name} resolves (DNS rule "*")`);
    for (const ip of ips) {
      t.equal(reachable(ip, 80), on80, `${name} ${ip}: port 80 (matchName cilium.io) ${on80}`);
      t.equal(reachable(ip, 8080), on8080, `${name} ${ip}: port 8080 (matchPattern *cilium.io.) ${on8080}`);
    }
  }
  // Test_deriveLabelsForNames gives cilium.io's IP both labels; awesomecilium.io's the pattern's only.
  const labels = (ip: string) => h.snapshot.identityForIP(ip).labels.filter((l) => l.startsWith('fqdn:')).sort();
  t.same(labels('10.30.0.1'), ['fqdn:*cilium.io.', 'fqdn:cilium.io']);
  t.same(labels('10.30.0.2'), ['fqdn:*cilium.io.']);
  t.same(labels('10.20.0.1'), []);
});
