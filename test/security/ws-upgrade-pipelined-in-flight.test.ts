/**
 * A WebSocket upgrade pipelined behind an allowed request that is still in flight.
 * Node's HTTP server emits 'upgrade' as soon as it parses the upgrade request and
 * hands the raw socket over, whether or not an earlier response on that connection is
 * finished. The tunnel's `101` and bytes then went out on the socket while the first
 * response was still being written: the client saw `101` before (or interleaved with)
 * the answer to its first request.
 *
 * Now an upgrade that arrives while another request on the connection is in flight is
 * refused: `400` with `Connection: close` after the earlier responses complete in
 * order, and nothing is offered upstream. Oracle: the client's byte stream is the
 * first response, whole, then the 400; the upstream never sees the upgrade.
 */
import t from 'tap';
import * as http from 'node:http';
import * as net from 'node:net';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { rawExchange, statuses } from '../helpers/clients.js';

const TIE = '127.0.0.10';
const SLOW_BODY = 'slow-response-body-'.repeat(200);
const BIG = 8 * 1024 * 1024;
const seen: string[] = [];
const upstream = http.createServer((req, res) => {
  seen.push(`${req.method} ${req.url}`);
  req.resume();
  if (req.url === '/public/slow') {
    // Headers now, body after 300 ms: the response is in flight for a while.
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(SLOW_BODY) });
    res.flushHeaders();
    setTimeout(() => res.end(SLOW_BODY), 300);
    return;
  }
  if (req.url === '/public/big') {
    // A large body, written with backpressure after a delay.
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG });
    res.flushHeaders();
    const chunk = Buffer.alloc(64 * 1024, 0x62);
    let sent = 0;
    const push = (): void => {
      while (sent < BIG) {
        sent += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', push);
          return;
        }
      }
      res.end();
    };
    setTimeout(push, 100);
    return;
  }
  req.on('end', () => res.end('ok'));
});
upstream.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
  seen.push(`UPGRADE ${req.url}`);
  socket.on('error', () => {});
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nTUNNEL-BYTES');
  socket.end();
});

let proxy: RunningProxy;
let port = 0;
t.before(async () => {
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const cfg = await starWarsDir({
    upstream: `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}`,
    extraHttp: ['{ method: "GET", path: "/public/.*" }'],
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

const WS =
  'GET /public/ws HTTP/1.1\r\nHost: deathstar\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

t.test('upgrade pipelined behind an in-flight request: no tunnel, no mixed bytes', async (t) => {
  const before = seen.length;
  const out = await rawExchange(port, `GET /public/slow HTTP/1.1\r\nHost: deathstar\r\n\r\n${WS}`, { from: TIE, ms: 1500 });
  t.notMatch(out, /101 Switching Protocols/, 'no 101 on this connection');
  t.notMatch(out, /TUNNEL-BYTES/, 'no tunnel bytes');
  t.same(statuses(out), [200, 400], 'the first response, then the refusal');
  const first = out.indexOf(SLOW_BODY);
  t.ok(first > 0 && first < out.indexOf('HTTP/1.1 400'), 'the first response is whole and comes first');
  t.same(seen.slice(before), ['GET /public/slow'], 'the upgrade was never offered upstream');
});

t.test('two requests in flight, then an upgrade: both answered in order, then 400', async (t) => {
  const before = seen.length;
  const out = await rawExchange(port, `GET /public/slow HTTP/1.1\r\nHost: deathstar\r\n\r\nGET /public/a HTTP/1.1\r\nHost: deathstar\r\n\r\n${WS}`, { from: TIE, ms: 1500 });
  t.same(statuses(out), [200, 200, 400]);
  t.notMatch(out, /TUNNEL-BYTES/);
  t.same(seen.slice(before), ['GET /public/slow', 'GET /public/a']);
});

t.test('a large in-flight response (needs drain) completes before the refusal', async (t) => {
  const before = seen.length;
  const out = await rawExchange(port, `GET /public/big HTTP/1.1\r\nHost: deathstar\r\n\r\n${WS}`, { from: TIE, ms: 4000 });
  const head = out.indexOf('\r\n\r\n') + 4;
  const refusal = out.indexOf('HTTP/1.1 400 ', head);
  t.equal(refusal - head, BIG, 'the whole body, then the refusal');
  t.same(statuses(out.slice(0, head)).concat(statuses(out.slice(refusal))), [200, 400]);
  t.same(seen.slice(before), ['GET /public/big']);
});

t.test('control: an upgrade on a connection whose earlier response is finished is tunnelled', async (t) => {
  const before = seen.length;
  const s = net.connect({ host: '127.0.0.1', port, localAddress: TIE });
  s.on('error', () => {});
  t.teardown(() => s.destroy());
  let out = '';
  s.on('data', (d: Buffer) => (out += d.toString('latin1')));
  s.write('GET /public/a HTTP/1.1\r\nHost: deathstar\r\n\r\n');
  for (let i = 0; i < 50 && !out.includes('\r\n\r\nok'); i++) await new Promise((r) => setTimeout(r, 20));
  s.write(WS);
  await Promise.race([new Promise((r) => s.once('close', r)), new Promise((r) => setTimeout(r, 1500))]);
  t.match(out, /HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 101 Switching Protocols[\s\S]*TUNNEL-BYTES/);
  t.same(seen.slice(before), ['GET /public/a', 'UPGRADE /public/ws']);
});

t.test('control: a lone upgrade is tunnelled', async (t) => {
  const out = await rawExchange(port, WS, { from: TIE, ms: 800 });
  t.match(out, /^HTTP\/1\.1 101 Switching Protocols[\s\S]*TUNNEL-BYTES/);
});
