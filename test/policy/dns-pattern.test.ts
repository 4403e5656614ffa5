/** Every row of CILIUM-SEMANTICS.md §3.2 (pkg/fqdn/matchpattern/matchpattern_test.go). */
import t from 'tap';
import { compileOne, compileDnsRules, sanitizePattern } from '../../src/policy/dns-pattern.js';

const rows: [string[], string[], string[]][] = [
  [['cilium.io.'], ['cilium.io.'], ['', 'anysub.cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.']],
  [['*.cilium.io.'], ['anysub.cilium.io.'], ['', 'cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.', 'a.b.cilium.io.']],
  [['*cilium.io.'], ['cilium.io.', 'subcilium.io.', 'sub-cilium.io.'], ['www.cilium.io.']],
  [['sub*.cilium.io.'], ['sub.cilium.io.', 'subdomain.cilium.io.'], ['www.cilium.io.', 'cilium.io.']],
  [['*.ci*.io.'], ['anysub.cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.'], ['', 'ci.io', 'cilium.io.', 'service.namesace.svc.cluster.local.']],
  [
    ['*', '**', '*.', '**.'],
    ['.', 'io.', 'cilium.io.', 'svc.cluster.local.', 'service.namesace.svc.cluster.local.', '_foobar._tcp.cilium.io.'],
    ['', '.io.', '.cilium.io.', '.svc.cluster.local.', 'cilium.io', '..io.', 'cilium..io'],
  ],
  [['.'], ['.'], ['', '.io.', '.cilium.io']],
  [['_foobar._tcp.cilium.io.'], ['_foobar._tcp.cilium.io.'], ['', '_tcp.cilium.io.', 'cilium.io.']],
  [['*.*.cilium.io.'], ['_foobar._tcp.cilium.io.'], ['']],
  [
    ['**.cilium.io.'],
    ['anysub.cilium.io.', '_foobar._tcp.cilium.io.', 'sub11.sub22.sub33._foobar._tcp.cilium.io.'],
    ['', 'cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.', 'sub.cilium.io', '1._foobar_tcp.cilium.trio.'],
  ],
  [
    ['**.ci*.io.'],
    ['anysub.cilium.io.', 'anysub.ci.io.', '1.anysub.ciliumandmore.io.', 'service.namesace.svc.ciuster.io.'],
    ['', 'cilium.io.', 'service.namesace.svc..ciblaster.io.'],
  ],
  [
    ['**.*.io.'],
    ['anysub.cilium.io.', 'anysub.ci.io.', 'service.namesace.svc.ciuster.io.'],
    ['', 'io.', '..cilium.io.', 'cilium.io.', 'service..namesace.svc.cluster.io.'],
  ],
];

for (const [patterns, yes, no] of rows) {
  for (const p of patterns) {
    t.test(`matchPattern ${JSON.stringify(p)}`, async (t) => {
      const m = compileOne({ matchPattern: p });
      for (const n of yes) t.ok(m.test(n), `matches ${JSON.stringify(n)}`);
      for (const n of no) t.notOk(m.test(n), `does not match ${JSON.stringify(n)}`);
    });
  }
}

t.test('middle ** behaves like * (follow the code, §3.2)', async (t) => {
  const m = compileOne({ matchPattern: '1.**.cilium.io.' });
  t.ok(m.test('1.x.cilium.io.'));
  t.notOk(m.test('1.x.y.cilium.io.'));
});

t.test('matchName is exact and case-insensitive via the caller lowercasing', async (t) => {
  const m = compileOne({ matchName: 'Cilium.IO' });
  t.ok(m.test('cilium.io.'));
  t.notOk(m.test('www.cilium.io.'));
  t.notOk(m.test('ciliumxio.'), 'dots are literal');
});

t.test('Sanitize and joined rules', async (t) => {
  t.equal(sanitizePattern('**'), '**');
  t.equal(sanitizePattern('**.'), '**.');
  t.equal(sanitizePattern('*.'), '*.');
  t.equal(sanitizePattern('*.com'), '*.com.');
  const joined = compileDnsRules([{ matchName: 'cilium.io' }, { matchPattern: '*.cilium.io' }]);
  t.ok(joined.test('cilium.io.'));
  t.ok(joined.test('www.cilium.io.'));
  t.notOk(joined.test('a.b.cilium.io.'));
  t.ok(compileDnsRules([]).test('anything.at.all.'), 'no rules = allow all');
  t.ok(compileDnsRules([{ matchName: 'x.io' }, { matchPattern: '*' }]).matchAll);
});
