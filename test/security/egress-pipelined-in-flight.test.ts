/**
 * The egress listener (forward proxy): a CONNECT or an upgrade pipelined behind a
 * request whose response is still being written. Node emits 'connect' / 'upgrade' as
 * soon as it parses them and hands the socket over, whether or not the earlier
 * response is finished: a tunnel would then start (its "200 Connection Established"
 * and tunnelled bytes) in the middle of that response. As on the ingress listener
 * (ws-upgrade-pipelined-in-flight.test.ts), such a CONNECT or upgrade is answered 400
 * with Connection: close after the earlier response, whole, and nothing is dialled.
 * Oracle: the client's byte stream, and a destination that records every request.
 */
import t from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { EgressHarness, KUBE_DNS, rawExchange } from '../helpers/egress-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const DEST = '127.0.0.61';
const SLOW_BODY = 'slow-body-'.repeat(300);
const seen: string[] = [];
const dest = http.createServer((req, res) => {
  seen.push(`${req.method} ${req.url}`);
  req.resume();
  if (req.url === '/slow') {
    // Headers now, the body 300 ms later: the response is in flight meanwhile.
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': SLOW_BODY.length });
    res.flushHeaders();
    setTimeout(() => res.end(SLOW_BODY), 300);
    return;
  }
  res.end('ok');
});
await new Promise<void>((r) => dest.listen(0, DEST, () => r()));
const P = (dest.address() as AddressInfo).port;

const policy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: app-egress }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toCIDR: [${DEST}/32]
    toPorts:
    - ports: [{ port: "${P}", protocol: TCP }]
`;
const h = await EgressHarness.start(() => ({ pods: [KUBE_DNS, APP], policies: policy }));
t.teardown(async () => {
  await h.close();
  await new Promise<void>((r) => dest.close(() => r()));
});

const slowGet = `GET http://${DEST}:${P}/slow HTTP/1.1\r\nHost: ${DEST}:${P}\r\n\r\n`;
const tunnelled = `GET /via-tunnel HTTP/1.1\r\nHost: ${DEST}\r\n\r\n`;

t.test('control: the CONNECT alone is tunnelled', async (t) => {
  const r = await rawExchange(h.egressPort, `CONNECT ${DEST}:${P} HTTP/1.1\r\nHost: ${DEST}:${P}\r\n\r\n${tunnelled}`, { from: APP.ip, timeoutMs: 1500 });
  t.match(r.data, /^HTTP\/1\.1 200 /);
  t.ok(seen.includes('GET /via-tunnel'), 'the destination got the tunnelled request');
});

t.test('CONNECT behind an in-flight response: the response whole, then 400, nothing dialled', async (t) => {
  seen.length = 0;
  const r = await rawExchange(h.egressPort, `${slowGet}CONNECT ${DEST}:${P} HTTP/1.1\r\nHost: ${DEST}:${P}\r\n\r\n${tunnelled}`, {
    from: APP.ip,
    timeoutMs: 2500,
  });
  const heads = r.data.match(/HTTP\/1\.1 \d{3} [^\r]*/g) ?? [];
  t.same(heads.map((x) => x.slice(9, 12)), ['200', '400'], 'the slow 200 first, then the refusal');
  t.ok(r.data.indexOf(SLOW_BODY) >= 0 && r.data.indexOf(SLOW_BODY) < r.data.lastIndexOf('HTTP/1.1 400'), 'the whole body before the 400');
  t.notMatch(r.data, /Connection Established/);
  t.same(seen, ['GET /slow'], 'no tunnel: the tunnelled request never arrived');
});

t.test('upgrade behind an in-flight response: the response whole, then 400', async (t) => {
  seen.length = 0;
  const upgrade = `GET http://${DEST}:${P}/ws HTTP/1.1\r\nHost: ${DEST}:${P}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
  const r = await rawExchange(h.egressPort, `${slowGet}${upgrade}`, { from: APP.ip, timeoutMs: 2500 });
  const heads = r.data.match(/HTTP\/1\.1 \d{3} [^\r]*/g) ?? [];
  t.same(heads.map((x) => x.slice(9, 12)), ['200', '400']);
  t.ok(r.data.indexOf(SLOW_BODY) >= 0 && r.data.indexOf(SLOW_BODY) < r.data.lastIndexOf('HTTP/1.1 400'), 'the whole body before the 400');
  t.same(seen, ['GET /slow']);
});
