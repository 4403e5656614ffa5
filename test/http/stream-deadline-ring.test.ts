/**
 * StreamDeadlines' ring (src/http/stream-deadline.ts) on its own, with a real
 * node:http2 server and client: a closed stream leaves the ring at once, the ring
 * stays as small as the streams in flight (also behind a long-lived stream at its
 * head), growing renumbers the streams without losing a deadline, and every stream
 * still open at its deadline gets 408 in order.
 */
import t from 'tap';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { StreamDeadlines } from '../../src/http/stream-deadline.js';
import type { TestT } from '../helpers/tap.js';

/** An h2c server tracking every stream; answers 200 once the request body has ended. */
async function server(t: TestT, timeoutMs: number) {
  const deadlines = new StreamDeadlines(timeoutMs, 50);
  const srv = http2.createServer();
  srv.on('stream', (stream) => {
    stream.on('error', () => {});
    deadlines.track(stream);
    stream.resume();
    stream.on('end', () => {
      if (!stream.headersSent && !stream.destroyed) stream.respond({ ':status': 200 });
      if (!stream.destroyed) stream.end('ok');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const session = http2.connect(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`);
  session.on('error', () => {});
  t.teardown(() => {
    session.destroy();
    return new Promise<void>((r) => srv.close(() => r()));
  });
  return { deadlines, session };
}

/** POST with a body sent after `delayMs` (so the stream is tracked); resolves with the status. */
function post(session: http2.ClientHttp2Session, delayMs: number, endBody = true): { status: Promise<number>; stream: http2.ClientHttp2Stream } {
  const req = session.request({ ':method': 'POST', ':path': '/' });
  req.on('error', () => {});
  const status = new Promise<number>((resolve) => {
    let code = 0;
    req.on('response', (h) => (code = Number(h[':status'])));
    req.resume();
    req.on('close', () => resolve(code));
  });
  setTimeout(() => {
    if (req.destroyed) return;
    req.write('x');
    if (endBody) req.end();
  }, delayMs);
  return { status, stream: req };
}

t.test('closed streams leave the ring; it stays as small as the streams in flight', async (t) => {
  const { deadlines, session } = await server(t, 60_000);
  // 20 waves of 20 concurrent requests.
  for (let wave = 0; wave < 20; wave++) {
    const codes = await Promise.all(Array.from({ length: 20 }, () => post(session, 2).status));
    t.equal(codes.filter((c) => c === 200).length, 20, `wave ${wave}: all answered`);
  }
  t.equal(deadlines.tracked, 0, 'no stream held after all closed');
  t.equal(deadlines.capacity, 64, 'the ring never grew past its first 64 slots');
  t.equal(deadlines.expired, 0);
});

t.test('a long-lived stream at the head does not make the ring grow with the closed ones behind it', async (t) => {
  const { deadlines, session } = await server(t, 60_000);
  const slow = post(session, 0, false); // body never ends: stays tracked
  await new Promise((r) => setTimeout(r, 20));
  for (let wave = 0; wave < 30; wave++) await Promise.all(Array.from({ length: 10 }, () => post(session, 1).status));
  t.equal(deadlines.tracked, 1, 'only the slow stream is held');
  t.ok(deadlines.capacity <= 64, `capacity ${deadlines.capacity} after 300 streams behind the slow one`);
  slow.stream.close(http2.constants.NGHTTP2_CANCEL);
  await slow.status;
  // The server sees the reset a moment after the client's stream has closed.
  for (let i = 0; i < 100 && deadlines.tracked > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(deadlines.tracked, 0, 'the reset stream is released');
});

t.test('growing keeps every deadline: 150 trickled streams all get 408, in order', async (t) => {
  const { deadlines, session } = await server(t, 300);
  const started = Date.now();
  const reqs = Array.from({ length: 150 }, () => post(session, 0, false));
  const codes = await Promise.all(reqs.map((r) => r.status));
  t.equal(codes.filter((c) => c === 408).length, 150, 'every stream got 408');
  t.ok(Date.now() - started >= 300, 'not before the deadline');
  t.ok(deadlines.capacity >= 256, `the ring grew past the 150 open streams (capacity ${deadlines.capacity})`);
  t.equal(deadlines.expired, 150);
  t.equal(deadlines.tracked, 0);
});
