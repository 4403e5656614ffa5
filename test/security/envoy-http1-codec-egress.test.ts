/**
 * The two pipelining cases of the Envoy HTTP/1 codec differential
 * (test/security/envoy-http1-codec.test.ts) on the egress listener (forward proxy),
 * which shares the HTTP/1 server setup (src/http/server.ts createLimitedH1Server,
 * orderHttp1Refusals):
 *  - Envoy IntegrationTest.PipelineInline: a request pipelined behind an HTTP/1.1
 *    request without Host. Node answered that one itself (requireHostHeader) without
 *    the request handler, so the connection was not marked refused and the request
 *    behind it reached the destination.
 *  - Envoy IntegrationTest.PipelineWithTrailers / Pipeline: a head the parser refuses
 *    behind an allowed request. The 400 was written at once: the allowed request had
 *    reached the destination, its answer was lost, and the client read the 400 as its
 *    answer (Envoy: 200, then 400).
 */
import t from 'tap';
import { EgressHarness, KUBE_DNS, capturesOnOnePort, rawExchange } from '../helpers/egress-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const [api] = await capturesOnOnePort(['127.0.0.60'], { kind: 'http' });
const P = api!.port;

const policy = (dnsPort: number) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: app-egress }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules:
        dns:
        - matchPattern: "*.example.test"
  - toFQDNs: [{ matchName: "api.example.test" }]
    toPorts:
    - ports: [{ port: "${P}", protocol: TCP }]
`;

const h = await EgressHarness.start((dnsPort) => ({ pods: [KUBE_DNS, APP], policies: policy(dnsPort) }));
h.dns.setRecord('api.example.test', { a: ['127.0.0.60'] });
t.teardown(async () => {
  await h.close();
  await api!.close();
});

const statuses = (raw: string) => [...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

t.test('control: the destination is allowed once its name is learned', async (t) => {
  const r = await rawExchange(h.egressPort, `GET http://api.example.test:${P}/learn HTTP/1.1\r\nHost: api.example.test:${P}\r\nConnection: close\r\n\r\n`, { from: APP.ip });
  t.match(r.data, /^HTTP\/1\.1 200 /);
  const lit = await rawExchange(h.egressPort, `GET http://127.0.0.60:${P}/alone HTTP/1.1\r\nHost: 127.0.0.60:${P}\r\nConnection: close\r\n\r\n`, { from: APP.ip });
  t.match(lit.data, /^HTTP\/1\.1 200 /);
});

t.test('a request pipelined behind one without Host is not forwarded [IntegrationTest.PipelineInline]', async (t) => {
  const before = api!.requests.length;
  const r = await rawExchange(
    h.egressPort,
    `GET http://127.0.0.60:${P}/nohost HTTP/1.1\r\n\r\nGET http://127.0.0.60:${P}/hidden HTTP/1.1\r\nHost: 127.0.0.60:${P}\r\n\r\n`,
    { from: APP.ip, timeoutMs: 1500 },
  );
  t.same(statuses(r.data), [400], 'one answer: the refusal');
  t.equal(api!.requests.length, before, 'the destination saw nothing');
});

t.test('a refused head behind an allowed request is answered after it [IntegrationTest.Pipeline, PipelineWithTrailers]', async (t) => {
  const before = api!.requests.length;
  const r = await rawExchange(
    h.egressPort,
    `GET http://127.0.0.60:${P}/first HTTP/1.1\r\nHost: 127.0.0.60:${P}\r\n\r\nGET http://127.0.0.60:${P}/second HTTP/1.1\r\nHost: 127.0.0.60:${P}\r\nfo o: x\r\n\r\n`,
    { from: APP.ip, timeoutMs: 1500 },
  );
  t.same(statuses(r.data), [200, 400], 'the allowed request gets its answer, then the refusal');
  t.equal(api!.requests.length, before + 1, 'only the allowed request reached the destination');
});
