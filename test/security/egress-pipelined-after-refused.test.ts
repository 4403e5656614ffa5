/**
 * The egress listener (forward proxy) refuses an ambiguously framed request with
 * 400 + `Connection: close`; whatever Node's parser already dispatched behind it
 * (an absolute-form request, a CONNECT) must not be forwarded or tunnelled: the
 * proxy itself declared those bytes untrustworthy. Before the fix the hidden request
 * reached the destination and the hidden CONNECT was dialled.
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

const refused = `POST http://api.example.test:${P}/x HTTP/1.1\r\nHost: api.example.test:${P}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`;

t.test('control: the hidden requests alone are allowed (the name is learned first)', async (t) => {
  const before = api!.requests.length;
  const r = await rawExchange(h.egressPort, `GET http://api.example.test:${P}/learn HTTP/1.1\r\nHost: api.example.test:${P}\r\nConnection: close\r\n\r\n`, { from: APP.ip });
  t.match(r.data, /^HTTP\/1\.1 200 /);
  // Its IP now carries the fqdn label: IP literals are decided without a DNS round trip.
  const lit = await rawExchange(h.egressPort, `GET http://127.0.0.60:${P}/hidden HTTP/1.1\r\nHost: 127.0.0.60:${P}\r\nConnection: close\r\n\r\n`, { from: APP.ip });
  t.match(lit.data, /^HTTP\/1\.1 200 /);
  t.equal(api!.requests.length, before + 2);
});

t.test('absolute-form request pipelined behind a 400: never forwarded', async (t) => {
  const before = api!.requests.length;
  const r = await rawExchange(h.egressPort, `${refused}GET http://127.0.0.60:${P}/hidden HTTP/1.1\r\nHost: 127.0.0.60:${P}\r\n\r\n`, {
    from: APP.ip,
    timeoutMs: 1500,
  });
  t.match(r.data, /^HTTP\/1\.1 400 /);
  t.equal((r.data.match(/HTTP\/1\.1 \d{3} /g) ?? []).length, 1, 'one answer');
  t.equal(api!.requests.length, before, 'the destination saw nothing');
});

t.test('CONNECT pipelined behind a 400: nothing dialled', async (t) => {
  const conns = api!.connections;
  const r = await rawExchange(h.egressPort, `${refused}CONNECT 127.0.0.60:${P} HTTP/1.1\r\nHost: 127.0.0.60:${P}\r\n\r\nGET /t HTTP/1.1\r\nHost: 127.0.0.60\r\n\r\n`, {
    from: APP.ip,
    timeoutMs: 1500,
  });
  t.match(r.data, /^HTTP\/1\.1 400 /);
  t.notMatch(r.data, /Connection Established/);
  t.equal(api!.connections, conns, 'the destination was never dialled');
});
