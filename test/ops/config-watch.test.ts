/**
 * hashConfigTree (the watcher's change detection) on a file larger than the loader
 * accepts: it is not read whole (the loader refuses it unread; reading it here on every
 * change was the memory spike the loader avoids, and past 2 GiB the read failed so a
 * change to it went unseen), its size and mtime stand for it. And the watcher on a
 * config directory that is replaced: inotify kept watching the old one.
 */
import t from 'tap';
import { mkdir, open, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigWatcher, hashConfigTree } from '../../src/ops/config-watch.js';

t.test('a file over the size limit is hashed by size and mtime, and its changes are seen', async (t) => {
  const dir = t.testdir({ 'a.yaml': 'kind: Pod\n' });
  const big = join(dir, 'big.yaml');
  // Sparse: 3 GB of size, no disk blocks.
  const fh = await open(big, 'w');
  await fh.truncate(3 * 1024 ** 3);
  await fh.close();
  const h1 = await hashConfigTree(dir);
  t.equal(await hashConfigTree(dir), h1, 'stable while nothing changes');
  await utimes(big, new Date(1_000_000_000_000), new Date(1_000_000_000_000));
  const h2 = await hashConfigTree(dir);
  t.not(h2, h1, 'a touch of the large file is a change');
  await writeFile(join(dir, 'a.yaml'), 'kind: Pod\nmetadata: {}\n');
  t.not(await hashConfigTree(dir), h2, 'small files are still hashed by content');
});

t.test('a config directory replaced (rm -rf and re-create, or mv new old) is watched again', async (t) => {
  const root = t.testdir({ config: { 'a.yaml': 'kind: Pod\n' } });
  const dir = join(root, 'config');
  let changes = 0;
  const w = new ConfigWatcher({ configDir: dir, debounceMs: 50, onChange: () => changes++ });
  t.teardown(() => w.close());
  await w.start();
  const until = async (n: number) => {
    for (let i = 0; i < 100 && changes < n; i++) await new Promise((r) => setTimeout(r, 100));
    return changes >= n;
  };
  // Removed: a change (the loader would refuse it; the previous policy stays).
  await rm(dir, { recursive: true });
  t.ok(await until(1), 'removal seen');
  // Re-created with other content: seen through a new watch on the new directory.
  await mkdir(dir);
  await writeFile(join(dir, 'a.yaml'), 'kind: Pod\nmetadata: { name: b }\n');
  t.ok(await until(2), 're-created directory seen');
  // Replaced by a rename, as deploy tools do: the old inode goes away.
  const next = join(root, 'config.new');
  await mkdir(next);
  await writeFile(join(next, 'a.yaml'), 'kind: Pod\nmetadata: { name: c }\n');
  await rm(dir, { recursive: true });
  await rename(next, dir);
  t.ok(await until(3), 'renamed-in directory seen');
  // And later edits inside it too.
  await new Promise((r) => setTimeout(r, 300));
  await writeFile(join(dir, 'a.yaml'), 'kind: Pod\nmetadata: { name: d }\n');
  t.ok(await until(4), 'edits inside the new directory seen');
});

t.test('a config directory that is a symlink switched to another target is watched again', async (t) => {
  const root = t.testdir({ v1: { 'a.yaml': 'kind: Pod\n' }, v2: { 'a.yaml': 'kind: Pod\nmetadata: { name: v2 }\n' } });
  const link = join(root, 'config');
  await symlink(join(root, 'v1'), link);
  let changes = 0;
  const w = new ConfigWatcher({ configDir: link, debounceMs: 50, onChange: () => changes++ });
  t.teardown(() => w.close());
  await w.start();
  const until = async (n: number) => {
    for (let i = 0; i < 100 && changes < n; i++) await new Promise((r) => setTimeout(r, 100));
    return changes >= n;
  };
  // Atomic switch, as `ln -sfn` does: a new link renamed over the old one.
  await symlink(join(root, 'v2'), join(root, 'config.tmp'));
  await rename(join(root, 'config.tmp'), link);
  t.ok(await until(1), 'switch seen');
  await new Promise((r) => setTimeout(r, 300));
  await writeFile(join(root, 'v2', 'a.yaml'), 'kind: Pod\nmetadata: { name: v2b }\n');
  t.ok(await until(2), 'edits in the new target seen');
});
