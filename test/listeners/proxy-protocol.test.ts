import t from 'tap';
import { createServer, connect, type Socket, type AddressInfo } from 'node:net';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { parseProxyHeader, readProxyHeader, V2_SIGNATURE, type ProxyHeader } from '../../src/listeners/proxy-protocol.js';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { listenLocal, rejectsWarden } from '../helpers/tls-pki.js';
import type { TestT } from '../helpers/tap.js';

const PAYLOAD = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');

function v1(line: string): Buffer {
  return Buffer.from(line, 'latin1');
}

/** Hand-built v2 header: sig, ver/cmd, fam/transport, length, body. */
function v2(opts: { verCmd?: number; fam?: number; len?: number; body?: Buffer }): Buffer {
  const body = opts.body ?? Buffer.alloc(0);
  const h = Buffer.alloc(16);
  V2_SIGNATURE.copy(h, 0);
  h[12] = opts.verCmd ?? 0x21;
  h[13] = opts.fam ?? 0x11;
  h.writeUInt16BE(opts.len ?? body.length, 14);
  return Buffer.concat([h, body]);
}

function inet4(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
}

function tlv(type: number, value: Buffer): Buffer {
  const h = Buffer.alloc(3);
  h[0] = type;
  h.writeUInt16BE(value.length, 1);
  return Buffer.concat([h, value]);
}

function header(buf: Buffer): ProxyHeader {
  const r = parseProxyHeader(buf);
  if (!('header' in r)) throw new Error('needMore');
  return r.header;
}

t.test('v1: TCP4, TCP6, UNKNOWN; bytes after the header preserved', async (t) => {
  const h = header(Buffer.concat([v1('PROXY TCP4 10.0.0.7 192.168.1.2 56324 443\r\n'), PAYLOAD]));
  t.match(h, { version: 1, command: 'PROXY', source: { address: '10.0.0.7', port: 56324 }, destination: { address: '192.168.1.2', port: 443 } });
  t.same(h.rest, PAYLOAD);
  const h6 = header(v1('PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::FFFF:10.0.0.1 0 65535\r\n'));
  t.same(h6.source, { address: '2001:db8::1', port: 0 });
  t.same(h6.destination, { address: '::ffff:a00:1', port: 65535 });
  t.equal(h6.rest.length, 0);
  const u = header(v1('PROXY UNKNOWN ffff::1 whatever\r\nX'));
  t.equal(u.command, 'PROXY');
  t.equal(u.source, undefined, 'UNKNOWN carries no usable address');
  t.same(u.rest, Buffer.from('X'));
  t.ok(header(v1('PROXY UNKNOWN\r\n')));
  // Exactly 107 bytes (the maximum) is accepted.
  // (2001:…, not ffff:…: ff00::/8 is multicast, refused as Envoy does.)
  const max = 'PROXY TCP6 2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff 2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n';
  t.equal(max.length, 104);
  t.ok(header(v1(max)));
  t.ok(header(v1(`PROXY UNKNOWN ${'x'.repeat(107 - 16)}\r\n`)), '107 bytes with UNKNOWN');
});

t.test('v1: incomplete prefixes ask for more, never resolve early', async (t) => {
  const full = v1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n');
  for (let i = 0; i < full.length; i++) {
    t.same(parseProxyHeader(full.subarray(0, i)), { needMore: true }, `prefix ${i}`);
  }
});

