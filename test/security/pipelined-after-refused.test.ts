/**
 * A request refused as malformed or ambiguously framed is answered 400 with
 * `Connection: close` (SECURITY.md §6.2). Node's parser has, by then, already read
 * and dispatched whatever was pipelined behind it: with `Transfer-Encoding: gzip,
 * chunked`, `,chunked` or HTTP/1.0 + TE, the proxy itself said the framing is not
 * trustworthy, yet the request hidden after it (in what another parser would call
 * the body) was decided and forwarded to the upstream, its answer never reaching
 * the client — a request smuggled past a front end that frames it differently.
 *
 * Oracle: the capture upstream receives nothing from such a connection, and a
 * WebSocket upgrade pipelined behind a refusal gets no tunnel.
 */
import t from 'tap';
import * as http from 'node:http';
import * as net from 'node:net';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { rawExchange, statuses } from '../helpers/clients.js';

const TIE = '127.0.0.10';
let proxy: RunningProxy;
let port = 0;
// The upstream records every request and every upgrade it is offered.
const seen: string[] = [];
const upstream = http.createServer((req, res) => {
  seen.push(`${req.method} ${req.url}`);
  req.resume();
  req.on('end', () => res.end('ok'));
});
upstream.on('upgrade', (req, socket: net.Socket) => {
  seen.push(`UPGRADE ${req.url}`);
  socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
});

t.before(async () => {
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const cfg = await starWarsDir({
    upstream: `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}`,
    extraHttp: ['{ method: "GET", path: "/public/.*" }'],
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

const hidden = 'GET /public/smuggled HTTP/1.1\r\nHost: deathstar\r\n\r\n';
const L = 'POST /v1/request-landing HTTP/1.1\r\nHost: deathstar\r\n';
const CASES: Array<[string, string]> = [
  ['Transfer-Encoding: gzip, chunked', `${L}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n${hidden}`],
  ['Transfer-Encoding: ,chunked', `${L}Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n${hidden}`],
  ['HTTP/1.0 with Transfer-Encoding', `POST /v1/request-landing HTTP/1.0\r\nHost: deathstar\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden}`],
  ['encoded slash (bad request target)', `GET /public%2fa HTTP/1.1\r\nHost: deathstar\r\n\r\n${hidden}`],
  ['duplicate Host', `GET /public/a HTTP/1.1\r\nHost: deathstar\r\nHost: other\r\n\r\n${hidden}`],
];

for (const [name, bytes] of CASES) {
  t.test(`${name}: 400, and nothing pipelined behind it is forwarded`, async (t) => {
    const before = seen.length;
    const out = await rawExchange(port, bytes, { from: TIE, ms: 800 });
    t.same(statuses(out), [400], 'one answer: the refusal');
    t.same(seen.slice(before), [], 'the upstream saw nothing');
  });
}

t.test('a WebSocket upgrade pipelined behind a refusal gets no tunnel', async (t) => {
  const before = seen.length;
  const ws =
    'GET /public/ws HTTP/1.1\r\nHost: deathstar\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
  const out = await rawExchange(port, `${L}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n${ws}`, { from: TIE, ms: 800 });
  t.same(statuses(out), [400]);
  t.same(seen.slice(before), [], 'no upgrade offered upstream');
});

t.test('control: a well-formed pipeline is still served in full', async (t) => {
  const before = seen.length;
  const out = await rawExchange(port, `GET /public/a HTTP/1.1\r\nHost: deathstar\r\n\r\n${hidden}`, { from: TIE, ms: 800 });
  t.same(statuses(out), [200, 200]);
  t.same(seen.slice(before), ['GET /public/a', 'GET /public/smuggled']);
});
