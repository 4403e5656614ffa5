/**
 * Egress forward proxy, maxBodyBytes set: a request whose name is still being
 * resolved can already have been answered 413 (its chunked body crossed the limit
 * while the DNS answer was pending). When the response is queued behind an earlier
 * pipelined one, it is not finished yet, so the later denial (policy or DNS refusal)
 * must not try to write a second response head: that threw ERR_HTTP_HEADERS_SENT
 * inside a promise callback and took the whole process down (unhandled rejection).
 *
 * Oracle: the proxy process (this test process) survives and still answers a fresh
 * request; the denied request never reaches the destination.
 */
import t from 'tap';
import * as http from 'node:http';
import * as net from 'node:net';
import { EgressHarness, KUBE_DNS, rawExchange } from '../helpers/egress-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };

// A destination that answers its first request slowly (so the next pipelined
// response stays queued) and records everything.
const seen: string[] = [];
const dest = http.createServer((req, res) => {
  seen.push(`${req.method} ${req.url}`);
  req.resume();
  const delay = req.url === '/slow' ? 600 : 0;
  setTimeout(() => {
    res.writeHead(200, { 'content-length': 2 });
    res.end('ok');
  }, delay);
});
await new Promise<void>((r) => dest.listen(0, '127.0.0.60', r));
const DP = (dest.address() as net.AddressInfo).port;

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
  - toFQDNs: [{ matchPattern: "*.example.test" }]
    toPorts:
    - ports: [{ port: "${DP}", protocol: TCP }]
      rules:
        http:
        - { method: GET, path: "/.*" }
`;

const h = await EgressHarness.start((dnsPort) => ({
  pods: [KUBE_DNS, APP],
  policies: policy(dnsPort),
  limits: '{ maxBodyBytes: 1024 }',
}));
h.dns.setRecord('slow.example.test', { a: ['127.0.0.60'] });
h.dns.setRecord('api.example.test', { a: ['127.0.0.60'] });
t.teardown(async () => {
  await h.close();
  await new Promise<void>((r) => {
    dest.closeAllConnections();
    dest.close(() => r());
  });
});

const big = 'x'.repeat(4096);
const chunked = `${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`;

for (const [name, second] of [
  ['denied by the L7 rule (POST)', `POST http://api.example.test:${DP}/upload HTTP/1.1\r\nHost: api.example.test:${DP}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`],
  ['name refused by the DNS policy', `POST http://refused.other.test:${DP}/upload HTTP/1.1\r\nHost: refused.other.test:${DP}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`],
] as const) {
  t.test(`pipelined after a slow request, body over the limit, then ${name}: no crash`, async (t) => {
    const before = seen.length;
    const first = `GET http://slow.example.test:${DP}/slow HTTP/1.1\r\nHost: slow.example.test:${DP}\r\n\r\n`;
    const r = await rawExchange(h.egressPort, first + second, { from: APP.ip, timeoutMs: 2500 });
    const codes = [...r.data.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    // The 413 closes the connection; what matters is one answer at most per request,
    // never a second head for the second request, and no POST at the destination.
    t.ok(codes.length <= 2, `at most one answer per request (${codes.join(',')})`);
    t.ok(codes.every((c) => c === 200 || c === 413 || c === 403), `only 200/413/403 (${codes.join(',')})`);
    t.ok(seen.slice(before).every((s) => s === 'GET /slow'), 'the denied POST never reached the destination');
    // Still alive: a fresh request is served.
    const ok = await rawExchange(
      h.egressPort,
      `GET http://api.example.test:${DP}/fresh HTTP/1.1\r\nHost: api.example.test:${DP}\r\nConnection: close\r\n\r\n`,
      { from: APP.ip, timeoutMs: 2000 },
    );
    t.match(ok.data, /^HTTP\/1\.1 200 /, 'the proxy still answers');
  });
}
