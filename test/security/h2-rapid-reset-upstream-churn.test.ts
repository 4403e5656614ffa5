/**
 * HTTP/2 rapid reset (CVE-2023-44487): HEADERS and RST_STREAM(CANCEL) for the same
 * stream, hundreds of pairs in one write, on an allowed path. nghttp2 tears the
 * session down only after ~1,000 resets, so every pair below that got the proxy's
 * full attention: the request was decided and forwarded from inside the 'stream'
 * event, before the RST_STREAM that followed in the same read was even parsed. An
 * HTTP/1.1 upstream got one new TCP connection per pair (undici cannot reuse a
 * connection whose request was aborted mid-write: 900 pairs = 901 upstream
 * connections, a second client waited 0.8–1.7 s); an h2c upstream got one stream
 * per pair, and the proxy's RST_STREAMs on its shared session used up the
 * upstream's own rapid-reset allowance, for every client at once.
 *
 * Oracle: what the capture upstream saw (connections, streams), and a second
 * client still served.
 */
import t from 'tap';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, startCaptureH2, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { h2Connect, h2Request } from '../helpers/clients.js';
import { rawH2, frame, FT, FL, requestBlock, rstStream } from '../helpers/h2-raw.js';

const TIE = '127.0.0.10';
const PAIRS = 500; // below nghttp2's own reset budget (1,000), in one write (< 64 KB: one read)
const NGHTTP2_CANCEL = 8;

for (const kind of ['http', 'h2c'] as const) {
  t.test(`${kind} upstream: ${PAIRS} HEADERS+RST_STREAM pairs open nothing upstream`, async (t) => {
    const up = kind === 'http' ? await startCaptureUpstream() : await startCaptureH2();
    let upstreamConnections = 0;
    if (kind === 'http') (up as CaptureUpstream).server.on('connection', () => upstreamConnections++);
    const cfg = await starWarsDir({ upstream: up.url });
    const proxy = await startProxy({ configDir: cfg.dir });
    const port = proxy.listeners[0]!.address.port;
    t.teardown(async () => {
      await proxy.close(0);
      await up.close();
      await cfg.cleanup();
    });

    const c = await rawH2(port, TIE);
    await new Promise((r) => setTimeout(r, 100)); // settled: SETTINGS exchanged
    const pairs: Buffer[] = [];
    for (let i = 0, id = 1; i < PAIRS; i++, id += 2) {
      pairs.push(frame(FT.HEADERS, FL.END_HEADERS | FL.END_STREAM, id, requestBlock('POST', '/v1/request-landing')), rstStream(id, NGHTTP2_CANCEL));
    }
    await c.write(Buffer.concat(pairs));
    await new Promise((r) => setTimeout(r, 1000));

    // A second client is served, and is the only one the upstream heard from.
    const s = await h2Connect(port, TIE);
    const r = await h2Request(s, { method: 'POST', path: '/v1/request-landing', body: 'x' });
    // Forwarding after the read must not lose a body that ended in it: HEADERS, then an
    // empty DATA frame with END_STREAM (Node emits the empty body's 'end' unread).
    const empty = await h2Request(s, { method: 'POST', path: '/v1/request-landing', body: '' });
    s.close();
    c.sock.destroy();
    t.equal(r.status, 200, 'a second client is served');
    t.equal(empty.status, 200, 'an empty body ended by its own DATA frame is forwarded');
    t.equal(up.requests.length, 2, `only the second client's requests reached the upstream (got ${up.requests.length})`);
    if (kind === 'http') t.ok(upstreamConnections <= 2, `upstream connections: ${upstreamConnections} (was one per pair)`);
  });
}
