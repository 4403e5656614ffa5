/**
 * A reload that throws (a bug, not a config problem) must not end the process: the
 * watcher, SIGHUP and the workers' IPC start reloads with `void`, so a rejected
 * promise there is an unhandled rejection. ProxyReloader.reload() therefore never
 * rejects: the throw becomes a failed report that names the version in force, is
 * counted and kept as lastError, and the next reload still runs.
 */
import t from 'tap';
import { loadConfigDir } from '../../src/config/load.js';
import { PolicyStore } from '../../src/policy/store.js';
import { ProxyReloader } from '../../src/ops/reload.js';
import { starWarsDir } from '../helpers/config-dir.js';

t.test('a throw during reload is a failed report, not a rejection', async (t) => {
  const cfg = await starWarsDir({ upstream: 'http://127.0.0.1:9' });
  t.teardown(cfg.cleanup);
  const loaded = await loadConfigDir(cfg.dir);
  t.same(loaded.errors, []);
  const store = new PolicyStore();
  t.ok(store.apply(loaded.docs).ok);
  const logs: string[] = [];
  const counted: boolean[] = [];
  let throwNext = true;
  const reloader = new ProxyReloader({
    store,
    configDir: cfg.dir,
    running: loaded.docs.proxyConfig!.spec,
    startDocs: loaded.docs,
    certificates: new Map(),
    count: (ok) => counted.push(ok),
    log: (l) => logs.push(l),
    onApplied: () => {
      if (throwNext) {
        throwNext = false;
        throw new Error('boom');
      }
    },
  });
  const failed = await reloader.reload('watch');
  t.equal(failed.ok, false);
  t.match(failed.errors, [/^internal error during reload: boom$/]);
  t.equal(failed.version, store.version, 'names the version actually in force (the swap happened before the throw)');
  t.equal(reloader.lastError, failed);
  t.same(counted, [false]);
  t.match(logs.at(-1), /reload \(watch\) failed: internal error during reload: boom; policy version \d+ in force/);
  const next = await reloader.reload('SIGHUP');
  t.equal(next.ok, true, 'the chain goes on');
  t.equal(reloader.lastError, undefined);
  t.same(counted, [false, true]);
});

t.test('a flood of reload requests costs one running and one queued reload', async (t) => {
  const cfg = await starWarsDir({ upstream: 'http://127.0.0.1:9' });
  t.teardown(cfg.cleanup);
  const loaded = await loadConfigDir(cfg.dir);
  const store = new PolicyStore();
  t.ok(store.apply(loaded.docs).ok);
  let loads = 0;
  const reloader = new ProxyReloader({
    store,
    configDir: cfg.dir,
    running: loaded.docs.proxyConfig!.spec,
    startDocs: loaded.docs,
    certificates: new Map(),
    load: async (dir, opts) => {
      loads++;
      return loadConfigDir(dir, opts);
    },
  });
  const first = reloader.reload('api');
  // Let the first one start, then flood: every later request joins the one queued behind it.
  await new Promise((r) => setImmediate(r));
  const flood = Array.from({ length: 50 }, (_, i) => reloader.reload(`api-${i}`));
  const reports = await Promise.all([first, ...flood]);
  t.equal(loads, 2, 'two loads for 51 requests');
  t.ok(reports.every((r) => r.ok));
  t.equal(new Set(flood).size, 1, 'the queued requests share one reload');
  t.equal(reports[1]!.trigger, 'api-0', 'reported under the trigger that queued it');
  t.equal(reports[1]!.version, store.version);
  // Once that ran, a new request is a new reload.
  await reloader.reload('SIGHUP');
  t.equal(loads, 3);
});
