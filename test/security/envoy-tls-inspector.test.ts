/**
 * Differential pass against Envoy's TLS inspector (the listener filter Cilium puts in
 * front of a `serverNames` port): every case of
 * envoyproxy/envoy test/extensions/filters/listener/tls_inspector/tls_inspector_test.cc,
 * tls_inspector_integration_test.cc and tls_inspector_benchmark.cc that means something
 * for an SNI gate, plus the ClientHello rules those tests lean on — Envoy hands the bytes
 * to BoringSSL (source/extensions/filters/listener/tls_inspector/tls_inspector.cc
 * parseClientHello → SSL_do_handshake; the SNI arrives in the servername callback), so
 * "Envoy's outcome" below is BoringSSL's: `ssl_client_hello_init` (ssl/extensions.cc:
 * session_id ≤ 32, cipher_suites ≥ 2 and even, compression_methods ≥ 1, no duplicate
 * extension, nothing after the extensions block) and `extract_sni`
 * (ssl/handshake_server.cc: exactly one ServerNameList entry, of type host_name,
 * 1..255 bytes, no NUL), and the version check of Envoy 1.39
 * (`tls_inspector_enforce_client_tls_version`: client version TLS 1.0..1.3).
 *
 * Each case sends raw bytes (built here byte by byte, ported from Envoy's builders
 * CreateClientHello / generateClientHelloFromJA3Fingerprint, or captured from node:tls
 * and `openssl s_client`) through the running proxy's egress listener, both as a CONNECT
 * tunnel and as a transparent (PROXY header) connection, under a policy that allows only
 * `serverNames: [allowed.example.test]` towards a local TLS server. It asserts
 *   (a) Envoy's outcome class — SNI extracted = X / no SNI / parse failure / client
 *       gone or silent — both on the parser (`parseClientHello`) and as the proxy's
 *       verdict: Cilium allows only an extracted SNI its SniPattern matches
 *       (case-insensitive, full match), everything else is not allowed;
 *   (b) denied or unparseable: the client gets nothing from upstream, the connection is
 *       closed by the proxy, and the destination never sees a TCP connection; allowed:
 *       the destination receives exactly the bytes the client sent, in order.
 * A case where l7warden answers otherwise than Envoy/Cilium on purpose carries
 * `deliberate` (the reason), and has a row in docs/hardening.md (TLS section).
 */
import t from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { parseClientHello, type ClientHelloResult } from '../../src/tls/client-hello.js';
import { EgressHarness, KUBE_DNS } from '../helpers/egress-harness.js';
import type { TestT } from '../helpers/tap.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const ALLOWED = 'allowed.example.test';
const OTHER = 'other.example.test';
const DEST_IP = '127.0.0.80';
const HEADERS_TIMEOUT_MS = 1500;

// ---------------------------------------------------------------------------------------
// The destination: a TLS server for allowed.example.test behind a recording relay on
// DEST_IP. Every TCP connection the relay accepts and every byte it receives is kept
// (before it goes on to the TLS server), so "nothing dialled" and "byte for byte" are
// judged where the proxy's upstream connection ends.

const ca = makeCA({ commonName: 'destination CA' });
const leaf = makeLeaf(ca, { dns: [ALLOWED] });
const tlsServer = tls.createServer({ cert: leaf.certPem, key: leaf.keyPem, ALPNProtocols: ['h2', 'http/1.1'] }, (s) => {
  s.on('error', () => {});
  s.on('data', (d: Buffer) => s.write(Buffer.concat([Buffer.from('echo:'), d])));
});
tlsServer.on('tlsClientError', () => {});
tlsServer.listen(0, '127.0.0.1');
await once(tlsServer, 'listening');
const TLS_PORT = (tlsServer.address() as net.AddressInfo).port;

interface Arrival {
  readonly chunks: Buffer[];
}
const arrivals: Arrival[] = [];
const relaySockets = new Set<net.Socket>();
const dest = net.createServer((s) => {
  const a: Arrival = { chunks: [] };
  arrivals.push(a);
  const up = net.connect({ host: '127.0.0.1', port: TLS_PORT });
  relaySockets.add(s);
  relaySockets.add(up);
  s.on('data', (d: Buffer) => {
    a.chunks.push(d);
    up.write(d);
  });
  up.on('data', (d: Buffer) => s.write(d));
  s.on('error', () => up.destroy());
  up.on('error', () => s.destroy());
  s.on('close', () => {
    relaySockets.delete(s);
    up.destroy();
  });
  up.on('close', () => {
    relaySockets.delete(up);
    s.destroy();
  });
});
dest.listen(0, DEST_IP);
await once(dest, 'listening');
const PORT = (dest.address() as net.AddressInfo).port;

