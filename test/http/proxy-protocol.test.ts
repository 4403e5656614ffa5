/**
 * PROXY protocol on an ingress listener, through `startProxy` and a capture
 * upstream. The listener lists `sourceIdentity: [proxyProtocol, sourceAddress]`:
 * every connection must start with a valid PROXY v1/v2 header, whose *source* is
 * the client identity (tiefighter 127.0.0.10 may POST /v1/request-landing, xwing
 * 127.0.0.11 may not), whatever the socket's own address. Covered: v1 and v2, the
 * header and the first request in one segment and split byte by byte, PROXY + TLS
 * with the ClientHello in the header's segment, HTTP/2 prior knowledge after the
 * header, no/invalid header ⇒ refused with nothing forwarded, X-Forwarded-For = the
 * PROXY source, and a listener without proxyProtocol never sniffing one (400).
 */
import t from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as http2 from 'node:http2';
import { Duplex } from 'node:stream';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { makeCA, makeLeaf, writeLeaf } from '../../src/cli/certs.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream, type CaptureUpstream } from '../helpers/capture-upstream.js';
import { rawExchange, statuses } from '../helpers/clients.js';
import { startRelay } from '../helpers/relay.js';
import { tempDir } from '../helpers/tls-pki.js';

const TIE = '127.0.0.10';
const XWING = '127.0.0.11';
const LANDING = 'POST /v1/request-landing HTTP/1.1\r\nHost: deathstar\r\nContent-Length: 0\r\nConnection: close\r\n\r\n';

function v1(src: string, srcPort = 40000, dst = '127.0.0.1', dstPort = 80): string {
  return `PROXY TCP4 ${src} ${dst} ${srcPort} ${dstPort}\r\n`;
}

function v2(src: string, srcPort = 40001, dst = '127.0.0.1', dstPort = 80): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const h = Buffer.alloc(16 + 12);
  sig.copy(h, 0);
  h[12] = 0x21; // version 2, PROXY
  h[13] = 0x11; // INET, STREAM
  h.writeUInt16BE(12, 14);
  Buffer.from(src.split('.').map(Number)).copy(h, 16);
  Buffer.from(dst.split('.').map(Number)).copy(h, 20);
  h.writeUInt16BE(srcPort, 24);
  h.writeUInt16BE(dstPort, 26);
  return h;
}

/** Write bytes one at a time (a pause between each, so each is its own segment), collect the answer. */
function byteByByte(port: number, bytes: Buffer, from?: string): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true, ...(from ? { localAddress: from } : {}) });
    const timer = setTimeout(() => sock.destroy(), 10_000);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    let i = 0;
    const next = () => {
      if (i >= bytes.length || sock.destroyed) return;
      sock.write(bytes.subarray(i, i + 1));
      i++;
      setTimeout(next, 1);
    };
    sock.once('connect', next);
  });
}

/**
 * A TLS client whose ClientHello goes out in the same write as the PROXY header:
 * the TLS socket runs over a Duplex whose first write is prefixed with `header`.
 */
