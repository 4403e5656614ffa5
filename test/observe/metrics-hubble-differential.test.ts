/**
 * Differential check of the hubble_* metrics against Hubble's own handlers
 * (cilium/cilium pkg/hubble/metrics/{flow,drop,http,dns}/handler.go, ported below as
 * `hubbleSeries`): a running proxy's flow records are fed to the port, and what
 * /metrics exposes must be exactly what Hubble would count from those records,
 * after l7warden's documented bounding folds (methods and qtypes outside a fixed
 * set → OTHER, ips_returned ≥ 10 → "10+"). Then Hubble's handler tests
 * (flow/drop/http handler_test.go) ported through the Metrics class, with the
 * exposition text they expect.
 */
import t from 'tap';
import * as http from 'node:http';
import type { TestT } from '../helpers/tap.js';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { Metrics } from '../../src/observe/metrics.js';
import { makeConfigDir, starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request, h2Connect, h2Request } from '../helpers/clients.js';
import { TestDnsUpstream } from '../helpers/dns-upstream.js';
import { KUBE_DNS, dig, dnsPolicy, podYaml } from '../helpers/dns-harness.js';

type Rec = Record<string, any>;

const TIE = '127.0.0.10';
const XWING = '127.0.0.11';

// ---- Hubble's handlers, ported (no context options: the default configuration) ----

const EVENT_TYPE_NAMES: Record<number, string> = { 129: 'L7', 1: 'Drop', 9: 'Capture', 4: 'Trace', 5: 'PolicyVerdict' };

/** pkg/hubble/api/v1 FlowProtocol. */
function flowProtocol(f: Rec): string {
  const et = f.event_type?.type ?? 0;
  if (et === 129) {
    if (f.l7?.dns) return 'DNS';
    if (f.l7?.http) return 'HTTP';
    if (f.l7?.kafka) return 'Kafka';
    return 'Unknown L7';
  }
  if (et === 1 || et === 4 || et === 5 || et === 9) {
    for (const p of ['TCP', 'UDP', 'ICMPv4', 'ICMPv6', 'SCTP']) if (f.l4?.[p]) return p;
    return 'Unknown L4';
  }
  return 'Unknown flow';
}

/** pkg/hubble/metrics/dns/rcode.go */
const HUBBLE_RCODES: Record<number, string> = {
  0: 'No Error', 1: 'Format Error', 2: 'Server Failure', 3: 'Non-Existent Domain', 4: 'Not Implemented', 5: 'Query Refused',
  6: 'Name Exists when it should not', 7: 'RR Set Exists when it should not', 8: 'RR Set that should exist does not', 9: 'Not Authorized',
  10: 'Name not contained in zone', 11: 'DSO-TYPE Not Implemented', 16: 'Bad OPT Version', 17: 'Key not recognized',
  18: 'Signature out of time window', 19: 'Bad TKEY Mode', 20: 'Duplicate key name', 21: 'Algorithm not supported', 22: 'Bad Truncation',
  23: 'Bad/missing Server Cookie',
};

const DEF_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Canonical series key: name{labels sorted by name}, as client_golang prints them. */
function key(name: string, labels: Record<string, string>): string {
  const names = Object.keys(labels).sort();
  return `${name}{${names.map((n) => `${n}=${JSON.stringify(labels[n])}`).join(',')}}`;
}

