/**
 * Differential port of Cilium's TestExtractMsgDetails (pkg/fqdn/dnsproxy/proxy_test.go):
 * what an answer contributes to the FQDN cache — its addresses, the CNAME chain, and the
 * TTL (the minimum over the chain's A/AAAA/CNAME records). Each row runs through our
 * answer validator (parseResponse) and, for the CNAME chains, through the running proxy,
 * where the cache's expiry shows the TTL that was learned.
 *
 * The one row not ported as is: Cilium's "invalid DNS message" is an empty dns.Msg; ours
 * never reaches the validator without a question that matches the query; the nearest we
 * have, a response with QDCOUNT 0, is checked to be refused by matchesQuery, the gate in
 * front of parseResponse.
 */
import t from 'tap';
import dnsPacket from 'dns-packet';
import { matchesQuery, parseQuery, parseResponse, type Query } from '../../src/dns/codec.js';
import { DnsHarness, dig, dnsPolicy } from '../helpers/dns-harness.js';

function q(name: string, type: 'A' | 'AAAA'): Query {
  const r = parseQuery(
    dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] }),
  );
  if (!r.ok) throw new Error(r.reason);
  return r.query;
}

function resp(name: string, type: 'A' | 'AAAA', answers: dnsPacket.Answer[], questions = true): Buffer {
  return dnsPacket.encode({
    type: 'response',
    id: 7,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: questions ? [{ type, name, class: 'IN' }] : [],
    answers,
  });
}

t.test('TestExtractMsgDetails rows through parseResponse', async (t) => {
  const rows: { what: string; name: string; type: 'A' | 'AAAA'; answers: dnsPacket.Answer[]; ttl: number; cnames: string[]; ips: string[] }[] = [
    {
      what: 'A response, no CNAMEs',
      name: 'cilium.io',
      type: 'A',
      answers: [{ type: 'A', name: 'cilium.io', ttl: 3600, data: '192.0.2.3' }],
      ttl: 3600,
      cnames: [],
      ips: ['192.0.2.3'],
    },
    {
      what: 'AAAA response, no CNAMEs, min TTL',
      name: 'cilium.io',
      type: 'AAAA',
      answers: [
        { type: 'AAAA', name: 'cilium.io', ttl: 3600, data: 'f00d::1' },
        { type: 'AAAA', name: 'cilium.io', ttl: 1800, data: 'f00d::2' },
      ],
      ttl: 1800,
      cnames: [],
      ips: ['f00d::1', 'f00d::2'],
    },
    {
      what: 'A & CNAME (1 level) response, min TTL',
      name: 'foo.cilium.io',
      type: 'A',
      answers: [
        { type: 'CNAME', name: 'foo.cilium.io', ttl: 1800, data: 'bar.cilium.io' },
        { type: 'A', name: 'bar.cilium.io', ttl: 3600, data: '192.168.0.2' },
      ],
      ttl: 1800,
      cnames: ['bar.cilium.io.'],
      ips: ['192.168.0.2'],
    },
    {
      what: 'AAAA & CNAME (3 levels) response, min TTL',
      name: 'foo.cilium.io',
      type: 'AAAA',
      answers: [
        { type: 'CNAME', name: 'foo.cilium.io', ttl: 7200, data: 'foo1.cilium.io' },
        { type: 'CNAME', name: 'foo1.cilium.io', ttl: 3600, data: 'foo2.cilium.io' },
        { type: 'CNAME', name: 'foo2.cilium.io', ttl: 7200, data: 'foo3.cilium.io' },
        { type: 'AAAA', name: 'foo3.cilium.io', ttl: 7200, data: 'f00d::1' },
      ],
      ttl: 3600,
      cnames: ['foo1.cilium.io.', 'foo2.cilium.io.', 'foo3.cilium.io.'],
      ips: ['f00d::1'],
    },
  ];
  for (const r of rows) {
    const p = parseResponse(resp(r.name, r.type, r.answers), q(r.name, r.type));
    t.ok(p.ok, `${r.what}: accepted`);
    if (!p.ok) continue;
    t.equal(p.info.ttl, r.ttl, `${r.what}: TTL ${r.ttl}`);
    t.same(p.info.cnames, r.cnames, `${r.what}: CNAMEs`);
    t.same(p.info.ips, r.ips, `${r.what}: IPs`);
  }
  // Upstream answers reach parseResponse only through matchesQuery (src/dns/upstream.ts).
  const none = resp('cilium.io', 'A', [{ type: 'A', name: 'cilium.io', ttl: 60, data: '192.0.2.9' }], false);
  t.notOk(matchesQuery(none, 7, q('cilium.io', 'A')), 'a response without a question is not taken as the answer');
});

t.test('TestExtractMsgDetails CNAME rows through the running proxy: the chain IPs are learned for the question name with the minimum TTL', async (t) => {
  const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
  const h = await DnsHarness.start({ pods: [APP], policies: dnsPolicy('dns', { app: 'client' }, ['matchPattern: "*.cilium.io"']) });
  t.teardown(() => h.close());
  h.upstream.setRecord('foo.cilium.io', { cname: 'foo1.cilium.io', ttl: 7200 });
  h.upstream.setRecord('foo1.cilium.io', { cname: 'foo2.cilium.io', ttl: 3600 });
  h.upstream.setRecord('foo2.cilium.io', { cname: 'foo3.cilium.io', ttl: 7200 });
  h.upstream.setRecord('foo3.cilium.io', { aaaa: ['f00d::1'], ttl: 7200 });
  h.upstream.setRecord('one.cilium.io', { cname: 'bar.cilium.io', ttl: 1800 });
  h.upstream.setRecord('bar.cilium.io', { a: ['192.168.0.2'], ttl: 3600 });
  const cases: [string, 'A' | 'AAAA', string, number][] = [
    ['foo.cilium.io', 'AAAA', 'f00d::1', 3600],
    ['one.cilium.io', 'A', '192.168.0.2', 1800],
  ];
  for (const [name, type, ip, ttl] of cases) {
    const before = Date.now();
    const r = await dig(h.port, name, { from: APP.ip, type });
    t.equal(r.status, 'NOERROR', name);
    t.same(h.fqdn.lookup(`${name}.`), [ip], `${name}: the chain's address, learned for the question name`);
    const exp = h.fqdn.expiresAt(`${name}.`, ip) ?? 0;
    // The expiry is learned-at + TTL; learned-at lies between `before` and now.
    t.ok(exp >= before + ttl * 1000 && exp <= Date.now() + ttl * 1000, `${name}: kept for the minimum TTL over the chain (${ttl} s)`);
  }
});
