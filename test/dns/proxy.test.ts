/**
 * The DNS listener end to end: real config loader and compiler, the real listener
 * on UDP+TCP, the test upstream, `dig` as the client (bound to pod addresses with -b).
 */
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { DnsHarness, dig, dnsPolicy } from '../helpers/dns-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const OTHER = { name: 'other', labels: { app: 'other' }, ip: '127.0.0.11' };

const h = await DnsHarness.start({
  pods: [APP, OTHER],
  policies: dnsPolicy('app-dns', { app: 'client' }, ['matchName: cilium.io', 'matchPattern: "*.cilium.io"']) +
    `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: app-fqdn, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toFQDNs: [{ matchPattern: "*.cilium.io" }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]
`,
  flows: true,
});
t.teardown(() => h.close());

const client = h.snapshot.identityForIP(APP.ip);

function canConnect(ip: string): boolean {
  const world = h.snapshot.identityForIP(ip);
  return h.snapshot.decide({ src: client, dst: world, port: 80, protocol: 'TCP' }).allowed;
}

t.test('allowed name: NOERROR with the upstream answer; IP learned before the answer', async (t) => {
  t.notOk(canConnect('127.0.0.77'), 'an unknown IP is not reachable through toFQDNs');
  h.upstream.setRecord('www.cilium.io', { a: ['127.0.0.77'], ttl: 30 });
  const r = await dig(h.port, 'WwW.CiLiUm.Io', { from: APP.ip });
  t.equal(r.status, 'NOERROR');
  t.same(r.answers.map((a) => a.data), ['127.0.0.77']);
  t.equal(r.answers[0]?.name, 'WwW.CiLiUm.Io.', 'question case kept (0x20)');
  t.equal(r.answers[0]?.ttl, 30, 'TTL passed unchanged');
  t.ok(canConnect('127.0.0.77'), 'the learned IP is allowed by toFQDNs');
  const ident = h.snapshot.identityForIP('127.0.0.77');
  t.ok(ident.labels.includes('fqdn:*.cilium.io'), 'FQDN identity labelled');
  t.ok(ident.id > 1 << 24, 'local-scope identity');
});

t.test('allowed but not selected by toFQDNs: resolves, not reachable', async (t) => {
  h.upstream.setRecord('cilium.io', { a: ['127.0.0.78'] });
  const r = await dig(h.port, 'cilium.io', { from: APP.ip });
  t.equal(r.status, 'NOERROR');
  t.notOk(canConnect('127.0.0.78'));
  t.same(h.fqdn.lookup('cilium.io.'), ['127.0.0.78'], 'kept in the cache for later rules');
});

t.test('denied name: REFUSED, nothing sent upstream, one DROPPED record', async (t) => {
  const before = h.upstream.queries.length;
  const linesBefore = h.flowLines.length;
  const r = await dig(h.port, 'evil.example.com', { from: APP.ip });
  t.equal(r.status, 'REFUSED');
  t.equal(h.upstream.queries.length, before, 'upstream saw nothing');
  await new Promise((res) => setImmediate(res));
  const recs = h.flowLines.slice(linesBefore).map((l) => JSON.parse(l).flow);
  t.equal(recs.length, 1);
  t.equal(recs[0].verdict, 'DROPPED');
  t.equal(recs[0].l7.type, 'REQUEST');
  t.same(recs[0].l7.dns, { query: 'evil.example.com.', observation_source: 'proxy', qtypes: ['A'] });
  t.equal(recs[0].traffic_direction, 'EGRESS');
  t.equal(recs[0].drop_reason_desc, 'POLICY_DENIED');
  t.equal(recs[0].source.pod_name, 'app');
});

t.test('allowed query: request + response records (Hubble shape)', async (t) => {
  h.upstream.setRecord('api.cilium.io', { cname: 'edge.cilium.io' });
  h.upstream.setRecord('edge.cilium.io', { a: ['127.0.0.81'], ttl: 20 });
  const linesBefore = h.flowLines.length;
  const r = await dig(h.port, 'api.cilium.io', { from: APP.ip });
  t.equal(r.status, 'NOERROR');
  await new Promise((res) => setImmediate(res));
  const recs = h.flowLines.slice(linesBefore).map((l) => JSON.parse(l).flow);
  t.equal(recs.length, 2);
  const [req, resp] = recs;
  t.equal(req.verdict, 'FORWARDED');
  t.equal(req.l7.type, 'REQUEST');
  t.ok(req.l4.UDP);
  t.equal(resp.l7.type, 'RESPONSE');
  t.equal(resp.is_reply, true);
  t.same(resp.l7.dns, {
    query: 'api.cilium.io.',
    observation_source: 'proxy',
    qtypes: ['A'],
    ips: ['127.0.0.81'],
    ttl: 20,
    cnames: ['edge.cilium.io.'],
    rrtypes: ['CNAME', 'A'],
  });
  t.equal(resp.IP.destination, APP.ip, 'response swapped');
  t.ok(canConnect('127.0.0.81'), 'CNAME chain IP learned for the question name');
});

