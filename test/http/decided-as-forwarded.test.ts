/**
 * Header rules decide on the fields the upstream gets (src/http/request-guard.ts
 * RequestAttributes), through a running proxy with Node's HTTP/1.1 and HTTP/2
 * clients and a capture upstream; tiefighter (127.0.0.10) is the client.
 *
 * The proxy drops some client fields (hop-by-hop, `x-envoy-*`, `proxy-*`, the
 * client's `X-Forwarded-*`) and writes its own `X-Forwarded-For` / `-Proto`. A rule
 * on such a field used to be decided on the client's value while the upstream got the
 * proxy's: a client claiming `X-Forwarded-For: 10.9.9.9` satisfied a rule for that
 * address and the upstream saw 127.0.0.10 (found by the Envoy HTTP/2 differential,
 * test/security/envoy-http2-codec.test.ts). Envoy's filters run after its connection
 * manager rewrote these fields, so they too decide on what is forwarded.
 */
import t from 'tap';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream, type Captured } from '../helpers/capture-upstream.js';
import { h1Request, h2Connect, h2Request, type Reply } from '../helpers/clients.js';

const TIE = '127.0.0.10';

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: decided-as-forwarded }
spec:
  endpointSelector: { matchLabels: { org: empire, class: deathstar } }
  ingress:
  - fromEndpoints: [{ matchLabels: { org: empire } }]
    toPorts:
    - ports: [{ port: "80", protocol: TCP }]
      rules:
        http:
        - { method: GET, path: /spoofed-xff, headers: ["X-Forwarded-For: 10.9.9.9"] }
        - method: GET
          path: /own-xff
          headerMatches: [{ name: X-Forwarded-For, value: "${TIE}" }]
        - method: GET
          path: /proto
          headerMatches: [{ name: X-Forwarded-Proto, value: "http" }]
        - { method: GET, path: /envoy, headers: ["X-Envoy-Internal: true"] }
        - { method: GET, path: /proxy-auth, headers: ["Proxy-Authorization: Basic eDp5"] }
        - { method: GET, path: /real-ip, headers: ["X-Real-IP"] }
        - { method: GET, path: /keep-alive, headers: ["Keep-Alive"] }
        - method: GET
          path: /xff-replace
          headerMatches: [{ name: X-Forwarded-For, value: "10.1.1.1", mismatch: REPLACE }]
        - { method: GET, path: /plain, headers: ["X-Tenant: a"] }
`;

let up: CaptureUpstream;
let proxy: RunningProxy;
let port = 0;

t.before(async () => {
  up = await startCaptureUpstream();
  const cfg = await starWarsDir({ upstream: up.url, policy: POLICY });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir });
  port = proxy.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await up?.close();
});

/** Every value of a header as the upstream received it, in order. */
function values(c: Captured | undefined, name: string): string[] {
  if (!c) return ['<not received>'];
  const out: string[] = [];
  for (let i = 0; i < c.rawHeaders.length; i += 2) if (c.rawHeaders[i]!.toLowerCase() === name) out.push(c.rawHeaders[i + 1]!);
  return out;
}

type Send = (path: string, headers: Record<string, string>) => Promise<Reply>;

const viaH1: Send = (path, headers) => h1Request(port, { from: TIE, path, headers });
const viaH2: Send = async (path, headers) => {
  const s = await h2Connect(port, TIE);
  try {
    return await h2Request(s, { path, headers });
  } finally {
    s.close();
  }
};

for (const [proto, send] of [['HTTP/1.1', viaH1], ['HTTP/2', viaH2]] as const) {
  t.test(`${proto}: a client-supplied field the proxy replaces or drops satisfies no rule`, async (t) => {
    const cases: Array<[string, Record<string, string>]> = [
      ['/spoofed-xff', { 'x-forwarded-for': '10.9.9.9' }],
      ['/envoy', { 'x-envoy-internal': 'true' }],
      ['/proxy-auth', { 'proxy-authorization': 'Basic eDp5' }],
      ['/real-ip', { 'x-real-ip': '10.9.9.9' }],
    ];
    // Keep-Alive is a connection field HTTP/2 refuses outright; over HTTP/1.1 it is dropped.
    if (proto === 'HTTP/1.1') cases.push(['/keep-alive', { 'keep-alive': 'timeout=5' }]);
    for (const [path, headers] of cases) {
      const before = up.requests.length;
      const r = await send(path, headers);
      t.equal(r.status, 403, `${path}: refused`);
      t.equal(up.requests.length, before, `${path}: nothing reached the upstream`);
    }
  });

  t.test(`${proto}: X-Forwarded-For and -Proto rules see the proxy's own values`, async (t) => {
    for (const spoof of [undefined, '1.2.3.4']) {
      const before = up.requests.length;
      const r = await send('/own-xff', spoof ? { 'x-forwarded-for': spoof } : {});
      t.equal(r.status, 200, `own address, client XFF ${spoof ?? 'absent'}: allowed`);
      t.same(values(up.requests[before], 'x-forwarded-for'), [TIE], 'the upstream got the address that was decided on');
    }
    const before = up.requests.length;
    const r = await send('/proto', { 'x-forwarded-proto': 'https' });
    t.equal(r.status, 200, 'cleartext connection: X-Forwarded-Proto is http whatever the client says');
    t.same(values(up.requests[before], 'x-forwarded-proto'), ['http']);
  });

  t.test(`${proto}: a mismatch action acts on the forwarded value`, async (t) => {
    const before = up.requests.length;
    const r = await send('/xff-replace', { 'x-forwarded-for': '10.1.1.1' });
    t.equal(r.status, 200);
    // The decision saw the proxy's 127.0.0.10 (a mismatch) and REPLACE wrote the policy's value.
    t.same(values(up.requests[before], 'x-forwarded-for'), ['10.1.1.1']);
  });

  t.test(`${proto}: ordinary fields are decided as before`, async (t) => {
    let before = up.requests.length;
    let r = await send('/plain', { 'x-tenant': 'a' });
    t.equal(r.status, 200);
    t.same(values(up.requests[before], 'x-tenant'), ['a']);
    before = up.requests.length;
    r = await send('/plain', { 'x-tenant': 'b' });
    t.equal(r.status, 403);
    t.equal(up.requests.length, before);
  });
}
