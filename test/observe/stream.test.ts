/**
 * The sink and the admin stream without a proxy: /flows?last=N from the ring, many
 * followers at once, a follower that never reads (bounded buffer: its records are
 * dropped and counted, the others and the emitter are not slowed, and it gets a
 * lost_events line once it reads again), and maxBytes/maxFiles rotation.
 */
import t from 'tap';
import * as http from 'node:http';
import * as net from 'node:net';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { FlowSink } from '../../src/observe/sink.js';
import { FlowStream } from '../../src/observe/admin-routes.js';

const rec = (i: number) => ({ flow: { uuid: `u-${i}`, verdict: 'FORWARDED', pad: 'x'.repeat(200) }, node_name: 'n', time: 't' });
const tick = () => new Promise((r) => setImmediate(r));

async function serve(stream: FlowStream): Promise<{ port: number; close: () => Promise<void> }> {
  const srv = http.createServer((req, res) => stream.route(req, res));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as AddressInfo).port,
    close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }),
  };
}

/** A follower reading everything into `lines`. */
function follow(port: number, path: string, lines: string[]): { done: Promise<void>; stop: () => void } {
  let req!: http.ClientRequest;
  const done = new Promise<void>((resolve) => {
    req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        const parts = buf.split('\n');
        buf = parts.pop()!;
        lines.push(...parts);
      });
      res.on('close', () => resolve());
      res.on('error', () => resolve());
    });
    req.on('error', () => resolve());
  });
  return { done, stop: () => req.destroy() };
}

t.test('last=N from the ring', async (t) => {
  const sink = new FlowSink({ file: '', recent: 50 });
  const stream = new FlowStream(sink);
  const s = await serve(stream);
  t.teardown(s.close);
  for (let i = 0; i < 80; i++) sink.emit(rec(i));
  await tick();
  const lines: string[] = [];
  await follow(s.port, '/flows?last=5', lines).done;
  t.same(lines.map((l) => JSON.parse(l).flow.uuid), ['u-75', 'u-76', 'u-77', 'u-78', 'u-79']);
  const all: string[] = [];
  await follow(s.port, '/flows?last=1000', all).done;
  t.equal(all.length, 50, 'at most the ring');
  const bad: string[] = [];
  await follow(s.port, '/flows?last=-1', bad).done;
  t.same(bad, ['last must be a non-negative integer']);
});

t.test('two followers get every record; a stalled one is bounded and told what it lost', async (t) => {
  const sink = new FlowSink({ file: '', recent: 10 });
  const stream = new FlowStream(sink, { readerBuffer: 16 });
  const s = await serve(stream);
  t.teardown(s.close);
  const a: string[] = [];
  const b: string[] = [];
  const fa = follow(s.port, '/flows?follow=1', a);
  const fb = follow(s.port, '/flows?follow=1', b);
  // A raw client that sends the request and then never reads.
  const stalled = net.connect({ host: '127.0.0.1', port: s.port });
  stalled.setNoDelay(true);
  await new Promise<void>((r) => stalled.once('connect', () => r()));
  stalled.pause();
  stalled.write('GET /flows?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n');
  for (let i = 0; i < 100 && stream.readers < 3; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(stream.readers, 3);

  const N = 20_000; // ~4.5 MB: far more than the stalled socket's buffers
  const started = process.hrtime.bigint();
  for (let i = 0; i < N; i += 500) {
    for (let j = i; j < i + 500; j++) sink.emit(rec(j));
    await tick();
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  for (let i = 0; i < 1500 && (a.length < N || b.length < N); i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(a.length, N, 'reader A got every record');
  t.equal(b.length, N, 'reader B got every record');
  t.equal(JSON.parse(a[N - 1]!).flow.uuid, `u-${N - 1}`);
  t.equal(sink.dropped, 0, 'the sink itself dropped nothing');
  t.ok(stream.dropped > 0, `the stalled reader lost ${stream.dropped} records`);
  t.ok(ms < 20_000, `emitting was not held up by the stalled reader (${ms.toFixed(0)} ms)`);

  // Once the stalled reader reads, it gets a lost_events line.
  let got = '';
  stalled.setEncoding('utf8');
  stalled.on('data', (d: string) => (got += d));
  stalled.resume();
  for (let i = 0; i < 1000 && !got.includes('lost_events'); i++) {
    if (i % 20 === 0) sink.emit(rec(N + i));
    await new Promise((r) => setTimeout(r, 10));
  }
  const m = /"num_events_lost":"(\d+)"/.exec(got);
  t.ok(m, 'a lost_events line');
  t.ok(Number(m?.[1]) > 0);
  stalled.destroy();
  fa.stop();
  fb.stop();
  await Promise.all([fa.done, fb.done]);
  for (let i = 0; i < 100 && stream.readers > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(stream.readers, 0, 'readers are forgotten when they go');
});

t.test('maxBytes/maxFiles rotation keeps the files bounded', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'l7w-rot-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'flows.json');
  const sink = new FlowSink({ file, maxBytes: 4096, maxFiles: 3 });
  const N = 200;
  for (let i = 0; i < N; i++) {
    sink.emit(rec(i));
    await tick();
    await new Promise((r) => setTimeout(r, 1));
  }
  await sink.close();
  const names = (await readdir(dir)).sort();
  t.same(names, ['flows.json', 'flows.json.1', 'flows.json.2'], 'live file + 2 rotated, the oldest removed');
  t.ok(sink.rotations >= 3, `rotated ${sink.rotations} times`);
  for (const n of names) t.ok((await stat(join(dir, n))).size <= 4096, `${n} within maxBytes`);
  // The newest records are in the live file, in order, none cut.
  const live = (await readFile(file, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l).flow.uuid);
  t.equal(live[live.length - 1], `u-${N - 1}`);
  const older = (await readFile(`${file}.1`, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l).flow.uuid);
  t.equal(Number(older[older.length - 1]!.slice(2)) + 1, Number(live[0]!.slice(2)), 'no record lost between files');
});

t.test('batches that arrive while a file rotates are each checked against maxBytes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'l7w-rot2-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'flows.json');
  const sink = new FlowSink({ file, maxBytes: 1000, maxFiles: 50 });
  // ~150-byte records, one small batch per tick: several batches are held back while
  // each rotation's renames are in flight, and must not be written as one lump.
  let n = 0;
  for (let tick = 0; tick < 60; tick++) {
    for (let i = 0; i < 2; i++) sink.emit({ flow: { uuid: `r${n++}`, pad: 'x'.repeat(120) } });
    await new Promise((r) => setImmediate(r));
  }
  await sink.close();
  t.ok(sink.rotations >= 5, `rotated ${sink.rotations} times`);
  const names = (await readdir(dir)).filter((x) => x.startsWith('flows.json'));
  let total = 0;
  for (const name of names) {
    const text = await readFile(join(dir, name), 'utf8');
    t.ok(Buffer.byteLength(text) <= 1000, `${name}: ${Buffer.byteLength(text)} bytes ≤ maxBytes`);
    total += text.split('\n').filter(Boolean).length;
  }
  t.equal(total, n, 'every record is in some file');
});