const h = await EgressHarness.start(() => ({
  pods: [KUBE_DNS, APP],
  policies: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: sni-only }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toCIDR: [${DEST_IP}/32]
    toPorts:
    - ports: [{ port: "${PORT}", protocol: TCP }]
      serverNames: [${ALLOWED}]
`,
  limits: `{ headersTimeoutMs: ${HEADERS_TIMEOUT_MS} }`,
  extraListeners: `    - name: tproxy
      mode: egress
      address: 127.0.0.1:0
      sourceIdentity: [proxyProtocol]
`,
}));
t.teardown(async () => {
  await h.close();
  for (const s of relaySockets) s.destroy();
  dest.close();
  tlsServer.close();
});

// ---------------------------------------------------------------------------------------
// ClientHello builders (RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2 wire format).

const u8 = (n: number) => Buffer.from([n & 0xff]);
const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const u24 = (n: number) => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
const bytes = (v: Buffer | string | readonly number[]) => (Buffer.isBuffer(v) ? v : typeof v === 'string' ? Buffer.from(v, 'latin1') : Buffer.from(v));
const cat = (...parts: Array<Buffer | string | readonly number[]>) => Buffer.concat(parts.map(bytes));
const vec8 = (...b: Array<Buffer | string | readonly number[]>) => {
  const body = cat(...b);
  return cat(u8(body.length), body);
};
const vec16 = (...b: Array<Buffer | string | readonly number[]>) => {
  const body = cat(...b);
  return cat(u16(body.length), body);
};
const u16s = (...v: number[]) => cat(...v.map(u16));
const ext = (type: number, ...body: Array<Buffer | string | readonly number[]>) => cat(u16(type), vec16(...body));
/** One ServerNameList entry: name_type and a length-prefixed name. */
const entry = (type: number, name: Buffer | string) => cat(u8(type), vec16(name));
/** server_name extension with these entries. */
const sniEntries = (...entries: Buffer[]) => ext(0, vec16(...entries));
/** server_name extension with one host_name. */
const sni = (name: Buffer | string) => sniEntries(entry(0, name));
const alpn = (...protocols: string[]) => ext(16, vec16(...protocols.map((p) => vec8(p))));
const padding = (n: number) => ext(21, Buffer.alloc(n));

interface HelloOpts {
  readonly version?: number; // legacy_version
  readonly sessionId?: Buffer;
  readonly ciphers?: Buffer; // the suites, without their length
  readonly compression?: Buffer; // the methods, without their length
  /** Extensions (a block with their total length); undefined = no block at all. */
  readonly exts?: readonly Buffer[];
  /** Raw bytes after compression_methods, instead of `exts`. */
  readonly tail?: Buffer;
}
const RANDOM = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1)); // Envoy's std::iota(…, 1)
function helloBody(o: HelloOpts = {}): Buffer {
  const rest = o.tail ?? (o.exts === undefined ? Buffer.alloc(0) : vec16(...o.exts));
  return cat(u16(o.version ?? 0x0303), RANDOM, vec8(o.sessionId ?? Buffer.alloc(0)), vec16(o.ciphers ?? u16s(0xc02f)), vec8(o.compression ?? [0]), rest);
}
const handshake = (type: number, body: Buffer) => cat(u8(type), u24(body.length), body);
const record = (type: number, version: number, payload: Buffer) => cat(u8(type), u16(version), vec16(payload));
/** One handshake record holding one ClientHello. */
const hello = (o: HelloOpts = {}) => record(0x16, 0x0301, handshake(1, helloBody(o)));

/** Port of tls_inspector_test.cc CreateClientHello(host_name, padding_size, include_extensions, tls_version). */
function createClientHello(host: string | Buffer, paddingSize = 0, includeExtensions = true, tlsVersion = 0x0303): Buffer {
  const exts: Buffer[] = [];
  if (host.length > 0) exts.push(sni(host));
  if (paddingSize > 0) exts.push(ext(0xffff, Buffer.alloc(paddingSize, 0xaa)));
  return hello({ version: tlsVersion, ...(includeExtensions && exts.length > 0 ? { exts } : {}) });
}

/**
 * Port of tls_utility.cc generateClientHelloFromJA3Fingerprint, with the server_name
 * extension naming `name` instead of www.envoyproxy.io; `size` pads the record (ext 21)
 * to that many bytes, as the 17000-byte variant of ClientHelloTooBig.
 */
function fromJA3(fingerprint: string, name: string, size?: number): Buffer {
  const [version, ciphers, extensions, curves, formats] = fingerprint.split(',') as [string, string, string, string, string];
  const list = (s: string) => s.split('-').filter((x) => x !== '').map(Number);
  const exts: Buffer[] = [];
  for (const id of list(extensions)) {
    if (id === 0x0a) exts.push(ext(0x0a, vec16(u16s(...list(curves)))));
    else if (id === 0x0b) exts.push(ext(0x0b, vec8(list(formats))));
    else if (id === 0x00) exts.push(sni(name));
    else if (id === 0x0d) exts.push(ext(0x0d, vec16(u16s(0x0403))));
    else if (id === 0x10) exts.push(alpn('HTTP/1.1'));
    else exts.push(ext(id));
  }
  const base = { version: Number(version), ciphers: u16s(...list(ciphers)), exts };
  if (size === undefined) return hello(base);
  const without = hello(base).length;
  return hello({ ...base, exts: [...exts, padding(size - without - 4)] });
}

/** A TLS 1.3 ClientHello as a current browser sends it: GREASE everywhere, ECH GREASE, many extensions. */
function browserLike(name: string): Buffer {
  const exts = [
    ext(0x0a0a),
    sni(name),
    ext(23), // extended_master_secret
    ext(0xff01, [0]), // renegotiation_info
    ext(10, vec16(u16s(0x2a2a, 0x11ec, 0x001d, 0x0017, 0x0018))), // supported_groups
    ext(11, vec8([0])), // ec_point_formats
    ext(35), // session_ticket
    alpn('h2', 'http/1.1'),
    ext(5, [1, 0, 0, 0, 0]), // status_request
    ext(13, vec16(u16s(0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601))),
    ext(18), // signed_certificate_timestamp
    ext(51, vec16(u16(0x2a2a), vec16([0]), u16(0x001d), vec16(Buffer.alloc(32, 7)))), // key_share
    ext(45, vec8([1])), // psk_key_exchange_modes
    ext(43, vec8(u16s(0x3a3a, 0x0304, 0x0303))), // supported_versions
    ext(27, vec8(u16s(2))), // compress_certificate
    ext(17513, vec16(vec8('h2'))), // application_settings
    ext(0xfe0d, [0], u16s(1, 1), [0x42], vec16(Buffer.alloc(32, 9)), vec16(Buffer.alloc(144, 3))), // encrypted_client_hello (GREASE)
    ext(0x4a4a, [0]), // GREASE with one byte
    padding(200),
  ];
  return hello({
    sessionId: Buffer.alloc(32, 0x5a),
    ciphers: u16s(0x1a1a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035),
    exts,
  });
}

/** The first TLS record a node:tls client sends (captured by a plain TCP server on loopback). */
async function nodeHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const got = new Promise<Buffer>((resolve) => {
    srv.once('connection', (s) => {
      const chunks: Buffer[] = [];
      s.on('error', () => {});
      s.on('data', (d: Buffer) => {
        chunks.push(d);
        const b = Buffer.concat(chunks);
        if (b.length >= 5 && b.length >= 5 + b.readUInt16BE(3)) {
          s.destroy();
          resolve(b);
        }
      });
    });
  });
  const c = tls.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, rejectUnauthorized: false, ...opts });
  c.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  const b = await Promise.race([got, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no ClientHello within 5 s')), 5000)))]);
  clearTimeout(timer);
  c.destroy();
  srv.close();
  return b;
}

/** The first record `openssl s_client` sends; undefined when openssl cannot be run. */
async function opensslHello(args: string[]): Promise<Buffer | undefined> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  const got = new Promise<Buffer | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 5000);
    srv.once('connection', (s) => {
      const chunks: Buffer[] = [];
      s.on('error', () => {});
      s.on('data', (d: Buffer) => {
        chunks.push(d);
        const b = Buffer.concat(chunks);
        if (b.length >= 5 && b.length >= 5 + b.readUInt16BE(3)) {
          clearTimeout(timer);
          s.destroy();
          resolve(b);
        }
      });
    });
  });
  const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...args], { timeout: 6000 }, () => {});
  child.on('error', () => {});
  child.stdin?.end();
  const b = await got;
  child.kill();
  srv.close();
  return b;
}

// ---------------------------------------------------------------------------------------
// Driving the proxy.

type Mode = 'connect' | 'transparent';
const MODES: readonly Mode[] = ['connect', 'transparent'];

/** A connection from the app to DEST_IP:PORT through the proxy, ready for the first TLS byte. */
async function open(mode: Mode): Promise<{ s: net.Socket; after: Buffer[]; closed: Promise<boolean> }> {
  const s = net.connect(mode === 'connect' ? { host: '127.0.0.1', port: h.egressPort, localAddress: APP.ip } : { host: '127.0.0.1', port: h.port('tproxy') });
  s.on('error', () => {});
  const after: Buffer[] = [];
  // true when the proxy closed it (not our bound).
  const closed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, HEADERS_TIMEOUT_MS + 5000);
    s.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  await once(s, 'connect');
  if (mode === 'transparent') {
    s.write(`PROXY TCP4 ${APP.ip} ${DEST_IP} 40001 ${PORT}\r\n`);
    s.on('data', (d: Buffer) => after.push(d));
    return { s, after, closed };
  }
  s.write(`CONNECT ${DEST_IP}:${PORT} HTTP/1.1\r\nHost: ${DEST_IP}:${PORT}\r\n\r\n`);
  let head = Buffer.alloc(0);
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      if (!head.subarray(0, end).toString('latin1').startsWith('HTTP/1.1 200')) reject(new Error(`CONNECT answered ${head.toString('latin1')}`));
      if (head.length > end + 4) after.push(head.subarray(end + 4));
      s.on('data', (x: Buffer) => after.push(x));
      resolve();
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error('closed before the CONNECT answer')));
  });
  return { s, after, closed };
}

/** Wait (bounded) until `cond` holds; polls the event loop. */
async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
const settle = () => new Promise((r) => setTimeout(r, 100));

type Send = Buffer | ((s: net.Socket) => Promise<void> | void);

/** Denied / unparseable: closed by the proxy, nothing from upstream, nothing dialled. */
async function expectRefused(t: TestT, mode: Mode, send: Send): Promise<void> {
  const before = arrivals.length;
  const c = await open(mode);
  if (typeof send === 'function') await send(c.s);
  else c.s.write(send);
  t.ok(await c.closed, `${mode}: closed by the proxy`);
  await settle();
  t.equal(Buffer.concat(c.after).length, 0, `${mode}: nothing came back from upstream`);
  t.equal(arrivals.length, before, `${mode}: nothing dialled`);
}

/** Allowed: the destination receives exactly `sent` (every byte, in order). */
async function expectForwarded(t: TestT, mode: Mode, sent: Buffer, write?: (s: net.Socket) => Promise<void> | void): Promise<void> {
  const before = arrivals.length;
  const c = await open(mode);
  if (write) await write(c.s);
  else c.s.write(sent);
  const a = () => arrivals[before];
  const got = await until(() => a() !== undefined && Buffer.concat(a()!.chunks).length >= sent.length);
  t.ok(got, `${mode}: the destination got the bytes`);
  t.equal(arrivals.length, before + 1, `${mode}: one connection dialled`);
  const received = a() ? Buffer.concat(a()!.chunks) : Buffer.alloc(0);
  t.ok(received.equals(sent), `${mode}: byte for byte (${received.length} of ${sent.length})`);
  c.s.destroy();
  await c.closed;
}

// ---------------------------------------------------------------------------------------
// The cases.

/** Envoy's outcome on these bytes: the SNI it sets, none, or no TLS ClientHello. */
type Outcome =
  | { readonly sni: string }
  /** A ClientHello without a server name: sni_not_found, no requested server name. */
  | 'no-sni'
  /** BoringSSL refuses the bytes before the servername callback (or Envoy's own checks fail): tls_not_found / ParseState::Error. */
  | 'failure'
  /** The hello never completes (client gone, or silent): connection closed / listener filter timeout. */
  | 'incomplete';

interface Case {
  readonly name: string;
  /** The Envoy test (or the rule in tls_inspector.cc / BoringSSL it relies on). */
  readonly envoy: string;
  readonly outcome: Outcome;
  readonly bytes: Buffer;
  /** How the bytes are written (default: one write). */
  readonly write?: (s: net.Socket, b: Buffer) => Promise<void> | void;
  /** l7warden answers otherwise than Cilium would, on purpose (docs/hardening.md TLS). */
  readonly deliberate?: { readonly reason: string; readonly parse?: ClientHelloResult; readonly forwarded?: boolean };
}

/** What Cilium decides with Envoy's outcome: only an SNI its SniPattern matches (full, case-insensitive) is allowed. */
const ciliumAllows = (o: Outcome) => typeof o === 'object' && o.sni.toLowerCase() === ALLOWED;
/** The parser result that is the same outcome class (names lowercased, as the parser hands them on). */
function sameClass(o: Outcome): ClientHelloResult {
  if (typeof o === 'object') return { kind: 'sni', name: o.sni.toLowerCase() };
  if (o === 'no-sni') return { kind: 'none' };
  if (o === 'failure') return { kind: 'invalid' };
  return { kind: 'partial' };
}

const byteAtATime = async (s: net.Socket, b: Buffer) => {
  for (let i = 0; i < b.length; i++) {
    s.write(b.subarray(i, i + 1));
    if (i % 16 === 0) await new Promise((r) => setImmediate(r));
  }
};
const thenEnd = (s: net.Socket, b: Buffer) => {
  s.end(b);
};

const long = (n: number) => {
  // Labels of at most 63 characters, exactly n characters in all, ending in .test.
  const labels: string[] = [];
  let left = n - '.test'.length;
  while (left > 0) {
    const len = Math.min(63, left - (labels.length > 0 ? 1 : 0));
    if (len <= 0) break;
    labels.push('a'.repeat(len));
    left -= len + (labels.length > 1 ? 1 : 0);
  }
  const name = `${labels.join('.')}.test`;
  if (name.length !== n) throw new Error(`long(${n}) built ${name.length}`);
  return name;
};

const CURL_JA3 =
  '771,49200-49196-49192-49188-49172-49162-159-107-57-52393-52392-52394-65413-196-136-129-157-61-53-192-132-49199-49195-49191-49187-49171-49161-158-103-51-190-69-156-60-47-186-65-49169-49159-5-4-49170-49160-22-10-255,0-11-10-13-16,29-23-24,0';
const GREASE = Array.from({ length: 15 }, (_, i) => 0x0a0a + 0x1010 * i).join('-');
const [ja3v, ja3c, ja3rest] = [CURL_JA3.split(',')[0], CURL_JA3.split(',')[1], CURL_JA3.split(',').slice(2).join(',')];
const CURL_JA3_GREASE = `${ja3v},${GREASE}-${ja3c},${GREASE}-${ja3rest}`;

const minimal = (exts: readonly Buffer[], o: Omit<HelloOpts, 'exts'> = {}) => hello({ ...o, exts });
const allowedHello = createClientHello(ALLOWED);

const versionHellos = await Promise.all(
  (['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const).map((v) => nodeHello({ servername: ALLOWED, minVersion: v, maxVersion: v, ciphers: 'DEFAULT@SECLEVEL=0' })),
);
const nodeAlpnOnly = await nodeHello({ ALPNProtocols: ['h2', 'http/1.1'] });
const nodeSniAlpn = await nodeHello({ servername: ALLOWED, ALPNProtocols: ['h2', 'http/1.1'] });
const nodeSniH2 = await nodeHello({ servername: ALLOWED, ALPNProtocols: ['h2'] });
const nodeOther = await nodeHello({ servername: OTHER });
const nodeNoSni = await nodeHello({});
const nodeTls12NoSni = await nodeHello({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });

/** A node hello whose cipher list is replaced by 100 suites (JA4MaxValuesCiphers), lengths fixed up. */
function manyCiphers(h0: Buffer): Buffer {
  const sidLen = h0[43]!;
  const at = 44 + sidLen;
  const oldLen = h0.readUInt16BE(at);
  const suites = u16s(...Array.from({ length: 100 }, (_, i) => [0x1301, 0x1302, 0x1303, 0x1304, 0x1305][i % 5]!));
  const body = cat(h0.subarray(9, at), vec16(suites), h0.subarray(at + 2 + oldLen));
  return record(0x16, h0.readUInt16BE(1), handshake(1, body));
}

/** Split one ClientHello over two handshake records after `cut` bytes of the handshake message. */
function twoRecords(b: Buffer, cut: number): Buffer {
  const msg = b.subarray(5);
  return cat(record(0x16, 0x0301, msg.subarray(0, cut)), record(0x16, 0x0301, msg.subarray(cut)));
}

const maxRecordHello = (payload: number) => {
  const base = minimal([sni(ALLOWED)]);
  return minimal([sni(ALLOWED), padding(payload - (base.length - 5) - 4)]);
};

const CASES: Case[] = [
  // --- SNI present / absent ---------------------------------------------------------
  { name: 'node:tls ClientHello with SNI allowed.example.test', envoy: 'TlsInspectorTest.SniRegistered', outcome: { sni: ALLOWED }, bytes: versionHellos[3]! },
  { name: 'node:tls ClientHello with another SNI', envoy: 'TlsInspectorTest.SniRegistered (a name serverNames does not list)', outcome: { sni: OTHER }, bytes: nodeOther },
  ...(['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const).map((v, i) => ({
    name: `${v}-only client (min = max = ${v}), SNI allowed`,
    envoy: `TlsInspectorTest.SniRegistered, INSTANTIATE_TEST_SUITE_P TlsProtocolVersions (${v})`,
    outcome: { sni: ALLOWED },
    bytes: versionHellos[i]!,
  })),
  { name: 'CreateClientHello(allowed) — one cipher, one extension', envoy: 'CreateClientHello helper (TlsVersionTooLow with 0x0303)', outcome: { sni: ALLOWED }, bytes: allowedHello },
  { name: 'no SNI (node:tls connecting without servername)', envoy: 'TlsInspectorTest.NoExtensions / AlpnRegistered (sni_not_found)', outcome: 'no-sni', bytes: nodeNoSni },
  { name: 'no extensions block at all', envoy: 'TlsInspectorTest.NoExtensions, JA4WithNoExtensions', outcome: 'no-sni', bytes: hello() },
  { name: 'empty extensions block (length 0)', envoy: 'TlsInspectorTest.JA4EmptyExtensionsList', outcome: 'no-sni', bytes: hello({ exts: [] }) },
  { name: 'TLS 1.2 only, no SNI, no ALPN', envoy: 'TlsInspectorTest.JA4VersionFallback', outcome: 'no-sni', bytes: nodeTls12NoSni },
  { name: 'JA3 curl ClientHello (SNI, curves, point formats, sigalgs, ALPN)', envoy: 'TlsInspectorTest.ConnectionJA3Hash', outcome: { sni: ALLOWED }, bytes: fromJA3(CURL_JA3, ALLOWED) },
  { name: 'JA3 curl ClientHello with 15 GREASE ciphers and 15 GREASE extensions', envoy: 'TlsInspectorTest.ConnectionJA3HashGREASE', outcome: { sni: ALLOWED }, bytes: fromJA3(CURL_JA3_GREASE, ALLOWED) },
  {
    name: 'JA3 without curves or point formats (session_ticket, ALPN, ETM, EMS)',
    envoy: 'TlsInspectorTest.ConnectionJA3HashNoEllipticCurvesOrPointFormats',
    outcome: { sni: ALLOWED },
    bytes: fromJA3('771,157-49313-49309-156-49312-49308-61-60-53-47-255,0-35-16-22-23-13,,', ALLOWED),
  },
  { name: 'JA3 TLS 1.0, no extensions', envoy: 'TlsInspectorTest.ConnectionJA3HashTls10NoExtensions (expect_server_name = false)', outcome: 'no-sni', bytes: fromJA3('769,49162-49157-49161-49156-49159-49154-49160-49155-49172-49167-49171-49166-49169-49164-49170-49165-57-51-53-47-5-4-10,,,', ALLOWED) },
  { name: 'JA3 TLS 1.1 with SNI', envoy: 'TlsInspectorTest.ConnectionJA3HashTls11', outcome: { sni: ALLOWED }, bytes: fromJA3('770,49162-49172-49161-49171-57-56-51-50-53-47-255,0-11-10-16-22-23,5,0-1-2', ALLOWED) },
  { name: 'TLS 1.3 browser-like: GREASE cipher/group/version/extensions, key_share, ECH GREASE, padding', envoy: 'TlsInspectorTest.ConnectionJA3HashGREASE (GREASE), JA4Basic (TLS 1.3)', outcome: { sni: ALLOWED }, bytes: browserLike(ALLOWED) },
  { name: 'TLS 1.3 browser-like with another SNI', envoy: 'TlsInspectorTest.ConnectionJA3HashGREASE', outcome: { sni: OTHER }, bytes: browserLike(OTHER) },
  { name: '100 cipher suites', envoy: 'TlsInspectorTest.JA4MaxValuesCiphers', outcome: { sni: ALLOWED }, bytes: manyCiphers(versionHellos[3]!) },
  {
    name: 'ECH: outer SNI allowed, encrypted_client_hello payload the proxy cannot open',
    envoy: 'tls_inspector.cc onServername (BoringSSL without ECH keys reports the ClientHelloOuter name)',
    outcome: { sni: ALLOWED },
    bytes: minimal([sni(ALLOWED), ext(0xfe0d, [0], u16s(1, 1), [7], vec16(Buffer.alloc(32, 1)), vec16(Buffer.alloc(200, 2)))]),
  },
  {
    name: 'ECH: outer SNI another name',
    envoy: 'tls_inspector.cc onServername (ClientHelloOuter name)',
    outcome: { sni: OTHER },
    bytes: minimal([sni(OTHER), ext(0xfe0d, [0], u16s(1, 1), [7], vec16(Buffer.alloc(32, 1)), vec16(Buffer.alloc(200, 2)))]),
  },

  // --- ALPN -------------------------------------------------------------------------
  { name: 'ALPN h2,http/1.1 without SNI', envoy: 'TlsInspectorTest.AlpnRegistered, JA4WithALPN', outcome: 'no-sni', bytes: nodeAlpnOnly },
  { name: 'SNI allowed + ALPN h2,http/1.1', envoy: 'tls_inspector_benchmark.cc bmTlsInspector, JA4WithSNIAndALPN', outcome: { sni: ALLOWED }, bytes: nodeSniAlpn },
  { name: 'SNI another name + ALPN "nomatch"', envoy: 'TlsInspectorIntegrationTest.SniCapturedOnFilterChainNotFound', outcome: { sni: 'test.example.com' }, bytes: minimal([sni('test.example.com'), alpn('nomatch')]) },
  { name: 'SNI allowed + single-character ALPN and ALPN "*2)"', envoy: 'TlsInspectorTest.JA4WithSingleCharacterALPN, JA4NonAlphanumericALPN', outcome: { sni: ALLOWED }, bytes: minimal([sni(ALLOWED), alpn('h', '*2)')]) },
  {
    name: 'SNI allowed + malformed ALPN (list length lies, empty protocol)',
    envoy: 'tls_inspector.cc onALPN ("Don\'t produce errors, let the real TLS stack do it"), JA4WithEmptyALPN',
    outcome: { sni: ALLOWED },
    bytes: minimal([sni(ALLOWED), ext(16, u16(40), [0])]),
  },

  // --- the ServerNameList and the host_name -------------------------------------------
  { name: 'SNI in mixed case', envoy: 'SniRegistered; cilium/proxy SniPattern matches case-insensitively', outcome: { sni: 'ALLOWED.Example.TEST' }, bytes: createClientHello('ALLOWED.Example.TEST') },
  {
    name: 'SNI with a trailing dot',
    envoy: 'SniRegistered (BoringSSL passes "allowed.example.test." on; cilium/proxy SniPattern does not match it)',
    outcome: { sni: `${ALLOWED}.` },
    bytes: createClientHello(`${ALLOWED}.`),
    deliberate: { reason: 'the trailing dot is dropped before deciding (the same DNS name; docs/hardening.md TLS: upper case or trailing dot)', parse: { kind: 'sni', name: ALLOWED }, forwarded: true },
  },
  { name: 'SNI with NUL: allowed.example.test\\0.evil.test', envoy: 'BoringSSL extract_sni (CBS_contains_zero_byte → unrecognized_name)', outcome: 'failure', bytes: createClientHello(cat(ALLOWED, [0], '.evil.test')) },
  { name: 'SNI ending in NUL', envoy: 'BoringSSL extract_sni (zero byte)', outcome: 'failure', bytes: createClientHello(cat(ALLOWED, [0])) },
  { name: 'empty host_name', envoy: 'BoringSSL extract_sni (CBS_len(host_name) == 0)', outcome: 'failure', bytes: minimal([sni('')]) },
  { name: 'empty ServerNameList', envoy: 'BoringSSL extract_sni (CBS_get_u8 name_type fails → decode_error)', outcome: 'failure', bytes: minimal([ext(0, vec16())]) },
  { name: 'empty server_name extension (the ServerHello form)', envoy: 'BoringSSL extract_sni (no ServerNameList → decode_error)', outcome: 'failure', bytes: minimal([ext(0)]) },
  { name: 'two host_name entries: allowed, then another', envoy: 'BoringSSL extract_sni (CBS_len(server_name_list) != 0)', outcome: 'failure', bytes: minimal([sniEntries(entry(0, ALLOWED), entry(0, OTHER))]) },
  { name: 'two host_name entries: another, then allowed', envoy: 'BoringSSL extract_sni (one entry only)', outcome: 'failure', bytes: minimal([sniEntries(entry(0, OTHER), entry(0, ALLOWED))]) },
  { name: 'name_type 1 entry, then host_name allowed', envoy: 'BoringSSL extract_sni (name_type != host_name; a single entry)', outcome: 'failure', bytes: minimal([sniEntries(entry(1, OTHER), entry(0, ALLOWED))]) },
  { name: 'host_name allowed, then a name_type 1 entry', envoy: 'BoringSSL extract_sni (a single entry)', outcome: 'failure', bytes: minimal([sniEntries(entry(0, ALLOWED), entry(1, OTHER))]) },
  { name: 'a lone entry of name_type 1 naming allowed.example.test', envoy: 'BoringSSL extract_sni (name_type != host_name)', outcome: 'failure', bytes: minimal([sniEntries(entry(1, ALLOWED))]) },
  {
    name: 'non-ASCII SNI (UTF-8 "allowéd.example.test")',
    envoy: 'SniRegistered (BoringSSL passes any non-NUL bytes; cilium/proxy SniPattern matches DNS characters only)',
    outcome: { sni: 'allowéd.example.test' },
    bytes: createClientHello(Buffer.from('allowéd.example.test', 'utf8')),
    deliberate: { reason: 'a host_name with bytes outside a DNS name is a malformed hello here (refused whatever the patterns: none could match it in Cilium either)', parse: { kind: 'invalid' } },
  },
  {
    name: 'SNI with a space, "/" or "@" (allowed.example.test/x)',
    envoy: 'SniRegistered (BoringSSL passes it; SniPattern cannot match it)',
    outcome: { sni: `${ALLOWED}/x` },
    bytes: createClientHello(`${ALLOWED}/x`),
    deliberate: { reason: 'bytes outside a DNS name: malformed here, no match in Cilium — the same verdict', parse: { kind: 'invalid' } },
  },
  { name: 'Punycode SNI (xn--allowd-fva.example.test)', envoy: 'SniRegistered', outcome: { sni: 'xn--allowd-fva.example.test' }, bytes: createClientHello('xn--allowd-fva.example.test') },
  { name: 'an IP literal as SNI', envoy: 'SniRegistered (BoringSSL does not care what the name is)', outcome: { sni: DEST_IP }, bytes: createClientHello(DEST_IP) },
  { name: '248-character SNI with a 240-character label', envoy: 'TlsInspectorIntegrationTest.RequestedBufferSizeCanGrow / RequestedBufferSizeCanStartBig', outcome: { sni: `${'a'.repeat(240)}.foo.com` }, bytes: createClientHello(`${'a'.repeat(240)}.foo.com`) },
  { name: '253-character SNI', envoy: 'BoringSSL extract_sni (≤ TLSEXT_MAXLEN_host_name = 255)', outcome: { sni: long(253) }, bytes: createClientHello(long(253)) },
  {
    name: '255-character SNI',
    envoy: 'BoringSSL extract_sni (≤ TLSEXT_MAXLEN_host_name = 255)',
    outcome: { sni: long(255) },
    bytes: createClientHello(long(255)),
    deliberate: { reason: 'a DNS name has at most 253 characters: longer is malformed here; SniPattern literal names cannot be that long either — the same verdict', parse: { kind: 'invalid' } },
  },
  { name: '256-character SNI', envoy: 'BoringSSL extract_sni (> TLSEXT_MAXLEN_host_name)', outcome: 'failure', bytes: createClientHello(long(256)) },

  // --- extension and length structure -------------------------------------------------
  { name: 'two server_name extensions, both allowed', envoy: 'BoringSSL ssl_client_hello_init (tls1_check_duplicate_extensions)', outcome: 'failure', bytes: minimal([sni(ALLOWED), sni(ALLOWED)]) },
  { name: 'two server_name extensions: allowed, then another', envoy: 'BoringSSL ssl_client_hello_init (duplicate extension)', outcome: 'failure', bytes: minimal([sni(ALLOWED), sni(OTHER)]) },
  { name: 'SNI allowed + two ALPN extensions', envoy: 'BoringSSL ssl_client_hello_init (duplicate extension of any type)', outcome: 'failure', bytes: minimal([sni(ALLOWED), alpn('h2'), alpn('http/1.1')]) },
  { name: 'SNI allowed + the same GREASE extension twice', envoy: 'BoringSSL ssl_client_hello_init (duplicate extension)', outcome: 'failure', bytes: minimal([ext(0x1a1a), sni(ALLOWED), ext(0x1a1a)]) },
  {
    name: 'extensions block shorter than the hello: a second server_name (another name) after it',
    envoy: 'BoringSSL ssl_client_hello_init (CBS_len(client_hello) != 0 after the extensions)',
    outcome: 'failure',
    bytes: hello({ tail: cat(vec16(sni(ALLOWED)), sni(OTHER)) }),
  },
  { name: 'one stray byte after the extensions block', envoy: 'BoringSSL ssl_client_hello_init (trailing data)', outcome: 'failure', bytes: hello({ tail: cat(vec16(sni(ALLOWED)), [0]) }) },
  { name: 'extensions block longer than the hello', envoy: 'BoringSSL ssl_client_hello_init (CBS_get_u16_length_prefixed)', outcome: 'failure', bytes: hello({ tail: cat(u16(300), sni(ALLOWED)) }) },
  { name: 'an extension longer than the extensions block', envoy: 'BoringSSL tls1_check_duplicate_extensions (extension overruns)', outcome: 'failure', bytes: hello({ tail: vec16(u16(0), u16(200), vec16(entry(0, ALLOWED))) }) },
  { name: 'server_name extension swallowing the next extension (overlap)', envoy: 'BoringSSL extract_sni (CBS_len(sni) != 0)', outcome: 'failure', bytes: minimal([ext(0, vec16(entry(0, ALLOWED)), alpn('h2'))]) },
  { name: 'ServerNameList length beyond the extension', envoy: 'BoringSSL extract_sni (CBS_get_u16_length_prefixed)', outcome: 'failure', bytes: minimal([ext(0, u16(100), entry(0, ALLOWED))]) },
  { name: 'host_name length beyond the list', envoy: 'BoringSSL extract_sni (CBS_get_u16_length_prefixed)', outcome: 'failure', bytes: minimal([ext(0, vec16(u8(0), u16(100), ALLOWED))]) },
  { name: 'extensions length field cut to one byte', envoy: 'BoringSSL ssl_client_hello_init', outcome: 'failure', bytes: hello({ tail: Buffer.from([0]) }) },
  { name: 'legacy_session_id of 33 bytes', envoy: 'BoringSSL ssl_client_hello_init (session_id > SSL_MAX_SSL_SESSION_ID_LENGTH)', outcome: 'failure', bytes: minimal([sni(ALLOWED)], { sessionId: Buffer.alloc(33, 1) }) },
  { name: 'legacy_session_id of 32 bytes', envoy: 'BoringSSL ssl_client_hello_init', outcome: { sni: ALLOWED }, bytes: minimal([sni(ALLOWED)], { sessionId: Buffer.alloc(32, 1) }) },
  { name: 'no cipher suites', envoy: 'BoringSSL ssl_client_hello_init (cipher_suites < 2)', outcome: 'failure', bytes: minimal([sni(ALLOWED)], { ciphers: Buffer.alloc(0) }) },
  { name: 'odd cipher_suites length', envoy: 'BoringSSL ssl_client_hello_init (cipher_suites & 1)', outcome: 'failure', bytes: minimal([sni(ALLOWED)], { ciphers: Buffer.from([0xc0, 0x2f, 0x13]) }) },
  { name: 'no compression methods', envoy: 'BoringSSL ssl_client_hello_init (compression_methods < 1)', outcome: 'failure', bytes: minimal([sni(ALLOWED)], { compression: Buffer.alloc(0) }) },
  {
    name: 'handshake message shorter than its record (another message after the ClientHello)',
    envoy: 'SniRegistered (BoringSSL reads the ClientHello message; the servername callback ends the handshake before the rest)',
    outcome: { sni: ALLOWED },
    bytes: record(0x16, 0x0301, cat(handshake(1, helloBody({ exts: [sni(ALLOWED)] })), handshake(1, helloBody({ exts: [sni(OTHER)] })))),
  },

  // --- versions -----------------------------------------------------------------------
  { name: 'client version SSL 3.0 (0x0300), SNI allowed', envoy: 'TlsInspectorTest.TlsVersionTooLow (failure: ClientHelloInvalidTlsVersion)', outcome: 'failure', bytes: createClientHello(ALLOWED, 0, true, 0x0300) },
  { name: 'client version 0x0305 (above TLS 1.3), SNI allowed', envoy: 'TlsInspectorTest.TlsVersionTooHigh', outcome: 'failure', bytes: createClientHello(ALLOWED, 0, true, 0x0305) },
  { name: 'client version 0x0200, SNI allowed', envoy: 'TlsInspectorTest.TlsVersionTooLow (below TLS 1.0)', outcome: 'failure', bytes: createClientHello(ALLOWED, 0, true, 0x0200) },
  { name: 'client version TLS 1.0 (0x0301) built by hand', envoy: 'TlsVersionTooLow / TooHigh bounds (TLS 1.0 is the minimum)', outcome: { sni: ALLOWED }, bytes: createClientHello(ALLOWED, 0, true, 0x0301) },
  { name: 'record-layer version 3.0 (0x0300) around a TLS 1.2 hello', envoy: 'BoringSSL tls_open_record (any 3.x before the version is known)', outcome: { sni: ALLOWED }, bytes: record(0x16, 0x0300, allowedHello.subarray(5)) },
  { name: 'record-layer version 0x0200', envoy: 'TlsInspectorTest.NotSsl (WRONG_VERSION_NUMBER)', outcome: 'failure', bytes: record(0x16, 0x0200, allowedHello.subarray(5)) },

  // --- not a ClientHello, not TLS ------------------------------------------------------
  { name: '100 zero bytes', envoy: 'TlsInspectorTest.NotSsl / NotSslCloseConnection', outcome: 'failure', bytes: Buffer.alloc(100) },
  { name: '50 zero bytes', envoy: 'TlsInspectorTest.JA4MalformedClientHello', outcome: 'failure', bytes: Buffer.alloc(50) },
  { name: '16385 zero bytes in one write', envoy: 'TlsInspectorTest.NotSslOverMaxReadBytesSingleRead', outcome: 'failure', bytes: Buffer.alloc(16385) },
  { name: '"fake data"', envoy: 'TlsInspectorIntegrationTest.ContinueOnListenerTimeout / TlsInspectorMetadataPopulatedInAccessLog (ClientHelloNotDetected)', outcome: 'failure', bytes: Buffer.from('fake data') },
  { name: 'a plaintext HTTP request on the serverNames port', envoy: 'TlsInspectorTest.NotSsl (plain text → tls_not_found, no SNI)', outcome: 'failure', bytes: Buffer.from(`GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\n`) },
  { name: 'SSLv2-compatible ClientHello', envoy: 'NotSsl class (no TLS record; a V2ClientHello carries no extensions, so no SNI)', outcome: 'failure', bytes: cat([0x80, 0x2e, 0x01], u16(0x0301), u16(21), u16(0), u16(16), [0x00, 0x00, 0x39, 0x00, 0x00, 0x38, 0x00, 0x00, 0x35, 0x00, 0xc0, 0x2f, 0x00, 0x00, 0x2f, 0x01, 0x00, 0x80, 0x00], Buffer.alloc(16, 0x33)) },
  { name: 'an alert record', envoy: 'NotSsl class (not a handshake record)', outcome: 'failure', bytes: record(0x15, 0x0301, Buffer.from([2, 40])) },
  { name: 'a ChangeCipherSpec record, then the allowed ClientHello', envoy: 'NotSsl class (unexpected record before the ClientHello)', outcome: 'failure', bytes: cat(record(0x14, 0x0303, Buffer.from([1])), allowedHello) },
  { name: 'an application_data record carrying the allowed ClientHello', envoy: 'NotSsl class (unexpected record)', outcome: 'failure', bytes: record(0x17, 0x0303, allowedHello.subarray(5)) },
  { name: 'a heartbeat record', envoy: 'NotSsl class (unexpected record)', outcome: 'failure', bytes: record(0x18, 0x0303, Buffer.from([1, 0, 16, ...Buffer.alloc(32)])) },
  { name: 'a ServerHello in a handshake record', envoy: 'NotSsl class (unexpected handshake message)', outcome: 'failure', bytes: record(0x16, 0x0303, handshake(2, helloBody({ exts: [sni(ALLOWED)] }))) },
  { name: 'a HelloRequest (type 0), then the ClientHello in the same record', envoy: 'NotSsl class (unexpected handshake message)', outcome: 'failure', bytes: record(0x16, 0x0301, cat(handshake(0, Buffer.alloc(0)), handshake(1, helloBody({ exts: [sni(ALLOWED)] })))) },

  // --- size ---------------------------------------------------------------------------
  { name: 'ClientHello of 17000 bytes in one record (SNI allowed)', envoy: 'TlsInspectorTest.ClientHelloTooBig / ClientHelloTooBigTreatParsingErrorAsPlainText', outcome: 'failure', bytes: fromJA3('769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0', ALLOWED, 17000) },
  { name: 'ClientHello of exactly 16384 bytes (record payload 16379), SNI allowed', envoy: 'TlsInspectorTest.RequestedMaxReadSizeDoesNotGoBeyondMaxSize (TLS_MAX_CLIENT_HELLO = 16384 is allowed)', outcome: { sni: ALLOWED }, bytes: maxRecordHello(16379) },
  {
    name: 'ClientHello record of 2^14 payload bytes (16389 bytes), SNI allowed',
    envoy: 'TlsInspectorTest.ClientHelloTooBig (more than TLS_MAX_CLIENT_HELLO = 16384 bytes peeked → client_hello_too_large)',
    outcome: 'failure',
    bytes: maxRecordHello(16384),
    deliberate: {
      reason: 'the limit here is one record (RFC 8446 §5.1: 2^14 payload bytes), Envoy counts its 16384-byte peek buffer; every length is still checked and the SNI read is the one the destination gets',
      parse: { kind: 'sni', name: ALLOWED },
      forwarded: true,
    },
  },
  { name: 'record claiming 16385 payload bytes', envoy: 'TlsInspectorTest.ClientHelloTooBig (DATA_LENGTH_TOO_LONG)', outcome: 'failure', bytes: cat([0x16, 0x03, 0x01], u16(16385), allowedHello.subarray(5), Buffer.alloc(16385 - (allowedHello.length - 5))) },
  {
    name: 'ClientHello over two records (SNI in the first)',
    envoy: 'TlsInspectorTest.MultipleReads class: BoringSSL reassembles the handshake message across records',
    outcome: { sni: ALLOWED },
    bytes: twoRecords(allowedHello, 60),
    deliberate: { reason: 'a ClientHello must fit in its first record (docs/hardening.md TLS: multi-record ClientHellos are reset on purpose)', parse: { kind: 'invalid' }, forwarded: false },
  },
  {
    name: 'an empty handshake record, then the ClientHello',
    envoy: 'BoringSSL tolerates empty records before the ClientHello',
    outcome: { sni: ALLOWED },
    bytes: cat(record(0x16, 0x0301, Buffer.alloc(0)), allowedHello),
    deliberate: { reason: 'the first record must hold the whole ClientHello (same rule as several records)', parse: { kind: 'invalid' }, forwarded: false },
  },

  // --- reads: split, trickled, early data, client gone, silence -----------------------
  { name: 'SNI allowed + ALPN h2, written one byte at a time', envoy: 'TlsInspectorTest.MultipleReads', outcome: { sni: ALLOWED }, bytes: nodeSniH2, write: byteAtATime },
  {
    name: 'browser-like hello split inside the record header, then inside the SNI',
    envoy: 'TlsInspectorTest.MultipleReads',
    outcome: { sni: ALLOWED },
    bytes: browserLike(ALLOWED),
    write: async (s, b) => {
      const at = b.indexOf(ALLOWED);
      for (const [from, to] of [[0, 2], [2, 5], [5, at + 3], [at + 3, b.length]] as const) {
        s.write(b.subarray(from, to));
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  },
  {
    name: 'the allowed ClientHello followed by more bytes in the same write (CCS + early data)',
    envoy: 'tls_inspector.cc onData (MSG_PEEK: the filter consumes nothing, every byte goes on)',
    outcome: { sni: ALLOWED },
    bytes: cat(allowedHello, record(0x14, 0x0303, Buffer.from([1])), record(0x17, 0x0303, Buffer.alloc(64, 0x77))),
  },
  { name: 'half a ClientHello, then the client closes', envoy: 'TlsInspectorTest.EarlyTerminationShouldNotRecordBytesProcessed (connection closed before the hello is whole)', outcome: 'incomplete', bytes: allowedHello.subarray(0, Math.floor(allowedHello.length / 2)), write: thenEnd },
  { name: 'a handshake message longer than its record, then nothing more', envoy: 'TlsInspectorTest.MultipleReads class (BoringSSL waits for the next record; listener_filters_timeout closes)', outcome: 'incomplete', bytes: record(0x16, 0x0301, handshake(1, helloBody({ exts: [sni(ALLOWED)] })).subarray(0, 60)), deliberate: { reason: 'refused at once rather than waiting for a second record (one record only)', parse: { kind: 'invalid' } } },
  { name: 'a record header only, then silence', envoy: 'TlsInspectorIntegrationTest.ContinueOnListenerTimeout (listener_filters_timeout; Cilium does not continue on timeout)', outcome: 'incomplete', bytes: allowedHello.subarray(0, 5) },
  { name: 'nothing at all', envoy: 'tls_inspector.cc onTimeout (read_timeout) / listener_filters_timeout', outcome: 'incomplete', bytes: Buffer.alloc(0) },
];

t.test('the cases are classified consistently', async (t) => {
  for (const c of CASES) {
    if (c.deliberate) t.ok(c.deliberate.reason.length > 0, `${c.name}: a reason`);
  }
  t.ok(CASES.length > 70);
});

for (const c of CASES) {
  const forwarded = c.deliberate?.forwarded ?? ciliumAllows(c.outcome);
  const label = typeof c.outcome === 'object' ? `SNI ${JSON.stringify(c.outcome.sni.length > 40 ? `${c.outcome.sni.slice(0, 20)}…(${c.outcome.sni.length})` : c.outcome.sni)}` : c.outcome;
  t.test(`${c.name} — Envoy: ${label} (${c.envoy}) → ${forwarded ? 'forwarded' : 'refused'}${c.deliberate ? ' [deliberate]' : ''}`, async (t) => {
    // (a) the outcome class, on the parser
    const want = c.deliberate?.parse ?? sameClass(c.outcome);
    t.same(parseClientHello(c.bytes), want, `parser: ${want.kind}${want.kind === 'sni' ? ` ${want.name.slice(0, 40)}` : ''}`);
    if (c.deliberate && (c.deliberate.forwarded ?? ciliumAllows(c.outcome)) !== ciliumAllows(c.outcome)) t.comment(`differs from Cilium on purpose: ${c.deliberate.reason}`);
    // (a) + (b) the verdict and what reaches the destination, through both listener paths
    for (const mode of MODES) {
      if (forwarded) await expectForwarded(t, mode, c.bytes, c.write ? (s) => c.write!(s, c.bytes) : undefined);
      else await expectRefused(t, mode, c.write ? (s) => c.write!(s, c.bytes) : c.bytes);
    }
  });
}

// ---------------------------------------------------------------------------------------
// Real clients end to end (the destination's TLS server answers).

t.test('node:tls through the proxy: SNI allowed completes TLS with the destination; another or none is refused (SniRegistered, AllListenerFiltersAreEnabledByDefault)', async (t) => {
  for (const mode of MODES) {
    const before = arrivals.length;
    const c = await open(mode);
    const tc = tls.connect({ socket: c.s, servername: ALLOWED, ca: ca.certPem, ALPNProtocols: ['h2', 'http/1.1'] });
    const r = await new Promise<string>((resolve) => {
      tc.once('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message));
      tc.once('secureConnect', () => resolve('connected'));
    });
    t.equal(r, 'connected', `${mode}: TLS end to end, verified for ${ALLOWED}`);
    t.equal(tc.alpnProtocol, 'h2', `${mode}: ALPN negotiated by the destination`);
    tc.write('ping');
    const [echo] = (await once(tc, 'data')) as [Buffer];
    t.equal(echo.toString(), 'echo:ping', `${mode}: data both ways`);
    t.equal(arrivals.length, before + 1, `${mode}: one connection`);
    t.same(parseClientHello(Buffer.concat(arrivals[before]!.chunks)), { kind: 'sni', name: ALLOWED }, `${mode}: the destination got the client's own ClientHello`);
    tc.destroy();
    await c.closed;
    for (const servername of [OTHER, undefined]) {
      const n = arrivals.length;
      const d = await open(mode);
      const td = tls.connect({ socket: d.s, ...(servername ? { servername } : {}), ca: ca.certPem, checkServerIdentity: () => undefined });
      const out = await new Promise<string>((resolve) => {
        td.once('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message));
        td.once('secureConnect', () => resolve('connected'));
      });
      t.not(out, 'connected', `${mode}: SNI ${servername ?? '(none)'} refused`);
      t.ok(await d.closed, `${mode}: closed by the proxy`);
      await settle();
      t.equal(arrivals.length, n, `${mode}: SNI ${servername ?? '(none)'}: nothing dialled`);
    }
  }
});