t.test('v1: malformed headers are rejected', async (t) => {
  const bad: [string, string | Buffer, RegExp][] = [
    ['missing port', 'PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n', /expected/],
    ['double space', 'PROXY TCP4  1.2.3.4 5.6.7.8 80 81\r\n', /expected|bad/],
    ['trailing space', 'PROXY TCP4 1.2.3.4 5.6.7.8 80 81 \r\n', /expected/],
    ['port too big', 'PROXY TCP4 1.2.3.4 5.6.7.8 65536 81\r\n', /out of range/],
    ['port leading zero', 'PROXY TCP4 1.2.3.4 5.6.7.8 080 81\r\n', /bad port/],
    ['port sign', 'PROXY TCP4 1.2.3.4 5.6.7.8 +80 81\r\n', /bad port/],
    ['v6 in TCP4', 'PROXY TCP4 ::1 5.6.7.8 80 81\r\n', /bad TCP4 address/],
    ['v4 in TCP6', 'PROXY TCP6 1.2.3.4 ::1 80 81\r\n', /bad TCP6 address/],
    ['zone id', 'PROXY TCP6 fe80::1%eth0 ::1 80 81\r\n', /bad TCP6 address/],
    ['leading-zero v4', 'PROXY TCP4 01.2.3.4 5.6.7.8 80 81\r\n', /bad TCP4 address/],
    ['unknown proto', 'PROXY TCP5 1.2.3.4 5.6.7.8 80 81\r\n', /unknown protocol/],
    ['LF only', 'PROXY TCP4 1.2.3.4 5.6.7.8 80 81\n', /CRLF/],
    ['stray CR', 'PROXY TCP4 1.2.3.4\r 5.6.7.8 80 81\r\n', /stray CR/],
    ['NUL', Buffer.from('PROXY TCP4 1.2.3.4\x005.6.7.8 80 81\r\n', 'latin1'), /invalid byte/],
    ['tab', 'PROXY\tTCP4 1.2.3.4 5.6.7.8 80 81\r\n', /prefix/],
    ['lowercase', 'proxy TCP4 1.2.3.4 5.6.7.8 80 81\r\n', /does not start/],
    ['HTTP instead', 'GET / HTTP/1.1\r\n\r\n', /does not start/],
    ['PROXY-ish', 'PROXZ', /prefix/],
    ['oversized', `PROXY UNKNOWN ${'x'.repeat(200)}\r\n`, /within 107/],
    ['108 bytes', `PROXY UNKNOWN ${'x'.repeat(108 - 16)}\r\n`, /within 107/],
    ['UTF-8', 'PROXY TCP4 1.2.3.4 5.6.7.8 80 8\u00e91\r\n', /invalid byte/],
    // Envoy proxy_protocol_test.cc InvalidSrcAddress / InvalidDstAddress: unicast only.
    ['multicast source', 'PROXY TCP4 230.0.0.1 5.6.7.8 80 81\r\n', /source 230\.0\.0\.1 is not a unicast/],
    ['0.0.0.0 destination', 'PROXY TCP4 1.2.3.4 0.0.0.0 80 81\r\n', /destination 0\.0\.0\.0 is not a unicast/],
    [':: destination', 'PROXY TCP6 ::1 :: 80 81\r\n', /not a unicast/],
  ];
  for (const [name, input, re] of bad) {
    const buf = typeof input === 'string' ? Buffer.from(input, name === 'UTF-8' ? 'utf8' : 'latin1') : input;
    await rejectsWarden(t, () => parseProxyHeader(buf), 'L7W_ERR_PROXY_PROTOCOL', re, name);
  }
});

t.test('v2: IPv4, IPv6 with TLVs, LOCAL, UNSPEC, UNIX', async (t) => {
  const tlvs = Buffer.concat([tlv(0x01, Buffer.from('h2')), tlv(0x04, Buffer.alloc(5)), tlv(0xea, Buffer.alloc(0))]);
  const h = header(Buffer.concat([v2({ body: Buffer.concat([inet4([10, 1, 2, 3], [127, 0, 0, 1], 40000, 8443), tlvs]) }), PAYLOAD]));
  t.match(h, { version: 2, command: 'PROXY', source: { address: '10.1.2.3', port: 40000 }, destination: { address: '127.0.0.1', port: 8443 } });
  t.same(h.tlvs.map((x) => [x.type, x.value.toString('hex')]), [[1, Buffer.from('h2').toString('hex')], [4, '0000000000'], [0xea, '']]);
  t.same(h.rest, PAYLOAD);

  const a6 = Buffer.alloc(36);
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(a6, 0);
  Buffer.from('00000000000000000000ffff7f000001', 'hex').copy(a6, 16);
  a6.writeUInt16BE(1234, 32);
  a6.writeUInt16BE(443, 34);
  const h6 = header(v2({ fam: 0x21, body: a6 }));
  t.same(h6.source, { address: '2001:db8::1', port: 1234 });
  t.same(h6.destination, { address: '::ffff:7f00:1', port: 443 });

  const local = header(Buffer.concat([v2({ verCmd: 0x20, fam: 0x00 }), PAYLOAD]));
  t.equal(local.command, 'LOCAL');
  t.equal(local.source, undefined);
  t.same(local.rest, PAYLOAD);
  // LOCAL with an address block: ignored, but its length is honoured.
  const localAddr = header(Buffer.concat([v2({ verCmd: 0x20, fam: 0x11, body: inet4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2) }), PAYLOAD]));
  t.equal(localAddr.source, undefined);
  t.same(localAddr.rest, PAYLOAD);

  const unspec = header(v2({ fam: 0x00, body: tlv(0x04, Buffer.alloc(1)) }));
  t.equal(unspec.command, 'PROXY');
  t.equal(unspec.source, undefined);
  const unix = header(v2({ fam: 0x31, body: Buffer.alloc(216) }));
  t.equal(unix.source, undefined);
});

