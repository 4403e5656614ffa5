/**
 * Secrets as files (`certs/<ns>/<name>/{tls.crt,tls.key,ca.crt}`) were read with
 * readFile whatever they were. A FIFO there blocked the loader forever: `check`
 * hung, start-up hung, and a hot reload never finished, so every later reload
 * (watch, SIGHUP, POST /reload: they are serialized) queued behind it for good. A
 * link to /dev/zero grew a buffer without end. Such a file is now an error naming
 * it, and the rest of the directory still loads.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { constants, openSync, closeSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfigDir } from '../../src/config/load.js';
import { formatIssue } from '../../src/config/issues.js';

function within<T>(ms: number, p: Promise<T>): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), ms); })]).finally(() => clearTimeout(timer));
}

t.test('a FIFO or a device among the certificate files is an error, not a hang', async (t) => {
  const dir = t.testdir({
    config: { 'ns.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n' },
    certs: { default: { fifo: {}, dev: {}, good: { 'ca.crt': 'not really a CA' } } },
  });
  const fifo = join(dir, 'certs/default/fifo/tls.crt');
  execFileSync('mkfifo', [fifo]);
  // /dev/null rather than /dev/zero: the unfixed loader would read /dev/zero for GBs.
  symlinkSync('/dev/null', join(dir, 'certs/default/dev/tls.key'));
  const r = await within(5000, loadConfigDir(join(dir, 'config')));
  // Whatever happened, release a reader blocked in open() so the test process can end
  // (here, not in a teardown: t.testdir's own teardown may remove the FIFO first).
  try {
    closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
  } catch {
    /* no reader left */
  }
  if (r === 'timeout') {
    t.fail('loadConfigDir did not finish within 5 s');
    return;
  }
  const errors = r.errors.map(formatIssue);
  t.match(errors, [/certs\/default\/dev\/tls\.key:1:1: .*not a regular file/, /certs\/default\/fifo\/tls\.crt:1:1: .*not a regular file/]);
  t.equal(errors.length, 2);
  t.same(r.docs.secrets.map((s) => s.name), ['good'], 'the other Secret directories still load');
});