function tlsWithHeaderInSegment(port: number, header: Buffer, ca: string, request: string, from?: string, headerAloneMs = 0): Promise<string> {
  return new Promise((resolve) => {
    const raw = net.connect({ host: '127.0.0.1', port, noDelay: true, ...(from ? { localAddress: from } : {}) });
    raw.on('error', () => {});
    let first = true;
    const writes: number[] = [];
    const carrier = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        const out = first ? Buffer.concat([header, chunk]) : chunk;
        first = false;
        writes.push(out.length);
        raw.write(out, () => cb());
      },
      final(cb) {
        raw.end();
        cb();
      },
    });
    raw.on('data', (d: Buffer) => carrier.push(d));
    raw.on('end', () => carrier.push(null));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => raw.destroy(), 8000);
    const done = () => {
      clearTimeout(timer);
      raw.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    raw.once('connect', () => {
      if (headerAloneMs > 0) {
        // The header in its own segment, the ClientHello later.
        raw.write(header);
        first = false;
        setTimeout(go, headerAloneMs);
      } else go();
    });
    function go() {
      const s = tls.connect({ socket: carrier, servername: 'deathstar.default.svc', ca, ALPNProtocols: ['http/1.1'] });
      s.on('error', (e) => chunks.push(Buffer.from(`ERROR ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('close', done);
      raw.on('close', () => s.destroy());
      s.once('secureConnect', () => s.write(request));
    }
  });
}

let up: CaptureUpstream;
let proxy: RunningProxy;
let plain: RunningProxy;
let port = 0;
let tlsPort = 0;
let plainPort = 0;
const flows: Array<Record<string, any>> = [];
const ca = makeCA({ commonName: 'proxy-protocol test CA' });
const leaf = makeLeaf(ca, { dns: ['deathstar.default.svc'] });

t.before(async () => {
  up = await startCaptureUpstream();
  const certs = tempDir(t, 'l7w-pp-certs-');
  writeLeaf(certs, 'default', 'deathstar-tls', leaf);
  const tlsListener = `  - name: deathstar-tls
    mode: ingress
    address: 127.0.0.1:0
    endpoint: { namespace: default, pod: deathstar }
    upstream: ${up.url}
    endpointPort: 80
    sourceIdentity: [proxyProtocol, sourceAddress]
    tls: { secret: default/deathstar-tls }
`;
  const cfg = await starWarsDir({
    upstream: up.url,
    sourceIdentity: ['proxyProtocol', 'sourceAddress'],
    limits: { headersTimeoutMs: 1500 },
    extraListenerYaml: tlsListener,
  });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir, certsDir: certs, onFlow: (l) => flows.push(JSON.parse(l)) });
  port = proxy.listeners.find((l) => l.name === 'deathstar')!.address.port;
  tlsPort = proxy.listeners.find((l) => l.name === 'deathstar-tls')!.address.port;
  const cfgPlain = await starWarsDir({ upstream: up.url });
  t.teardown(cfgPlain.cleanup);
  plain = await startProxy({ configDir: cfgPlain.dir });
  plainPort = plain.listeners[0]!.address.port;
});
t.teardown(async () => {
  await proxy?.close(0);
  await plain?.close(0);
  await up?.close();
});

t.test('v1 and v2: the identity is the header source, not the socket', async (t) => {
  const cases: Array<{ name: string; header: Buffer; from: string; status: number; xff?: string }> = [
    { name: 'v1 tiefighter from an xwing socket', header: Buffer.from(v1(TIE, 41000)), from: XWING, status: 200, xff: TIE },
    { name: 'v1 tiefighter from a world socket', header: Buffer.from(v1(TIE, 41001)), from: '127.0.0.1', status: 200, xff: TIE },
    { name: 'v2 tiefighter from an xwing socket', header: v2(TIE, 41002), from: XWING, status: 200, xff: TIE },
    { name: 'v1 xwing from a tiefighter socket', header: Buffer.from(v1(XWING, 41003)), from: TIE, status: 403 },
    { name: 'v2 xwing from a tiefighter socket', header: v2(XWING, 41004), from: TIE, status: 403 },
  ];
  for (const c of cases) {
    const before = up.requests.length;
    const raw = await rawExchange(port, Buffer.concat([c.header, Buffer.from(LANDING)]), { from: c.from, ms: 3000 });
    t.same(statuses(raw), [c.status], `${c.name}: status`);
    if (c.status === 200) {
      t.equal(up.requests.length, before + 1, `${c.name}: forwarded`);
      const got = up.requests[before]!;
      t.equal(got.url, '/v1/request-landing');
      t.equal(got.headers['x-forwarded-for'], c.xff, `${c.name}: X-Forwarded-For is the PROXY source`);
      t.notMatch(got.body.toString('latin1'), /PROXY/, `${c.name}: the header is not forwarded`);
    } else {
      t.equal(up.requests.length, before, `${c.name}: nothing reached the upstream`);
      t.match(raw, /Access denied\r\n$/);
    }
  }
  // The flow records carry the PROXY source address and port.
  await new Promise((r) => setTimeout(r, 50));
  const reqs = flows.filter((f) => f.flow?.l7?.type === 'REQUEST');
  const v2tie = reqs.find((f) => f.flow.l4?.TCP?.source_port === 41002);
  t.ok(v2tie, 'a record for the v2 tiefighter request');
  t.equal(v2tie?.flow.IP.source, TIE);
  t.equal(v2tie?.flow.verdict, 'FORWARDED');
  t.same(v2tie?.flow.source.labels?.includes('k8s:class=tiefighter'), true);
  const v1x = reqs.find((f) => f.flow.l4?.TCP?.source_port === 41003);
  t.equal(v1x?.flow.IP.source, XWING);
  t.equal(v1x?.flow.verdict, 'DROPPED');
});

t.test('the header and the first request split byte by byte', async (t) => {
  for (const [name, header] of [['v1', Buffer.from(v1(TIE, 42000))], ['v2', v2(TIE, 42001)]] as const) {
    const before = up.requests.length;
    const raw = await byteByByte(port, Buffer.concat([header, Buffer.from(LANDING)]), XWING);
    t.same(statuses(raw), [200], `${name}: allowed`);
    t.equal(up.requests.length, before + 1, `${name}: forwarded once`);
    t.equal(up.requests[before]?.headers['x-forwarded-for'], TIE);
  }
  const before = up.requests.length;
  const denied = await byteByByte(port, Buffer.concat([v2(XWING, 42002), Buffer.from(LANDING)]), TIE);
  t.same(statuses(denied), [403], 'v2 xwing split: denied');
  t.equal(up.requests.length, before);
});

t.test('the header, then the request in a later segment', async (t) => {
  const before = up.requests.length;
  const raw = await new Promise<string>((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host: '127.0.0.1', port, localAddress: XWING });
    s.on('error', () => {});
    s.on('data', (d: Buffer) => chunks.push(d));
    const timer = setTimeout(() => s.destroy(), 5000);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    s.once('connect', () => {
      s.write(v1(TIE, 42100));
      setTimeout(() => s.write(LANDING), 100);
    });
  });
  t.same(statuses(raw), [200]);
  t.equal(up.requests.length, before + 1);
});

t.test('HTTP/2 prior knowledge after the header', async (t) => {
  const before = up.requests.length;
  const session = http2.connect(`http://127.0.0.1:${port}`, {
    createConnection: () => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: XWING });
      s.write(v2(TIE, 42200));
      return s;
    },
  });
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  const ask = (path: string) =>
    new Promise<number>((resolve) => {
      const st = session.request({ ':method': 'POST', ':path': path, ':authority': 'deathstar' });
      st.on('response', (h) => resolve(Number(h[':status'])));
      st.on('error', () => resolve(0));
      st.resume();
      st.end();
    });
  t.equal(await ask('/v1/request-landing'), 200);
  t.equal(await ask('/v1/exhaust-port'), 403);
  t.equal(up.requests.length, before + 1);
  t.equal(up.requests[before]?.headers['x-forwarded-for'], TIE);
});

