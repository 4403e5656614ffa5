/**
 * An L3/L4 denial answered with a TCP reset (`l3DenyAction: reset`) on a connection
 * whose client already sent its FIN. On egress that leaked one file descriptor per
 * connection (a5d7fb5: libuv cannot reset a handle that is already shutting down, the
 * failed reset left the socket unclosed; Envoy tls_inspector
 * EarlyTerminationShouldNotRecordBytesProcessed). Checked here for the ingress reset
 * (src/http/downstream.ts resetConnection) with a request and its FIN sent together:
 * it held, and this keeps it so. xwing (127.0.0.11, org=alliance) has no L3 allow
 * toward deathstar.
 */
import t from 'tap';
import * as net from 'node:net';
import { readdirSync } from 'node:fs';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';

const XWING = '127.0.0.11';
let up: CaptureUpstream;
let proxy: RunningProxy;
let port = 0;

t.before(async () => {
  up = await startCaptureUpstream();
  const cfg = await starWarsDir({ upstream: up.url, l3DenyAction: 'reset' });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
});

const openFds = () => readdirSync('/proc/self/fd').length;

/** A request and the client's FIN in one go; resolves when the proxy closed or reset the connection. */
function halfClosedRequest(): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: XWING });
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, 5000);
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code ?? 'error');
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    s.on('data', () => {});
    s.once('connect', () => s.end('GET /v1/request-landing HTTP/1.1\r\nHost: deathstar\r\n\r\n'));
  });
}

t.test('denied with a reset after the client half-closed: no descriptor is left behind', async (t) => {
  await halfClosedRequest(); // warm-up: lazily opened handles are not leaks
  await new Promise((r) => setTimeout(r, 200));
  const before = openFds();
  const N = 40;
  const outcomes = await Promise.all(Array.from({ length: N }, () => halfClosedRequest()));
  t.notOk(outcomes.includes('timeout'), 'every connection ended');
  t.ok(outcomes.every((o) => o === 'ECONNRESET'), `reset, not answered: ${[...new Set(outcomes)].join(', ')}`);
  t.equal(up.requests.length, 0, 'nothing reached the upstream');
  // Closing is asynchronous: allow the proxy's side to finish (bounded).
  let after = openFds();
  for (let i = 0; i < 50 && after > before + 2; i++) {
    await new Promise((r) => setTimeout(r, 50));
    after = openFds();
  }
  t.ok(after <= before + 2, `descriptors: ${before} before, ${after} after ${N} half-closed denied requests`);
});
