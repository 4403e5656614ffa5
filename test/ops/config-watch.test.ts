/**
 * hashConfigTree (the watcher's change detection) on a file larger than the loader
 * accepts: it is not read whole (the loader refuses it unread; reading it here on every
 * change was the memory spike the loader avoids, and past 2 GiB the read failed so a
 * change to it went unseen), its size and mtime stand for it.
 */
import t from 'tap';
import { open, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hashConfigTree } from '../../src/ops/config-watch.js';

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
