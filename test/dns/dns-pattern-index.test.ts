/**
 * compileDnsRules splits Cilium's single joined regex into a label-suffix trie so it
 * scales (see dns-pattern.ts). Differential check: for every subset below, the trie
 * matcher accepts exactly what the single `^(?:r1|r2|…)$` regex accepts, on every
 * name of CILIUM-SEMANTICS §3.2 (including the empty, dot-less and empty-label ones)
 * plus extra edge names.
 */
import t from 'tap';
import RE2 from 're2';
import { compileDnsRules, isMatchAll, nameToRegexSource, patternToRegexSource, type DnsRuleText } from '../../src/policy/dns-pattern.js';

const PATTERNS = [
  'cilium.io.', '*.cilium.io.', '*cilium.io.', 'sub*.cilium.io.', '*.ci*.io.', '.', '_foobar._tcp.cilium.io.',
  '*.*.cilium.io.', '**.cilium.io.', '**.ci*.io.', '**.*.io.', '1.**.cilium.io.', 'a..b.', '..', '*.x.io', 'io', '**.io.',
];
const NAMES = [
  '', '.', 'io.', 'cilium.io.', 'cilium.io', 'anysub.cilium.io.', 'anysub.ci.io.', 'anysub.ciliumandmore.io.', 'a.b.cilium.io.',
  'subcilium.io.', 'sub-cilium.io.', 'www.cilium.io.', 'sub.cilium.io.', 'subdomain.cilium.io.', 'ci.io', 'ci.io.',
  'service.namesace.svc.cluster.local.', 'svc.cluster.local.', '_foobar._tcp.cilium.io.', '_tcp.cilium.io.',
  'sub11.sub22.sub33._foobar._tcp.cilium.io.', '1._foobar_tcp.cilium.trio.', '1.anysub.ciliumandmore.io.',
  'service.namesace.svc.ciuster.io.', 'service.namesace.svc..ciblaster.io.', '..cilium.io.', 'service..namesace.svc.cluster.io.',
  '.io.', '.cilium.io.', '.cilium.io', '..io.', 'cilium..io', '.x.io.', 'a.x.io.', 'a..b.', '..', '...', 'a..b', '1.x.cilium.io.', 'IO.',
];

function reference(rules: DnsRuleText[]): (q: string) => boolean {
  if (rules.length === 0 || rules.some((r) => r.matchPattern !== undefined && isMatchAll(r.matchPattern))) return () => true;
  const parts = rules.map((r) => (r.matchPattern !== undefined ? patternToRegexSource(r.matchPattern) : nameToRegexSource(r.matchName!)));
  const re = new RE2(`^(?:${parts.join('|')})$`);
  return (q) => re.test(q);
}

t.test('each pattern alone, all together, and matchNames', async (t) => {
  const sets: DnsRuleText[][] = PATTERNS.map((p) => [{ matchPattern: p }]);
  sets.push(PATTERNS.map((p) => ({ matchPattern: p })));
  sets.push([{ matchName: 'cilium.io' }, { matchName: 'Sub.Cilium.IO.' }, { matchPattern: '*.api.cilium.io' }]);
  sets.push([{ matchName: 'cilium.io' }, { matchPattern: '**.ci*.io.' }, { matchPattern: '.' }]);
  let checked = 0;
  for (const rules of sets) {
    const m = compileDnsRules(rules);
    const ref = reference(rules);
    for (const n of NAMES) {
      if (m.test(n) !== ref(n)) t.fail(`${JSON.stringify(rules)} on ${JSON.stringify(n)}: trie ${m.test(n)}, regex ${ref(n)}`);
      checked++;
    }
  }
  t.ok(checked > 700, `${checked} (rules, name) pairs agree`);
});

t.test('1,000 patterns: same answers, and the cost does not grow', async (t) => {
  const rules: DnsRuleText[] = [];
  for (let i = 0; i < 999; i++) rules.push({ matchPattern: `*.zone${i}.example.org` });
  for (let i = 0; i < 40; i++) rules.push({ matchPattern: `x${i}*.shared.example` }); // 40 patterns on one node (2 chunks)
  rules.push({ matchPattern: '*.example.test' });
  const m = compileDnsRules(rules);
  t.ok(m.test('h1.example.test.'));
  t.ok(m.test('a.zone998.example.org.'));
  t.notOk(m.test('a.zone999.example.org.'));
  t.ok(m.test('x39abc.shared.example.'));
  t.notOk(m.test('y.shared.example.'));
  const small = compileDnsRules([{ matchPattern: '*.example.test' }]);
  const time = (f: (q: string) => boolean) => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 20000; i++) f(`h${i % 5000}.example.test.`);
    return Number(process.hrtime.bigint() - t0) / 20000;
  };
  time(m.test);
  time(small.test);
  const big = time(m.test);
  const one = time(small.test);
  t.ok(big < one * 4 + 2000, `1,000 patterns ${big.toFixed(0)} ns/name vs 1 pattern ${one.toFixed(0)} ns/name`);
});
