// H2Downstream ends a response stream only after its body writes have completed:
// ended with a write in flight, Node 20 destroys the stream first and then builds an
// ERR_STREAM_DESTROYED nobody sees (~19 µs per response; see H2Downstream.end).
import t from 'tap';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { H2Downstream } from '../../src/http/downstream.js';

interface Seen {
  /** stream.writableLength each time stream.end() was called (bytes not yet written). */
  pendingAtEnd: number[];
}

async function exchange(bodies: Buffer[], trailers?: Record<string, string>): Promise<{ seen: Seen; body: string; status: number; trailers: Record<string, unknown> }> {
  const seen: Seen = { pendingAtEnd: [] };
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const end = stream.end.bind(stream) as (...a: unknown[]) => typeof stream;
    (stream as unknown as { end: (...a: unknown[]) => unknown }).end = (...a: unknown[]) => {
      seen.pendingAtEnd.push(stream.writableLength);
      return end(...a);
    };
    const ds = new H2Downstream(stream, String(headers[':method']));
    ds.respond(200, { 'content-type': 'text/plain', ...(trailers ? { trailer: Object.keys(trailers).join(',') } : {}) }, false, trailers !== undefined);
    for (const b of bodies) ds.write(b);
    ds.end(trailers);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  try {
    return await new Promise((resolve, reject) => {
      const req = client.request({ ':path': '/' }, { endStream: true });
      let status = 0;
      let got: Record<string, unknown> = {};
      const chunks: Buffer[] = [];
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('trailers', (h) => (got = h));
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve({ seen, body: Buffer.concat(chunks).toString(), status, trailers: got }));
      req.on('error', reject);
    });
  } finally {
    client.close();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

t.test('a one-chunk body: the stream is ended once, with nothing left to write', async (t) => {
  const r = await exchange([Buffer.from('ok')]);
  t.equal(r.status, 200);
  t.equal(r.body, 'ok');
  t.same(r.seen.pendingAtEnd, [0]);
});

t.test('several chunks, one of them large: still ended after the last write', async (t) => {
  const big = Buffer.alloc(200_000, 0x61);
  const r = await exchange([Buffer.from('a'), big, Buffer.from('z')]);
  t.equal(r.body.length, 200_002);
  t.ok(r.body.startsWith('aa') && r.body.endsWith('az'));
  t.same(r.seen.pendingAtEnd, [0]);
});

t.test('no body: ended at once', async (t) => {
  const r = await exchange([]);
  t.equal(r.body, '');
  t.same(r.seen.pendingAtEnd, [0]);
});

t.test('trailers still follow a body whose end waited for its writes', async (t) => {
  const r = await exchange([Buffer.from('data')], { 'grpc-status': '0', 'x-custom': 'kept' });
  t.equal(r.body, 'data');
  t.equal(r.trailers['grpc-status'], '0');
  t.equal(r.trailers['x-custom'], 'kept');
  t.same(r.seen.pendingAtEnd, [0]);
});
