/**
 * GET /flows?last=N (no follow) serialised up to 4096 ring records (several MB) and
 * queued them on the socket whatever the client did. Clients that send the request
 * and never read kept every such body in the proxy's memory: 500 of them took a
 * proxy (--max-old-space-size=1024) to "JavaScript heap out of memory". Only
 * followers were counted against `maxReaders`. A backlog still being written now
 * counts too (503 beyond), and its place is freed when it ends or the client goes.
 */
import t from 'tap';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { FlowSink } from '../../src/observe/sink.js';
import { FlowStream } from '../../src/observe/admin-routes.js';

const rec = (i: number) => ({ flow: { uuid: `u-${i}`, verdict: 'FORWARDED', pad: 'x'.repeat(8192) }, node_name: 'n', time: 't' });
const tick = () => new Promise((r) => setImmediate(r));

function status(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      resolve(res.statusCode ?? 0);
      req.destroy(); // the status is all we need (a follower never ends)
    });
    req.on('error', reject);
  });
}

/** Sends the request and never reads the answer. */
function stalled(port: number, path: string): net.Socket {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  s.write(`GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
  s.pause();
  return s;
}

t.test('backlog readers that never read are bounded like followers', async (t) => {
  const sink = new FlowSink({ file: '', recent: 4096 });
  const stream = new FlowStream(sink, { maxReaders: 3 });
  const srv = http.createServer((req, res) => stream.route(req, res));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  t.teardown(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }));
  for (let i = 0; i < 4096; i++) sink.emit(rec(i)); // ~34 MB of backlog per full answer
  await tick();

  const socks = [stalled(port, '/flows?last=4096'), stalled(port, '/flows?last=4096'), stalled(port, '/flows?last=4096')];
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await status(port, '/flows?last=4096'), 503, 'a fourth backlog while three are stuck is refused');
  t.equal(await status(port, '/flows?follow=1&last=0'), 503, 'followers share the same bound');

  for (const s of socks) s.destroy();
  await new Promise((r) => setTimeout(r, 200));
  t.equal(await status(port, '/flows?last=1'), 200, 'the places are free again once those clients are gone');
});