t.test('v2: malformed, truncated and oversized headers are rejected', async (t) => {
  const addr = inet4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
  const bad: [string, Buffer, RegExp][] = [
    ['version 1 nibble', v2({ verCmd: 0x11, body: addr }), /unsupported version/],
    ['version 3', v2({ verCmd: 0x31, body: addr }), /unsupported version/],
    ['command 2', v2({ verCmd: 0x22, body: addr }), /unknown command/],
    ['family 4', v2({ fam: 0x41, body: addr }), /unknown family/],
    ['transport 3', v2({ fam: 0x13, body: addr }), /unknown family/],
    ['DGRAM', v2({ fam: 0x12, body: addr }), /DGRAM/],
    ['INET + UNSPEC transport', v2({ fam: 0x10, body: addr }), /STREAM/],
    ['INET short', v2({ body: addr.subarray(0, 11) }), /shorter than the 12-byte/],
    ['INET6 short', v2({ fam: 0x21, body: Buffer.alloc(35) }), /shorter than the 36-byte/],
    ['UNIX short', v2({ fam: 0x31, body: Buffer.alloc(215) }), /shorter than the 216-byte/],
    ['TLV overrun', v2({ body: Buffer.concat([addr, Buffer.from([0x01, 0x00, 0x05, 0x61])]) }), /overruns/],
    ['TLV header truncated', v2({ body: Buffer.concat([addr, Buffer.from([0x01, 0x00])]) }), /truncated TLV/],
    ['oversized', v2({ len: 4000 }), /exceeds the 2048-byte limit/],
    ['broadcast destination', v2({ body: inet4([1, 2, 3, 4], [255, 255, 255, 255], 1, 2) }), /not a unicast/],
    ['signature', Buffer.concat([Buffer.from('\r\n\r\n\x00\r\nQUIZ\n'), Buffer.alloc(8)]), /signature/],
    ['signature early', Buffer.from('\r\n\r\nX'), /signature/],
  ];
  for (const [name, buf, re] of bad) {
    await rejectsWarden(t, () => parseProxyHeader(buf), 'L7W_ERR_PROXY_PROTOCOL', re, name);
  }
  // Oversized is refused from the 16-byte prefix alone, before the body arrives.
  await rejectsWarden(t, () => parseProxyHeader(v2({ len: 65535 }).subarray(0, 16)), 'L7W_ERR_PROXY_PROTOCOL', /exceeds/);
  // The cap is configurable.
  t.ok('header' in parseProxyHeader(v2({ body: Buffer.concat([addr, tlv(0xe0, Buffer.alloc(3000))]) }), 4096));
  // Incomplete: every prefix of a valid header asks for more.
  const full = v2({ body: Buffer.concat([addr, tlv(0x02, Buffer.from('authority'))]) });
  for (let i = 0; i < full.length; i++) t.same(parseProxyHeader(full.subarray(0, i)), { needMore: true }, `prefix ${i}`);
});

// --- on real sockets --------------------------------------------------------

interface Accepted { result: Promise<ProxyHeader>; socket: Promise<Socket> }

async function server(t: TestT, timeoutMs = 2000): Promise<{ port: number; next: () => Accepted }> {
  const queue: ((s: Socket) => void)[] = [];
  const pending: Socket[] = [];
  const srv = createServer((s) => {
    s.on('error', () => {});
    const w = queue.shift();
    if (w) w(s); else pending.push(s);
  });
  const port = await listenLocal(t, srv);
  return {
    port,
    next: () => {
      const socket = new Promise<Socket>((resolve) => { const p = pending.shift(); if (p) resolve(p); else queue.push(resolve); });
      return { socket, result: socket.then((s) => readProxyHeader(s, { timeoutMs })) };
    },
  };
}

function client(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const c = connect(port, '127.0.0.1', () => resolve(c));
    c.on('error', reject);
  });
}

function readAll(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => reject(new Error('readAll timeout')), 3000);
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= n) { clearTimeout(timer); resolve(Buffer.concat(chunks)); }
    });
    s.resume();
  });
}

