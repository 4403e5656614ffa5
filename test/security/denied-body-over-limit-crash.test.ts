/**
 * maxBodyBytes set: the request body is wrapped in a counting RelayBody as soon as
 * the request is prepared, before the decision. A denied request's RelayBody is never
 * handed to an upstream client, yet it keeps reading what the client sends. Crossing
 * the limit destroyed it with an error that nobody
 * listened for: an unhandled 'error' event that ended the whole proxy process, from
 * one request any client may send (a denied POST with a large body).
 *
 * Oracle: the denial is answered, the upstream saw nothing, and the proxy (this test
 * process) still serves a fresh well-formed request afterwards.
 */
import t from 'tap';
import * as http2 from 'node:http2';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request, h2Connect, rawExchange, statuses } from '../helpers/clients.js';
import type { TestT } from '../helpers/tap.js';

const TIE = '127.0.0.10';
let proxy: RunningProxy;
let up: CaptureUpstream;
let port = 0;

t.before(async () => {
  up = await startCaptureUpstream();
  const cfg = await starWarsDir({ upstream: up.url, limits: { maxBodyBytes: 1024 } });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
});

const big = 'x'.repeat(4096);

async function stillServes(t: TestT): Promise<void> {
  const r = await h1Request(port, { method: 'POST', path: '/v1/request-landing', body: 'ship', from: TIE });
  t.equal(r.status, 200, 'the proxy still answers an allowed request');
}

t.test('HTTP/1.1: denied POST, chunked body over the limit', async (t) => {
  const before = up.requests.length;
  const out = await rawExchange(
    port,
    `POST /v1/exhaust-port HTTP/1.1\r\nHost: deathstar\r\nTransfer-Encoding: chunked\r\n\r\n${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`,
    { from: TIE, ms: 1000 },
  );
  t.equal(statuses(out)[0], 403);
  t.equal(up.requests.length, before, 'nothing reached the upstream');
  await stillServes(t);
});

t.test('HTTP/2: denied POST, DATA over the limit', async (t) => {
  const before = up.requests.length;
  const s = await h2Connect(port, TIE);
  const status = await new Promise<number>((resolve) => {
    const st = s.request({ ':method': 'POST', ':path': '/v1/exhaust-port', ':authority': 'deathstar' });
    let code = 0;
    st.on('response', (h) => (code = Number(h[':status'])));
    st.on('error', () => {});
    st.on('close', () => resolve(code));
    st.resume();
    st.write(big);
    st.end(big);
    setTimeout(() => st.close(http2.constants.NGHTTP2_CANCEL), 2000);
  });
  s.destroy();
  t.equal(status, 403);
  t.equal(up.requests.length, before, 'nothing reached the upstream');
  await stillServes(t);
});
