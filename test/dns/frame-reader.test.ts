/**
 * FrameReader (src/dns/upstream.ts): DNS over TCP's 2-byte length prefixes, split
 * anywhere across segments. Copies stay linear in the bytes received, however the
 * stream is cut (a 64 KB message a byte per segment was ~2 GB of copying).
 */
import t from 'tap';
import { FrameReader } from '../../src/dns/upstream.js';

function framed(msgs: Buffer[]): Buffer {
  return Buffer.concat(msgs.flatMap((m) => { const h = Buffer.alloc(2); h.writeUInt16BE(m.length); return [h, m]; }));
}

t.test('messages come out whole and in order however the stream is cut', async (t) => {
  let seed = 7;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
  for (let trial = 0; trial < 500; trial++) {
    const msgs = Array.from({ length: 1 + rnd(6) }, () => {
      const b = Buffer.alloc(rnd(4) === 0 ? rnd(3) : rnd(600));
      for (let i = 0; i < b.length; i++) b[i] = rnd(256);
      return b;
    });
    const stream = framed(msgs);
    const r = new FrameReader();
    const got: Buffer[] = [];
    for (let off = 0; off < stream.length;) {
      const n = 1 + rnd(rnd(2) ? 3 : 900);
      for (const m of r.push(stream.subarray(off, off + n))) got.push(Buffer.from(m));
      off += n;
    }
    if (got.length !== msgs.length || got.some((g, i) => !g.equals(msgs[i]!)) || r.buffered !== 0) {
      t.fail(`trial ${trial}: ${got.length} of ${msgs.length} messages`);
      return;
    }
  }
  t.pass('500 random streams and cuts');
});

t.test('a 64 KB message trickled one byte per segment is copied about once', async (t) => {
  const stream = framed([Buffer.alloc(65_535, 7)]);
  const r = new FrameReader();
  let out: Buffer[] = [];
  let held = true;
  for (let i = 0; i < stream.length; i++) {
    out = out.concat(r.push(stream.subarray(i, i + 1)));
    if (i < stream.length - 1 && r.buffered !== i + 1) held = false;
  }
  t.ok(held, 'holds exactly what arrived until the message is complete');
  t.equal(out.length, 1);
  t.equal(out[0]!.length, 65_535);
  t.ok(r.copied <= 2 * stream.length, `copied ${r.copied} bytes for a ${stream.length}-byte frame`);
});

t.test('a length prefix alone reserves nothing; empty chunks and empty messages', async (t) => {
  const r = new FrameReader();
  t.same(r.push(Buffer.from([0xff, 0xff])), []);
  t.equal(r.buffered, 2, 'only the prefix is held');
  t.same(r.push(Buffer.alloc(0)), []);
  const r2 = new FrameReader();
  t.same(r2.push(Buffer.from([0, 0, 0, 1, 9])).map((b) => [...b]), [[], [9]]);
  t.same(r2.push(Buffer.from([0])).length, 0);
  t.same(r2.push(Buffer.from([0])).map((b) => [...b]), [[]]);
  t.equal(r2.buffered, 0);
});
