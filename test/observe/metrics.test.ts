/**
 * Prometheus metrics scraped over HTTP from the admin address of a real proxy and
 * parsed: counters move by exactly the number of requests / queries sent, with
 * bounded label values (no path, no IP). Also: upstream errors per listener, open
 * connections, policy reloads.
 */
import t from 'tap';
import * as http from 'node:http';
import { startProxy } from '../../src/cli/run.js';
import { makeConfigDir, starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request } from '../helpers/clients.js';
import { TestDnsUpstream } from '../helpers/dns-upstream.js';
import { KUBE_DNS, dig, dnsPolicy, podYaml } from '../helpers/dns-harness.js';

const TIE = '127.0.0.10';
const XWING = '127.0.0.11';

function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
      })
      .on('error', reject);
  });
}

/** Exposition text → `name{a="x",b="y"}` → value (labels in the order printed, which is stable). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

const val = (m: Map<string, number>, k: string) => m.get(k) ?? 0;

t.test('HTTP: counters move by exactly the requests sent', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url });
  t.teardown(cfg.cleanup);
  const proxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners[0]!.address.port;
  const admin = proxy.admin!.port;

  const first = await get(admin, '/metrics');
  t.equal(first.status, 200);
  t.match(first.type, /^text\/plain; version=0\.0\.4/);
  const m0 = parseMetrics(first.body);
  t.equal(val(m0, 'l7warden_policy_reloads_total'), 1, 'the initial load');
  t.equal(val(m0, 'l7warden_policy_reload_errors_total'), 0);
  // The process's own, read at scrape time (Prometheus' standard names).
  t.ok(val(m0, 'process_resident_memory_bytes') > 10 * 1024 * 1024, 'resident memory');
  t.ok(val(m0, 'nodejs_heap_size_used_bytes') > 1024 * 1024, 'heap used');
  t.ok(val(m0, 'process_cpu_seconds_total') > 0, 'CPU time');
  t.ok(Math.abs(val(m0, 'process_start_time_seconds') - Date.now() / 1000) < 3600, 'start time');
  t.match(first.body, /# TYPE process_cpu_seconds_total counter/);

  const ALLOWED = 5;
  const DENIED_L7 = 3;
  const DENIED_L3 = 2;
  for (let i = 0; i < ALLOWED; i++) t.equal((await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body: 'x' })).status, 200);
  for (let i = 0; i < DENIED_L7; i++) t.equal((await h1Request(port, { method: 'PUT', path: `/v1/exhaust-port/${i}`, from: TIE })).status, 403);
  for (let i = 0; i < DENIED_L3; i++) t.equal((await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: XWING })).status, 403);
  const total = ALLOWED + DENIED_L7 + DENIED_L3;

  const m1 = parseMetrics((await get(admin, '/metrics')).body);
  const d = (k: string) => val(m1, k) - val(m0, k);
  t.equal(d('hubble_http_requests_total{method="POST",protocol="HTTP/1.1",reporter="server"}'), ALLOWED + DENIED_L3);
  t.equal(d('hubble_http_requests_total{method="PUT",protocol="HTTP/1.1",reporter="server"}'), DENIED_L7);
  t.equal(d('hubble_http_responses_total{method="POST",protocol="HTTP/1.1",status="200",reporter="server"}'), ALLOWED);
  t.equal(d('hubble_http_responses_total{method="PUT",protocol="HTTP/1.1",status="403",reporter="server"}'), DENIED_L7);
  t.equal(d('hubble_http_responses_total{method="POST",protocol="HTTP/1.1",status="403",reporter="server"}'), DENIED_L3);
  t.equal(d('hubble_http_request_duration_seconds_count{method="POST",reporter="server"}'), ALLOWED + DENIED_L3);
  // Every record here is an L7 access-log event (the L3/L4 denial is answered with a 403), as Hubble labels it.
  t.equal(d('hubble_drop_total{reason="POLICY_DENIED",protocol="HTTP"}'), DENIED_L7 + DENIED_L3);
  t.equal(d('hubble_flows_processed_total{type="L7",subtype="HTTP",verdict="FORWARDED",protocol="HTTP"}'), ALLOWED * 2 + DENIED_L7 + DENIED_L3, 'allowed requests + every response');
  t.equal(d('hubble_flows_processed_total{type="L7",subtype="HTTP",verdict="DROPPED",protocol="HTTP"}'), DENIED_L7 + DENIED_L3);
  t.equal(d('l7warden_policy_decisions_total{verdict="allowed",direction="ingress",policy="default/rule1"}'), ALLOWED);
  t.equal(d('l7warden_policy_decisions_total{verdict="denied",direction="ingress",policy="default/rule1"}'), DENIED_L7);
  let flows = 0;
  for (const [k, v] of m1) if (k.startsWith('hubble_flows_processed_total{')) flows += v - val(m0, k);
  t.equal(flows, total * 2, 'two records per request');
  t.notOk(/exhaust-port|request-landing|127\.0\.0\./.test(m1.size ? [...m1.keys()].join('\n') : ''), 'no paths or IPs as label values');
  t.ok(m1.has('l7warden_open_connections{listener="deathstar",mode="ingress"}'));
});

t.test('upstream errors are counted per listener and kind', async (t) => {
  const up = await startCaptureUpstream();
  const deadPort = up.port;
  await up.close(); // nothing listens there any more: connect refused
  const cfg = await starWarsDir({ upstream: `http://127.0.0.1:${deadPort}` });
  t.teardown(cfg.cleanup);
  const proxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners[0]!.address.port;
  for (let i = 0; i < 2; i++) t.equal((await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body: 'x' })).status, 503);
  const m = parseMetrics((await get(proxy.admin!.port, '/metrics')).body);
  t.equal(val(m, 'l7warden_upstream_errors_total{listener="deathstar",kind="connect"}'), 2);
  t.equal(val(m, 'hubble_http_responses_total{method="POST",protocol="HTTP/1.1",status="503",reporter="server"}'), 2);
});

t.test('DNS: queries and responses counted by qtype and rcode', async (t) => {
  const upstream = await TestDnsUpstream.start();
  t.teardown(() => upstream.close());
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
  const proxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners[0]!.address.port;
  const OK = 3;
  const DENIED = 2;
  for (let i = 0; i < OK; i++) t.equal((await dig(port, `n${i}.cilium.io`, { from: APP.ip })).status, 'NOERROR');
  for (let i = 0; i < DENIED; i++) t.equal((await dig(port, `n${i}.evil.test`, { from: APP.ip, type: 'AAAA' })).status, 'REFUSED');
  const m = parseMetrics((await get(proxy.admin!.port, '/metrics')).body);
  t.equal(val(m, 'hubble_dns_queries_total{rcode="",qtypes="A",ips_returned="0"}'), OK);
  t.equal(val(m, 'hubble_dns_queries_total{rcode="Policy denied",qtypes="AAAA",ips_returned="0"}'), DENIED);
  t.equal(val(m, 'hubble_dns_responses_total{rcode="No Error",qtypes="A",ips_returned="1"}'), OK);
  t.equal(val(m, 'hubble_drop_total{reason="POLICY_DENIED",protocol="DNS"}'), DENIED);
  t.equal(val(m, 'hubble_flows_processed_total{type="L7",subtype="DNS",verdict="DROPPED",protocol="DNS"}'), DENIED);
  t.equal(val(m, 'hubble_flows_processed_total{type="L7",subtype="DNS",verdict="FORWARDED",protocol="DNS"}'), OK * 2);
  t.equal(val(m, 'l7warden_policy_decisions_total{verdict="denied",direction="egress",policy="default/dns-app"}'), DENIED);
});
