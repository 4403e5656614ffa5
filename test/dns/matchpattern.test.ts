/**
 * Every matchPattern row of CILIUM-SEMANTICS.md §3.2, through the running DNS proxy:
 * one client pod per row (127.0.0.100+i) with a policy allowing DNS for that pattern
 * only. Names that match ⇒ NOERROR with the test upstream's answer; names that do not
 * ⇒ REFUSED. Names with an empty label (".io.", "cilium..io", …) cannot be written in
 * DNS wire format — a zero-length label ends the name — so they are sent as the raw
 * bytes one would try, and the proxy answers FORMERR (never NOERROR). The `""` entries
 * and names that differ from a matching one only by the missing final dot are
 * string-level cases of the matcher with no wire form (every DNS name is absolute);
 * they are covered by the matcher's own tests.
 */
import t from 'tap';
import dgram from 'node:dgram';
import { DnsHarness, dig, dnsPolicy, type PodSpec } from '../helpers/dns-harness.js';
import { loopbackFor } from '../helpers/dns-upstream.js';

interface Row {
  readonly pattern: string;
  readonly match: readonly string[];
  readonly noMatch: readonly string[];
  /** Not expressible on the wire: expect FORMERR. */
  readonly noWire?: readonly string[];
}

const ANY_MATCH = ['.', 'io.', 'cilium.io.', 'svc.cluster.local.', 'service.namesace.svc.cluster.local.', '_foobar._tcp.cilium.io.'];
const ANY_NOWIRE = ['.io.', '.cilium.io.', '.svc.cluster.local.', '..io.', 'cilium..io'];

const ROWS: Row[] = [
  { pattern: 'cilium.io.', match: ['cilium.io.'], noMatch: ['anysub.cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.'] },
  {
    pattern: '*.cilium.io.',
    match: ['anysub.cilium.io.'],
    noMatch: ['cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.', 'a.b.cilium.io.'],
  },
  { pattern: '*cilium.io.', match: ['cilium.io.', 'subcilium.io.', 'sub-cilium.io.'], noMatch: ['www.cilium.io.'] },
  { pattern: 'sub*.cilium.io.', match: ['sub.cilium.io.', 'subdomain.cilium.io.'], noMatch: ['www.cilium.io.', 'cilium.io.'] },
  {
    pattern: '*.ci*.io.',
    match: ['anysub.cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.'],
    noMatch: ['ci.io.', 'cilium.io.', 'service.namesace.svc.cluster.local.'],
  },
  { pattern: '*', match: ANY_MATCH, noMatch: [], noWire: ANY_NOWIRE },
  { pattern: '**', match: ANY_MATCH, noMatch: [], noWire: ANY_NOWIRE },
  { pattern: '*.', match: ANY_MATCH, noMatch: [], noWire: ANY_NOWIRE },
  { pattern: '**.', match: ANY_MATCH, noMatch: [], noWire: ANY_NOWIRE },
  { pattern: '_foobar._tcp.cilium.io.', match: ['_foobar._tcp.cilium.io.'], noMatch: ['_tcp.cilium.io.', 'cilium.io.'] },
  { pattern: '*.*.cilium.io.', match: ['_foobar._tcp.cilium.io.'], noMatch: [] },
  {
    pattern: '**.cilium.io.',
    match: ['anysub.cilium.io.', '_foobar._tcp.cilium.io.', 'sub11.sub22.sub33._foobar._tcp.cilium.io.'],
    noMatch: ['cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.', '1._foobar_tcp.cilium.trio.'],
  },
  {
    pattern: '**.ci*.io.',
    match: ['anysub.cilium.io.', 'anysub.ci.io.', '1.anysub.ciliumandmore.io.', 'service.namesace.svc.ciuster.io.'],
    noMatch: ['cilium.io.'],
    noWire: ['service.namesace.svc..ciblaster.io.'],
  },
  {
    pattern: '**.*.io.',
    match: ['anysub.cilium.io.', 'anysub.ci.io.', 'service.namesace.svc.ciuster.io.'],
    noMatch: ['io.', 'cilium.io.'],
    noWire: ['..cilium.io.', 'service..namesace.svc.cluster.io.'],
  },
];

