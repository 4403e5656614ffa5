/**
 * An h2c upstream answering with a `:status` nghttp2 accepts (three digits) but
 * that is no HTTP status a client may be sent (600–999): relaying it threw inside
 * the response handler (`ERR_HTTP2_STATUS_INVALID` from the client stream's
 * respond()), the upstream stream was cancelled and the exchange counted as done,
 * but the client got nothing at all: no head, no reset. Its stream stayed open
 * until the session idled out, and a gRPC call (no request deadline, its session
 * kept busy by other calls) for ever. An HTTP/1.1 client was sent the 999 as is.
 * Such an answer is now an upstream protocol failure: 502, gRPC UNAVAILABLE.
 *
 * Oracle: what each client receives for each status (a head, or nothing).
 */
import t from 'tap';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { h1Request, h2Connect, h2Request } from '../helpers/clients.js';
import { startRawUpstream, headersFrame, dataFrame } from '../helpers/h2-raw-upstream.js';

const TIE = '127.0.0.10';

t.test('upstream :status outside 200-599', async (t) => {
  const up = await startRawUpstream();
  const cfg = await starWarsDir({ upstream: up.url, extraHttp: ['{ method: "POST", path: "/svc\\\\.A/.*" }', '{ method: "GET", path: "/x" }'], admin: false });
  const proxy = await startProxy({ configDir: cfg.dir });
  const port = proxy.listeners[0]!.address.port;
  t.teardown(async () => {
    await proxy.close(0);
    await up.close();
    await cfg.cleanup();
  });
  const answer = (status: string) => up.queue.push((w, id) => {
    w(headersFrame(id, [[':status', status], ['content-type', 'application/grpc']]));
    w(dataFrame(id, Buffer.from([0, 0, 0, 0, 0])));
    w(headersFrame(id, [['grpc-status', '0']], true));
  });

  for (const status of ['600', '999']) {
    answer(status);
    const s = await h2Connect(port, TIE);
    const g = await h2Request(s, {
      method: 'POST',
      path: '/svc.A/Get',
      headers: { 'content-type': 'application/grpc', te: 'trailers' },
      body: Buffer.from([0, 0, 0, 0, 0]),
    }).catch(() => ({ status: 0, headers: {} as Record<string, unknown> }));
    t.equal(g.status, 200, `${status}, gRPC call: answered`);
    t.equal(g.headers['grpc-status'], '14', `${status}, gRPC call: UNAVAILABLE`);

    answer(status);
    const h = await h2Request(s, { path: '/x' }).catch(() => ({ status: 0 }));
    s.destroy();
    t.equal(h.status, 502, `${status}, HTTP/2 request: 502`);

    answer(status);
    const h1 = await h1Request(port, { path: '/x', from: TIE }).catch(() => ({ status: 0 }));
    t.equal(h1.status, 502, `${status}, HTTP/1.1 request: 502`);
  }
});
