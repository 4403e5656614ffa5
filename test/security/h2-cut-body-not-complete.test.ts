/**
 * An HTTP/2 request body cut short by the client must never look complete to the
 * upstream. Node ends a server stream's readable side ('end', as if END_STREAM had
 * arrived) when the stream is closed under it: the client's RST_STREAM with
 * NO_ERROR, or the whole session going away (TCP close). The relay took that 'end'
 * for the end of the body and finished the upstream request (final chunk on
 * HTTP/1, END_STREAM on h2c): the upstream processed a truncated body as a whole
 * request whose client was gone. Towards an h2c upstream every cut was affected,
 * a client's RST_STREAM(CANCEL) too: `Http2Stream.close(code)` on a stream still
 * open for writing sends END_STREAM before its RST_STREAM.
 *
 * Oracle: the capture upstream sees the request start but never its end (its body
 * is recorded only on 'end').
 */
import t from 'tap';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { h2Connect } from '../helpers/clients.js';

const TIE = '127.0.0.10';

interface Up {
  readonly url: string;
  /** One entry per request received; `complete` once its body really ended. */
  readonly requests: { complete: boolean }[];
  close(): Promise<void>;
}

/** HTTP/1.1 capture upstream: Node emits 'end' on a request only when its message is complete. */
async function h1Up(): Promise<Up> {
  const c = await startCaptureUpstream();
  return {
    url: c.url,
    get requests() {
      return c.requests.map((r) => ({ complete: r.body.length > 0 }));
    },
    close: () => c.close(),
  };
}

/**
 * h2c upstream. Node's HTTP/2 server also emits 'end' on a stream reset by its peer
 * (RST_STREAM CANCEL): complete means 'end' while the stream is neither aborted nor
 * destroyed, i.e. a real END_STREAM.
 */
async function h2Up(): Promise<Up> {
  const requests: { complete: boolean }[] = [];
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    const r = { complete: false };
    requests.push(r);
    stream.resume();
    stream.on('end', () => {
      if (stream.aborted || stream.destroyed) return;
      r.complete = true;
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `h2c://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  };
}

async function withProxy(up: Up): Promise<{ proxy: RunningProxy; port: number; cleanup: () => Promise<void> }> {
  const cfg = await starWarsDir({ upstream: up.url });
  const proxy = await startProxy({ configDir: cfg.dir });
  return { proxy, port: proxy.listeners[0]!.address.port, cleanup: cfg.cleanup };
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

/** One HTTP/2 frame. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK literal fields without indexing, no Huffman (all names and values < 127 bytes). */
function hpack(fields: [string, string][]): Buffer {
  return Buffer.concat(fields.map(([n, v]) => Buffer.concat([Buffer.from([0, n.length]), Buffer.from(n), Buffer.from([v.length]), Buffer.from(v)])));
}

/**
 * Start an allowed POST on a raw h2c connection, send part of its body (no
 * END_STREAM), then cut it: RST_STREAM (NO_ERROR or CANCEL), or close the TCP connection.
 */
async function cutUpload(port: number, up: Up, cut: 'rst-no-error' | 'rst-cancel' | 'session-gone'): Promise<{ started: boolean; completed: boolean }> {
  const before = up.requests.length;
  const sock = net.connect({ host: '127.0.0.1', port, localAddress: TIE });
  sock.on('error', () => {});
  sock.resume();
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const headers = hpack([[':method', 'POST'], [':scheme', 'http'], [':path', '/v1/request-landing'], [':authority', 'deathstar']]);
  sock.write(
    Buffer.concat([
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      frame(4, 0, 0, Buffer.alloc(0)), // SETTINGS
      frame(1, 4, 1, headers), // HEADERS, END_HEADERS, no END_STREAM
      frame(0, 0, 1, Buffer.alloc(3000, 0x61)), // DATA, no END_STREAM
    ]),
  );
  const started = await waitFor(() => up.requests.length > before, 2000);
  await new Promise((r) => setTimeout(r, 100));
  if (cut === 'rst-no-error') sock.write(frame(3, 0, 1, Buffer.alloc(4))); // RST_STREAM, error code 0
  else if (cut === 'rst-cancel') sock.write(frame(3, 0, 1, Buffer.from([0, 0, 0, 8]))); // RST_STREAM CANCEL
  else sock.destroy();
  await new Promise((r) => setTimeout(r, 400));
  sock.destroy();
  const got = up.requests[before];
  return { started, completed: got !== undefined && got.complete };
}

for (const kind of ['http', 'h2c'] as const) {
  t.test(`${kind} upstream`, async (t) => {
    const up: Up = kind === 'http' ? await h1Up() : await h2Up();
    const p = await withProxy(up);
    t.teardown(async () => {
      await p.proxy.close(0);
      await up.close();
      await p.cleanup();
    });
    for (const cut of ['rst-no-error', 'rst-cancel', 'session-gone'] as const) {
      const r = await cutUpload(p.port, up, cut);
      t.ok(r.started, `${cut}: the request reached the upstream`);
      t.notOk(r.completed, `${cut}: the upstream never saw the cut body as complete`);
    }
    // Control: a whole body still arrives whole.
    const before = up.requests.length;
    const s = await h2Connect(p.port, TIE);
    await new Promise<void>((resolve) => {
      const st = s.request({ ':method': 'POST', ':path': '/v1/request-landing', ':authority': 'deathstar' });
      st.on('error', () => {});
      st.resume();
      st.on('close', () => resolve());
      st.end(Buffer.alloc(3000, 0x62));
    });
    s.close();
    t.equal(up.requests[before]?.complete, true, 'a whole body arrives whole');
  });
}
