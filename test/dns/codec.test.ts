import t from 'tap';
import dnsPacket from 'dns-packet';
import {
  RCODE,
  encodeForward,
  encodeReply,
  encodeTruncated,
  matchesQuery,
  parseQuery,
  parseResponse,
  restoreClientView,
  type Query,
} from '../../src/dns/codec.js';

function query(name: string, opts: Partial<dnsPacket.Packet> = {}): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: 0x1234,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name, class: 'IN' }],
    ...opts,
  });
}

function mustParse(buf: Buffer): Query {
  const r = parseQuery(buf);
  if (!r.ok) throw new Error(`unexpected rejection: ${r.reason}`);
  return r.query;
}

function rcodeOf(buf: Buffer | undefined): number {
  if (!buf) return -1;
  return buf[3]! & 0xf;
}

t.test('a plain query parses; qname is lowercase FQDN, the question bytes are kept', async (t) => {
  const q = mustParse(query('WwW.Cilium.IO'));
  t.equal(q.id, 0x1234);
  t.equal(q.qname, 'www.cilium.io.');
  t.equal(q.name, 'WwW.Cilium.IO.');
  t.equal(q.qtype, 1);
  t.equal(q.udpSize, 512);
  const reply = encodeReply(q, RCODE.REFUSED);
  const d = dnsPacket.decode(reply);
  t.equal(d.id, 0x1234);
  t.equal(d.rcode, 'REFUSED');
  t.equal(d.questions?.[0]?.name, 'WwW.Cilium.IO', 'exact question case echoed');
  t.equal((d.flags ?? 0) & dnsPacket.RECURSION_DESIRED, dnsPacket.RECURSION_DESIRED);
});

t.test('root query is "."', async (t) => {
  const q = mustParse(query('.'));
  t.equal(q.qname, '.');
});

t.test('EDNS: size read, Client Subnet stripped on forward, other options kept', async (t) => {
  const buf = query('a.example', {
    additionals: [
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: 4096,
        flags: dnsPacket.DNSSEC_OK,
        options: [
          { code: 'CLIENT_SUBNET', family: 1, sourcePrefixLength: 24, scopePrefixLength: 0, ip: '10.1.2.0' },
          { code: 'COOKIE', data: Buffer.from('0102030405060708', 'hex') } as never,
        ],
      } as never,
    ],
  });
  const q = mustParse(buf);
  t.equal(q.udpSize, 4096);
  const fwd = encodeForward(q, 0xbeef);
  const d = dnsPacket.decode(fwd);
  t.equal(d.id, 0xbeef);
  const opt = d.additionals?.[0] as unknown as { udpPayloadSize: number; options: { code: number }[]; flags: number };
  t.equal(opt.udpPayloadSize, 4096);
  t.same(opt.options.map((o) => o.code), [10], 'only the COOKIE option (10) is left');
  t.equal(opt.flags & dnsPacket.DNSSEC_OK, dnsPacket.DNSSEC_OK);
  t.equal(d.questions?.[0]?.name, 'a.example');
});

t.test('a small EDNS size is raised to 512', async (t) => {
  const q = mustParse(query('a.example', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 100 } as never] }));
  t.equal(q.udpSize, 512);
});

