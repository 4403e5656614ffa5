/**
 * FQDN-learned IPs sit in the IP cache overlay as /32 entries labelled
 * `reserved:world` + `fqdn:<selector>`, and the overlay wins over the snapshot's own
 * entries. A policy swap must re-label them (docs/dns.md), but the DNS proxy did it
 * only when the next DNS query arrived. Until then a stale entry kept masking what
 * the new snapshot says the address is: here an address learned as "world" becomes a
 * pod's IP in the new snapshot, yet the overlay still presented it as a world/FQDN
 * identity, so `toFQDNs` kept allowing egress to the pod (Cilium's toFQDNs never
 * selects in-cluster addresses) — for as long as no DNS query came. The listener now
 * re-labels inside the swap (its `onSwap` subscription; PolicyStore.onSwap in the
 * product), so the very next decision already sees the pod.
 */
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DnsHarness, KUBE_DNS, dig, dnsPolicy, podYaml } from '../helpers/dns-harness.js';
import { loadConfigDir } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/policy/compile.js';
import type { PolicySnapshot } from '../../src/policy/types.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const DB = { name: 'db', labels: { app: 'db' }, ip: '127.0.0.99' };

const fqdnPolicy = `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: app-fqdn, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toFQDNs: [{ matchPattern: "*.example" }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]
`;
const policies = dnsPolicy('app-dns', { app: 'client' }, ['matchPattern: "*.example"']) + fqdnPolicy;

const h = await DnsHarness.start({ pods: [APP], policies });
t.teardown(() => h.close());

function canConnect(snap: PolicySnapshot, ip: string): boolean {
  return snap.decide({ src: snap.identityForIP(APP.ip), dst: snap.identityForIP(ip), port: 80, protocol: 'TCP' }).allowed;
}

t.test('a swap re-labels learned IPs without waiting for a DNS query', async (t) => {
  h.upstream.setRecord('a.example', { a: [DB.ip], ttl: 300 });
  t.equal((await dig(h.port, 'a.example', { from: APP.ip })).status, 'NOERROR');
  t.ok(canConnect(h.snapshot, DB.ip), 'learned: reachable through toFQDNs while it is a world address');

  // New snapshot: the address now belongs to a pod.
  const dir = await mkdtemp(join(tmpdir(), 'l7w-dns-relabel-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(
    join(dir, 'all.yaml'),
    [KUBE_DNS, APP, DB].map(podYaml).join('---\n') + '---\n' + policies.replaceAll('PORT', String(h.upstream.port)),
  );
  const loaded = await loadConfigDir(dir);
  const c = compileSnapshot(loaded.docs, { version: h.snapshot.version + 1, ipOverlay: h.overlay });
  t.ok(c.snapshot, 'compiled');
  h.snapshot = c.snapshot!;

  // No DNS traffic, and no turn of the event loop: the swap itself re-labelled.
  const ident = h.snapshot.identityForIP(DB.ip);
  t.ok(ident.labels.includes('k8s:app=db'), `the pod's identity, not a stale FQDN one (${ident.labels.join(',')})`);
  t.notOk(canConnect(h.snapshot, DB.ip), 'toFQDNs does not open a pod address');
});
