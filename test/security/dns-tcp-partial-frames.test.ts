/**
 * Incomplete DNS-over-TCP messages. A client may send a length prefix of 65,535 and
 * then part of the message, and hold it: nothing bounded the bytes held across
 * connections (up to maxConnectionsPerListener × 64 KB, 640 MB by default), and a
 * message trickled a byte at a time never completed yet kept the connection alive
 * (the idle timer restarts on every byte). Now incomplete messages share one budget
 * per listener (the connection that takes it past the budget is closed), and a
 * message must arrive whole within the idle timeout of its first byte. Clients whose
 * messages complete, however split, are not affected.
 */
import t from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { DnsHarness, dnsPolicy } from '../helpers/dns-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };

const h = await DnsHarness.start({
  pods: [APP],
  policies: dnsPolicy('app-dns', { app: 'client' }, ['matchPattern: "*.example"']),
  limitsExtra: '    idleTimeoutMs: 1500\n',
  tcpPartialBudgetBytes: 256 * 1024,
});
t.teardown(() => h.close());

function query(id: number, name = 'www.example'): Buffer {
  const parts: Buffer[] = [Buffer.from([0, 0, id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of name.split('.')) parts.push(Buffer.from([l.length]), Buffer.from(l, 'latin1'));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  const b = Buffer.concat(parts);
  b.writeUInt16BE(b.length - 2, 0);
  return b;
}

async function connect(): Promise<net.Socket> {
  const c = net.connect({ port: h.port, host: '127.0.0.1', localAddress: APP.ip });
  c.on('error', () => {});
  await once(c, 'connect');
  return c;
}

const closed = (c: net.Socket, ms: number) =>
  new Promise<boolean>((resolve) => {
    if (c.destroyed || c.readableEnded) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    c.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });

/** Answers read from a client socket (2-byte framed), by ID. */
function answers(c: net.Socket): Set<number> {
  const ids = new Set<number>();
  let buf = Buffer.alloc(0);
  c.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      ids.add(buf.readUInt16BE(2));
      buf = buf.subarray(2 + buf.readUInt16BE(0));
    }
  });
  return ids;
}

t.test('partial messages beyond the listener budget: the connection taking it over is closed', async (t) => {
  const held: net.Socket[] = [];
  const part = Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.alloc(60_000, 0x41)]);
  for (let i = 0; i < 6; i++) {
    const c = await connect();
    c.write(part);
    held.push(c);
    await new Promise((r) => setTimeout(r, 50));
  }
  const states = await Promise.all(held.map((c) => closed(c, 500)));
  // 4 × 60 KB fit in 256 KB; the 5th and 6th each take it over.
  t.same(states, [false, false, false, false, true, true], 'the first four are kept, the rest closed');
  t.ok(h.listener.tcpPartial.bytes <= 256 * 1024, `held ${h.listener.tcpPartial.bytes} bytes`);
  t.equal(h.listener.tcpPartial.closedOverBudget, 2);
  // A client whose queries arrive whole is served meanwhile.
  const ok = await connect();
  const got = answers(ok);
  ok.write(query(7));
  for (let i = 0; i < 100 && !got.has(7); i++) await new Promise((r) => setTimeout(r, 20));
  t.ok(got.has(7), 'a whole query is answered while the budget is taken');
  ok.destroy();
  for (const c of held) c.destroy();
  for (let i = 0; i < 100 && h.listener.tcpPartial.bytes > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(h.listener.tcpPartial.bytes, 0, 'closing returns what a connection held');
});

t.test('a message trickled a byte at a time must arrive within the idle timeout of its first byte', async (t) => {
  const c = await connect();
  const q = query(9);
  const before = h.listener.tcpPartial.closedSlow;
  let sent = 0;
  const gone = closed(c, 6000);
  // One byte every 300 ms: the idle timer (1.5 s) never fires on its own.
  const trickle = (async () => {
    for (; sent < q.length - 1 && !c.destroyed; sent++) {
      c.write(q.subarray(sent, sent + 1));
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  t.ok(await gone, 'closed');
  await trickle;
  t.ok(sent < q.length - 1, `closed after ${sent} of ${q.length} bytes`);
  t.equal(h.listener.tcpPartial.closedSlow, before + 1);
});

t.test('pipelined queries split across segments for longer than the timeout are all answered', async (t) => {
  const c = await connect();
  const got = answers(c);
  const stream = Buffer.concat(Array.from({ length: 8 }, (_, i) => query(100 + i)));
  // Cut every query in half: something is always incomplete, but each query
  // completes within 400 ms of its first byte (3.2 s in all, the timeout is 1.5 s).
  const qlen = query(0).length;
  for (let i = 0; i < 8; i++) {
    c.write(stream.subarray(i * qlen, i * qlen + qlen + (i < 7 ? qlen >> 1 : 0)).subarray(i === 0 ? 0 : qlen >> 1));
    await new Promise((r) => setTimeout(r, 400));
  }
  for (let i = 0; i < 100 && got.size < 8; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(got.size, 8, 'every query answered');
  t.notOk(c.destroyed, 'still open');
  c.destroy();
});
