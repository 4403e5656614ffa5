/**
 * A TCP DNS client that pipelines queries and never reads its answers made the
 * proxy buffer every answer in memory: the listener kept reading and dispatching
 * queries and `sock.write` queued the answers without limit once the kernel buffers
 * were full. With an allowed name whose answer is large (here ~2 KB for a ~30-byte
 * query) a few hundred KB of queries became tens of MB held by the proxy — memory
 * exhaustion by one connection. The listener must stop reading from a client whose
 * answers pile up (backpressure), and still close it on the idle timeout.
 *
 * Oracle: the largest `writableLength` of the listener's server-side socket.
 */
import t from 'tap';
import net from 'node:net';
import { DnsHarness, dnsPolicy } from '../helpers/dns-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };

const h = await DnsHarness.start({
  pods: [APP],
  policies: dnsPolicy('app-dns', { app: 'client' }, ['matchPattern: "*.example"']),
  limitsExtra: '    idleTimeoutMs: 1500\n',
});
t.teardown(() => h.close());
// 120 A records: ~2 KB per answer.
h.upstream.misbehave('big.example', 'large');

// Measure what the proxy queues on its side of the client connection.
let maxQueued = 0;
const origWrite = net.Socket.prototype.write;
t.teardown(() => {
  net.Socket.prototype.write = origWrite;
});
net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
  const r = (origWrite as (...a: unknown[]) => boolean).apply(this, args);
  if (this.localPort === h.port && this.writableLength > maxQueued) maxQueued = this.writableLength;
  return r;
} as typeof origWrite;

function framedQuery(id: number): Buffer {
  const parts: Buffer[] = [Buffer.from([0, 0, id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of ['big', 'example']) parts.push(Buffer.from([l.length]), Buffer.from(l, 'latin1'));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  const b = Buffer.concat(parts);
  b.writeUInt16BE(b.length - 2, 0);
  return b;
}

t.test('pipelined queries, answers never read: the proxy stops reading instead of buffering', async (t) => {
  const c = net.connect({ port: h.port, host: '127.0.0.1', localAddress: APP.ip });
  c.on('error', () => {});
  c.pause(); // never read
  await new Promise<void>((r) => c.once('connect', () => r()));
  // 40 batches of 500 queries (~620 KB in all), paced so they stay under dnsMaxInFlight.
  let id = 0;
  for (let b = 0; b < 40 && !c.destroyed; b++) {
    const batch: Buffer[] = [];
    for (let i = 0; i < 500; i++) batch.push(framedQuery(id++ & 0xffff));
    c.write(Buffer.concat(batch));
    await new Promise((r) => setTimeout(r, 25));
  }
  await new Promise((r) => setTimeout(r, 500));
  t.ok(maxQueued < 8 << 20, `proxy-side queue stayed bounded (max ${(maxQueued / 1e6).toFixed(1)} MB)`);
  t.ok(h.listener.proxy.stats.queries < 20_000, `not every query was read (${h.listener.proxy.stats.queries})`);
  // The client never reads, so it would not see the close: watch the listener's side.
  const until = Date.now() + 8000;
  while (h.listener.openConnections > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  t.equal(h.listener.openConnections, 0, 'the stalled connection is closed by the idle timeout');
  c.destroy();
  t.equal(h.listener.proxy.inFlight, 0, 'nothing left in flight');
});
