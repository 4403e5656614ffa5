/**
 * YAML parsing on a worker thread (src/config/yaml-thread.ts), as hot reloads use
 * it: the same located documents, errors and warnings as parsing inline, in parts;
 * a failed or stopped thread rejects what it was parsing and is replaced.
 */
import t from 'tap';
import { YamlThread } from '../../src/config/yaml-thread.js';
import { parseYaml } from '../../src/config/yaml-tree.js';
import { loadConfigDir } from '../../src/config/load.js';
import { formatIssue } from '../../src/config/issues.js';

const pod = (i: number) => `apiVersion: v1
kind: Pod
metadata: { name: p${i}, namespace: default, labels: { app: a${i} } }
status: { podIP: 10.0.${Math.floor(i / 250)}.${(i % 250) + 1} }
`;

t.test('same documents, errors and warnings as inline, across several parts', async (t) => {
  const th = new YamlThread({ inlineBelow: 0 });
  t.teardown(() => th.close());
  // 250 documents (three parts of at most 100), a duplicate key, a bad one, a YAML warning.
  const text = Array.from({ length: 250 }, (_, i) => pod(i)).join('---\n') + '---\na: 1\na: 2\n---\nc: !foo x\n---\n[unclosed\n';
  const inline = parseYaml(text);
  t.ok(inline.documents.length > 200 && inline.errors.length > 0 && inline.warnings.length > 0, 'the input has documents, errors and warnings');
  t.same(await th.parse(text), inline);
  t.equal(th.started, 1, 'parsed on a thread');
  // Concurrent files each get their own answer.
  const [a, b] = await Promise.all([th.parse(pod(1)), th.parse('x: [1, 2]\n')]);
  t.same(a, parseYaml(pod(1)));
  t.same(b, parseYaml('x: [1, 2]\n'));
  t.same(await th.parse(''), parseYaml(''));
  t.equal(th.started, 1, 'one thread serves them all');
});

t.test('a thread that fails rejects its parse; the next parse gets a new thread', async (t) => {
  const th = new YamlThread({ inlineBelow: 0 });
  t.teardown(() => th.close());
  // Not a string: parseYaml throws inside the thread, which ends it.
  await t.rejects(th.parse(42 as unknown as string));
  t.same(await th.parse('a: 1\n'), parseYaml('a: 1\n'));
  t.equal(th.started, 2);
  const pending = t.rejects(th.parse(Array.from({ length: 300 }, (_, i) => pod(i)).join('---\n')), /stopped/);
  await th.close();
  await pending;
});

t.test('loadConfigDir through the thread reports what inline loading reports', async (t) => {
  const th = new YamlThread({ inlineBelow: 0 });
  t.teardown(() => th.close());
  const dir = t.testdir({
    'pods.yaml': Array.from({ length: 120 }, (_, i) => pod(i)).join('---\n'),
    'bad.yaml': 'apiVersion: v1\nkind: Pod\nmetadata: { name: x, namespace: default }\nstatus: { podIP: 10.0.0.300 }\n',
    'syntax.yaml': 'a: [\n',
  });
  const viaThread = await loadConfigDir(dir, { parse: (text) => th.parse(text) });
  const inline = await loadConfigDir(dir);
  t.same(viaThread.errors.map(formatIssue), inline.errors.map(formatIssue));
  t.ok(viaThread.errors.some((e) => e.file.endsWith('bad.yaml') && e.line === 4), 'errors keep their lines');
  t.equal(viaThread.docs.pods.length, inline.docs.pods.length);
  t.equal(viaThread.docs.pods.length, 120);
});

t.test('small files are parsed inline, large ones on the thread', async (t) => {
  const th = new YamlThread();
  t.teardown(() => th.close());
  t.same(await th.parse(pod(1)), parseYaml(pod(1)));
  t.equal(th.started, 0, 'a small file starts no thread');
  const large = Array.from({ length: 400 }, (_, i) => pod(i)).join('---\n');
  t.ok(large.length > 32 * 1024);
  t.same(await th.parse(large), parseYaml(large));
  t.equal(th.started, 1);
});

t.test('a parser that throws becomes an error of that file', async (t) => {
  const dir = t.testdir({ 'a.yaml': pod(1) });
  const r = await loadConfigDir(dir, { parse: () => Promise.reject(new Error('thread gone')) });
  t.match(r.errors.map(formatIssue), [/a\.yaml:1:1: YAML: cannot parse: .*thread gone/]);
});
