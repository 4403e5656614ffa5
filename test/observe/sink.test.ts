/**
 * The flow sink's file path on its own: batches are encoded into slabs (a line that
 * does not fit starts a new one), coalesced into writes every few milliseconds or
 * 256 KiB, and still arrive whole, in order and as valid UTF-8 — including lines with
 * multi-byte characters and lines longer than a slab. A file that cannot be opened
 * is an error before anything runs; one that fails later is reported once.
 */
import t from 'tap';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlowSink, flowLogIssue } from '../../src/observe/sink.js';

const tick = () => new Promise((r) => setImmediate(r));

t.test('every record reaches the file once, in order, across slabs and coalesced writes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'l7w-sink-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'flows.json');
  const sink = new FlowSink({ file });
  const expected: string[] = [];
  // ~6 MB over 40 turns: several 1 MiB slabs and many 256 KiB writes.
  for (let turn = 0; turn < 40; turn++) {
    for (let i = 0; i < 100; i++) {
      const n = turn * 100 + i;
      // Every 7th line carries multi-byte UTF-8 (é, €, 😀) so byte and char counts differ.
      const pad = n % 7 === 0 ? 'é€😀'.repeat(150) : 'x'.repeat(1500);
      const rec = { flow: { uuid: `u-${n}`, pad }, node_name: 'n', time: 't' };
      expected.push(JSON.stringify(rec));
      sink.emit(rec);
    }
    await tick();
  }
  // One line longer than a slab (1 MiB).
  const big = { flow: { uuid: 'big', pad: 'y'.repeat(1_200_000) }, node_name: 'n', time: 't' };
  expected.push(JSON.stringify(big));
  sink.emit(big);
  await sink.close();
  const text = await readFile(file, 'utf8');
  const lines = text.split('\n');
  t.equal(lines.pop(), '', 'the file ends with a newline');
  t.equal(lines.length, expected.length, 'as many lines as records');
  let same = 0;
  for (let i = 0; i < expected.length; i++) if (lines[i] === expected[i]) same++;
  t.equal(same, expected.length, 'every line is the record, in order');
  t.equal(sink.written, expected.length);
  t.equal(sink.dropped, 0);
});

t.test('batches of one write period leave as one chunk, not one per batch', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'l7w-sink-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'flows.json');
  const sink = new FlowSink({ file });
  // 60 turns of two records each, all inside one 20 ms write period (a DNS proxy
  // under load flushes a small batch per event-loop turn).
  const started = Date.now();
  for (let turn = 0; turn < 60; turn++) {
    sink.emit({ flow: { uuid: `a-${turn}` } });
    sink.emit({ flow: { uuid: `b-${turn}` } });
    await tick();
  }
  const within = Date.now() - started < 15;
  await sink.close();
  const lines = (await readFile(file, 'utf8')).split('\n').filter(Boolean);
  t.equal(lines.length, 120, 'every record is in the file');
  t.equal(JSON.parse(lines[119]!).flow.uuid, 'b-59', 'in order');
  // Unless the turns straddled a write period (a slow machine), one chunk; a few at most.
  t.ok(sink.writes <= (within ? 1 : 8), `chunks written: ${sink.writes} (60 batches)`);
});

t.test('a write waits at most a few milliseconds, not for the 256 KiB', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'l7w-sink-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'flows.json');
  const sink = new FlowSink({ file });
  t.teardown(() => sink.close());
  sink.emit({ flow: { uuid: 'one' } });
  let text = '';
  for (let i = 0; i < 100 && !text.includes('"one"'); i++) {
    await new Promise((r) => setTimeout(r, 10));
    text = await readFile(file, 'utf8').catch(() => '');
  }
  t.match(text, /"uuid":"one"/, 'a lone record is on disk within a second');
});

t.test('the admin ring keeps records and serialises them only when read', async (t) => {
  let calls = 0;
  class Rec {
    constructor(readonly n: number) {}
    toLine(): string {
      calls++;
      return `{"n":${this.n}}`;
    }
  }
  const sink = new FlowSink({ file: '', recent: 3 });
  t.ok(sink.active, 'a ring is a reader');
  for (let i = 0; i < 5; i++) sink.emit(new Rec(i));
  sink.emit({ plain: true });
  await tick();
  t.equal(calls, 0, 'nothing serialised per record while only the ring reads');
  t.same(sink.recent(10), ['{"n":3}', '{"n":4}', '{"plain":true}'], 'the last three, oldest first');
  t.equal(calls, 2);
  t.same(sink.recent(1), ['{"plain":true}']);
  const seen: string[] = [];
  sink.subscribe((l) => seen.push(l));
  sink.emit(new Rec(9));
  await tick();
  t.same(seen, ['{"n":9}'], 'a line reader gets lines as before');
  t.same(sink.recent(1), ['{"n":9}']);
  await sink.close();
});

t.test('a flow file that cannot be opened: opened() rejects; a later failure is reported once', async (t) => {
  const dir = t.testdir({});
  const missing = new FlowSink({ file: join(dir, 'no', 'such', 'dir', 'f.json'), onError: () => t.fail('the first open is reported by opened()') });
  await t.rejects(missing.opened(), { code: 'ENOENT' });
  const issue = await flowLogIssue(missing, { file: 'proxy.yaml', line: 4, col: 1 });
  t.match(issue, { file: 'proxy.yaml', line: 4, path: 'spec.flowLog.file', message: /cannot open the flow log: ENOENT/ });
  t.equal(await flowLogIssue(new FlowSink({ file: '' }), { file: 'p', line: 1, col: 1 }), undefined, 'no flow log: nothing to open');

  // Opened, then the directory goes away and a rotation has to open a new file there.
  const sub = join(dir, 'logs');
  await mkdir(sub);
  const errors: string[] = [];
  const sink = new FlowSink({ file: join(sub, 'f.json'), maxBytes: 2048, maxFiles: 2, onError: (e) => errors.push(e.message) });
  t.teardown(() => sink.close());
  await sink.opened();
  t.equal(await flowLogIssue(sink, { file: 'p', line: 1, col: 1 }), undefined);
  await rm(sub, { recursive: true });
  for (let i = 0; i < 40 && errors.length === 0; i++) {
    for (let k = 0; k < 20; k++) sink.emit({ n: i * 20 + k, pad: 'x'.repeat(100) });
    await new Promise((r) => setTimeout(r, 30));
  }
  t.equal(errors.length, 1, 'reported once');
  t.match(errors[0], /ENOENT/);
  t.notOk(sink.active, 'the output stopped');
});
