/**
 * HTTP/2 attacks that held (docs/hardening.md, HTTP ingress), kept as regressions.
 * Hand-built frames where node:http2 cannot produce the input. The judge is the
 * capture upstream (nothing malformed or cut reaches it as a whole request) and a
 * second client served afterwards.
 *
 *  - floods: CONTINUATION without END_HEADERS, an HPACK bomb (one 4 KB field in the
 *    dynamic table referenced 16,000 times: 64 MB decoded), a header block over
 *    the 60 KB limit, empty DATA, PING and SETTINGS floods, more streams than
 *    SETTINGS_MAX_CONCURRENT_STREAMS: the session is reset or closed by nghttp2 /
 *    Node, nothing is forwarded, memory stays flat;
 *  - HTTP/2 → HTTP/1.1 downgrade: CR/LF/NUL in a value (nghttp2 drops the field),
 *    connection-specific headers, a second `:path`, `:path` without a slash,
 *    `content-length` disagreeing with the DATA, trailers carrying a pseudo-header
 *    or `content-length`, stream IDs reused or going backwards, a request after the
 *    drain GOAWAY.
 */
import t, { type Test } from 'tap';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { h2Connect, h2Request } from '../helpers/clients.js';
import { rawH2, frame, settings, waitFor, FT, FL, block, requestBlock, literal, literalIndexed, indexed, type RawH2 } from '../helpers/h2-raw.js';

const TIE = '127.0.0.10';
const LANDING: [string, string][] = [[':method', 'POST'], [':scheme', 'http'], [':path', '/v1/request-landing'], [':authority', 'deathstar']];

let up: CaptureUpstream;
let proxy: RunningProxy;
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

async function served(t: Test): Promise<void> {
  const s = await h2Connect(port, TIE);
  const r = await h2Request(s, { method: 'POST', path: '/v1/request-landing', body: 'x' });
  s.close();
  t.equal(r.status, 200, 'a second client is served');
}

/** A header block split into HEADERS + CONTINUATION frames of at most 16 KB. */
function headerFrames(id: number, blk: Buffer, endStream: boolean): Buffer {
  const out: Buffer[] = [];
  for (let off = 0; off < blk.length; off += 16384) {
    const first = off === 0;
    const last = off + 16384 >= blk.length;
    out.push(frame(first ? FT.HEADERS : FT.CONTINUATION, (first && endStream ? FL.END_STREAM : 0) | (last ? FL.END_HEADERS : 0), id, blk.subarray(off, off + 16384)));
  }
  return Buffer.concat(out);
}

/** Write `chunk` until the server closes, `count` times at most. */
async function flood(c: RawH2, chunk: Buffer, count: number): Promise<void> {
  for (let i = 0; i < count && !c.closed; i++) await c.write(chunk);
  await waitFor(() => c.closed || c.goaway !== undefined, 2000);
}

