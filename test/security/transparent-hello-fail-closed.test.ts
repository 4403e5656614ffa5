/**
 * Transparent egress (PROXY header naming the original destination) where only a
 * `serverNames` rule could allow the connection: the listener reads the ClientHello
 * and decides again with its SNI. That second decision ran inside the
 * `readClientHello().then(...)` callback with no catch: a throw there (a decision that
 * throws) was an unhandled rejection, which ends a Node 20 process — every listener,
 * every connection. Now it fails closed: the connection is reset, nothing is dialled,
 * `l7warden_upstream_errors_total{kind="internal"}` counts it, and the proxy keeps
 * serving.
 *
 * The malformed inputs probed (no SNI, another SNI, garbage instead of a ClientHello,
 * an oversized record, a bad inner length, odd PROXY destinations) did not reach a
 * throw; they are kept as regression cases. The throw is injected with a snapshot whose `decide`
 * throws when given an SNI.
 */
import t from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { once } from 'node:events';
import { EgressHarness, KUBE_DNS } from '../helpers/egress-harness.js';
import type { PolicySnapshot } from '../../src/policy/types.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };

// The destination: counts the TCP connections it accepts.
let accepted = 0;
const dest = net.createServer((s) => {
  accepted++;
  s.on('error', () => {});
  s.destroy();
});
dest.listen(0, '127.0.0.80');
await once(dest, 'listening');
const PORT = (dest.address() as net.AddressInfo).port;

const h = await EgressHarness.start((dnsPort) => ({
  pods: [KUBE_DNS, APP],
  policies: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: sni-transparent }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules: { dns: [{ matchPattern: "*" }] }
  - toCIDR: [127.0.0.80/32]
    toPorts:
    - ports: [{ port: "${PORT}", protocol: TCP }]
      serverNames: [sni.example.test]
`,
  extraListeners: `    - name: tproxy
      mode: egress
      address: 127.0.0.1:0
      sourceIdentity: [proxyProtocol]
`,
}));
t.teardown(async () => {
  await h.close();
  dest.close();
});
const TP = h.port('tproxy');

/**
 * Open a transparent connection; `then` writes what follows the PROXY header.
 * Resolves when it closes (bounded): `closed` false when only our timer closed it.
 */
function transparent(header: string, then: (s: net.Socket) => void): Promise<{ closed: boolean; reset: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: TP });
    let reset = false;
    let timedOut = false;
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET') reset = true;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      s.destroy();
    }, 4000);
    s.once('close', () => {
      clearTimeout(timer);
      resolve({ closed: !timedOut, reset });
    });
    s.write(header);
    then(s);
    s.resume();
  });
}

const hdr = (dst = '127.0.0.80', port = PORT) => `PROXY TCP4 ${APP.ip} ${dst} 40001 ${port}\r\n`;

/** A real ClientHello with this SNI, written on `s` (handshake never completes). */
function hello(servername: string | undefined) {
  return (s: net.Socket) => {
    const c = tls.connect({ socket: s, rejectUnauthorized: false, ...(servername ? { servername } : {}) });
    c.on('error', () => {});
  };
}

/** A ClientHello for sni.example.test, as bytes (captured from node:tls). */
const HELLO: Buffer = await new Promise((resolve) => {
  const srv = net.createServer((s) => {
    s.once('data', (d: Buffer) => {
      resolve(d);
      s.destroy();
      srv.close();
    });
  });
  srv.listen(0, '127.0.0.1', () => {
    const c = tls.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, servername: 'sni.example.test', rejectUnauthorized: false });
    c.on('error', () => {});
  });
});

async function internalErrors(): Promise<number> {
  const m = await h.proxy.metrics.upstreamErrors.get();
  return m.values.filter((v) => v.labels.listener === 'tproxy' && v.labels.kind === 'internal').reduce((a, v) => a + v.value, 0);
}

t.test('control: the allowed SNI is dialled', async (t) => {
  const before = accepted;
  await transparent(hdr(), hello('sni.example.test'));
  t.equal(accepted, before + 1);
});

const PROBES: Array<[string, string, (s: net.Socket) => void]> = [
  ['no SNI', hdr(), hello(undefined)],
  ['another SNI', hdr(), hello('other.example.test')],
  ['plain bytes instead of a ClientHello', hdr(), (s) => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
  ['a record claiming 16 KiB, then garbage', hdr(), (s) => s.end(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00]), Buffer.alloc(16384, 0xff)]))],
  ['a ClientHello with a bad length inside', hdr(), (s) => s.end(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0xff, 0xff, 0xff, 0, 0, 0, 0]))],
];
for (const [name, header, then] of PROBES) {
  t.test(`${name}: closed, nothing dialled, the proxy lives on`, async (t) => {
    const before = accepted;
    const r = await transparent(header, then);
    t.ok(r.closed, 'the proxy closes the connection');
    t.equal(accepted, before, 'nothing dialled');
  });
}

t.test('odd PROXY destinations (port 0, 0.0.0.0, broadcast): no crash, nothing dialled', async (t) => {
  const before = accepted;
  for (const [dst, port] of [['127.0.0.80', 0], ['0.0.0.0', PORT], ['255.255.255.255', PORT]] as const) {
    await transparent(hdr(dst, port), hello('sni.example.test'));
  }
  t.equal(accepted, before);
});

t.test('a decision that throws after the ClientHello: reset and counted, not a crash', async (t) => {
  const real = h.proxy.snapshot()!;
  // The same snapshot, except that a decision with an SNI throws.
  const throwing = new Proxy(real, {
    get(target, key) {
      if (key === 'decide') {
        return (q: Parameters<PolicySnapshot['decide']>[0]) => {
          if (q.sni !== undefined) throw new Error('injected: decide() threw');
          return target.decide(q);
        };
      }
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  h.proxy.setSnapshot(throwing);
  t.teardown(() => h.proxy.setSnapshot(real));
  const before = accepted;
  const errors = await internalErrors();
  // Plain bytes of a captured ClientHello, so the reset is seen on this socket.
  const r = await transparent(hdr(), (s) => s.write(HELLO));
  t.ok(r.closed && r.reset, 'the client sees a reset');
  t.equal(accepted, before, 'nothing dialled');
  t.equal(await internalErrors(), errors + 1, 'counted as an internal error');
  h.proxy.setSnapshot(real);
  const again = accepted;
  await transparent(hdr(), hello('sni.example.test'));
  t.equal(accepted, again + 1, 'the proxy still serves');
});