/** Every (series, increment) Hubble's flow, drop, http (v1) and dns handlers make for one record. */
function hubbleSeries(f: Rec): Array<[string, Record<string, string>, number]> {
  const out: Array<[string, Record<string, string>, number]> = [];
  const et: number = f.event_type?.type ?? 0;
  // flow/handler.go
  let type = EVENT_TYPE_NAMES[et] ?? 'Unknown';
  let subtype = '';
  if (et === 129) subtype = f.l7?.dns ? 'DNS' : f.l7?.http ? 'HTTP' : f.l7?.kafka ? 'Kafka' : '';
  else if (!(et in EVENT_TYPE_NAMES)) subtype = String(et);
  if (et === 4) type = 'Trace'; // observation point subtypes: the proxy emits no trace events
  out.push(['hubble_flows_processed_total', { protocol: flowProtocol(f), type, subtype, verdict: f.verdict ?? 'VERDICT_UNKNOWN' }, 1]);
  // drop/handler.go
  if (f.verdict === 'DROPPED') out.push(['hubble_drop_total', { reason: f.drop_reason_desc ?? 'DROP_REASON_UNKNOWN', protocol: flowProtocol(f) }, 1]);
  // http/handler.go processMetricsV1
  const h = f.l7?.http;
  if (h) {
    const reporter = f.traffic_direction === 'EGRESS' ? 'client' : f.traffic_direction === 'INGRESS' ? 'server' : 'unknown';
    if (f.l7.type === 'REQUEST') out.push(['hubble_http_requests_total', { method: h.method ?? '', protocol: h.protocol ?? '', reporter }, 1]);
    else if (f.l7.type === 'RESPONSE') {
      out.push(['hubble_http_responses_total', { method: h.method ?? '', protocol: h.protocol ?? '', status: String(h.code ?? 0), reporter }, 1]);
      const secs = Number(f.l7.latency_ns ?? 0) / 1e9;
      for (const b of DEF_BUCKETS) if (secs <= b) out.push(['hubble_http_request_duration_seconds_bucket', { method: h.method ?? '', reporter, le: String(b) }, 1]);
      out.push(['hubble_http_request_duration_seconds_bucket', { method: h.method ?? '', reporter, le: '+Inf' }, 1]);
      out.push(['hubble_http_request_duration_seconds_count', { method: h.method ?? '', reporter }, 1]);
      out.push(['hubble_http_request_duration_seconds_sum', { method: h.method ?? '', reporter }, secs]);
    }
  }
  // dns/handler.go
  const d = f.l7?.dns;
  if (d) {
    const qtypes = (d.qtypes ?? []).join(',');
    const ips = String((d.ips ?? []).length);
    if (f.verdict === 'DROPPED') out.push(['hubble_dns_queries_total', { rcode: 'Policy denied', qtypes, ips_returned: ips }, 1]);
    else if (!f.is_reply) out.push(['hubble_dns_queries_total', { rcode: '', qtypes, ips_returned: ips }, 1]);
    else out.push(['hubble_dns_responses_total', { rcode: HUBBLE_RCODES[d.rcode ?? 0] ?? '', qtypes, ips_returned: ips }, 1]);
  }
  return out;
}

// l7warden's deliberate folds (docs/observability.md): bounded label values.
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);
const QTYPES = new Set(['A', 'AAAA', 'CNAME', 'MX', 'TXT', 'SRV', 'PTR', 'NS', 'SOA', 'CAA', 'HTTPS', 'SVCB', 'ANY']);
function fold(labels: Record<string, string>): Record<string, string> {
  const l = { ...labels };
  if (l.method !== undefined && !METHODS.has(l.method)) l.method = 'OTHER';
  if (l.qtypes !== undefined && !QTYPES.has(l.qtypes)) l.qtypes = 'OTHER';
  if (l.ips_returned !== undefined && Number(l.ips_returned) >= 10) l.ips_returned = '10+';
  return l;
}

const COMPARED = /^hubble_(flows_processed_total|drop_total|http_requests_total|http_responses_total|http_request_duration_seconds_(bucket|count|sum)|dns_queries_total|dns_responses_total)\{/;

function expected(records: Rec[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of records) {
    for (const [name, labels, v] of hubbleSeries(r.flow)) {
      const k = key(name, fold(labels));
      m.set(k, (m.get(k) ?? 0) + v);
    }
  }
  return m;
}

/** Exposition text → canonical key → value (hubble_* series compared here only, zero buckets kept). */
function parseExposition(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const brace = line.indexOf('{');
    const sp = line.lastIndexOf(' ');
    if (brace < 0) continue;
    const labels: Record<string, string> = {};
    for (const x of line.slice(brace + 1, line.lastIndexOf('}')).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[x[1]!] = JSON.parse(`"${x[2]!}"`) as string;
    const k = key(line.slice(0, brace), labels);
    if (COMPARED.test(k)) m.set(k, Number(line.slice(sp + 1)));
  }
  return m;
}

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics', agent: false, timeout: 5000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** Wait (≤ 3 s) for `n` records. */
async function waitRecords(records: Rec[], n: number): Promise<void> {
  for (let i = 0; i < 300 && records.length < n; i++) await new Promise((r) => setTimeout(r, 10));
}

/** Scraped hubble_* series = Hubble's handlers over the records (histogram buckets with zero counts are compared as absent). */
function compare(t: TestT, scraped: Map<string, number>, records: Rec[]): void {
  const want = expected(records);
  const got = new Map([...scraped].filter(([, v]) => v !== 0));
  for (const [k, v] of want) {
    if (k.startsWith('hubble_http_request_duration_seconds_sum')) {
      t.ok(Math.abs((got.get(k) ?? NaN) - v) < 1e-6, `${k} ≈ ${v} (got ${got.get(k)})`);
    } else t.equal(got.get(k), v, k);
  }
  for (const k of got.keys()) if (!want.has(k)) t.fail(`series Hubble would not count: ${k} ${got.get(k)}`);
}

async function httpProxy(t: TestT, l3DenyAction: 'forbidden' | 'reset'): Promise<{ proxy: RunningProxy; records: Rec[]; port: number }> {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url, l3DenyAction });
  t.teardown(cfg.cleanup);
  const records: Rec[] = [];
  const proxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true, onFlow: (l) => records.push(JSON.parse(l) as Rec) });
  t.teardown(() => proxy.close(0));
  return { proxy, records, port: proxy.listeners[0]!.address.port };
}

