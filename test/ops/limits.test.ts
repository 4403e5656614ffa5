/**
 * Limits enforced on every TCP listener type (docs/operations.md has the table):
 * slowloris (headers trickled) gets 408 and is closed on time on the ingress and the
 * egress listener while other clients are served meanwhile; a stalled h2c/h1 sniff,
 * an idle keep-alive (HTTP/1.1) and an idle HTTP/2 session are closed after
 * idleTimeoutMs; a stalled TLS handshake after tlsHandshakeTimeoutMs;
 * maxConnectionsPerListener caps accepted connections (ingress and egress); header
 * count / bytes and URL length on the egress listener (the ingress ones are in
 * test/http/malformed.test.ts).
 */
import t from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as http2 from 'node:http2';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startCaptureUpstream } from '../helpers/capture-upstream.js';
import { h1Request, rawExchange } from '../helpers/clients.js';
import { newCA, leaf, tempDir } from '../helpers/tls-pki.js';
import type { TestT } from '../helpers/tap.js';

const TIE = '127.0.0.10';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const EGRESS = `  - name: egress
    mode: egress
    address: 127.0.0.1:0
`;

async function setup(t: TestT, limits: Record<string, number>, extra = EGRESS, certsDir?: string) {
  const up = await startCaptureUpstream();
  t.teardown(() => up.close());
  const cfg = await starWarsDir({ upstream: up.url, limits, extraListenerYaml: extra, admin: false });
  t.teardown(cfg.cleanup);
  const proxy = await startProxy({ configDir: cfg.dir, ...(certsDir ? { certsDir } : {}) });
  t.teardown(() => proxy.close(0));
  const port = (name: string) => proxy.listeners.find((l) => l.name === name)!.address.port;
  return { up, proxy, port };
}

/** Open a connection, run `act`, resolve with ms until the server closed it and what it sent. */
function watchClose(port: number, act: (s: net.Socket) => void, maxMs: number): Promise<{ ms: number; data: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: TIE });
    let data = '';
    const t0 = Date.now();
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ ms: Date.now() - t0, data, closed: false });
    }, maxMs);
    s.on('data', (d: Buffer) => (data += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ ms: Date.now() - t0, data, closed: true });
    });
    s.on('connect', () => act(s));
  });
}

/** Send a request's first line and then one header byte every 100 ms (bounded). */
function trickle(firstLine: string) {
  return (s: net.Socket) => {
    s.write(`${firstLine}\r\nhost: deathstar\r\n`);
    let n = 0;
    const iv = setInterval(() => {
      if (s.destroyed || n++ > 100) return clearInterval(iv);
      s.write('x');
    }, 100);
    s.on('close', () => clearInterval(iv));
  };
}

t.test('slowloris: 408 and closed after headersTimeoutMs on ingress and egress; others still served', async (t) => {
  const { port } = await setup(t, { headersTimeoutMs: 1000, requestTimeoutMs: 3000 });
  for (const [name, line] of [['deathstar', 'GET /v1/x HTTP/1.1'], ['egress', 'GET http://127.0.0.20:80/ HTTP/1.1']] as const) {
    const slow = Array.from({ length: 10 }, () => watchClose(port(name), trickle(line), 6000));
    // Meanwhile a normal client gets its answer quickly.
    await sleep(300);
    const t0 = Date.now();
    const ok = await h1Request(port('deathstar'), { from: TIE, method: 'POST', path: '/v1/request-landing', body: 'x' });
    t.equal(ok.status, 200, `${name}: a normal request is served during the attack`);
    t.ok(Date.now() - t0 < 500, `${name}: promptly (${Date.now() - t0} ms)`);
    for (const r of await Promise.all(slow)) {
      if (!r.closed || !/^HTTP\/1\.1 408 /.test(r.data) || r.ms < 900 || r.ms > 2600) {
        t.fail(`${name}: slow client closed=${r.closed} after ${r.ms} ms, got ${JSON.stringify(r.data.slice(0, 40))}`);
        return;
      }
    }
    t.pass(`${name}: 10 trickling clients got 408 and were closed within headersTimeoutMs (+ check interval)`);
  }
  // Before the protocol is known (h1 vs h2c preface sniff): bounded by headersTimeoutMs too.
  const sniff = await watchClose(port('deathstar'), (s) => s.write('PRI * HTTP/2'), 5000);
  t.ok(sniff.closed && sniff.ms >= 900 && sniff.ms < 2000, `stalled preface closed after ${sniff.ms} ms`);
});

