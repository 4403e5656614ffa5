/**
 * WebSocket upgrades after the handover from Node's HTTP server (src/http/websocket.ts):
 *
 * - An idle tunnel is closed after `idleTimeoutMs` (Node stops timing the client
 *   socket once it emits 'upgrade'; the tunnel used to live forever).
 * - A tunnel whose client does not read stalls the upstream (backpressure) and is
 *   closed after `idleTimeoutMs` without progress.
 * - An upstream that answers the upgrade request with a plain response (not 101) and a
 *   large body, to a client that does not read: the body used to be written chunk by
 *   chunk with no backpressure, so the proxy buffered all of it (measured: 300 MB
 *   pushed, proxy RSS 81 → 390 MB); now the upstream is stalled.
 *
 * Oracles are on the upstream side: how many bytes it could push, and whether the
 * proxy closed its socket.
 */
import t from 'tap';
import * as http from 'node:http';
import * as net from 'node:net';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';

const TIE = '127.0.0.10';
const IDLE_MS = 600;
const TOTAL = 128 * 1024 * 1024;
const BOUND = 48 * 1024 * 1024;

interface UpConn {
  pushed: number;
  closed: boolean;
  closedAt: number;
  closedP: Promise<void>;
}
const conns = new Map<string, UpConn>();

const upstream = http.createServer((_req, res) => res.end('ok'));
upstream.on('upgrade', (req: http.IncomingMessage, sock: net.Socket) => {
  sock.on('error', () => {});
  // Read (and drop) what comes from the proxy, and close on its FIN (the server's
  // socket is half-open after an upgrade), so the proxy's close shows as 'close'.
  sock.resume();
  sock.once('end', () => sock.destroy());
  const c: UpConn = { pushed: 0, closed: false, closedAt: 0, closedP: Promise.resolve() };
  c.closedP = new Promise<void>((r) =>
    sock.once('close', () => {
      c.closed = true;
      c.closedAt = Date.now();
      r();
    }),
  );
  conns.set(req.url ?? '', c);
  const mode = (req.url ?? '').split('/')[2];
  if (mode === 'plain') sock.write(`HTTP/1.1 200 OK\r\ncontent-length: ${TOTAL}\r\n\r\n`);
  else sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  if (mode === 'idle') return;
  const chunk = Buffer.alloc(1024 * 1024, 0x61);
  const push = (): void => {
    while (c.pushed < TOTAL && !sock.destroyed) {
      c.pushed += chunk.length;
      if (!sock.write(chunk)) {
        sock.once('drain', push);
        return;
      }
    }
  };
  push();
});

let proxy: RunningProxy;
let port = 0;
t.before(async () => {
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const cfg = await starWarsDir({
    upstream: `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}`,
    extraHttp: ['{ method: "GET", path: "/public/.*" }'],
    limits: { idleTimeoutMs: IDLE_MS },
    admin: false,
  });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await new Promise<void>((r) => {
    upstream.closeAllConnections();
    upstream.close(() => r());
  });
});

/** Open an upgrade from the tiefighter; resolve with the first bytes; `read` false pauses after them. */
function openUpgrade(path: string, read: boolean): Promise<{ sock: net.Socket; first: string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress: TIE });
    sock.on('error', () => {});
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    const timer = setTimeout(() => reject(new Error('no answer to the upgrade')), 3000);
    sock.write(
      `GET ${path} HTTP/1.1\r\nHost: deathstar\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    sock.once('data', (d: Buffer) => {
      clearTimeout(timer);
      if (!read) sock.pause();
      else sock.on('data', () => {});
      resolve({ sock, first: d.toString('latin1'), closed });
    });
  });
}

const within = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  Promise.race([p, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref())]);

t.test('an idle tunnel is closed after idleTimeoutMs, both sides', async (t) => {
  const path = '/public/idle/1';
  const start = Date.now();
  const { sock, first, closed } = await openUpgrade(path, true);
  t.teardown(() => sock.destroy());
  t.match(first, /^HTTP\/1\.1 101 /);
  t.equal(await within(closed, IDLE_MS * 5), undefined, 'client connection closed by the proxy');
  const up = conns.get(path)!;
  t.equal(await within(up.closedP, 1000), undefined, 'upstream connection closed by the proxy');
  t.ok(up.closedAt - start >= IDLE_MS - 50, `not before the idle timeout (${up.closedAt - start} ms)`);
});

t.test('a tunnel whose client does not read: upstream stalled, then closed when idle', async (t) => {
  const path = '/public/flood/1';
  const { sock, first } = await openUpgrade(path, false);
  t.teardown(() => sock.destroy());
  t.match(first, /^HTTP\/1\.1 101 /);
  const up = conns.get(path)!;
  t.equal(await within(up.closedP, IDLE_MS * 6), undefined, 'upstream connection closed by the proxy');
  t.ok(up.pushed < BOUND, `upstream could push only ${(up.pushed / 1048576).toFixed(0)} MB of ${TOTAL / 1048576} MB`);
});

t.test('a non-101 answer with a large body, client not reading: no unbounded buffering', async (t) => {
  const path = '/public/plain/1';
  const { sock, first } = await openUpgrade(path, false);
  t.teardown(() => sock.destroy());
  t.match(first, /^HTTP\/1\.1 200 /);
  const up = conns.get(path)!;
  // Long enough for the whole body to cross loopback into an unbounded buffer.
  await within(up.closedP, IDLE_MS * 6);
  t.ok(up.pushed < BOUND, `upstream could push only ${(up.pushed / 1048576).toFixed(0)} MB of ${TOTAL / 1048576} MB`);
  t.ok(up.closed, 'the stalled relay is closed after idleTimeoutMs');
});
