/**
 * A UDP datagram whose source port is 0 crashed the whole process: the DNS listener
 * answered it with `udp.send(out, 0, addr)`, and dgram's send throws
 * ERR_SOCKET_BAD_PORT synchronously for port 0 — out of the 'message' handler
 * (denied or malformed queries) or out of the upstream socket's handler (allowed
 * ones), i.e. an uncaught exception. Such a datagram cannot come from an ordinary
 * socket, but any pod with CAP_NET_RAW (in the default capability set of common
 * runtimes) can send one. The datagram must be dropped and the proxy keep serving.
 *
 * The spoofed datagrams are sent with a raw socket (python3, root only).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { DnsHarness, dig, dnsPolicy } from '../helpers/dns-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };

function canRaw(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('python3', ['-c', 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)'], {
      timeout: 5000,
      stdio: 'ignore',
    });
    return true;
  } catch {
    return false;
  }
}

/** A DNS query for `name` (type A, RD). */
function query(name: string, id: number): Buffer {
  const parts: Buffer[] = [Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of name.split('.')) parts.push(Buffer.from([l.length]), Buffer.from(l, 'latin1'));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  return Buffer.concat(parts);
}

/** Send `payload` to 127.0.0.1:port as UDP from source port 0 (raw socket; source IP 127.0.0.1). */
function sendFromPortZero(port: number, payload: Buffer): void {
  const py = [
    'import socket, struct, sys',
    'p = bytes.fromhex(sys.argv[2])',
    's = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)',
    's.sendto(struct.pack("!HHHH", 0, int(sys.argv[1]), 8 + len(p), 0) + p, ("127.0.0.1", 0))',
  ].join('\n');
  execFileSync('python3', ['-c', py, String(port), payload.toString('hex')], { timeout: 5000 });
}

t.test('UDP from source port 0: dropped, the process keeps serving', { skip: canRaw() ? false : 'needs root and python3 raw sockets' }, async (t) => {
  const h = await DnsHarness.start({
    pods: [APP],
    policies: dnsPolicy('app-dns', { app: 'client' }, ['matchPattern: "*.example"']),
  });
  t.teardown(() => h.close());

  // Allowed (127.0.0.1 is not a pod: no policy selects it), malformed (FORMERR) and
  // an answer that would go back synchronously: none may reach dgram's send.
  const before = h.upstream.queries.length;
  sendFromPortZero(h.port, query('a.example', 1));
  sendFromPortZero(h.port, Buffer.from([0, 2, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]));
  // Let the upstream round trip of the allowed one complete (it is where the throw was).
  await new Promise((r) => setTimeout(r, 300));
  t.equal(h.upstream.queries.length, before, 'nothing forwarded for a client that cannot be answered');

  const ok = await dig(h.port, 'b.example', { from: APP.ip });
  t.equal(ok.status, 'NOERROR', 'still serving');

  // A normal client still gets its answers over UDP (the guard is on port 0 only).
  const answer = await new Promise<Buffer | undefined>((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, 2000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.bind(0, APP.ip, () => s.send(query('c.example', 7), h.port, '127.0.0.1'));
  });
  t.equal(answer?.readUInt16BE(0), 7);
  t.equal((answer?.[3] ?? 0xff) & 0xf, 0, 'NOERROR');
});
