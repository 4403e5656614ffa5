/**
 * One 64 KB upstream answer (TCP, or UDP to a client advertising a large EDNS size)
 * cost the proxy ~65–130 ms of event loop, for a ~30-byte query of a name whose
 * authoritative server the attacker controls:
 *  - thousands of answer records of distinct types: every type name was built and
 *    searched linearly in the flow record's `rrtypes` (quadratic);
 *  - thousands of records whose owner is a pointer to a ~250-byte name (authority /
 *    additional sections, or A records whose owner spells the question name through
 *    a different pointer): each owner was expanded into a string;
 *  - thousands of A records for the name: every IP was pushed to the IP cache and
 *    evicted again at once by the per-name cap.
 * Repeated queries keep the single-threaded proxy (every listener) stalled.
 * Checked without timing (a loaded CI machine makes time limits flaky; the cost is
 * measured in bench/, not here): the parse expands only the names it must (the CNAME
 * chain), keeps at most 16 answer types, and the cache is touched at most cap times.
 */
import t from 'tap';
import { codecCounters, parseQuery, parseResponse, type Query } from '../../src/dns/codec.js';
import { FqdnCache, type FqdnIpSink } from '../../src/fqdn/cache.js';
import type { FqdnSelectorInfo, PolicySnapshot } from '../../src/policy/types.js';

function query(name: string, qtype: number): Buffer {
  const parts: Buffer[] = [Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of name.split('.')) parts.push(Buffer.from([l.length]), Buffer.from(l, 'latin1'));
  parts.push(Buffer.from([0, qtype >> 8, qtype & 0xff, 0, 1]));
  return Buffer.concat(parts);
}

function mustParse(b: Buffer): Query {
  const r = parseQuery(b);
  if (!r.ok) throw new Error(r.reason);
  return r.query;
}

/** Our query's header (as an answer, with the given counts) + its question + `records`, cut at 65,535 bytes. */
function answer(qm: Buffer, counts: { an?: number; ar?: number }, records: Buffer[]): Buffer {
  const h = Buffer.from(qm.subarray(0, 12));
  h.writeUInt16BE(0x8180, 2);
  h.writeUInt16BE(counts.an ?? 0, 6);
  h.writeUInt16BE(counts.ar ?? 0, 10);
  return Buffer.concat([h, qm.subarray(12), ...records]);
}

/** Parse once, check the result, and return how many names were expanded into strings. */
function expansions(msg: Buffer, q: Query, check: (r: ReturnType<typeof parseResponse>) => void): number {
  const before = codecCounters.namesExpanded;
  check(parseResponse(msg, q));
  return codecCounters.namesExpanded - before;
}

t.test('thousands of distinct answer types', async (t) => {
  const qm = query('a.example', 255);
  const q = mustParse(qm);
  const n = Math.floor((65535 - qm.length) / 12);
  const rrs: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const r = Buffer.alloc(12);
    r.writeUInt16BE(0xc00c, 0);
    r.writeUInt16BE(1000 + i, 2); // type
    r.writeUInt16BE(1, 4);
    r.writeUInt32BE(60, 6);
    rrs.push(r);
  }
  const msg = answer(qm, { an: n }, rrs);
  const names = expansions(msg, q, (r) => {
    t.ok(r.ok);
    if (r.ok) t.equal(r.info.rrtypes.length, 16, 'rrtypes bounded');
  });
  t.equal(names, 0, `no owner expanded (${n} records)`);
});

t.test('thousands of additional records owned by a pointer to a 241-byte name', async (t) => {
  const qm = query('a.example', 1);
  const q = mustParse(qm);
  const long = Buffer.concat([Buffer.from(Array.from({ length: 120 }, () => [1, 0x61]).flat()), Buffer.from([0])]);
  const first = Buffer.concat([long, Buffer.from([0, 16, 0, 1, 0, 0, 0, 60, 0, 0])]);
  const off = qm.length; // where the long name starts
  const n = Math.floor((65535 - qm.length - first.length) / 12);
  const rrs: Buffer[] = [first];
  for (let i = 0; i < n; i++) {
    const r = Buffer.alloc(12);
    r.writeUInt16BE(0xc000 | off, 0);
    r.writeUInt16BE(16, 2); // TXT, empty
    r.writeUInt16BE(1, 4);
    r.writeUInt32BE(60, 6);
    rrs.push(r);
  }
  const msg = answer(qm, { ar: n + 1 }, rrs);
  const names = expansions(msg, q, (r) => t.ok(r.ok));
  t.equal(names, 0, `no owner expanded (${n + 1} records)`);
});

t.test('thousands of A records whose owner spells a long question name through another pointer', async (t) => {
  const name = Array.from({ length: 118 }, () => 'a').join('.') + '.example';
  const qm = query(name, 1);
  const q = mustParse(qm);
  const n = Math.floor((65535 - qm.length) / 18);
  const rrs: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    // label "a" + pointer to the question's second label (offset 14): the question name again.
    const r = Buffer.alloc(18);
    r[0] = 1;
    r[1] = 0x61;
    r.writeUInt16BE(0xc000 | 14, 2);
    r.writeUInt16BE(1, 4);
    r.writeUInt16BE(1, 6);
    r.writeUInt32BE(60, 8);
    r.writeUInt16BE(4, 12);
    r.writeUInt32BE(0x0a000000 + i, 14);
    rrs.push(r);
  }
  const msg = answer(qm, { an: n }, rrs);
  const names = expansions(msg, q, (r) => {
    t.ok(r.ok, 'still a valid answer on the chain');
    if (r.ok) t.equal(r.info.ips.length, n);
  });
  t.equal(names, 0, `owners compared on the wire, none expanded (${n} records)`);
  // Owners off the chain are still rejected when compared on the wire.
  const off = Buffer.from(msg);
  off[qm.length + 18 * 5 + 1] = 0x62; // record 6's owner: "b" + the rest
  const r = parseResponse(off, q);
  t.notOk(r.ok, 'an owner differing in one label is off the chain');
});

t.test('an answer with more IPs than the per-name cap touches the IP cache at most cap times', async (t) => {
  let pushes = 0;
  const sink: FqdnIpSink = { setFqdnSelectors: () => void pushes++ };
  const c = new FqdnCache(sink, { minTtlSeconds: 0, maxIpsPerName: 100 });
  const sel: FqdnSelectorInfo = { key: '*.example', matches: (n: string) => n.endsWith('.example.') };
  c.setSnapshot({ version: 1, fqdnSelectors: [sel] } as unknown as PolicySnapshot);
  const ips = Array.from({ length: 5000 }, (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
  c.learn('x.example.', ips, 60);
  t.equal(c.lookup('x.example.').length, 100, 'the cap holds');
  t.ok(pushes <= 100, `IP cache updates: ${pushes}`);
});