t.test('openssl s_client ClientHellos (TLS 1.3, -servername / -noservername)', async (t) => {
  const allowed = await opensslHello(['-servername', ALLOWED, '-alpn', 'h2,http/1.1']);
  const other = await opensslHello(['-servername', OTHER]);
  const none = await opensslHello(['-noservername']);
  if (!allowed || !other || !none) {
    t.fail('openssl s_client gave no ClientHello');
    return;
  }
  t.same(parseClientHello(allowed), { kind: 'sni', name: ALLOWED });
  t.same(parseClientHello(other), { kind: 'sni', name: OTHER });
  t.same(parseClientHello(none), { kind: 'none' });
  for (const mode of MODES) {
    await expectForwarded(t, mode, allowed);
    await expectRefused(t, mode, other);
    await expectRefused(t, mode, none);
  }
});

/**
 * Found by the EarlyTermination port: a client that sends part of a ClientHello and
 * then its FIN. readClientHello resolved on 'end', Node had already begun the
 * automatic end() of the proxy's side (allowHalfOpen false), and resetAndDestroy()
 * then failed in libuv (uv_tcp_close_reset on a shutting handle: EINVAL, swallowed by
 * the socket's error handler): the handle was never closed and 'close' never came. Each
 * such connection kept a file descriptor for ever (and kept this test process alive
 * after its last test). Counted with process.getActiveResourcesInfo(): every TCP handle
 * the proxy opened for these connections must be gone.
 */
t.test('client FIN in the middle of a ClientHello: no socket left behind (EarlyTerminationShouldNotRecordBytesProcessed)', async (t) => {
  const tcp = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
  await until(() => relaySockets.size === 0);
  const base = tcp();
  for (const mode of MODES) {
    for (const cut of [5, 40, Math.floor(allowedHello.length / 2)]) {
      for (let i = 0; i < 3; i++) {
        const c = await open(mode);
        c.s.end(allowedHello.subarray(0, cut));
        t.ok(await c.closed, `${mode}: ${cut} bytes then FIN: closed by the proxy`);
      }
    }
  }
  t.ok(await until(() => tcp() <= base, 3000), `no TCP handle left open (${tcp()} now, ${base} before)`);
});

t.test('the proxy still serves after every case', async (t) => {
  for (const mode of MODES) await expectForwarded(t, mode, allowedHello);
});