t.test('a connection without a valid header is refused; nothing reaches the upstream', async (t) => {
  const bad: Array<[string, string | Buffer]> = [
    ['plain HTTP', LANDING],
    ['lower-case proxy', `proxy TCP4 ${TIE} 127.0.0.1 1 80\r\n${LANDING}`],
    ['bad address', `PROXY TCP4 127.0.0.300 127.0.0.1 1 80\r\n${LANDING}`],
    ['LF only', `PROXY TCP4 ${TIE} 127.0.0.1 1 80\n${LANDING}`],
    ['v2 with a bad version', Buffer.concat([Buffer.from(v2(TIE)).fill(0x31, 12, 13), Buffer.from(LANDING)])],
    ['TLS with no header', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])],
  ];
  for (const [name, bytes] of bad) {
    const before = up.requests.length;
    const raw = await rawExchange(port, bytes, { from: TIE, ms: 3000 });
    t.equal(raw, '', `${name}: closed without an answer`);
    t.equal(up.requests.length, before, `${name}: nothing forwarded`);
  }
  // A client that sends nothing is closed at the header deadline (headersTimeoutMs 1500).
  const t0 = Date.now();
  const silent = await rawExchange(port, Buffer.alloc(0), { from: TIE, ms: 5000 });
  t.equal(silent, '');
  t.ok(Date.now() - t0 < 4500, 'closed by the header deadline, not by the client');
});

