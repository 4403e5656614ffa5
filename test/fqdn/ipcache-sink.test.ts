/**
 * IPCacheFqdnSink: a learned address gets the FQDN identity made of what the address
 * is on its own (world, or its CIDR identity's labels) plus `fqdn:<key>` per selector;
 * in-cluster addresses are never labelled. The identity is cached per (own identity,
 * keys) and snapshot, so these checks pin down that the cache never hands one
 * address's identity to an address that is something else.
 */
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigDir } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/policy/compile.js';
import { IPCacheOverlay } from '../../src/identity/ipcache.js';
import { IPCacheFqdnSink } from '../../src/fqdn/ipcache-sink.js';
import type { PolicySnapshot } from '../../src/policy/types.js';

const PODS = `apiVersion: v1
kind: Pod
metadata: { name: app, namespace: default, labels: { app: client } }
status: { podIP: 127.0.0.10 }
`;
const POLICY = (cidr: string) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: p, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toFQDNs: [{ matchPattern: "*.example" }]
    - toCIDR: [${cidr}]
`;

async function compile(t: { teardown(fn: () => unknown): void }, overlay: IPCacheOverlay, cidr: string, version: number): Promise<PolicySnapshot> {
  const dir = await mkdtemp(join(tmpdir(), 'l7w-sink-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'all.yaml'), PODS + '---\n' + POLICY(cidr));
  const loaded = await loadConfigDir(dir);
  const c = compileSnapshot(loaded.docs, { ipOverlay: overlay, version });
  if (!c.snapshot) throw new Error(JSON.stringify(c.errors));
  return c.snapshot;
}

t.test('world and CIDR addresses with the same keys get different FQDN identities; pods none', async (t) => {
  const overlay = new IPCacheOverlay();
  let snap = await compile(t, overlay, '10.0.0.0/8', 1);
  const sink = new IPCacheFqdnSink(overlay, () => snap);
  const keys = ['*.example'];
  sink.setFqdnSelectors('10.1.2.3', keys);
  sink.setFqdnSelectors('192.0.2.7', keys);
  sink.setFqdnSelectors('10.1.2.4', keys);
  sink.setFqdnSelectors('127.0.0.10', keys);
  t.same(snap.identityForIP('10.1.2.3').labels, ['cidr:10.0.0.0/8', 'fqdn:*.example', 'reserved:world']);
  t.equal(snap.identityForIP('10.1.2.4'), snap.identityForIP('10.1.2.3'), 'same own identity and keys: one identity');
  t.same(snap.identityForIP('192.0.2.7').labels, ['fqdn:*.example', 'reserved:world']);
  t.ok(snap.identityForIP('127.0.0.10').labels.includes('k8s:app=client'), 'a pod keeps its own identity');
  t.equal(sink.skippedInternal, 1);
  // Two keys: another identity again.
  sink.setFqdnSelectors('192.0.2.8', ['a.example', '*.example']);
  t.same(snap.identityForIP('192.0.2.8').labels, ['fqdn:*.example', 'fqdn:a.example', 'reserved:world']);
  // Removing the keys removes the entry.
  sink.setFqdnSelectors('192.0.2.7', []);
  t.same(snap.identityForIP('192.0.2.7').labels, ['reserved:world']);

  // A new snapshot where the CIDR changed: nothing cached from the old one is reused.
  snap = await compile(t, overlay, '192.0.2.0/24', 2);
  sink.setFqdnSelectors('192.0.2.9', keys);
  sink.setFqdnSelectors('10.1.2.3', keys);
  t.same(snap.identityForIP('192.0.2.9').labels, ['cidr:192.0.2.0/24', 'fqdn:*.example', 'reserved:world']);
  t.same(snap.identityForIP('10.1.2.3').labels, ['fqdn:*.example', 'reserved:world']);
});
