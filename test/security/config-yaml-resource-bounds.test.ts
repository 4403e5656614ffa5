/**
 * YAML the `yaml` library turns into far more memory, time or stack than its size
 * suggests, all within the 32 MB file limit:
 *  - nesting: a warmed-up process parsing `[[[…]]]` a few thousand deep died with
 *    "FATAL ERROR: RegExpCompiler Allocation failed" (uncatchable), and somewhat
 *    less deep threw RangeError out of parseYaml, which promises never to throw;
 *    4 MB of `[` took 3.5 GB;
 *  - aliases can stack nesting further than the text shows (RangeError again);
 *  - a 4 MB flat list took 2 GB, 2 MB of `---` lines 560 MB: a somewhat bigger file
 *    is an out-of-memory crash of a running proxy on reload.
 * Each is now one located error for the file (or document), found before the
 * library composes anything.
 */
import t from 'tap';
import { parseYaml } from '../../src/config/yaml-tree.js';

t.test('deep nesting never throws and never reaches the composer', async (t) => {
  // The same parser warmed up by shallower documents first, as in a long-running proxy.
  const results: string[] = [];
  for (let n = 100; n <= 3000; n += 50) {
    const text = 'x: ' + '['.repeat(n) + ']'.repeat(n) + '\n';
    let r;
    try {
      r = parseYaml(text);
    } catch (err) {
      t.fail(`depth ${n}: parseYaml threw ${String(err)}`);
      return;
    }
    if (n >= 300) results.push(r.errors.map((e) => `${e.line}:${e.col} ${e.message}`).join('|'));
  }
  t.ok(results.every((e) => e === '1:203 nested deeper than 200 levels; file skipped'), 'every document past the bound is one located error');
  t.same(parseYaml('x: ' + '['.repeat(150) + ']'.repeat(150)).errors, [], '150 levels are fine');
});

t.test('nesting stacked through aliases is bounded too', async (t) => {
  // 60 anchors, each 150 levels deep around the previous one: 9,000 levels once expanded.
  const lines: string[] = [];
  for (let i = 0; i < 60; i++) {
    const inner = i === 0 ? 'leaf' : `*a${i - 1}`;
    lines.push(`a${i}: &a${i} ${'['.repeat(150)}${inner}${']'.repeat(150)}`);
  }
  let r;
  try {
    r = parseYaml(lines.join('\n') + '\n');
  } catch (err) {
    t.fail(`parseYaml threw ${String(err)}`);
    return;
  }
  t.same(r.errors.map((e) => `${e.line}:${e.col} ${e.message}`), ['1:1 nested deeper than 200 levels through aliases; document skipped']);
  t.same(r.documents, []);
});

t.test('too many documents or tokens in one file: one located error, the file left out', async (t) => {
  const docs = parseYaml('---\nkind: Namespace\n'.repeat(10_001));
  t.same(docs.errors.map((e) => `${e.line}:${e.col} ${e.message}`), ['20001:1 more than 10000 documents in one file; split it; file skipped']);
  t.same(docs.documents, []);

  // 700k list items: 2.1M tokens (the unbounded parser took about 1.5 GB for this).
  const flat = parseYaml('x: [' + '1,'.repeat(700_000) + ']\n');
  t.same(flat.errors.map((e) => `${e.line}:${e.col} ${e.message}`), ['1:1333335 more than 2000000 YAML tokens in one file; split it; file skipped']);
  t.same(flat.documents, []);
});