t.test('PROXY + TLS: the ClientHello in the same segment as the header', async (t) => {
  const req = (path: string) => `POST ${path} HTTP/1.1\r\nHost: deathstar.default.svc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;
  for (const [name, header] of [['v1', Buffer.from(v1(TIE, 43000))], ['v2', v2(TIE, 43001)]] as const) {
    const before = up.requests.length;
    const raw = await tlsWithHeaderInSegment(tlsPort, header, ca.certPem, req('/v1/request-landing'), XWING);
    t.same(statuses(raw), [200], `${name}: allowed over TLS (${raw.slice(0, 80)})`);
    t.equal(up.requests.length, before + 1, `${name}: forwarded`);
    t.equal(up.requests[before]?.headers['x-forwarded-for'], TIE);
    t.equal(up.requests[before]?.headers['x-forwarded-proto'], 'https');
  }
  const late = up.requests.length;
  const split = await tlsWithHeaderInSegment(tlsPort, v2(TIE, 43003), ca.certPem, req('/v1/request-landing'), XWING, 100);
  t.same(statuses(split), [200], 'ClientHello in a later segment');
  t.equal(up.requests.length, late + 1);
  const before = up.requests.length;
  const denied = await tlsWithHeaderInSegment(tlsPort, Buffer.from(v1(XWING, 43002)), ca.certPem, req('/v1/request-landing'), TIE);
  t.same(statuses(denied), [403], 'xwing over TLS: denied');
  t.equal(up.requests.length, before);
  // TLS without a PROXY header never gets a handshake.
  const noHeader = await tlsWithHeaderInSegment(tlsPort, Buffer.alloc(0), ca.certPem, req('/v1/request-landing'), TIE);
  t.match(noHeader, /^ERROR /, 'no header: the handshake fails');
  t.equal(up.requests.length, before);
});

t.test('the relay helper (PROXY v1 in its own segment) in front of the listener', async (t) => {
  const relay = await startRelay(port, { from: XWING, proxyV1: { src: TIE, srcPort: 44000 } });
  t.teardown(() => relay.close());
  const before = up.requests.length;
  const raw = await rawExchange(relay.port, LANDING, { ms: 3000 });
  t.same(statuses(raw), [200]);
  t.equal(up.requests[before]?.headers['x-forwarded-for'], TIE);
});

t.test('a listener without proxyProtocol never sniffs a header', async (t) => {
  const before = up.requests.length;
  // From a world socket, claiming tiefighter: a malformed request, never an identity.
  const raw = await rawExchange(plainPort, `${v1(TIE)}${LANDING}`, { from: '127.0.0.1', ms: 3000 });
  t.same(statuses(raw), [400]);
  t.equal(up.requests.length, before, 'nothing forwarded');
  const rawV2 = await rawExchange(plainPort, Buffer.concat([v2(TIE), Buffer.from(LANDING)]), { from: '127.0.0.1', ms: 3000 });
  t.same(statuses(rawV2), [400]);
  t.equal(up.requests.length, before, 'nothing forwarded');
  // The same listener serves tiefighter by socket address.
  const ok = await rawExchange(plainPort, LANDING, { from: TIE, ms: 3000 });
  t.same(statuses(ok), [200]);
  t.equal(up.requests[before]?.headers['x-forwarded-for'], TIE);
});