t.test('HTTP/1.0, HTTP/1.1 and HTTP/2 through the ingress listener: metrics = Hubble over the records', async (t) => {
  const { proxy, records, port } = await httpProxy(t, 'forbidden');
  let sent = 0;
  for (let i = 0; i < 3; i++, sent++) t.equal((await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body: 'x' })).status, 200);
  for (let i = 0; i < 2; i++, sent++) t.equal((await h1Request(port, { method: 'PUT', path: `/v1/exhaust-port/${i}`, from: TIE })).status, 403);
  for (let i = 0; i < 2; i++, sent++) t.equal((await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: XWING })).status, 403, 'L3 denial answered');
  const s = await h2Connect(port, TIE);
  t.teardown(() => s.close());
  for (let i = 0; i < 2; i++, sent++) t.equal((await h2Request(s, { method: 'POST', path: '/v1/request-landing', body: 'x' })).status, 200);
  t.equal((await h2Request(s, { method: 'FOOBAR', path: '/v1/request-landing' })).status, 403, 'an unknown method (HTTP/2) is denied');
  sent++;
  await waitRecords(records, sent * 2);
  t.equal(records.length, sent * 2, 'a REQUEST and a RESPONSE record per request');
  compare(t, parseExposition(await scrape(proxy.admin!.port)), records);
});

t.test('L3/L4 denial answered with a reset: a Drop event, counted as Hubble counts it', async (t) => {
  const { proxy, records, port } = await httpProxy(t, 'reset');
  for (let i = 0; i < 2; i++) await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: XWING }).then(() => t.fail('answered'), () => t.pass('reset'));
  t.equal((await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body: 'x' })).status, 200);
  await waitRecords(records, 4);
  t.equal(records.length, 4);
  t.equal(records.filter((r) => r.flow.event_type.type === 1).length, 2, 'two drop events');
  const got = parseExposition(await scrape(proxy.admin!.port));
  compare(t, got, records);
  t.equal(got.get(key('hubble_flows_processed_total', { protocol: 'TCP', subtype: '', type: 'Drop', verdict: 'DROPPED' })), 2);
  t.equal(got.get(key('hubble_drop_total', { protocol: 'TCP', reason: 'POLICY_DENIED' })), 2);
});