t.test('another pod without DNS policy is not enforced; a pod outside is world', async (t) => {
  const r = await dig(h.port, 'anything.example', { from: OTHER.ip });
  t.equal(r.status, 'NOERROR', 'no egress policy selects "other": allowed');
});

t.test('TCP: dig +tcp gets the same policy', async (t) => {
  const ok = await dig(h.port, 'tcp.cilium.io', { from: APP.ip, args: ['+tcp'] });
  t.equal(ok.status, 'NOERROR');
  t.equal(h.upstream.queriesFor('tcp.cilium.io').at(-1)?.transport, 'tcp', 'forwarded over TCP');
  const no = await dig(h.port, 'tcp.example.org', { from: APP.ip, args: ['+tcp'] });
  t.equal(no.status, 'REFUSED');
});

t.test('large answer over UDP: TC, then the TCP retry is served under the same policy', async (t) => {
  h.upstream.misbehave('big.cilium.io', 'large');
  const tc = await dig(h.port, 'big.cilium.io', { from: APP.ip, args: ['+ignore', '+bufsize=0', '+noedns'] });
  t.ok(tc.flags.includes('tc'), 'TC set');
  t.equal(tc.answers.length, 0);
  t.notOk(canConnect('127.0.1.1'), 'nothing learned from an answer the client did not get');
  const full = await dig(h.port, 'big.cilium.io', { from: APP.ip });
  t.equal(full.status, 'NOERROR');
  t.equal(full.answers.length, 120, 'dig retried over TCP and got everything');
  t.ok(canConnect('127.0.1.1'));
  const big = await dig(h.port, 'big.cilium.io', { from: APP.ip, args: ['+bufsize=4096', '+ignore'] });
  t.notOk(big.flags.includes('tc'), 'fits the advertised EDNS size: no TC');
  t.equal(big.answers.length, 120);
});

t.test('upstream misbehaviour: SERVFAIL, nothing learned, process alive', async (t) => {
  const cases = [
    'wrongId',
    'wrongQuestion',
    'badRdlength',
    'rdlengthBeyond',
    'compressionLoop',
    'forwardPointer',
    'truncatedPacket',
    'trailingGarbage',
    'offChain',
    'dotLabel',
    'silent',
    'otherPort',
    'servfail',
  ] as const;
  await Promise.all(
    cases.map(async (how) => {
      const name = `${how.toLowerCase()}.cilium.io`;
      h.upstream.misbehave(name, how);
      const r = await dig(h.port, name, { from: APP.ip });
      t.equal(r.status, 'SERVFAIL', `${how} ⇒ SERVFAIL`);
      t.same(h.fqdn.lookup(`${name}.`), [], `${how}: nothing learned`);
    }),
  );
  for (const ip of ['127.0.0.250', '127.0.0.251', '127.0.0.252']) t.notOk(canConnect(ip), `${ip} never reachable`);
});

t.test('forged answers before the real one are ignored', async (t) => {
  h.upstream.misbehave('spoof.cilium.io', 'spoofFirst');
  h.upstream.setRecord('spoof.cilium.io', { a: ['127.0.0.90'] });
  const r = await dig(h.port, 'spoof.cilium.io', { from: APP.ip });
  t.equal(r.status, 'NOERROR');
  t.same(r.answers.map((a) => a.data), ['127.0.0.90']);
  t.notOk(canConnect('127.0.0.250'), 'forged IP never learned');
  t.ok(canConnect('127.0.0.90'));
});

t.test('upstream TC over UDP is relayed; the TCP retry answers', async (t) => {
  h.upstream.misbehave('tc.cilium.io', 'tc');
  const r = await dig(h.port, 'tc.cilium.io', { from: APP.ip });
  t.equal(r.status, 'NOERROR', 'dig retried over TCP');
  t.equal(r.answers.length, 1);
});

function udpExchange(port: number, msg: Buffer, from = APP.ip, waitMs = 500): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, waitMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.bind(0, from, () => s.send(msg, port, '127.0.0.1'));
  });
}

