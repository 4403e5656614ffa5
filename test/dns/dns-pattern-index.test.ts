/**
 * compileDnsRules splits Cilium's single joined regex into a label-suffix trie so it
 * scales (see dns-pattern.ts). Differential check: for every subset below, the trie
 * matcher accepts exactly what the single `^(?:r1|r2|…)$` regex accepts, on every
 * name of CILIUM-SEMANTICS §3.2 (including the empty, dot-less and empty-label ones)
 * plus extra edge names.
 */
import t from 'tap';
import RE2 from 're2';
import { compileDnsRules, dnsMatchCounters, isMatchAll, nameToRegexSource, patternToRegexSource, type DnsRuleText } from '../../src/policy/dns-pattern.js';

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

t.test('1,000 patterns: same answers, and the work does not grow', async (t) => {
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
  // Work per name, counted rather than timed: the common shapes (`*.zone.`, `**.zone.`,
  // names) run no regex at all; the others only the chunks on the name's own path.
  const before = dnsMatchCounters.regexTests;
  for (let i = 0; i < 5000; i++) m.test(`h${i}.example.test.`);
  t.equal(dnsMatchCounters.regexTests - before, 0, '*.example.test among 1,000 patterns: no regex');
  const before2 = dnsMatchCounters.regexTests;
  m.test('y.shared.example.');
  t.ok(dnsMatchCounters.regexTests - before2 <= 2, 'a name under the 40 x*.shared.example patterns: their 2 chunks at most');
});

t.test('random patterns and names: the trie (with its regex-free shapes) agrees with the single regex', async (t) => {
  let seed = 11;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
  const LABELS = ['a', 'b', 'ab', 'x-1', '_t', 'io', 'cilium', '', 'A'];
  const PLABELS = [...LABELS, '*', '**', 'a*', '*b', 'a*b', '*-*'];
  const name = (parts: string[]) => parts.join('.');
  let checked = 0;
  let matched = 0;
  for (let trial = 0; trial < 400; trial++) {
    const rules: DnsRuleText[] = [];
    for (let k = 0, n = 1 + rnd(4); k < n; k++) {
      const labels = Array.from({ length: 1 + rnd(4) }, () => PLABELS[rnd(PLABELS.length)]!).filter((l, i) => l !== '' || i > 0);
      const text = name(labels) + (rnd(2) ? '.' : '');
      if (!/^[-a-zA-Z0-9_.*]+$/.test(text)) continue;
      rules.push(rnd(5) === 0 ? { matchName: text.replace(/\*/g, 'z') } : { matchPattern: text });
    }
    if (rules.length === 0) continue;
    const m = compileDnsRules(rules);
    const ref = reference(rules);
    for (let j = 0; j < 40; j++) {
      const q = name(Array.from({ length: 1 + rnd(5) }, () => LABELS[rnd(LABELS.length)]!)) + (rnd(6) ? '.' : '');
      if (m.test(q) !== ref(q)) {
        t.fail(`${JSON.stringify(rules)} on ${JSON.stringify(q)}: trie ${m.test(q)}, regex ${ref(q)}`);
        return;
      }
      checked++;
      if (ref(q)) matched++;
    }
  }
  t.ok(checked > 10_000, `${checked} random (rules, name) pairs agree`);
  t.ok(matched > 500, `${matched} of them are matches`);
});