t.test('DNS: allowed, denied, NXDOMAIN and SERVFAIL answers, odd qtypes: metrics = Hubble over the records', async (t) => {
  const upstream = await TestDnsUpstream.start();
  t.teardown(() => upstream.close());
  upstream.misbehave('gone.cilium.io', 'nxdomain');
  upstream.misbehave('broken.cilium.io', 'servfail');
  upstream.misbehave('many.cilium.io', 'large');
  const APP = { name: 'app', labels: { app: 'web' }, ip: '127.0.0.40' };
  const cfg = await makeConfigDir({
    'pods.yaml': [KUBE_DNS, APP].map(podYaml).join('---\n'),
    'policy.yaml': dnsPolicy('dns-app', { app: 'web' }, ['{ matchPattern: "*.cilium.io" }']).replaceAll('PORT', String(upstream.port)),
    'proxy.yaml': `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: dns }
spec:
  admin: { address: "127.0.0.1:0" }
  flowLog: { file: "" }
  listeners:
    - name: dns
      mode: dns
      address: 127.0.0.1:0
      upstream: ${upstream.address}
      serverEndpoint: { namespace: kube-system, pod: kube-dns }
`,
  });
  t.teardown(cfg.cleanup);
  const records: Rec[] = [];
  const proxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true, onFlow: (l) => records.push(JSON.parse(l) as Rec) });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners[0]!.address.port;
  let n = 0;
  for (let i = 0; i < 2; i++, n += 2) t.equal((await dig(port, `n${i}.cilium.io`, { from: APP.ip })).status, 'NOERROR');
  for (let i = 0; i < 2; i++, n += 1) t.equal((await dig(port, `n${i}.evil.test`, { from: APP.ip, type: 'AAAA' })).status, 'REFUSED');
  t.equal((await dig(port, 'gone.cilium.io', { from: APP.ip })).status, 'NXDOMAIN');
  t.equal((await dig(port, 'broken.cilium.io', { from: APP.ip })).status, 'SERVFAIL');
  t.equal((await dig(port, 'n0.cilium.io', { from: APP.ip, type: 'TYPE65000' })).status, 'NOERROR', 'a qtype outside the fixed set');
  await dig(port, 'many.cilium.io', { from: APP.ip, args: ['+tcp'] });
  n += 8;
  await waitRecords(records, n);
  t.equal(records.length, n, 'a record per query and per answer');
  compare(t, parseExposition(await scrape(proxy.admin!.port)), records);
});

// ---- Hubble's handler tests, through the Metrics class ----

/** The exposition of one family, canonical keys, as `key value` lines. */
async function family(m: Metrics, name: string): Promise<string[]> {
  const text = await m.text();
  const out: string[] = [];
  for (const [k, v] of parseExposition(text)) if (k.startsWith(name + '{') || k.startsWith(name + '_')) out.push(`${k} ${v}`);
  return out.sort();
}

/** client_golang's expected text → the same canonical lines. */
function goText(s: string): string[] {
  return [...parseExposition(s.split('\n').map((l) => l.trim()).join('\n'))].map(([k, v]) => `${k} ${v}`).sort();
}

t.test('http/handler_test.go Test_httpHandler_ProcessFlow (v1)', async (t) => {
  const m = new Metrics();
  // a flow without L7, and a DNS response: not HTTP, nothing counted (the recorders never call the HTTP methods for them)
  m.httpRequest('GET', '', 'INGRESS');
  m.httpResponse('GET', '', 200, 12345678 / 1e9, 'INGRESS');
  t.same(await family(m, 'hubble_http_requests_total'), goText(`
    hubble_http_requests_total{method="GET",protocol="",reporter="server"} 1`));
  t.same(await family(m, 'hubble_http_responses_total'), goText(`
    hubble_http_responses_total{method="GET",protocol="",reporter="server",status="200"} 1`));
  const text = await m.text();
  t.match(text, '# HELP hubble_http_requests_total Count of HTTP requests\n# TYPE hubble_http_requests_total counter');
  t.match(text, '# HELP hubble_http_responses_total Count of HTTP responses\n# TYPE hubble_http_responses_total counter');
  t.match(text, '# HELP hubble_http_request_duration_seconds Quantiles of HTTP request duration in seconds\n# TYPE hubble_http_request_duration_seconds histogram');
  const dur = await family(m, 'hubble_http_request_duration_seconds');
  const want = goText(`
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="0.005"} 0
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="0.01"} 0
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="0.025"} 1
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="0.05"} 1
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="0.1"} 1
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="0.25"} 1
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="0.5"} 1
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="1"} 1
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="2.5"} 1
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="5"} 1
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="10"} 1
        hubble_http_request_duration_seconds_bucket{method="GET",reporter="server",le="+Inf"} 1
        hubble_http_request_duration_seconds_sum{method="GET",reporter="server"} 0.012345678
        hubble_http_request_duration_seconds_count{method="GET",reporter="server"} 1`);
  t.same(dur, want, 'buckets (prometheus.DefBuckets), sum and count');
});

