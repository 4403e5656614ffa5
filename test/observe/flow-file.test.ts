/**
 * What lands in the flow file is, byte for byte, each record's `toLine()` as UTF-8
 * (the sink encodes batches into 1 MiB slabs it continues from batch to batch),
 * whatever the record holds: non-ASCII query names, node names, header values,
 * URLs, policy_log values, an IPv6 zone; lines stay whole across slabs; and a record
 * that cannot be serialised is dropped and counted without taking its batch along.
 */
import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigDir } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/policy/compile.js';
import { HttpFlowRecorder, type FlowPeer, type HttpFlowInfo } from '../../src/observe/flow.js';
import { DnsFlowRecorder, type DnsPeer } from '../../src/dns/flow.js';
import { FlowSink, type FlowLine } from '../../src/observe/sink.js';
import type { Verdict } from '../../src/policy/types.js';
import { starWarsDir } from '../helpers/config-dir.js';
import type { TestT } from '../helpers/tap.js';

const cfg = await starWarsDir({ upstream: 'http://127.0.0.1:9' });
t.teardown(cfg.cleanup);
const snap = compileSnapshot((await loadConfigDir(cfg.dir)).docs).snapshot!;
const tie = snap.identityForIP('127.0.0.10');
const ds = snap.endpointByName('default', 'deathstar')!.identity;