t.test('floods end the attacker\'s session, forward nothing, keep memory flat', async (t) => {
  const rss0 = process.memoryUsage().rss;
  const before = up.requests.length;
  const cases: Array<{ name: string; run: (c: RawH2) => Promise<void> }> = [
    {
      name: 'CONTINUATION flood (no END_HEADERS)',
      run: async (c) => {
        await c.write(frame(FT.HEADERS, FL.END_STREAM, 1, requestBlock('POST', '/v1/request-landing')));
        const cont = frame(FT.CONTINUATION, 0, 1, Buffer.concat(Array.from({ length: 300 }, (_, i) => literal(`x-c${i}`, 'v'.repeat(30)))));
        await flood(c, cont, 2000);
      },
    },
    {
      name: 'empty CONTINUATION flood',
      run: async (c) => {
        await c.write(frame(FT.HEADERS, FL.END_STREAM, 1, requestBlock('POST', '/v1/request-landing')));
        await flood(c, Buffer.concat(Array.from({ length: 1000 }, () => frame(FT.CONTINUATION, 0, 1))), 100);
      },
    },
    {
      name: 'HPACK bomb (4 KB x 16,000 through the dynamic table)',
      run: async (c) => {
        const blk = Buffer.concat([requestBlock('POST', '/v1/request-landing'), literalIndexed('x-bomb', 'b'.repeat(4000)), ...Array.from({ length: 16000 }, () => indexed(62))]);
        await c.write(headerFrames(1, blk, true));
        await waitFor(() => c.rst.has(1) || c.closed, 2000);
      },
    },
    {
      name: 'one 70 KB header value (limit 60 KB)',
      run: async (c) => {
        await c.write(headerFrames(1, requestBlock('POST', '/v1/request-landing', [['x-big', 'a'.repeat(70_000)]]), true));
        await waitFor(() => c.rst.has(1) || c.goaway !== undefined || c.closed, 2000);
      },
    },
    { name: 'empty DATA flood', run: async (c) => {
      await c.write(frame(FT.HEADERS, FL.END_HEADERS, 1, requestBlock('POST', '/v1/request-landing')));
      await flood(c, Buffer.concat(Array.from({ length: 1000 }, () => frame(FT.DATA, 0, 1))), 100);
    } },
    { name: 'PING flood', run: (c) => flood(c, Buffer.concat(Array.from({ length: 1000 }, () => frame(FT.PING, 0, 0, Buffer.alloc(8)))), 300) },
    { name: 'SETTINGS flood', run: (c) => flood(c, Buffer.concat(Array.from({ length: 1000 }, () => settings([[3, 100]]))), 300) },
    {
      name: '101 streams over a limit of 100',
      run: async (c) => {
        const heads: Buffer[] = [];
        for (let i = 0, id = 1; i < 101; i++, id += 2) heads.push(frame(FT.HEADERS, FL.END_HEADERS, id, requestBlock('POST', '/v1/request-landing')));
        await c.write(Buffer.concat(heads));
        await waitFor(() => c.closed || c.goaway !== undefined, 2000);
      },
    },
  ];
  for (const k of cases) {
    const c = await rawH2(port, TIE);
    await new Promise((r) => setTimeout(r, 50));
    await k.run(c);
    t.ok(c.closed || c.goaway !== undefined || c.rst.size > 0, `${k.name}: refused (${c.goaway ? `GOAWAY ${c.goaway.code}` : c.closed ? 'closed' : `RST ${[...c.rst.values()][0]}`})`);
    c.sock.destroy();
  }
  t.equal(up.requests.length, before, 'none of them reached the upstream');
  const grown = (process.memoryUsage().rss - rss0) / 1e6;
  t.ok(grown < 100, `RSS grew ${grown.toFixed(0)} MB`);
  await served(t);
});

/** One stream on a fresh raw connection: `steps` are frames, or pauses (ms). */
async function exchange(steps: Array<Buffer | number>): Promise<RawH2> {
  const c = await rawH2(port, TIE);
  await new Promise((r) => setTimeout(r, 30));
  for (const s of steps) {
    if (typeof s === 'number') await new Promise((r) => setTimeout(r, s));
    else await c.write(s);
  }
  await new Promise((r) => setTimeout(r, 300));
  c.sock.destroy();
  return c;
}

const H = (fields: [string, string][], flags = FL.END_HEADERS | FL.END_STREAM, id = 1) => frame(FT.HEADERS, flags, id, block(fields));
const D = (s: string, end = false, id = 1) => frame(FT.DATA, end ? FL.END_STREAM : 0, id, Buffer.from(s));
const TRAILERS = (fields: [string, string][]) => frame(FT.HEADERS, FL.END_HEADERS | FL.END_STREAM, 1, block(fields));

