import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { IdentityAllocator, preferredNumber } from '../../src/identity/allocator.js';
import { LOCAL_SCOPE, MAX_ALLOCATED, MIN_ALLOCATED, Reserved } from '../../src/identity/identity.js';

const sets = (n: number): string[][] =>
  Array.from({ length: n }, (_, i) => [`k8s:app=svc-${i}`, 'k8s:io.kubernetes.pod.namespace=default']);

t.test('reserved identities keep Cilium numbers', async (t) => {
  const a = new IdentityAllocator();
  t.same(a.get(Reserved.host)?.labels, ['reserved:host']);
  t.same(a.get(Reserved.world)?.labels, ['reserved:world']);
  t.same(a.get(Reserved.remoteNode)?.labels, ['reserved:remote-node']);
  t.same(a.get(Reserved.worldIPv6)?.labels, ['reserved:world-ipv6']);
  t.equal(a.allocate(['reserved:world']).id, Reserved.world);
});

t.test('numbers are unique, in range and independent of order', async (t) => {
  const s = sets(3000);
  const a = new IdentityAllocator();
  const ids = a.allocateBatch(s).map((i) => i.id);
  t.equal(new Set(ids).size, s.length, 'no two sets share a number (collisions probed)');
  t.ok(ids.every((id) => id >= MIN_ALLOCATED && id <= MAX_ALLOCATED));
  const b = new IdentityAllocator();
  const rev = b.allocateBatch([...s].reverse()).map((i) => i.id).reverse();
  t.same(rev, ids, 'reverse document order gives the same numbers');
  // Label order inside a set does not matter either.
  t.equal(new IdentityAllocator().allocate([...(s[0] as string[])].reverse()).id, ids[0]);
});

t.test('CIDR / FQDN label sets live in the local scope', async (t) => {
  const id = new IdentityAllocator().allocate(['cidr:10.0.0.0/8', 'reserved:world']).id;
  t.ok(id > LOCAL_SCOPE && id < 2 * LOCAL_SCOPE);
  t.equal(id, preferredNumber(['reserved:world', 'cidr:10.0.0.0/8']));
});

t.test('same label set, same number in two separate processes', async (t) => {
  const mod = fileURLToPath(new URL('../../src/identity/allocator.ts', import.meta.url));
  const script = `
    const { IdentityAllocator } = await import(${JSON.stringify(mod)});
    const order = process.argv[1] === 'rev' ? -1 : 1;
    const s = Array.from({ length: 500 }, (_, i) => ['k8s:app=svc-' + i, 'k8s:io.kubernetes.pod.namespace=default']);
    if (order < 0) s.reverse();
    const a = new IdentityAllocator();
    a.allocateBatch(s);
    console.log(JSON.stringify([0, 1, 250, 499].map((i) => a.lookupLabels(['k8s:app=svc-' + i, 'k8s:io.kubernetes.pod.namespace=default']).id)));
  `;
  const run = (arg: string): number[] => {
    const r = spawnSync(process.execPath, ['--import=@tapjs/typescript/import', '--input-type=module', '-e', script, arg], {
      encoding: 'utf8',
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
    });
    if (r.status !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').pop() as string) as number[];
  };
  const one = run('fwd');
  const two = run('rev');
  t.same(one, two);
  const here = new IdentityAllocator();
  here.allocateBatch(sets(500));
  t.same(one, [0, 1, 250, 499].map((i) => here.lookupLabels(sets(500)[i] as string[])?.id));
});
