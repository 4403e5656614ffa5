/**
 * A response cut short by an h2c upstream must never reach the client as a
 * complete one. Node ends a client stream's readable side ('end', exactly as for
 * END_STREAM) when the stream is closed under it: the upstream's RST_STREAM with
 * NO_ERROR (RFC 9113 §8.1 allows it only after a *complete* response), or the
 * upstream connection dropping mid-body. The forwarder took that 'end' for the end
 * of the response and finished the client's stream cleanly: an HTTP/2 client got
 * END_STREAM (RST code 0) after 3 of the body's bytes, an HTTP/1.1 client a
 * terminated chunked body; both looked whole. The mirror of the request-side fix in
 * h2-cut-body-not-complete.test.ts.
 *
 * Oracle: the client's view. A cut response is reset (HTTP/2: RST_STREAM with a
 * non-zero code; HTTP/1.1: the connection closes without the last chunk). Controls:
 * a complete response, also one the client reads only after the upstream stream
 * has closed (Node then emits 'end' after 'close'), still ends cleanly.
 */
import t from 'tap';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { h2Connect } from '../helpers/clients.js';
import { rstStream } from '../helpers/h2-raw.js';
import { startRawUpstream, headersFrame, dataFrame, type Behaviour } from '../helpers/h2-raw-upstream.js';

const TIE = '127.0.0.10';
const RULES = ['{ method: "POST", path: "/svc\\\\.A/.*" }', '{ method: "GET", path: "/file" }'];

const PARTIAL = Buffer.from('abc');
const rstNoError: Behaviour = (w, id) => {
  w(headersFrame(id, [[':status', '200'], ['content-type', 'text/plain']]));
  w(dataFrame(id, PARTIAL));
  w(rstStream(id, 0));
};
const connectionLost: Behaviour = (w, id, sock) => {
  w(headersFrame(id, [[':status', '200'], ['content-type', 'text/plain']]));
  w(dataFrame(id, PARTIAL));
  setTimeout(() => sock.destroy(), 30);
};
const complete: Behaviour = (w, id) => {
  w(headersFrame(id, [[':status', '200'], ['content-type', 'text/plain']]));
  w(dataFrame(id, PARTIAL, true));
};

interface H2Seen {
  status: number;
  body: number;
  rst: number | undefined;
}

function h2Get(s: http2.ClientHttp2Session, path: string, pauseMs = 0): Promise<H2Seen> {
  return new Promise((resolve) => {
    const st = s.request({ ':method': 'GET', ':path': path, ':authority': 'deathstar' });
    const seen: H2Seen = { status: 0, body: 0, rst: undefined };
    const timer = setTimeout(() => st.close(http2.constants.NGHTTP2_CANCEL), 8000);
    st.on('response', (h) => (seen.status = Number(h[':status'])));
    st.on('error', () => {});
    if (pauseMs > 0) {
      st.pause();
      setTimeout(() => st.resume(), pauseMs);
    }
    st.on('data', (d: Buffer) => (seen.body += d.length));
    st.on('close', () => {
      clearTimeout(timer);
      seen.rst = st.rstCode;
      resolve(seen);
    });
  });
}

/** HTTP/1.1 GET: `complete` only when the chunked body really ended. */
function h1Get(port: number, path: string): Promise<{ status: number; body: number; complete: boolean }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path, localAddress: TIE, headers: { host: 'deathstar' }, agent: false, timeout: 8000 }, (res) => {
      let body = 0;
      let complete = false;
      res.on('data', (d: Buffer) => (body += d.length));
      res.on('end', () => (complete = res.complete));
      res.on('error', () => {});
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body, complete }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: 0, complete: false }));
    req.end();
  });
}

t.test('raw upstream: cut responses are reset, complete ones end cleanly', async (t) => {
  const up = await startRawUpstream();
  const cfg = await starWarsDir({ upstream: up.url, extraHttp: RULES, admin: false });
  const proxy = await startProxy({ configDir: cfg.dir });
  const port = proxy.listeners[0]!.address.port;
  t.teardown(async () => {
    await proxy.close(0);
    await up.close();
    await cfg.cleanup();
  });

  for (const [name, b] of [['RST_STREAM(NO_ERROR) mid-body', rstNoError], ['upstream connection lost mid-body', connectionLost]] as const) {
    up.queue.push(b);
    const s = await h2Connect(port, TIE);
    const r = await h2Get(s, '/file');
    s.destroy();
    t.equal(r.status, 200, `${name}: HTTP/2 client got the response head`);
    t.equal(r.body, PARTIAL.length, `${name}: and the bytes sent`);
    t.not(r.rst, 0, `${name}: HTTP/2 client: the stream is reset, not ended (rst ${r.rst})`);

    up.queue.push(b);
    const h1 = await h1Get(port, '/file');
    t.equal(h1.complete, false, `${name}: HTTP/1.1 client: the response is not complete (${JSON.stringify(h1)})`);
  }

  up.queue.push(complete);
  const s = await h2Connect(port, TIE);
  const ok = await h2Get(s, '/file');
  s.destroy();
  t.same(ok, { status: 200, body: PARTIAL.length, rst: 0 }, 'a complete response ends with END_STREAM');
  up.queue.push(complete);
  const ok1 = await h1Get(port, '/file');
  t.same(ok1, { status: 200, body: PARTIAL.length, complete: true }, 'and is complete on HTTP/1.1');
});

t.test('node:http2 upstream: a complete response read late by the client still ends cleanly', async (t) => {
  const BODY = Buffer.alloc(2 << 20, 0x61);
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (x) => {
    sessions.add(x);
    x.on('close', () => sessions.delete(x));
  });
  server.on('stream', (st) => {
    st.on('error', () => {});
    st.respond({ ':status': 200 }, { waitForTrailers: true });
    st.once('wantTrailers', () => st.sendTrailers({ 'x-done': '1' }));
    st.end(BODY);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const cfg = await starWarsDir({ upstream: `h2c://127.0.0.1:${(server.address() as AddressInfo).port}`, extraHttp: RULES, admin: false });
  const proxy = await startProxy({ configDir: cfg.dir });
  const port = proxy.listeners[0]!.address.port;
  t.teardown(async () => {
    await proxy.close(0);
    for (const x of sessions) x.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await cfg.cleanup();
  });
  const s = await h2Connect(port, TIE);
  for (let i = 0; i < 3; i++) {
    const r = await h2Get(s, '/file', 300);
    t.same(r, { status: 200, body: BODY.length, rst: 0 }, `response ${i} complete, ended cleanly`);
  }
  s.destroy();
  const h1 = await h1Get(port, '/file');
  t.same(h1, { status: 200, body: BODY.length, complete: true }, 'HTTP/1.1 client: complete');
});
