/**
 * The minimal Node UDP DNS forwarder the proxy is compared with (ANCHORS.md's
 * "node-dns-fwd" without its name rule): decode the question with dns-packet,
 * relay the raw packet upstream with a fresh ID over one connected socket, put the
 * client's ID back on the answer. No policy, no validation, no timeouts.
 * Usage: lib-dns-fwd.ts UPSTREAM_PORT — prints its own port.
 */
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';

const upstreamPort = Number(process.argv[2]);
const front = dgram.createSocket('udp4');
const back = dgram.createSocket('udp4');
const pending = new Map<number, { id: number; port: number; address: string }>();
let nextId = 0;
front.on('message', (msg, rinfo) => {
  try {
    if (!dnsPacket.decode(msg).questions?.[0]) return;
  } catch {
    return;
  }
  nextId = (nextId + 1) & 0xffff;
  pending.set(nextId, { id: msg.readUInt16BE(0), port: rinfo.port, address: rinfo.address });
  msg.writeUInt16BE(nextId, 0);
  back.send(msg);
});
back.on('message', (msg) => {
  const p = pending.get(msg.readUInt16BE(0));
  if (!p) return;
  pending.delete(msg.readUInt16BE(0));
  msg.writeUInt16BE(p.id, 0);
  front.send(msg, p.port, p.address);
});
back.connect(upstreamPort, '127.0.0.1', () => {
  front.bind(0, '127.0.0.1', () => process.stdout.write(`${front.address().port}\n`));
});
process.on('SIGTERM', () => process.exit(0));