t.test('http/handler.go reporter(): EGRESS records are reported by the client', async (t) => {
  const m = new Metrics();
  m.httpRequest('CONNECT', 'HTTP/1.1', 'EGRESS');
  m.httpResponse('CONNECT', 'HTTP/1.1', 200, 0.001, 'EGRESS');
  t.same(await family(m, 'hubble_http_requests_total'), [`${key('hubble_http_requests_total', { method: 'CONNECT', protocol: 'HTTP/1.1', reporter: 'client' })} 1`]);
  t.same(await family(m, 'hubble_http_responses_total'), [`${key('hubble_http_responses_total', { method: 'CONNECT', protocol: 'HTTP/1.1', status: '200', reporter: 'client' })} 1`]);
});

t.test('drop/handler_test.go TestDropHandler', async (t) => {
  const m = new Metrics();
  // ShouldReportNothingForForwardedFlow: a FORWARDED policy verdict counts no drop and makes no series
  m.flow('PolicyVerdict', '', 'FORWARDED', 'TCP');
  t.same(await family(m, 'hubble_drop_total'), []);
  // ShouldReportDroppedFlow
  m.drop('POLICY_DENIED', 'TCP');
  t.same(await family(m, 'hubble_drop_total'), [`${key('hubble_drop_total', { protocol: 'TCP', reason: 'POLICY_DENIED' })} 1`]);
  m.drop('POLICY_DENIED', 'TCP');
  t.same(await family(m, 'hubble_drop_total'), [`${key('hubble_drop_total', { protocol: 'TCP', reason: 'POLICY_DENIED' })} 2`]);
  t.match(await m.text(), '# HELP hubble_drop_total Number of drops\n# TYPE hubble_drop_total counter');
});

t.test('flow/handler_test.go TestFlowHandler', async (t) => {
  const m = new Metrics();
  m.flow('L7', 'HTTP', 'FORWARDED', 'HTTP'); // flow1: access log, HTTP
  t.same(await family(m, 'hubble_flows_processed_total'), [`${key('hubble_flows_processed_total', { protocol: 'HTTP', subtype: 'HTTP', type: 'L7', verdict: 'FORWARDED' })} 1`]);
  // flow2 (an agent event, type Unknown): the proxy emits none
  m.flow('PolicyVerdict', '', 'DROPPED', 'UDP'); // flow3: policy verdict, UDP, dropped
  t.same(await family(m, 'hubble_flows_processed_total'), [
    `${key('hubble_flows_processed_total', { protocol: 'HTTP', subtype: 'HTTP', type: 'L7', verdict: 'FORWARDED' })} 1`,
    `${key('hubble_flows_processed_total', { protocol: 'UDP', subtype: '', type: 'PolicyVerdict', verdict: 'DROPPED' })} 1`,
  ].sort());
  t.match(await m.text(), '# HELP hubble_flows_processed_total Total number of flows processed\n# TYPE hubble_flows_processed_total counter');
});

t.test('dns/handler.go: denied queries, Hubble\'s rcode table', async (t) => {
  const m = new Metrics();
  m.dnsQuery('A');
  m.dnsQuery('A', true);
  m.dnsResponse(9, 'A', 0);
  m.dnsResponse(23, 'A', 0);
  m.dnsResponse(12, 'A', 0); // not in Hubble's table: ""
  m.dnsResponse(0, 'AAAA', 3);
  t.same(await family(m, 'hubble_dns_queries_total'), [
    `${key('hubble_dns_queries_total', { rcode: '', qtypes: 'A', ips_returned: '0' })} 1`,
    `${key('hubble_dns_queries_total', { rcode: 'Policy denied', qtypes: 'A', ips_returned: '0' })} 1`,
  ].sort());
  t.same(await family(m, 'hubble_dns_responses_total'), [
    `${key('hubble_dns_responses_total', { rcode: 'Not Authorized', qtypes: 'A', ips_returned: '0' })} 1`,
    `${key('hubble_dns_responses_total', { rcode: 'Bad/missing Server Cookie', qtypes: 'A', ips_returned: '0' })} 1`,
    `${key('hubble_dns_responses_total', { rcode: '', qtypes: 'A', ips_returned: '0' })} 1`,
    `${key('hubble_dns_responses_total', { rcode: 'No Error', qtypes: 'AAAA', ips_returned: '3' })} 1`,
  ].sort());
});