t.test('malformed client packets over UDP: FORMERR or silence, never a crash or a learned IP', async (t) => {
  const hdr = (qd: number, flags = 0x0100) => {
    const b = Buffer.alloc(12);
    b.writeUInt16BE(0xabcd, 0);
    b.writeUInt16BE(flags, 2);
    b.writeUInt16BE(qd, 4);
    return b;
  };
  const tail = Buffer.from([0, 1, 0, 1]);
  const two = dnsPacket.encode({
    type: 'query',
    id: 1,
    questions: [
      { type: 'A', name: 'www.cilium.io' },
      { type: 'A', name: 'evil.example' },
    ],
  });
  const cases: [string, Buffer, number | undefined][] = [
    ['5 bytes', Buffer.from([1, 2, 3, 4, 5]), undefined],
    ['QDCOUNT 0', hdr(0), 1],
    ['QDCOUNT 2 (allowed + denied)', two, 1],
    ['dot inside a label', Buffer.concat([hdr(1), Buffer.from([13]), Buffer.from('www.cilium.io'), Buffer.from([0]), tail]), 1],
    ['NUL inside a label', Buffer.concat([hdr(1), Buffer.from([4, 0x77, 0, 0x77, 0x77, 6]), Buffer.from('cilium'), Buffer.from([2]), Buffer.from('io'), Buffer.from([0]), tail]), 1],
    ['pointer loop in question', Buffer.concat([hdr(1), Buffer.from([0xc0, 12]), tail]), 1],
    ['empty label (.cilium.io.)', Buffer.concat([hdr(1), Buffer.from([0, 6]), Buffer.from('cilium'), Buffer.from([2]), Buffer.from('io'), Buffer.from([0]), tail]), 1],
    ['truncated label', Buffer.concat([hdr(1), Buffer.from([40, 0x61, 0x62])]), 1],
    ['response (QR=1)', Buffer.concat([hdr(1, 0x8180), Buffer.from([1, 0x61, 0]), tail]), undefined],
    ['opcode NOTIFY', Buffer.concat([hdr(1, 4 << 11), Buffer.from([1, 0x61, 0]), tail]), 4],
  ];
  for (const [what, msg, rcode] of cases) {
    const out = await udpExchange(h.port, msg, APP.ip, rcode === undefined ? 300 : 2000);
    if (rcode === undefined) t.equal(out, undefined, `${what}: dropped`);
    else t.equal(out ? out[3]! & 0xf : -1, rcode, `${what}: rcode ${rcode}`);
  }
  t.same(h.fqdn.lookup('evil.example.'), []);
  const ok = await dig(h.port, 'still.cilium.io', { from: APP.ip });
  t.equal(ok.status, 'NOERROR', 'proxy still serving');
});

function tcpExchange(port: number, chunks: Buffer[], expect: number, from = APP.ip): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    let acc = Buffer.alloc(0);
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from }, async () => {
      for (const c of chunks) {
        s.write(c);
        await new Promise((r) => setTimeout(r, 15));
      }
    });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(out);
    }, 3000);
    s.on('data', (d) => {
      acc = Buffer.concat([acc, d]);
      while (acc.length >= 2 && acc.length >= 2 + acc.readUInt16BE(0)) {
        out.push(acc.subarray(2, 2 + acc.readUInt16BE(0)));
        acc = acc.subarray(2 + acc.readUInt16BE(0));
      }
      if (out.length >= expect) {
        clearTimeout(timer);
        s.destroy();
        resolve(out);
      }
    });
    s.on('error', reject);
  });
}

function framed(m: Buffer): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(m.length);
  return Buffer.concat([b, m]);
}

t.test('TCP: pipelined queries, length prefix split across segments', async (t) => {
  const q1 = framed(dnsPacket.encode({ type: 'query', id: 11, flags: 256, questions: [{ type: 'A', name: 'p1.cilium.io' }] }));
  const q2 = framed(dnsPacket.encode({ type: 'query', id: 12, flags: 256, questions: [{ type: 'A', name: 'denied.example' }] }));
  const q3 = framed(dnsPacket.encode({ type: 'query', id: 13, flags: 256, questions: [{ type: 'A', name: 'p3.cilium.io' }] }));
  const all = Buffer.concat([q1, q2, q3]);
  // Split: 1 byte of the first prefix, then the rest of q1 + q2 + 1 byte of q3's prefix, then the rest.
  const chunks = [all.subarray(0, 1), all.subarray(1, q1.length + q2.length + 1), all.subarray(q1.length + q2.length + 1)];
  const answers = await tcpExchange(h.port, chunks, 3);
  const byId = new Map(answers.map((a) => [a.readUInt16BE(0), dnsPacket.decode(a)]));
  t.equal(byId.get(11)?.rcode, 'NOERROR');
  t.equal(byId.get(12)?.rcode, 'REFUSED');
  t.equal(byId.get(13)?.rcode, 'NOERROR');
});

t.test('TCP: garbage frames are answered FORMERR or dropped, connection survives for valid ones', async (t) => {
  const bad = framed(Buffer.from([0, 1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0]));
  const good = framed(dnsPacket.encode({ type: 'query', id: 21, flags: 256, questions: [{ type: 'A', name: 'g.cilium.io' }] }));
  const answers = await tcpExchange(h.port, [bad, good], 2);
  t.equal(answers[0]![3]! & 0xf, 1, 'FORMERR');
  t.equal(dnsPacket.decode(answers[1]!).rcode, 'NOERROR');
});

t.test('flow records parse as JSON lines', async (t) => {
  for (const l of h.flowLines) t.doesNotThrow(() => JSON.parse(l));
  t.ok(h.flowLines.length > 5);
});