t.test('SECURITY.md §4.2 gaps are closed', async (t) => {
  const base = query('allowed.com');
  // QDCOUNT 2: allowed + denied name.
  const two = dnsPacket.encode({
    type: 'query',
    id: 7,
    questions: [
      { type: 'A', name: 'allowed.com' },
      { type: 'A', name: 'denied.com' },
    ],
  });
  let r = parseQuery(two);
  t.notOk(r.ok);
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.FORMERR, 'QDCOUNT 2 ⇒ FORMERR');

  const zero = Buffer.from(base.subarray(0, 12));
  zero.writeUInt16BE(0, 4);
  r = parseQuery(zero);
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.FORMERR, 'QDCOUNT 0 ⇒ FORMERR');

  // A single label containing a dot: \x0ballowed.com\0
  const hdr = Buffer.from(base.subarray(0, 12));
  const dotted = Buffer.concat([hdr, Buffer.from([11]), Buffer.from('allowed.com'), Buffer.from([0, 0, 1, 0, 1])]);
  r = parseQuery(dotted);
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.FORMERR, 'dot inside a label ⇒ FORMERR');

  const nul = Buffer.concat([hdr, Buffer.from([7]), Buffer.from('allowed\0', 'latin1').subarray(0, 7), Buffer.from([1]), Buffer.from([0]), Buffer.from([0, 0, 1, 0, 1])]);
  nul[13 + 6] = 0; // NUL inside the label
  r = parseQuery(nul);
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.FORMERR, 'NUL inside a label ⇒ FORMERR');

  const utf = Buffer.concat([hdr, Buffer.from([3, 0xc3, 0xa9, 0x61, 0]), Buffer.from([0, 1, 0, 1])]);
  r = parseQuery(utf);
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.FORMERR, 'non-ASCII label ⇒ FORMERR');

  // Name longer than 255 bytes: 5 labels of 63.
  const long: number[] = [];
  for (let i = 0; i < 5; i++) long.push(63, ...Buffer.alloc(63, 0x61));
  r = parseQuery(Buffer.concat([hdr, Buffer.from(long), Buffer.from([0, 0, 1, 0, 1])]));
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.FORMERR, 'name > 255 ⇒ FORMERR');

  // Compression pointer in the question (to itself).
  r = parseQuery(Buffer.concat([hdr, Buffer.from([0xc0, 12, 0, 1, 0, 1])]));
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.FORMERR, 'pointer in question ⇒ FORMERR');

  // Truncated: every prefix of a valid query is rejected or dropped, never thrown.
  for (let n = 0; n < base.length; n++) {
    const p = parseQuery(base.subarray(0, n));
    t.notOk(p.ok, `prefix of ${n} bytes rejected`);
  }

  // Trailing garbage.
  r = parseQuery(Buffer.concat([base, Buffer.from([1, 2, 3])]));
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.FORMERR, 'trailing bytes ⇒ FORMERR');

  // QR=1: dropped without a reply (never answer a response).
  const resp = Buffer.from(base);
  resp[2] = resp[2]! | 0x80;
  r = parseQuery(resp);
  t.notOk(r.ok);
  t.equal(!r.ok ? r.reply : 'x', undefined, 'QR=1 dropped');

  // opcode 2 (STATUS) ⇒ NOTIMP.
  const op = Buffer.from(base);
  op[2] = (op[2]! & 0x87) | (2 << 3);
  r = parseQuery(op);
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.NOTIMP, 'opcode ≠ QUERY ⇒ NOTIMP');

  // Class CH ⇒ REFUSED.
  r = parseQuery(dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'TXT', name: 'version.bind', class: 'CH' }] }));
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.REFUSED, 'class ≠ IN ⇒ REFUSED');

  // An answer record inside a query.
  r = parseQuery(
    dnsPacket.encode({
      type: 'query',
      id: 1,
      questions: [{ type: 'A', name: 'a.com' }],
      answers: [{ type: 'A', name: 'a.com', data: '1.2.3.4' }],
    }),
  );
  t.equal(rcodeOf(!r.ok ? r.reply : undefined), RCODE.FORMERR, 'answers in a query ⇒ FORMERR');

  // Five bytes.
  t.same(parseQuery(Buffer.from([1, 2, 3, 4, 5])), { ok: false, reason: 'shorter than a DNS header' });
});

t.test('random bytes never throw', async (t) => {
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  const q = mustParse(query('x.example'));
  for (let i = 0; i < 3000; i++) {
    const len = rnd() % 200;
    const b = Buffer.alloc(len);
    for (let j = 0; j < len; j++) b[j] = rnd();
    parseQuery(b);
    if (b.length >= 12) b.writeUInt16BE(0x8000, 2);
    parseResponse(b, q);
    matchesQuery(b, 0, q);
  }
  t.pass('3000 random packets parsed without a throw');
});

