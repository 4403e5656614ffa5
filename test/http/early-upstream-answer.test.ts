/**
 * An HTTP/1.1 upstream that answers before it has read the whole request body (a
 * 401 or 413 before the upload, a streaming endpoint). The client must get that
 * response as a clean end: over HTTP/2 the proxy used to destroy the client's
 * stream once undici dropped the unread body, so the complete response was followed
 * by RST_STREAM INTERNAL_ERROR (curl: exit 92, Node: ERR_HTTP2_STREAM_ERROR). Now the
 * rest of the upload is dropped and the stream ends with RST_STREAM NO_ERROR after
 * the response (RFC 9113 §8.1); over HTTP/1.1 Node reads and drops the rest and the
 * connection stays usable. With and without maxBodyBytes (two body relays).
 */
import t from 'tap';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { curl } from '../helpers/clients.js';
import type { TestT } from '../helpers/tap.js';

const TIE = '127.0.0.10';

async function setup(t: TestT, limits?: Record<string, number>) {
  let bodyBytes = 0;
  // Answers at once, before reading the body; counts what it did read.
  const up = http.createServer((req, res) => {
    req.on('data', (d: Buffer) => (bodyBytes += d.length));
    req.on('error', () => {});
    res.writeHead(401, { 'content-type': 'text/plain', 'content-length': 5 });
    res.end('early');
  });
  up.listen(0, '127.0.0.1');
  await once(up, 'listening');
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: `http://127.0.0.1:${(up.address() as net.AddressInfo).port}`, ...(limits ? { limits } : {}) });
  t.teardown(cfg.cleanup);
  const proxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true });
  t.teardown(() => proxy.close(0));
  return { port: proxy.listeners[0]!.address.port, bodyBytes: () => bodyBytes };
}

for (const limits of [undefined, { maxBodyBytes: 10_000_000 }]) {
  const name = limits ? 'with maxBodyBytes' : 'without a body limit';
  t.test(`HTTP/2: the early response ends cleanly, the rest of the upload is dropped (${name})`, async (t) => {
    const { port } = await setup(t, limits);
    const s = http2.connect(`http://127.0.0.1:${port}`, { createConnection: () => net.connect({ port, host: '127.0.0.1', localAddress: TIE }) });
    s.on('error', () => {});
    t.teardown(() => s.destroy());
    const st = s.request({ ':method': 'POST', ':path': '/v1/request-landing', ':authority': 'deathstar' });
    let status = 0;
    let body = '';
    let error: unknown;
    st.on('response', (h) => (status = Number(h[':status'])));
    st.on('data', (d: Buffer) => (body += d.toString()));
    st.on('error', (e) => (error = e));
    const closed = once(st, 'close');
    st.write(Buffer.alloc(1000, 0x61));
    // More of the body after the answer has come.
    await once(st, 'response');
    st.end(Buffer.alloc(1000, 0x62));
    const late = await Promise.race([closed.then(() => false), new Promise((r) => setTimeout(r, 5000, true))]);
    t.notOk(late, 'the stream closes');
    t.equal(status, 401);
    t.equal(body, 'early');
    t.equal(error, undefined, 'no stream error');
    t.equal(st.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'closed without an error code');
    // The session is still good for the next request.
    const again = s.request({ ':method': 'POST', ':path': '/v1/request-landing', ':authority': 'deathstar' });
    again.end('x');
    const [h] = (await once(again, 'response')) as [http2.IncomingHttpHeaders];
    again.resume();
    t.equal(Number(h[':status']), 401);
  });
}

t.test('curl --http2-prior-knowledge uploading 2 MB to an early answer: exit 0', async (t) => {
  const { port } = await setup(t);
  const dir = t.testdir({});
  const file = join(dir, 'upload');
  await writeFile(file, Buffer.alloc(2 * 1024 * 1024, 0x61));
  const r = await curl(['--http2-prior-knowledge', '--interface', TIE, '-H', 'Host: deathstar', '--data-binary', `@${file}`, `http://127.0.0.1:${port}/v1/request-landing`, '-w', ' %{http_code}']);
  t.equal(r.code, 0, `curl: ${r.stderr} / ${r.stdout}`);
  t.equal(r.stdout, 'early 401');
});

t.test('HTTP/1.1 chunked upload answered early: the response, then the connection is reused', async (t) => {
  const { port } = await setup(t, { maxBodyBytes: 10_000_000 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: TIE });
  t.teardown(() => agent.destroy());
  const post = () =>
    new Promise<{ status: number; body: string; socket: unknown }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, agent, method: 'POST', path: '/v1/request-landing', headers: { host: 'deathstar' } }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b, socket: req.socket }));
      });
      req.on('error', reject);
      req.write(Buffer.alloc(1000, 0x61));
      setTimeout(() => req.end(Buffer.alloc(1000, 0x62)), 200);
    });
  const a = await post();
  t.same([a.status, a.body], [401, 'early']);
  const b = await post();
  t.same([b.status, b.body], [401, 'early']);
  t.equal(b.socket, a.socket, 'same connection');
});