t.test('HTTP/2 -> HTTP/1.1 downgrade vectors', async (t) => {
  const refused: Array<[string, Array<Buffer | number>]> = [
    ['connection: keep-alive', [H([...LANDING, ['connection', 'keep-alive']])]],
    ['transfer-encoding: chunked', [H([...LANDING, ['transfer-encoding', 'chunked']], FL.END_HEADERS), D('5\r\nhello\r\n0\r\n\r\n', true)]],
    ['keep-alive', [H([...LANDING, ['keep-alive', 'timeout=5']])]],
    ['te: trailers, chunked', [H([...LANDING, ['te', 'trailers, chunked']])]],
    ['a second :path', [H([[':method', 'POST'], [':scheme', 'http'], [':path', '/v1/request-landing'], [':path', '/v1/exhaust-port'], [':authority', 'deathstar']])]],
    [':path without a slash', [H([[':method', 'POST'], [':scheme', 'http'], [':path', 'v1/request-landing'], [':authority', 'deathstar']])]],
    ['CRLF in :path', [H([[':method', 'POST'], [':scheme', 'http'], [':path', '/v1/request-landing\r\nx-inj: 1'], [':authority', 'deathstar']])]],
    ['CRLF in :authority', [H([[':method', 'POST'], [':scheme', 'http'], [':path', '/v1/request-landing'], [':authority', 'deathstar\r\nx-inj: 1']])]],
    ['content-length 5, 10 bytes of DATA', [H([...LANDING, ['content-length', '5']], FL.END_HEADERS), D('0123456789', true)]],
  ];
  for (const [name, steps] of refused) {
    const before = up.requests.length;
    await exchange(steps);
    t.equal(up.requests.length, before, `${name}: not forwarded`);
  }

  // CR, LF or NUL in a value: nghttp2 drops the field and the request goes on without it.
  for (const [name, v] of [['CRLF', 'b\r\nx-inj: 1'], ['LF', 'b\nx-inj: 1'], ['NUL', 'b\0c']] as const) {
    const before = up.requests.length;
    await exchange([H([...LANDING, ['x-a', v]])]);
    const got = up.requests.slice(before);
    t.ok(got.length === 1 && got.every((r) => r.headers['x-a'] === undefined && r.headers['x-inj'] === undefined), `${name} in a value: the request goes on, the field never reaches the upstream`);
  }

  // The body is already streaming upstream when the stream turns out malformed: the
  // upstream never gets a whole request (the capture records a body only on 'end').
  const cut: Array<[string, Array<Buffer | number>]> = [
    ['content-length 20, 5 bytes then END_STREAM', [H([...LANDING, ['content-length', '20']], FL.END_HEADERS), D('01234'), 200, D('', true)]],
    ['trailers with :path', [H(LANDING, FL.END_HEADERS), D('hello'), 200, TRAILERS([[':path', '/v1/exhaust-port']])]],
    ['trailers with content-length', [H(LANDING, FL.END_HEADERS), D('hello'), 200, TRAILERS([['content-length', '0']])]],
  ];
  for (const [name, steps] of cut) {
    const before = up.requests.length;
    const c = await exchange(steps);
    t.ok(c.rst.has(1), `${name}: the client's stream is reset`);
    t.ok(up.requests.slice(before).every((r) => r.body.length === 0), `${name}: no whole request upstream`);
  }

  // Stream IDs reused or going backwards: the later HEADERS is ignored.
  for (const [name, first, second] of [['reused', 1, 1], ['backwards', 5, 3]] as const) {
    const before = up.requests.length;
    await exchange([H([...LANDING, ['x-n', 'first']], undefined, first), 200, H([...LANDING, ['x-n', 'second']], undefined, second)]);
    t.same(up.requests.slice(before).map((r) => r.headers['x-n']), ['first'], `stream ID ${name}: only the first request is forwarded`);
  }
  await served(t);
});

t.test('a request sent after the drain GOAWAY is not forwarded', async (t) => {
  const cfg = await starWarsDir({ upstream: up.url });
  t.teardown(cfg.cleanup);
  const p = await startProxy({ configDir: cfg.dir });
  up.routes.push((req, res) => {
    if (req.headers['x-slow'] === undefined) return false;
    setTimeout(() => res.end('slow'), 500);
    return true;
  });
  const c = await rawH2(p.listeners[0]!.address.port, TIE);
  await new Promise((r) => setTimeout(r, 30));
  const before = up.requests.length;
  await c.write(H([...LANDING, ['x-slow', '1'], ['x-n', 'in-flight']]));
  await waitFor(() => up.requests.length > before, 2000);
  const closing = p.close(2000);
  t.ok(await waitFor(() => c.goaway !== undefined, 2000), 'GOAWAY on drain');
  await c.write(H([...LANDING, ['x-n', 'after-goaway']], undefined, 3));
  await closing;
  c.sock.destroy();
  t.same(up.requests.slice(before).map((r) => r.headers['x-n']), ['in-flight'], 'only the stream before GOAWAY reached the upstream');
  t.ok(c.ended.has(1), 'and it completed');
});