function response(q: Query, id: number, answers: dnsPacket.Answer[], extra: Partial<dnsPacket.Packet> = {}): Buffer {
  return dnsPacket.encode({
    type: 'response',
    id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: 'A', name: 'www.example.com' }],
    answers,
    ...extra,
  });
}

t.test('responses: ID, question and chain checks', async (t) => {
  const q = mustParse(query('WWW.example.com'));
  const good = response(q, 99, [
    { type: 'CNAME', name: 'www.example.com', ttl: 300, data: 'cdn.example.net' },
    { type: 'A', name: 'cdn.example.net', ttl: 30, data: '127.0.0.33' },
    { type: 'AAAA', name: 'cdn.example.net', ttl: 60, data: '2001:db8::1' },
  ]);
  t.ok(matchesQuery(good, 99, q), 'case-insensitive question match');
  t.notOk(matchesQuery(good, 98, q), 'wrong ID');
  const other = response(q, 99, [], { questions: [{ type: 'A', name: 'www.example.org' }] });
  t.notOk(matchesQuery(other, 99, q), 'wrong question');
  const otherType = response(q, 99, [], { questions: [{ type: 'AAAA', name: 'www.example.com' }] });
  t.notOk(matchesQuery(otherType, 99, q), 'wrong qtype');
  const r = parseResponse(good, q);
  t.ok(r.ok);
  if (r.ok) {
    t.same(r.info.ips, ['127.0.0.33', '2001:db8::1']);
    t.same(r.info.cnames, ['cdn.example.net.']);
    t.equal(r.info.ttl, 30, 'minimum TTL over the chain');
    t.same(r.info.rrtypes, ['CNAME', 'A', 'AAAA']);
    t.equal(r.info.rcode, 0);
  }
  const restored = restoreClientView(Buffer.from(good), q);
  const d = dnsPacket.decode(restored);
  t.equal(d.id, 0x1234);
  t.equal(d.questions?.[0]?.name, 'WWW.example.com', 'client question bytes restored');

  const offChain = response(q, 1, [
    { type: 'A', name: 'www.example.com', ttl: 30, data: '127.0.0.33' },
    { type: 'A', name: 'evil.example.com', ttl: 30, data: '127.0.0.66' },
  ]);
  t.notOk(parseResponse(offChain, q).ok, 'A owner off the chain ⇒ rejected');
  const loop = response(q, 1, [
    { type: 'CNAME', name: 'www.example.com', ttl: 300, data: 'a.example.com' },
    { type: 'CNAME', name: 'a.example.com', ttl: 300, data: 'www.example.com' },
  ]);
  t.notOk(parseResponse(loop, q).ok, 'CNAME loop ⇒ rejected');
  const chain: dnsPacket.Answer[] = [];
  let prev = 'www.example.com';
  for (let i = 0; i < 20; i++) {
    chain.push({ type: 'CNAME', name: prev, ttl: 30, data: `c${i}.example.com` });
    prev = `c${i}.example.com`;
  }
  t.notOk(parseResponse(response(q, 1, chain), q).ok, 'CNAME chain > 16 ⇒ rejected');
  const other2 = response(q, 1, [{ type: 'TXT', name: 'elsewhere.example', ttl: 30, data: 'hi' }]);
  t.ok(parseResponse(other2, q).ok, 'non-address records off the chain are carried, not learned');
});