/**
 * The `.` row of §3.2 (matchpattern_test.go runs the Go function directly) cannot be
 * loaded: the CRD's matchPattern pattern `^([-a-zA-Z0-9_*]+[.]?)+$` refuses it, so
 * `kubectl apply` never hands it to Cilium, and the loader refuses it with its place
 * (test/policy/parse/crd-schema.test.ts). Its matching is still checked on the engine
 * (test/policy/dns-pattern.test.ts); here the running configuration refuses it.
 */
const DOT_ROW = dnsPolicy('dot', { row: 'dot' }, ['matchPattern: "."']);

const pods: PodSpec[] = ROWS.map((_, i) => ({ name: `row-${i}`, labels: { row: String(i) }, ip: `127.0.0.${100 + i}` }));
const policies = ROWS.map((r, i) => dnsPolicy(`row-${i}`, { row: String(i) }, [`matchPattern: ${JSON.stringify(r.pattern)}`])).join(
  '---\n',
);

const h = await DnsHarness.start({ pods, policies, upstream: { log: false } });
t.teardown(() => h.close());

/** The wire bytes a client would send for a name with empty labels. */
function rawQuery(name: string): Buffer {
  const labels = name.endsWith('.') ? name.slice(0, -1).split('.') : name.split('.');
  const parts: Buffer[] = [Buffer.from([0x4e, 0x20, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  return Buffer.concat(parts);
}

function udpExchange(port: number, msg: Buffer, from: string): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
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
    s.bind(0, from, () => s.send(msg, port, '127.0.0.1'));
  });
}

/** Run jobs with at most `n` at a time. */
async function limited<T>(jobs: (() => Promise<T>)[], n: number): Promise<T[]> {
  const out: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]!();
      }
    }),
  );
  return out;
}

ROWS.forEach((row, i) => {
  t.test(`pattern ${JSON.stringify(row.pattern)}`, async (t) => {
    const from = `127.0.0.${100 + i}`;
    const jobs: (() => Promise<void>)[] = [];
    for (const name of row.match) {
      jobs.push(async () => {
        const r = await dig(h.port, name, { from });
        t.equal(r.status, 'NOERROR', `${name} allowed`);
        t.same(r.answers.map((a) => a.data), [loopbackFor(name)], `${name}: the upstream's answer`);
      });
    }
    for (const name of row.noMatch) {
      jobs.push(async () => {
        const r = await dig(h.port, name, { from });
        t.equal(r.status, 'REFUSED', `${name} refused`);
        t.same(r.answers, []);
      });
    }
    for (const name of row.noWire ?? []) {
      jobs.push(async () => {
        const out = await udpExchange(h.port, rawQuery(name), from);
        t.equal(out ? out[3]! & 0xf : -1, 1, `${JSON.stringify(name)}: FORMERR`);
      });
    }
    await limited(jobs, 4);
  });
});

t.test('a pattern row does not leak into another pod', async (t) => {
  // Row 0 allows only cilium.io.; the row-6 pod ("*") is allowed everything.
  const r0 = await dig(h.port, 'io', { from: '127.0.0.100' });
  t.equal(r0.status, 'REFUSED');
  const r5 = await dig(h.port, 'io', { from: '127.0.0.105' });
  t.equal(r5.status, 'NOERROR');
});

t.test('pattern "." is refused where the policy is loaded, as the CRD refuses it', async (t) => {
  const err = await DnsHarness.start({ pods: [{ name: 'dot', labels: { row: 'dot' }, ip: '127.0.0.99' }], policies: DOT_ROW, upstream: { log: false } }).then(
    async (h) => {
      await h.close();
      return undefined;
    },
    (e: unknown) => String(e),
  );
  t.match(err, /"line":\d+,"col":\d+,"path":"spec\.egress\[0\]\.toPorts\[0\]\.rules\.dns\[0\]\.matchPattern"/, 'a located error');
  t.match(err, /"\\"\.\\" is not a DNS name pattern/, 'naming the pattern');
});
