/**
 * Zero-window HTTP/2 readers: two connections announce SETTINGS_INITIAL_WINDOW_SIZE
 * 0, open 64 streams each for a large allowed response, never send WINDOW_UPDATE,
 * and keep their sessions alive with PINGs (the session idle timeout never fires).
 * Each stream holds one connection of the HTTP/1.1 upstream pool (128) while its
 * response waits for the client: the pool was gone, and every other client of the
 * listener waited without end (a second client's request got no answer in 20 s with
 * a 3 s idle timeout). Memory stayed bounded (backpressure held: ~120 MB RSS).
 *
 * Now a response that cannot move for `idleTimeoutMs` is reset (RST_STREAM CANCEL)
 * and its upstream request cancelled. Oracle: the stalled streams are reset, and a
 * second client is served while the readers are still connected and pinging.
 */
import t from 'tap';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { h2Connect, h2Request } from '../helpers/clients.js';
import { rawH2, frame, settings, waitFor, FT, FL, requestBlock, type RawH2 } from '../helpers/h2-raw.js';

const TIE = '127.0.0.10';
const STREAMS = 64; // x 2 connections = the HTTP/1.1 pool (128)
const NGHTTP2_CANCEL = 8;
const SETTINGS_INITIAL_WINDOW_SIZE = 4;

t.test('zero-window readers cannot hold the upstream pool', async (t) => {
  const up = await startCaptureUpstream();
  const SIZE = 32 * 1024 * 1024;
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  // A large response for the readers (x-big), written with backpressure.
  up.routes.push((req, res) => {
    if (req.headers['x-big'] === undefined) return false;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': SIZE });
    let sent = 0;
    const pump = (): void => {
      while (sent < SIZE) {
        sent += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    res.on('error', () => {});
    pump();
    return true;
  });
  // 3 s, ten pings' worth: with 1.5 s a loaded CI machine delayed this test's 300 ms
  // pinger past the session idle timeout, which then closed a reader before its
  // streams' stall timers (the same 1.5 s) reset them.
  const cfg = await starWarsDir({ upstream: up.url, limits: { idleTimeoutMs: 3000 } });
  const proxy = await startProxy({ configDir: cfg.dir });
  const port = proxy.listeners[0]!.address.port;
  const readers: RawH2[] = [];
  const pinger = setInterval(() => {
    for (const c of readers) c.sock.write(frame(FT.PING, 0, 0, Buffer.alloc(8)));
  }, 300);
  t.teardown(async () => {
    clearInterval(pinger);
    for (const c of readers) c.sock.destroy();
    await proxy.close(0);
    await up.close();
    await cfg.cleanup();
  });

  for (let k = 0; k < 2; k++) {
    const c = await rawH2(port, TIE, settings([[SETTINGS_INITIAL_WINDOW_SIZE, 0]]));
    const heads: Buffer[] = [];
    for (let i = 0, id = 1; i < STREAMS; i++, id += 2) {
      heads.push(frame(FT.HEADERS, FL.END_HEADERS | FL.END_STREAM, id, requestBlock('POST', '/v1/request-landing', [['x-big', '1']])));
    }
    await c.write(Buffer.concat(heads));
    readers.push(c);
  }
  t.ok(await waitFor(() => up.requests.length >= 2 * STREAMS, 5000), 'every reader stream was forwarded (the pool is taken)');

  const reset = await waitFor(() => readers.every((c) => c.rst.size === STREAMS), 10_000);
  t.ok(reset, `the stalled streams were reset (${readers.map((c) => c.rst.size).join(' + ')} of ${2 * STREAMS})`);
  t.ok(readers.every((c) => [...c.rst.values()].every((code) => code === NGHTTP2_CANCEL)), 'with CANCEL');
  t.ok(readers.every((c) => !c.closed), 'the readers are still connected');

  const s = await h2Connect(port, TIE);
  const r = await h2Request(s, { method: 'POST', path: '/v1/request-landing', body: 'x' }).catch((e: Error) => ({ status: 0, err: e.message }));
  s.close();
  t.equal(r.status, 200, 'a second client is served');
});