/** A sink writing to a fresh file, keeping every record it is given. */
async function fileSink(t: TestT) {
  const dir = await mkdtemp(join(tmpdir(), 'l7w-line-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'flows.json');
  const sink = new FlowSink({ file });
  await sink.opened();
  const recs: FlowLine[] = [];
  const emit = sink.emit.bind(sink);
  sink.emit = (r: object) => {
    recs.push(r as FlowLine);
    emit(r);
  };
  return { sink, recs, read: async () => (await readFile(file)).toString('utf8') };
}

/** Every record's toLine(), one per line, is what the file holds. */
async function sameAsToLine(t: TestT, f: Awaited<ReturnType<typeof fileSink>>) {
  await f.sink.close();
  const text = await f.read();
  const want = f.recs.map((r) => r.toLine() + '\n').join('');
  t.equal(text.length, want.length, 'as many characters');
  t.ok(text === want, 'the file is the records\' toLine(), byte for byte');
  return text;
}

t.test('HTTP records: non-ASCII node, URL, headers, zone and policy_log', async (t) => {
  const f = await fileSink(t);
  for (const node of ['node-1', 'nöde "1"']) {
    const fr = new HttpFlowRecorder(f.sink, node, { redactHeaders: ['x-api-key'] });
    const headers = ['Host', 'deathstar', 'x-request-id', 'a"b\\c', 'Authorization', 'Bearer x', 'accept', 'text/é', 'X-Api-Key', 'k', 'x-emoji', '\u{1F680}'];
    const peers: Array<[FlowPeer, FlowPeer]> = [
      [{ ip: '127.0.0.10', port: 40000, identity: tie }, { ip: '10.0.0.20', port: 80, identity: ds }],
      [{ ip: 'fe80::1%eth0', port: 40001, identity: tie }, { ip: 'fe80::2%é', port: 80, identity: ds }],
    ];
    const infos: HttpFlowInfo[] = [
      { method: 'POST', url: 'http://deathstar/v1/request-landing', protocol: 'HTTP/1.1', headers },
      { method: 'GET', url: 'http://deathstar/ünï/"q"?x=\u{1F680}', protocol: 'HTTP/2', headers: [] },
      { method: 'POST', url: 'http://deathstar/starwars.Deathstar/Land', protocol: 'HTTP/2', grpc: true, direction: 'EGRESS', names: ['déathstar.example'] },
    ];
    for (const [src, dst] of peers) {
      for (const info of infos) {
        const v = snap.decide({ src: tie, dst: ds, port: 80, protocol: 'TCP', http: { method: info.method, path: '/v1/request-landing', host: 'deathstar', header: () => undefined } });
        fr.request(snap, src, dst, info, v);
        fr.response(snap, src, dst, info, v.type, 200, process.hrtime.bigint());
        fr.connection(snap, src, dst, v, 'INGRESS');
        // A verdict whose matched entry has log values, some not ASCII.
        const logged: Verdict = { ...v, allowed: true, ingress: { ...v.ingress!, enforced: true, allowed: true }, ingressLog: ['plain', 'ünïcode', '\u{1F680}'] };
        fr.connection(snap, src, dst, logged, 'INGRESS');
      }
    }
  }
  const text = await sameAsToLine(t, f);
  t.match(text, /"policy_log":\["plain","ünïcode","\u{1F680}"\]/u, 'a non-ASCII policy_log reached the file intact');
  t.match(text, /"node_name":"nöde \\"1\\""/, 'a non-ASCII node name reached the file intact');
  t.match(text, /"source":"fe80::2%é"/, 'an IPv6 zone reached the file intact');
});

t.test('DNS records: escaped and non-ASCII names, CNAMEs, node', async (t) => {
  const f = await fileSink(t);
  for (const node of ['vm', 'ñode']) {
    const fr = new DnsFlowRecorder(f.sink, node);
    const src: DnsPeer = { ip: '127.0.0.10', port: 40000, identity: tie };
    const dst: DnsPeer = { ip: '127.0.0.53', port: 53, identity: ds };
    for (const q of ['h1.example.test.', 'we"ird\\name.', 'é.example.', 'a\u0001b.', '\u{1F680}.example.']) {
      const v = snap.decide({ src: tie, dst: ds, port: 53, protocol: 'UDP', dns: q });
      fr.request(snap, src, dst, 'UDP', q, 'A', v);
      fr.response(snap, src, dst, 'UDP', q, 'A', { rcode: 0, ips: ['127.0.0.7'], ttl: 30, cnames: ['alïas.example.', 'b"c.'], rrtypes: ['CNAME', 'A'] }, process.hrtime.bigint());
      fr.response(snap, src, dst, 'TCP', q, 'AAAA', { rcode: 3, ips: [], ttl: 0, cnames: [], rrtypes: [] }, process.hrtime.bigint());
    }
  }
  const text = await sameAsToLine(t, f);
  t.match(text, /"query":"é\.example\."/, 'a non-ASCII query name reached the file intact');
  for (const line of text.trimEnd().split('\n')) JSON.parse(line);
  t.pass('every line parses');
});

t.test('lines stay whole across slabs: 3 MiB of records in one batch', async (t) => {
  const f = await fileSink(t);
  const fr = new DnsFlowRecorder(f.sink, 'vm');
  const src: DnsPeer = { ip: '127.0.0.10', port: 40000, identity: tie };
  const dst: DnsPeer = { ip: '127.0.0.53', port: 53, identity: ds };
  // Long, varied names so line lengths do not divide the slab size evenly.
  for (let i = 0; i < 2500; i++) {
    const q = `${'x'.repeat(i % 61)}.${i}.é`.repeat(1 + (i % 3)) + '.';
    fr.request(snap, src, dst, 'UDP', q, 'A', snap.decide({ src: tie, dst: ds, port: 53, protocol: 'UDP', dns: q }));
  }
  const text = await sameAsToLine(t, f);
  t.ok(Buffer.byteLength(text) > 3 * 1024 * 1024, 'more than three slabs written');
});

t.test('a record that cannot be serialised is dropped and counted; its neighbours are intact', async (t) => {
  const f = await fileSink(t);
  const good = (n: number): FlowLine => ({ toLine: () => `{"n":${n}}` });
  const bad: FlowLine = {
    toLine: () => {
      throw new Error('a bug in a record');
    },
  };
  f.sink.emit(good(1));
  f.sink.emit(bad);
  f.sink.emit(good(2));
  await f.sink.close();
  t.equal(await f.read(), '{"n":1}\n{"n":2}\n', 'nothing of the failed record');
  t.equal(f.sink.dropped, 1, 'counted as dropped');
});
