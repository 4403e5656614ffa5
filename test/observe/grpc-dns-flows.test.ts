/**
 * gRPC and DNS flow records from a real proxy: @grpc/grpc-js through a relay that
 * connects from tiefighter's address (allowed and denied methods), and `dig`
 * against a dns listener (allowed query + answer, denied query), each checked
 * against Hubble's shape (CILIUM-SEMANTICS.md §5.1).
 */
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { makeConfigDir, starWarsDir } from '../helpers/config-dir.js';
import { startGrpcServer, grpcClient, type GrpcServer } from '../helpers/grpc-service.js';
import { startRelay, type Relay } from '../helpers/relay.js';
import { TestDnsUpstream } from '../helpers/dns-upstream.js';
import { KUBE_DNS, dig, dnsPolicy, podYaml } from '../helpers/dns-harness.js';

type Rec = Record<string, any>;

async function waitFor(list: Rec[], from: number, n: number): Promise<Rec[]> {
  for (let i = 0; i < 200 && list.length < from + n; i++) await new Promise((r) => setTimeout(r, 10));
  return list.slice(from);
}

t.test('gRPC calls: HTTP/2 records naming service and method', async (t) => {
  const srv: GrpcServer = await startGrpcServer();
  t.teardown(() => srv.close());
  const cfg = await starWarsDir({
    upstream: `h2c://127.0.0.1:${srv.port}`,
    extraHttp: ['{ method: "POST", path: "/starwars\\\\.Deathstar/RequestLanding" }'],
  });
  t.teardown(cfg.cleanup);
  const recs: Rec[] = [];
  const proxy: RunningProxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true, onFlow: (l) => recs.push(JSON.parse(l)) });
  t.teardown(() => proxy.close(0));
  const relay: Relay = await startRelay(proxy.listeners[0]!.address.port, { from: '127.0.0.10' });
  t.teardown(() => relay.close());
  const c = grpcClient(relay.port);
  t.teardown(() => c.close());
  const call = (m: string) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      (c as unknown as Record<string, (...a: unknown[]) => void>)[m]!.call(c, Buffer.from('x'), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e: grpc.ServiceError | null) => resolve(e));
    });

  t.equal(await call('RequestLanding'), null);
  const [req, resp] = (await waitFor(recs, 0, 2)).map((r) => r.flow);
  t.equal(req.verdict, 'FORWARDED');
  t.equal(req.l7.http.protocol, 'HTTP/2');
  t.equal(req.l7.http.method, 'POST');
  t.equal(req.l7.http.url, 'http://deathstar/starwars.Deathstar/RequestLanding');
  t.same(req.l7.http.grpc, { service: 'starwars.Deathstar', method: 'RequestLanding' });
  t.ok((req.l7.http.headers as { key: string; value: string }[]).some((h) => h.key === 'Content-Type' && h.value === 'application/grpc'));
  t.equal(resp.l7.http.code, 200);
  t.same(resp.l7.http.grpc, { service: 'starwars.Deathstar', method: 'RequestLanding' });

  const before = recs.length;
  const denied = await call('ExhaustPort');
  t.equal(denied?.code, grpc.status.PERMISSION_DENIED);
  const [dreq, dresp] = (await waitFor(recs, before, 2)).map((r) => r.flow);
  t.equal(dreq.verdict, 'DROPPED');
  t.equal(dreq.drop_reason_desc, 'POLICY_DENIED');
  t.same(dreq.l7.http.grpc, { service: 'starwars.Deathstar', method: 'ExhaustPort' });
  t.equal(dreq.ingress_denied_by[0].name, 'rule1');
  t.equal(dresp.l7.http.code, 200, 'trailers-only answer: HTTP 200');
  t.same(dresp.l7.http.grpc, { service: 'starwars.Deathstar', method: 'ExhaustPort', status: 7 }, 'PERMISSION_DENIED');
});

t.test('DNS query and answer records; a denied query has no answer record', async (t) => {
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
  flowLog: { file: "", nodeName: dns-node }
  listeners:
    - name: dns
      mode: dns
      address: 127.0.0.1:0
      upstream: ${upstream.address}
      serverEndpoint: { namespace: kube-system, pod: kube-dns }
`,
  });
  t.teardown(cfg.cleanup);
  const recs: Rec[] = [];
  const proxy = await startProxy({ configDir: cfg.dir, ephemeralPorts: true, onFlow: (l) => recs.push(JSON.parse(l)) });
  t.teardown(() => proxy.close(0));
  const port = proxy.listeners[0]!.address.port;

  const r = await dig(port, 'api.cilium.io', { from: APP.ip });
  t.equal(r.status, 'NOERROR');
  const [q, a] = await waitFor(recs, 0, 2);
  const f = q!.flow;
  t.equal(q!.node_name, 'dns-node');
  t.equal(f.verdict, 'FORWARDED');
  t.equal(f.Type, 'L7');
  t.equal(f.l7.type, 'REQUEST');
  t.same(f.l7.dns, { query: 'api.cilium.io.', observation_source: 'proxy', qtypes: ['A'] });
  t.ok(f.l4.UDP, 'UDP');
  t.equal(f.l4.UDP.destination_port, upstream.port);
  t.equal(f.IP.source, APP.ip);
  t.equal(f.source.pod_name, 'app');
  t.equal(f.destination.pod_name, 'kube-dns');
  t.equal(f.destination.namespace, 'kube-system');
  t.same(f.event_type, { type: 129 });
  t.equal(f.traffic_direction, 'EGRESS');
  t.equal(f.is_reply, false);
  t.equal(f.egress_allowed_by[0].name, 'dns-app');
  t.equal(f.Summary, 'DNS Query api.cilium.io. A');
  const g = a!.flow;
  t.equal(g.l7.type, 'RESPONSE');
  t.equal(g.is_reply, true);
  t.equal(g.traffic_direction, 'EGRESS');
  t.match(g.l7.latency_ns, /^\d+$/);
  t.equal(g.l7.dns.query, 'api.cilium.io.');
  t.same(g.l7.dns.ips, [r.answers[0]!.data]);
  t.equal(g.l7.dns.ttl, r.answers[0]!.ttl);
  t.same(g.l7.dns.rrtypes, ['A']);
  t.same(g.l7.dns.qtypes, ['A']);
  t.notOk('rcode' in g.l7.dns, 'NOERROR is the zero value, omitted');
  t.equal(g.IP.source, f.IP.destination, 'swapped');
  t.equal(g.source.pod_name, 'kube-dns');
  t.match(g.Summary, /^DNS Answer "127\.0\.0\.\d+" TTL: \d+ \(Proxy api\.cilium\.io\. A\)$/);

  const before = recs.length;
  const d = await dig(port, 'evil.example.com', { from: APP.ip, type: 'AAAA' });
  t.equal(d.status, 'REFUSED');
  await new Promise((res) => setTimeout(res, 50));
  const after = recs.slice(before);
  t.equal(after.length, 1, 'one record, no answer record');
  const x = after[0]!.flow;
  t.equal(x.verdict, 'DROPPED');
  t.equal(x.drop_reason, 133);
  t.equal(x.drop_reason_desc, 'POLICY_DENIED');
  t.same(x.l7.dns.qtypes, ['AAAA']);
  t.equal(x.egress_denied_by?.[0]?.name, 'dns-app', 'the rule whose DNS rules did not match');
  t.notOk(x.ingress_denied_by);
});
