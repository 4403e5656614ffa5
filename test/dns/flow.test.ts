/**
 * DNS flow records as text: `toLine()` builds the line from long literal runs and
 * cached fragments for speed; here it must equal, byte for byte, JSON.stringify of
 * the Hubble object written out plainly (CILIUM-SEMANTICS.md §5.1 key order), for
 * allowed, denied and answered queries, IPv4 and IPv6, UDP and TCP, and query names
 * that need escaping.
 */
import t from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigDir } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/policy/compile.js';
import { DnsFlowRecorder, type DnsPeer, type DnsResponseFlow } from '../../src/dns/flow.js';
import { FlowSink } from '../../src/observe/sink.js';
import type { PolicySnapshot, Verdict } from '../../src/policy/types.js';
import { endpointOf, policyFields } from '../../src/observe/hubble.js';
import { goQuote, summaryRcode } from '../../src/observe/hubble.js';
import { KUBE_DNS, dnsPolicy, podYaml } from '../helpers/dns-harness.js';
import type { TestT } from '../helpers/tap.js';

const APP = { name: 'app', labels: { app: 'web' }, ip: '127.0.0.21' };

interface Rec {
  toLine(): string;
}

async function snapshotFor(t: TestT): Promise<PolicySnapshot> {
  const dir = await mkdtemp(join(tmpdir(), 'l7w-dnsflow-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'pods.yaml'), [KUBE_DNS, APP].map(podYaml).join('---\n'));
  await writeFile(join(dir, 'policy.yaml'), dnsPolicy('dns-app', { app: 'web' }, ['{ matchPattern: "*.cilium.io" }']).replaceAll('PORT', '53'));
  const loaded = await loadConfigDir(dir);
  const compiled = compileSnapshot(loaded.docs);
  if (!compiled.snapshot) throw new Error(JSON.stringify(compiled.errors));
  return compiled.snapshot;
}

/** The record as a plain object, in Hubble's key order: what toLine() must serialise to. */
function reference(
  line: string,
  snap: PolicySnapshot,
  src: DnsPeer,
  dst: DnsPeer,
  transport: 'UDP' | 'TCP',
  query: string,
  qtype: string,
  v: Verdict | undefined,
  r: DnsResponseFlow | undefined,
): string {
  // time, uuid and latency are the record's own: taken from the line itself.
  const got = JSON.parse(line) as { time: string; flow: { uuid: string; l7: { latency_ns?: string } } };
  const reply = r !== undefined;
  const from = reply ? dst : src;
  const to = reply ? src : dst;
  const reason = v && !v.allowed ? (v.dropReason ?? 'POLICY_DENIED') : undefined;
  const dns: Record<string, unknown> = { query };
  if (r) {
    if (r.ips.length) dns.ips = r.ips;
    if (r.ttl) dns.ttl = r.ttl;
    if (r.cnames.length) dns.cnames = r.cnames;
  }
  dns.observation_source = 'proxy';
  if (r?.rcode) dns.rcode = r.rcode;
  dns.qtypes = [qtype];
  if (r?.rrtypes.length) dns.rrtypes = r.rrtypes;
  const flow: Record<string, unknown> = { time: got.time, uuid: got.flow.uuid, verdict: reason ? 'DROPPED' : 'FORWARDED' };
  if (reason) flow.drop_reason = reason === 'POLICY_DENY' ? 181 : 133;
  flow.IP = { source: from.ip, destination: to.ip, ipVersion: from.ip.includes(':') ? 'IPv6' : 'IPv4' };
  flow.l4 = { [transport]: { source_port: from.port, destination_port: to.port } };
  flow.source = endpointOf(from.identity, snap);
  flow.destination = endpointOf(to.identity, snap);
  flow.Type = 'L7';
  flow.node_name = 'node-1';
  flow.l7 = reply ? { type: 'RESPONSE', latency_ns: got.flow.l7.latency_ns, dns } : { type: 'REQUEST', dns };
  if (reply) flow.reply = true;
  flow.event_type = { type: 129 };
  flow.traffic_direction = 'EGRESS';
  if (reason) flow.drop_reason_desc = reason;
  flow.is_reply = reply;
  flow.Summary = r
    ? r.rcode
      ? `DNS Answer RCode: ${summaryRcode(r.rcode)} TTL: ${r.ttl} (Proxy ${query} ${qtype})`
      : `DNS Answer ${[...(r.ips.length ? [`"${r.ips.join(',')}"`] : []), ...(r.cnames.length ? [`CNAMEs: ${goQuote(r.cnames.join(','))}`] : [])].join(' ')} TTL: ${r.ttl} (Proxy ${query} ${qtype})`
    : `DNS Query ${query} ${qtype}`;
  if (v) policyFields(v, snap.version, flow);
  return JSON.stringify({ flow, node_name: 'node-1', time: got.time });
}

t.test('toLine equals JSON.stringify of the Hubble object', async (t) => {
  const snap = await snapshotFor(t);
  const app = snap.identityForIP(APP.ip);
  const kdns = snap.endpointByName('kube-system', 'kube-dns')!.identity;
  const recs: Rec[] = [];
  const sink = { active: true, emit: (r: Rec) => recs.push(r) } as unknown as FlowSink;
  const fr = new DnsFlowRecorder(sink, 'node-1');
  const cases: Array<{ name: string; src: DnsPeer; dst: DnsPeer; transport: 'UDP' | 'TCP'; query: string; qtype: string; r?: DnsResponseFlow }> = [
    { name: 'allowed, IPv4 UDP', src: { ip: APP.ip, port: 40000, identity: app }, dst: { ip: '127.0.0.53', port: 53, identity: kdns }, transport: 'UDP', query: 'api.cilium.io.', qtype: 'A' },
    { name: 'denied, TCP', src: { ip: APP.ip, port: 40001, identity: app }, dst: { ip: '127.0.0.53', port: 53, identity: kdns }, transport: 'TCP', query: 'evil.example.', qtype: 'AAAA' },
    { name: 'escaped name, IPv6', src: { ip: '::1', port: 5353, identity: app }, dst: { ip: 'fd00::53', port: 53, identity: kdns }, transport: 'UDP', query: 'we"ird\\na\u0001me.é.cilium.io.', qtype: 'TYPE65' },
  ];
  const answers: DnsResponseFlow[] = [
    { rcode: 0, ips: ['127.0.0.7', '127.0.0.8'], ttl: 300, cnames: [], rrtypes: ['A', 'A'] },
    { rcode: 3, ips: [], ttl: 0, cnames: [], rrtypes: [] },
    { rcode: 0, ips: ['fd00::7'], ttl: 60, cnames: ['al"ias.cilium.io.'], rrtypes: ['CNAME', 'AAAA'] },
  ];
  let n = 0;
  for (const c of cases) {
    const v = snap.decide({ src: c.src.identity, dst: c.dst.identity, port: 53, protocol: c.transport, dns: c.query });
    fr.request(snap, c.src, c.dst, c.transport, c.query, c.qtype, v);
    const line = recs[n++]!.toLine();
    t.equal(line, reference(line, snap, c.src, c.dst, c.transport, c.query, c.qtype, v, undefined), `${c.name}: request`);
    t.equal(recs[n - 1]!.toLine(), line, 'the same line when asked again (uuid kept)');
    for (const a of answers) {
      fr.response(snap, c.src, c.dst, c.transport, c.query, c.qtype, a, process.hrtime.bigint());
      const l = recs[n++]!.toLine();
      t.equal(l, reference(l, snap, c.src, c.dst, c.transport, c.query, c.qtype, undefined, a), `${c.name}: answer rcode ${a.rcode}`);
    }
  }
  t.match(recs[3]!.toLine(), /"verdict":"FORWARDED"/);
  t.match(recs[4]!.toLine(), /"verdict":"DROPPED","drop_reason":133,/, 'the denied query');
});

t.test('the flow file and the admin ring give the same lines, uuids included', async (t) => {
  const snap = await snapshotFor(t);
  const app = snap.identityForIP(APP.ip);
  const kdns = snap.endpointByName('kube-system', 'kube-dns')!.identity;
  const dir = await mkdtemp(join(tmpdir(), 'l7w-dnsflow-file-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'flows.json');
  // The ring keeps records and serialises them when read; the file got them earlier.
  const sink = new FlowSink({ file, recent: 1000 });
  const fr = new DnsFlowRecorder(sink, 'node-1');
  const src: DnsPeer = { ip: APP.ip, port: 40000, identity: app };
  const dst: DnsPeer = { ip: '127.0.0.53', port: 53, identity: kdns };
  for (let i = 0; i < 300; i++) {
    const q = i % 3 === 0 ? `x${i}.café.cilium.io.` : `x${i}.cilium.io.`;
    const v = snap.decide({ src: app, dst: kdns, port: 53, protocol: 'UDP', dns: q });
    fr.request(snap, src, dst, 'UDP', q, 'A', v);
    fr.response(snap, src, dst, 'UDP', q, 'A', { rcode: 0, ips: [`127.0.0.${i & 255}`], ttl: 30, cnames: [], rrtypes: ['A'] }, process.hrtime.bigint());
    if (i % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  await sink.close();
  const lines = (await readFile(file, 'utf8')).split('\n');
  t.equal(lines.pop(), '');
  t.equal(lines.length, 600);
  t.same(sink.recent(1000), lines, 'ring lines = file lines');
  const uuids = new Set(lines.map((l) => (JSON.parse(l) as { flow: { uuid: string } }).flow.uuid));
  t.equal(uuids.size, 600, 'a uuid per record');
});