t.test('socket: header split byte by byte, payload replayed intact', async (t) => {
  const srv = await server(t);
  for (const hdr of [v1('PROXY TCP4 10.0.0.9 10.0.0.1 5555 80\r\n'), v2({ body: inet4([10, 0, 0, 9], [10, 0, 0, 1], 5555, 80) })]) {
    const acc = srv.next();
    const c = await client(srv.port);
    const wire = Buffer.concat([hdr, PAYLOAD]);
    // One byte per write with a yield between: the parser sees every split point.
    for (let i = 0; i < hdr.length; i++) { c.write(wire.subarray(i, i + 1)); await new Promise((r) => setImmediate(r)); }
    c.write(wire.subarray(hdr.length, hdr.length + 5));
    const h = await acc.result;
    t.same(h.source, { address: '10.0.0.9', port: 5555 });
    const s = await acc.socket;
    c.write(wire.subarray(hdr.length + 5));
    if (h.rest.length) s.unshift(h.rest);
    t.same(await readAll(s, PAYLOAD.length), PAYLOAD, `payload intact after v${h.version} header`);
    c.destroy();
  }
});

t.test('socket: deadline, garbage, early close, oversized', async (t) => {
  const srv = await server(t, 300);
  // Silent client: rejected at the deadline, not before.
  let acc = srv.next();
  let c = await client(srv.port);
  const t0 = Date.now();
  await rejectsWarden(t, () => acc.result, 'L7W_ERR_PROXY_PROTOCOL', /within 300 ms/, 'silent');
  const elapsed = Date.now() - t0;
  t.ok(elapsed >= 250 && elapsed < 2000, `deadline enforced (${elapsed} ms)`);
  c.destroy();
  // Slowloris: a valid prefix, then nothing.
  acc = srv.next();
  c = await client(srv.port);
  c.write('PROXY TCP4 1.2');
  await rejectsWarden(t, () => acc.result, 'L7W_ERR_PROXY_PROTOCOL', /within 300 ms/, 'partial header');
  c.destroy();
  // Garbage: rejected at once.
  acc = srv.next();
  c = await client(srv.port);
  const t1 = Date.now();
  c.write('GET / HTTP/1.1\r\n\r\n');
  await rejectsWarden(t, () => acc.result, 'L7W_ERR_PROXY_PROTOCOL', /does not start/, 'garbage');
  t.ok(Date.now() - t1 < 250, 'garbage rejected before the deadline');
  c.destroy();
  // Peer closes mid-header.
  acc = srv.next();
  c = await client(srv.port);
  c.end(v2({ body: inet4([1, 1, 1, 1], [2, 2, 2, 2], 1, 2) }).subarray(0, 20));
  await rejectsWarden(t, () => acc.result, 'L7W_ERR_PROXY_PROTOCOL', /closed before/, 'early close');
  // Oversized v2.
  acc = srv.next();
  c = await client(srv.port);
  c.write(v2({ len: 60000 }).subarray(0, 16));
  await rejectsWarden(t, () => acc.result, 'L7W_ERR_PROXY_PROTOCOL', /exceeds/, 'oversized');
  c.destroy();
});

t.test('socket: PROXY v2 in front of TLS (the listener pattern)', async (t) => {
  const ca = makeCA();
  const leaf = makeLeaf(ca, { dns: ['localhost'] });
  const tlsSrv = createTlsServer({ cert: leaf.certPem, key: leaf.keyPem }, (s) => { s.on('error', () => {}); s.end('secret plans'); });
  const seen: ProxyHeader[] = [];
  const front = createServer((raw) => {
    raw.on('error', () => {});
    readProxyHeader(raw, { timeoutMs: 2000 }).then((h) => {
      seen.push(h);
      if (h.rest.length) raw.unshift(h.rest);
      tlsSrv.emit('connection', raw);
    }, () => raw.destroy());
  });
  const port = await listenLocal(t, front);
  const raw = await client(port);
  // The PROXY header and the ClientHello may share a segment: write both at once.
  raw.cork();
  raw.write(v2({ body: inet4([192, 0, 2, 10], [127, 0, 0, 1], 61000, port) }));
  const body = await new Promise<string>((resolve, reject) => {
    const s = tlsConnect({ socket: raw, servername: 'localhost', ca: ca.certPem });
    raw.uncork();
    let d = '';
    s.on('data', (c) => { d += c; });
    s.on('end', () => resolve(d));
    s.on('error', reject);
  });
  t.equal(body, 'secret plans');
  t.same(seen[0]?.source, { address: '192.0.2.10', port: 61000 });
  raw.destroy();
});
