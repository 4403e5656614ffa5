/**
 * Label values a client or an upstream controls (HTTP method, protocol, status,
 * DNS qtype, rcode, number of answers) cannot grow the number of series: Hubble
 * puts most of them in labels raw, which on a proxy any client can reach would be
 * a memory-exhaustion bug. Counted through the Metrics class and, for methods,
 * through a running proxy over HTTP/2 (where :method is free text).
 */
import t from 'tap';
import * as http from 'node:http';
import { startProxy } from '../../src/cli/run.js';
import { Metrics } from '../../src/observe/metrics.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { h2Connect, h2Request } from '../helpers/clients.js';

function series(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(name + '{'));
}

t.test('Metrics: 500 methods, 500 qtypes, 4096 rcodes, 1000 statuses, 0-100 IPs stay a fixed set of series', async (t) => {
  const m = new Metrics();
  for (let i = 0; i < 500; i++) {
    m.httpRequest(`FOOBAR${i}`, i % 2 ? 'HTTP/1.1' : `HTTP/${i}`, i % 3 ? 'INGRESS' : 'EGRESS');
    m.httpResponse(`FOOBAR${i}`, 'HTTP/2', i * 2, 0.001, 'INGRESS');
    m.dnsQuery(`TYPE${i}`, i % 2 === 0);
    m.dnsResponse(i % 50, `TYPE${i}`, i % 101);
  }
  for (let r = 0; r < 4096; r++) m.dnsResponse(r, 'A', 1);
  const text = await m.text();
  t.ok(series(text, 'hubble_http_requests_total').length <= 8, /* OTHER × 4 protocols × 2 reporters */ `requests: ${series(text, 'hubble_http_requests_total').length} series`);
  t.notMatch(text, /FOOBAR|TYPE\d|HTTP\/[03-9]/, 'no raw method, qtype or protocol as a label value');
  // 1 method (OTHER) × 1 protocol × 1 reporter × (100-599 and 0): bounded by the status range
  t.ok(series(text, 'hubble_http_responses_total').length <= 501, `responses: ${series(text, 'hubble_http_responses_total').length} series`);
  t.ok(series(text, 'hubble_http_request_duration_seconds_count').length <= 1);
  t.ok(series(text, 'hubble_dns_queries_total').length <= 2, 'OTHER × (allowed, denied)');
  // (OTHER, A) × (20 named rcodes + "") × (0-9, 10+)
  t.ok(series(text, 'hubble_dns_responses_total').length <= 2 * 21 * 11, `responses: ${series(text, 'hubble_dns_responses_total').length} series`);
});

t.test('running proxy: 60 HTTP/2 requests with methods FOOBAR0..59 add one method label value', async (t) => {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url });
  t.teardown(cfg.cleanup);
  const proxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true });
  t.teardown(() => proxy.close(0));
  const s = await h2Connect(proxy.listeners[0]!.address.port, '127.0.0.10');
  t.teardown(() => s.close());
  for (let i = 0; i < 60; i++) t.equal((await h2Request(s, { method: `FOOBAR${i}`, path: '/v1/request-landing' })).status, 403);
  const text = await new Promise<string>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: proxy.admin!.port, path: '/metrics', agent: false, timeout: 5000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
  t.same(series(text, 'hubble_http_requests_total'), ['hubble_http_requests_total{method="OTHER",protocol="HTTP/2",reporter="server"} 60']);
  t.same(series(text, 'hubble_http_responses_total'), ['hubble_http_responses_total{method="OTHER",protocol="HTTP/2",status="403",reporter="server"} 60']);
  t.notMatch(text, /FOOBAR/);
});
