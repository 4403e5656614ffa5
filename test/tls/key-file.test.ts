import t from 'tap';
import { writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { assertPrivateKeyFileMode } from '../../src/tls/key-file.js';
import { tempDir, rejectsWarden } from '../helpers/tls-pki.js';

t.test('key files must be 0600 or stricter', async (t) => {
  const dir = tempDir(t);
  const key = join(dir, 'tls.key');
  writeFileSync(key, 'k');
  for (const ok of [0o600, 0o400]) {
    chmodSync(key, ok);
    assertPrivateKeyFileMode(key);
    t.pass(`mode ${ok.toString(8)} accepted`);
  }
  for (const bad of [0o640, 0o644, 0o604, 0o660, 0o666]) {
    chmodSync(key, bad);
    await rejectsWarden(t, () => assertPrivateKeyFileMode(key, 'secret default/d tls.key'), 'L7W_ERR_TLS',
      new RegExp(`secret default/d tls\\.key: key file mode 0${bad.toString(8)} is readable by group/others`), bad.toString(8));
  }
  assertPrivateKeyFileMode(key, 'x', 'win32');
  t.pass('not checked on Windows');
  await rejectsWarden(t, () => assertPrivateKeyFileMode(join(dir, 'missing.key')), 'L7W_ERR_TLS', /cannot read key file \(ENOENT\)/);
  mkdirSync(join(dir, 'd.key'), { mode: 0o700 });
  await rejectsWarden(t, () => assertPrivateKeyFileMode(join(dir, 'd.key')), 'L7W_ERR_TLS', /not a regular file/);
});
