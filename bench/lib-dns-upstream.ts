/**
 * The DNS benchmark's upstream, a fast loopback responder in a process of its own:
 * every A query gets one answer `127.0.0.x` (x from the name), built from the query
 * bytes (header + question kept, EDNS dropped, a compressed answer appended), so the
 * upstream costs a few µs per query and the forwarders' own cost shows.
 * `--test-upstream` uses test/helpers/dns-upstream.ts (dns-packet) instead.
 * Prints its port.
 */
import dgram from 'node:dgram';
import { TestDnsUpstream } from '../test/helpers/dns-upstream.js';

if (process.argv.includes('--test-upstream')) {
  const u = await TestDnsUpstream.start({ log: false, answerAll: true, ttl: 300 });
  process.stdout.write(`${u.port}\n`);
  process.on('SIGTERM', () => void u.close().then(() => process.exit(0)));
} else {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return;
    let p = 12;
    let h = 0;
    for (let steps = 0; steps < 128 && p < msg.length && msg[p] !== 0; steps++) {
      const len = msg[p]!;
      for (let i = p + 1; i <= p + len && i < msg.length; i++) h = (h * 31 + (msg[i]! | 0x20)) >>> 0;
      p += 1 + len;
    }
    const qEnd = p + 5;
    if (qEnd > msg.length) return;
    const out = Buffer.allocUnsafe(qEnd + 16);
    msg.copy(out, 0, 0, qEnd);
    out.writeUInt16BE(0x8180 | (msg[2]! & 0x01) << 8, 2);
    out.writeUInt16BE(1, 6);
    out.writeUInt32BE(0, 8);
    out.writeUInt32BE(0xc00c0001, qEnd);
    out.writeUInt16BE(1, qEnd + 4);
    out.writeUInt32BE(300, qEnd + 6);
    out.writeUInt16BE(4, qEnd + 10);
    out[qEnd + 12] = 127;
    out[qEnd + 13] = 0;
    out[qEnd + 14] = 0;
    out[qEnd + 15] = 20 + (h % 200);
    sock.send(out, rinfo.port, rinfo.address);
  });
  sock.bind(0, '127.0.0.1', () => process.stdout.write(`${sock.address().port}\n`));
  process.on('SIGTERM', () => process.exit(0));
}