t.test('responses: RDLENGTH, pointers, truncation, trailing bytes', async (t) => {
  const q = mustParse(query('www.example.com'));
  const good = response(q, 5, [{ type: 'A', name: 'www.example.com', ttl: 30, data: '127.0.0.33' }]);
  // The A record: owner pointer (2) type(2) class(2) ttl(4) rdlen(2) rdata(4) at the end.
  const rdlenAt = good.length - 6;
  t.equal(good.readUInt16BE(rdlenAt), 4);
  const long = Buffer.concat([good, Buffer.alloc(12)]);
  long.writeUInt16BE(16, rdlenAt);
  t.notOk(parseResponse(long, q).ok, 'A with RDLENGTH 16 ⇒ rejected');
  const beyond = Buffer.from(good);
  beyond.writeUInt16BE(200, rdlenAt);
  t.notOk(parseResponse(beyond, q).ok, 'RDLENGTH beyond the packet ⇒ rejected');
  for (let n = 12; n < good.length; n++) {
    t.notOk(parseResponse(good.subarray(0, n), q).ok, `cut at ${n} ⇒ rejected`);
  }
  t.notOk(parseResponse(Buffer.concat([good, Buffer.from([0])]), q).ok, 'trailing byte ⇒ rejected');
  const ownerAt = rdlenAt - 8 - 2;
  const self = Buffer.from(good);
  self.writeUInt16BE(0xc000 | ownerAt, ownerAt);
  t.notOk(parseResponse(self, q).ok, 'pointer to itself ⇒ rejected');
  const fwd = Buffer.from(good);
  fwd.writeUInt16BE(0xc000 | (ownerAt + 4), ownerAt);
  t.notOk(parseResponse(fwd, q).ok, 'forward pointer ⇒ rejected');
  const hdrPtr = Buffer.from(good);
  hdrPtr.writeUInt16BE(0xc000 | 2, ownerAt);
  t.notOk(parseResponse(hdrPtr, q).ok, 'pointer into the header ⇒ rejected');
  const ext = Buffer.from(good);
  ext[ownerAt] = 0x40;
  t.notOk(parseResponse(ext, q).ok, 'label type 0x40 ⇒ rejected');
  // Owner written as one label "www.example.com" (with dots): not the question name.
  const dotted = Buffer.concat([
    good.subarray(0, ownerAt),
    Buffer.from([15]),
    Buffer.from('www.example.com'),
    Buffer.from([0]),
    good.subarray(ownerAt + 2),
  ]);
  const pr = parseResponse(dotted, q);
  t.notOk(pr.ok, 'dotted single label is not the question name');
});

t.test('responses: an owner pointer to the question is the question name only when the question is ours', async (t) => {
  const q = mustParse(query('Www.Example.com'));
  /** Header + question (name, qtype) + one A record whose owner is the pointer 0xc00c. */
  const withPointer = (name: string, qtype: number, ip: number[]): Buffer => {
    const head = response(q, 5, [], { questions: [{ type: 'A', name }] });
    head.writeUInt16BE(1, 6); // ANCOUNT
    head.writeUInt16BE(qtype, head.length - 4);
    return Buffer.concat([head, Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, ...ip])]);
  };
  // 0x20 case in the upstream's question.
  const mixed = withPointer('wWW.exAMPLE.COM', 1, [127, 0, 0, 33]);
  t.ok(matchesQuery(mixed, 5, q));
  const r = parseResponse(mixed, q);
  t.ok(r.ok && r.info.ips[0] === '127.0.0.33', 'learned through the pointer');
  // Another question (parseResponse alone, without matchesQuery): the same pointer
  // now names evil.example.com, which is not on the chain from our name.
  const evil = withPointer('evil.example.com', 1, [127, 0, 0, 66]);
  t.notOk(parseResponse(evil, q).ok, 'pointer to a foreign question ⇒ rejected');
  // Same name, other type: not our question; the owner is read from the wire and checked.
  const aaaaQ = withPointer('www.example.com', 28, [127, 0, 0, 34]);
  t.notOk(matchesQuery(aaaaQ, 5, q));
  const r2 = parseResponse(aaaaQ, q);
  t.ok(r2.ok && r2.info.ips[0] === '127.0.0.34', 'general path reads the owner name');
});

t.test('TC reply keeps the client ID and question', async (t) => {
  const q = mustParse(query('Big.example'));
  const b = encodeTruncated(q, 0x8180);
  const d = dnsPacket.decode(b);
  t.equal(d.id, 0x1234);
  t.equal(d.flag_tc, true);
  t.equal(d.questions?.[0]?.name, 'Big.example');
  t.equal(d.answers?.length, 0);
});