t.test('idle keep-alive HTTP/1.1 connection and idle HTTP/2 session closed after idleTimeoutMs', async (t) => {
  const { port } = await setup(t, { idleTimeoutMs: 800 });
  const r = await watchClose(port('deathstar'), (s) => s.write('POST /v1/request-landing HTTP/1.1\r\nhost: deathstar\r\ncontent-length: 1\r\n\r\nx'), 5000);
  t.match(r.data, /^HTTP\/1\.1 200 /, 'served with keep-alive');
  t.ok(r.closed && r.ms >= 700 && r.ms < 2500, `idle HTTP/1.1 connection closed after ${r.ms} ms`);
  const session = http2.connect(`http://127.0.0.1:${port('deathstar')}`, { localAddress: TIE });
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  const t0 = Date.now();
  const closed = await new Promise<number>((resolve) => {
    const timer = setTimeout(() => resolve(-1), 5000);
    session.on('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
  t.ok(closed >= 700 && closed < 2500, `idle HTTP/2 session closed after ${closed} ms`);
});

t.test('TLS handshake timeout', async (t) => {
  const dir = tempDir(t);
  const ca = newCA();
  const l = leaf(ca, { dns: ['deathstar'], ips: ['127.0.0.1'] });
  await mkdir(join(dir, 'default', 'd'), { recursive: true });
  await writeFile(join(dir, 'default', 'd', 'tls.crt'), l.certPem);
  await writeFile(join(dir, 'default', 'd', 'tls.key'), l.keyPem);
  const { port } = await setup(t, { tlsHandshakeTimeoutMs: 800 }, '    tls: { secret: default/d }\n', dir);
  // Stalled: TCP only, no ClientHello.
  const r = await watchClose(port('deathstar'), () => {}, 5000);
  t.ok(r.closed && r.ms >= 700 && r.ms < 2000, `no ClientHello: closed after ${r.ms} ms`);
  // A real handshake still works.
  const ok = await new Promise<boolean>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: port('deathstar'), ca: l.caPem, servername: 'deathstar', localAddress: TIE }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
  t.ok(ok, 'a normal handshake succeeds');
});

t.test('maxConnectionsPerListener on ingress and egress', async (t) => {
  const { port } = await setup(t, { maxConnectionsPerListener: 3 });
  for (const name of ['deathstar', 'egress']) {
    const held: net.Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const s = net.connect({ host: '127.0.0.1', port: port(name), localAddress: TIE });
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      held.push(s);
    }
    await sleep(100);
    const over = await watchClose(port(name), (s) => s.write('GET / HTTP/1.1\r\nhost: deathstar\r\n\r\n'), 2000);
    t.ok(over.closed && over.data === '', `${name}: 4th connection closed without an answer (${over.ms} ms)`);
    held.pop()!.destroy();
    await sleep(100);
    if (name === 'deathstar') {
      const r = await h1Request(port(name), { from: TIE, method: 'POST', path: '/v1/request-landing', body: 'x' });
      t.equal(r.status, 200, `${name}: below the cap again, served`);
    } else {
      const raw = await rawExchange(port(name), 'GET http://127.0.0.20:80/ HTTP/1.1\r\nhost: 127.0.0.20\r\nconnection: close\r\n\r\n', { from: TIE, ms: 1500 });
      t.match(raw, /^HTTP\/1\.1 \d{3} /, `${name}: below the cap again, answered`);
    }
    for (const s of held) s.destroy();
    await sleep(100);
  }
});

t.test('egress listener: header count, header bytes and URL length', async (t) => {
  const { port } = await setup(t, { maxHeadersCount: 10, maxRequestHeadersKb: 4, maxUrlBytes: 200 });
  const send = (head: string) => rawExchange(port('egress'), head, { from: TIE, ms: 1500 });
  const many = Array.from({ length: 12 }, (_, i) => `x-h${i}: v\r\n`).join('');
  t.match(await send(`GET http://127.0.0.20:80/ HTTP/1.1\r\nhost: 127.0.0.20\r\n${many}\r\n`), /^HTTP\/1\.1 431 /, 'too many headers: 431');
  t.match(await send(`GET http://127.0.0.20:80/ HTTP/1.1\r\nhost: 127.0.0.20\r\nx-big: ${'a'.repeat(5000)}\r\n\r\n`), /^HTTP\/1\.1 431 /, 'header bytes: 431');
  t.match(await send(`GET http://127.0.0.20:80/${'p'.repeat(300)} HTTP/1.1\r\nhost: 127.0.0.20\r\n\r\n`), /^HTTP\/1\.1 414 /, 'URL length: 414');
});
