/**
 * The flow file gets records' lines in pieces (observe/line.ts): cached fragments
 * copied as bytes, ASCII pieces a byte per character, the rest UTF-8 encoded, never
 * joined into one string first. What lands in the file must be, byte for byte, the
 * record's `toLine()` as UTF-8, whatever the record holds: non-ASCII query names,
 * node names, header values, URLs, policy_log values, an IPv6 zone; and a line must
 * stay whole across the encoder's 1 MiB slabs.
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
import { Fragment, LineJoiner, isAscii, jsonInner, jsonString } from '../../src/observe/line.js';
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

t.test('a record that fails half-way is dropped and counted; its neighbours are intact', async (t) => {
  const f = await fileSink(t);
  const good = (n: number): FlowLine => ({ toLine: () => `{"n":${n}}`, writeLine: (out) => out.put(`{"n":${n}}`) });
  const bad: FlowLine = {
    toLine: () => '',
    writeLine: (out) => {
      out.ascii('{"half":');
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

t.test('LineJoiner, Fragment and isAscii', async (t) => {
  const j = new LineJoiner();
  j.put('é');
  j.ascii('a');
  j.fragment(new Fragment('"ü"'));
  t.equal(j.text, 'éa"ü"');
  t.same([...new Fragment('ü').bytes], [0xc3, 0xbc], 'a fragment holds UTF-8');
  t.equal(isAscii('abc\u007f'), true);
  t.equal(isAscii('ab\u0080'), false);
  t.equal(isAscii('\u{1F680}'), false);
});

t.test('jsonString is JSON.stringify for every kind of string', async (t) => {
  const samples = ['', 'plain', 'http://deathstar/v1/x?y=1', 'a"b', 'a\\b', 'tab\there', '\u0000', '\u001f', '\u007f', 'é', '\u2028', '\u{1F680}', '\ud800', 'x\udfff', '\udfff\ud800'];
  // (labels as code points: a raw U+2028 in a test name would break the TAP stream)
  for (const s of samples) t.equal('"' + jsonInner(s) + '"', JSON.stringify(s), 'inner: ' + [...s].map((c) => 'U+' + c.codePointAt(0)!.toString(16)).join(' '));
  for (const s of samples) t.equal(jsonString(s), JSON.stringify(s), [...s].map((c) => 'U+' + c.codePointAt(0)!.toString(16)).join(' ') || 'empty');
  // Every code unit below 0x800 and the surrogate range, one at a time.
  let bad = 0;
  for (let c = 0; c < 0x800; c++) if (jsonString(String.fromCharCode(c)) !== JSON.stringify(String.fromCharCode(c))) bad++;
  for (let c = 0xd700; c < 0xe100; c++) if (jsonString(String.fromCharCode(c)) !== JSON.stringify(String.fromCharCode(c))) bad++;
  t.equal(bad, 0, 'no single code unit differs');
});
