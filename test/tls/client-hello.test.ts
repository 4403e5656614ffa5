/**
 * SNI from a ClientHello without terminating TLS: real ClientHellos from Node's TLS
 * client (with a name, with an IP literal, i.e. no SNI), and every truncation and
 * length lie a client could send, which must never read past the record.
 */
import t from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { parseClientHello, readClientHello } from '../../src/tls/client-hello.js';

/** The first bytes a Node TLS client sends (captured by a plain TCP server on loopback). */
async function clientHello(servername: string | undefined): Promise<Buffer> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => {
    srv.once('connection', (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => {
        chunks.push(d);
        const b = Buffer.concat(chunks);
        if (b.length >= 5 && b.length >= 5 + b.readUInt16BE(3)) {
          s.destroy();
          resolve(b);
        }
      });
    });
  });
  const c = tls.connect({ host: '127.0.0.1', port, ...(servername !== undefined ? { servername } : {}), rejectUnauthorized: false });
  c.on('error', () => {});
  const b = await got;
  c.destroy();
  srv.close();
  return b;
}

t.test('the name a real client sends', async (t) => {
  const hello = await clientHello('API.Example.test');
  t.same(parseClientHello(hello), { kind: 'sni', name: 'api.example.test' }, 'lowercased');
  t.same(parseClientHello(await clientHello('')), { kind: 'none' }, 'no servername: no SNI');
  const early: number[] = [];
  for (let n = 0; n < hello.length; n++) if (parseClientHello(hello.subarray(0, n)).kind !== 'partial') early.push(n);
  t.same(early, [], 'every prefix is partial');
});

t.test('lies and garbage are invalid, never read past the record', async (t) => {
  const hello = await clientHello('api.example.test');
  t.same(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n')), { kind: 'invalid' }, 'plain HTTP');
  t.same(parseClientHello(Buffer.from([0x17, 3, 3, 0, 5, 1, 2, 3, 4, 5])), { kind: 'invalid' }, 'application data');
  const bigRecord = Buffer.from(hello);
  bigRecord.writeUInt16BE(20000, 3);
  t.same(parseClientHello(bigRecord), { kind: 'invalid' }, 'record over 2^14');
  const hsTooLong = Buffer.from(hello);
  hsTooLong[6] = 0xff;
  t.same(parseClientHello(hsTooLong), { kind: 'invalid' }, 'handshake longer than its record');
  const notHello = Buffer.from(hello);
  notHello[5] = 2;
  t.same(parseClientHello(notHello), { kind: 'invalid' }, 'ServerHello');
  // Every single-byte corruption either parses to something or is refused: no throw.
  const badNames: string[] = [];
  for (let i = 0; i < hello.length; i++) {
    const b = Buffer.from(hello);
    b[i] = b[i]! ^ 0xff;
    const r = parseClientHello(b);
    if (r.kind === 'sni' && !/^[a-z0-9._-]+$/.test(r.name)) badNames.push(r.name);
  }
  t.same(badNames, [], 'single-byte corruptions: no throw, no name outside a DNS name');
  // A name with a byte outside a DNS name is refused, not passed on.
  const at = hello.indexOf('api.example.test');
  const odd = Buffer.from(hello);
  odd[at + 3] = 0x2f; // '/'
  t.same(parseClientHello(odd), { kind: 'invalid' });
});

t.test('readClientHello waits for the record, within its time', async (t) => {
  const hello = await clientHello('api.example.test');
  const s = new PassThrough();
  const p = readClientHello(s, hello.subarray(0, 10), 2000);
  s.write(hello.subarray(10, 100));
  s.write(hello.subarray(100));
  const r = await p;
  t.same(r?.result, { kind: 'sni', name: 'api.example.test' });
  t.same(r?.bytes, hello, 'every byte read is handed back');
  const slow = new PassThrough();
  const t0 = Date.now();
  t.equal(await readClientHello(slow, Buffer.alloc(0), 100), undefined, 'nothing within the time');
  t.ok(Date.now() - t0 < 1000);
  const gone = new PassThrough();
  const g = readClientHello(gone, Buffer.alloc(0), 2000);
  gone.destroy();
  t.equal(await g, undefined, 'client gone');
});

t.test('readClientHello: a record trickled a byte at a time, garbage after a split header', async (t) => {
  const hello = await clientHello('api.example.test');
  const s = new PassThrough();
  const p = readClientHello(s, Buffer.alloc(0), 5000);
  // One byte per chunk: the chunks are joined once the header says the record is complete.
  for (let i = 0; i < hello.length; i++) s.write(hello.subarray(i, i + 1));
  const r = await p;
  t.same(r?.result, { kind: 'sni', name: 'api.example.test' });
  t.same(r?.bytes, hello, 'every byte, in order');
  // Not TLS, the header's first bytes split off: refused as soon as the header is whole.
  const g = new PassThrough();
  const q = readClientHello(g, Buffer.from('GE'), 5000);
  g.write(Buffer.from('T / HTTP/1.1\r\n'));
  t.same((await q)?.result, { kind: 'invalid' });
  // A record header that promises more than the client sends keeps waiting (until the time).
  const w = new PassThrough();
  const long = readClientHello(w, hello.subarray(0, 5), 150);
  w.write(hello.subarray(5, 50));
  t.equal(await long, undefined, 'incomplete record: nothing within the time');
});
