/**
 * Request bodies to an HTTP/1.1 upstream: a body that has wholly arrived with its
 * headers is handed to the upstream client as one buffer (enforce.ts forwardH1Body);
 * a body still arriving is streamed, never waited for. Oracles: what the capture
 * upstream received (bytes, framing), and that it saw the request while the client
 * still held back half of the body.
 */
import t from 'tap';
import * as net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { rawExchange, statuses } from '../helpers/clients.js';

const TIE = '127.0.0.10';
let proxy: RunningProxy;
let up: CaptureUpstream;
let port = 0;

t.before(async () => {
  up = await startCaptureUpstream();
  const cfg = await starWarsDir({ upstream: up.url });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
});

const L = 'POST /v1/request-landing HTTP/1.1\r\nHost: deathstar\r\n';

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) return false;
    await sleep(10);
  }
  return true;
}

t.test('a body sent with its headers arrives whole, with its Content-Length', async (t) => {
  const before = up.requests.length;
  const body = 'x'.repeat(3000) + 'é-end';
  const len = Buffer.byteLength(body);
  const out = await rawExchange(port, Buffer.from(`${L}Content-Length: ${len}\r\nConnection: close\r\n\r\n${body}`), { from: TIE });
  t.same(statuses(out), [200]);
  const got = up.requests.slice(before);
  t.equal(got.length, 1);
  t.equal(got[0]!.body.toString(), body);
  t.equal(got[0]!.headers['content-length'], String(len));
  t.notOk(got[0]!.headers['transfer-encoding'], 'not re-framed as chunked');
});

t.test('pipelined requests with bodies each arrive with their own body', async (t) => {
  const before = up.requests.length;
  const bytes = `${L}Content-Length: 3\r\n\r\none${L}Content-Length: 3\r\n\r\ntwo${L}Content-Length: 5\r\nConnection: close\r\n\r\nthree`;
  const out = await rawExchange(port, bytes, { from: TIE });
  t.same(statuses(out), [200, 200, 200]);
  t.same(
    up.requests.slice(before).map((r) => r.body.toString()),
    ['one', 'two', 'three'],
  );
});

t.test('a chunked body sent at once arrives whole', async (t) => {
  const before = up.requests.length;
  const out = await rawExchange(port, `${L}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nship\r\n3\r\n-ok\r\n0\r\n\r\n`, { from: TIE });
  t.same(statuses(out), [200]);
  t.equal(up.requests.slice(before)[0]?.body.toString(), 'ship-ok');
});

t.test('a body still arriving is streamed: the upstream sees the request before the rest is sent', async (t) => {
  const before = up.requests.length;
  const sock = net.connect({ host: '127.0.0.1', port, localAddress: TIE });
  sock.on('error', () => {});
  t.teardown(() => sock.destroy());
  await once(sock, 'connect');
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.write(`${L}Content-Length: 10\r\nConnection: close\r\n\r\nhello`);
  t.ok(await waitFor(() => up.requests.length > before, 3000), 'upstream has the request while half the body is held back');
  t.equal(Buffer.concat(chunks).length, 0, 'no answer yet: the upstream waits for the rest');
  sock.write('world');
  await Promise.race([once(sock, 'close'), sleep(3000)]);
  t.same(statuses(Buffer.concat(chunks).toString('latin1')), [200]);
  t.equal(up.requests[before]!.body.toString(), 'helloworld');
});

t.test('a client gone before its body is complete: nothing complete reaches the upstream', async (t) => {
  const before = up.requests.length;
  const sock = net.connect({ host: '127.0.0.1', port, localAddress: TIE });
  sock.on('error', () => {});
  await once(sock, 'connect');
  sock.write(`${L}Content-Length: 10\r\n\r\nhalf`);
  await waitFor(() => up.requests.length > before, 3000);
  sock.destroy();
  await sleep(200);
  t.ok(up.requests.slice(before).every((r) => r.body.length < 10), 'the upstream never got a 10-byte body');
  const out = await rawExchange(port, `${L}Content-Length: 2\r\nConnection: close\r\n\r\nok`, { from: TIE });
  t.same(statuses(out), [200], 'still serving');
});
