/**
 * gRPC through the proxy with real @grpc/grpc-js clients and server (h2c upstream):
 * unary, server-streaming, client-streaming and bidi calls with trailers intact;
 * the policy table over gRPC (tiefighter allowed methods, a denied method, xwing
 * without L3 allow) answered with Envoy's trailers-only PERMISSION_DENIED; upstream
 * down ⇒ UNAVAILABLE. grpc-js cannot choose a source address, so a TCP relay
 * connects onwards from 127.0.0.10 / 127.0.0.11 to act as the pod.
 */
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { starWarsDir } from '../helpers/config-dir.js';
import { startGrpcServer, grpcClient, type GrpcServer } from '../helpers/grpc-service.js';
import { startRelay, type Relay } from '../helpers/relay.js';
import { h2Connect, h2Request } from '../helpers/clients.js';

let proxy: RunningProxy;
let srv: GrpcServer;
let tie: Relay;
let xwing: Relay;
let port = 0;
const clients: grpc.Client[] = [];

t.before(async () => {
  srv = await startGrpcServer();
  const cfg = await starWarsDir({
    upstream: `h2c://127.0.0.1:${srv.port}`,
    extraHttp: ['{ method: "POST", path: "/starwars\\\\.Deathstar/(RequestLanding|Scan|LoadCargo|Chat|Explode)" }'],
  });
  t.teardown(cfg.cleanup);
  proxy = await startProxy({ configDir: cfg.dir });
  port = proxy.listeners[0]!.address.port;
  tie = await startRelay(port, { from: '127.0.0.10' });
  xwing = await startRelay(port, { from: '127.0.0.11' });
});
t.teardown(async () => {
  for (const c of clients) c.close();
  await tie?.close();
  await xwing?.close();
  await proxy?.close(0);
  await srv?.close();
});

function client(relay: Relay): grpc.Client {
  const c = grpcClient(relay.port);
  clients.push(c);
  return c;
}

type Unary = (req: Buffer, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Buffer) => void) => grpc.ClientUnaryCall;

function unary(c: grpc.Client, method: string, req: string): Promise<{ err: grpc.ServiceError | null; res?: Buffer; trailers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | undefined;
    const call = (c as unknown as Record<string, Unary>)[method]!.call(c, Buffer.from(req), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, res) => {
      setImmediate(() => resolve({ err, ...(res ? { res } : {}), ...(trailers ? { trailers } : {}) }));
    });
    call.on('status', (s: grpc.StatusObject) => {
      trailers = s.metadata;
    });
  });
}

t.test('policy table over gRPC', async (t) => {
  const c = client(tie);
  const ok = await unary(c, 'RequestLanding', 'tie');
  t.equal(ok.err, null);
  t.equal(ok.res?.toString(), 'landed:tie');
  t.same(ok.trailers?.get('x-landing'), ['ok'], 'custom trailer intact');

  const before = srv.calls.length;
  const denied = await unary(c, 'ExhaustPort', 'boom');
  t.equal(denied.err?.code, grpc.status.PERMISSION_DENIED);
  t.equal(denied.err?.details, 'Access denied\r\n');
  t.equal(srv.calls.length, before, 'denied call never reached the server');

  const x = client(xwing);
  const l3 = await unary(x, 'RequestLanding', 'xwing');
  t.equal(l3.err?.code, grpc.status.PERMISSION_DENIED, 'xwing: no L3 allow');
  t.equal(srv.calls.length, before);

  const failed = await unary(c, 'Explode', 'x');
  t.equal(failed.err?.code, grpc.status.INTERNAL, 'upstream grpc-status forwarded');
  t.equal(failed.err?.details, 'deathstar exploded', 'grpc-message forwarded');
  t.same(failed.err?.metadata.get('x-panic'), ['yes'], 'custom trailer on an error');
});

t.test('server-streaming, client-streaming, bidi', async (t) => {
  const c = client(tie) as unknown as Record<string, (...a: unknown[]) => any>;
  // server streaming
  const got: string[] = [];
  let scanTrailer: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const call = c['Scan']!.call(c, Buffer.alloc(20), new grpc.Metadata(), { deadline: Date.now() + 5000 });
    call.on('data', (m: Buffer) => got.push(m.toString()));
    call.on('status', (s: grpc.StatusObject) => {
      scanTrailer = s.metadata.get('x-scan') as string[];
      if (s.code === 0) resolve();
      else reject(new Error(s.details));
    });
    call.on('error', reject);
  });
  t.equal(got.length, 20);
  t.equal(got[19], 'scan:19');
  t.same(scanTrailer, ['done']);

  // client streaming
  const loaded = await new Promise<string>((resolve, reject) => {
    const call = c['LoadCargo']!.call(c, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err: Error | null, res: Buffer) =>
      err ? reject(err) : resolve(res.toString()),
    );
    for (let i = 0; i < 30; i++) call.write(Buffer.from(`crate${i}`));
    call.end();
  });
  t.equal(loaded, 'loaded:30');

  // bidi
  const echoes = await new Promise<string[]>((resolve, reject) => {
    const out: string[] = [];
    const call = c['Chat']!.call(c, new grpc.Metadata(), { deadline: Date.now() + 5000 });
    call.on('data', (m: Buffer) => {
      out.push(m.toString());
      if (out.length < 5) call.write(Buffer.from(`m${out.length}`));
      else call.end();
    });
    call.on('status', (s: grpc.StatusObject) => (s.code === 0 ? resolve(out) : reject(new Error(s.details))));
    call.on('error', reject);
    call.write(Buffer.from('m0'));
  });
  t.same(echoes, ['echo:m0', 'echo:m1', 'echo:m2', 'echo:m3', 'echo:m4']);
});

t.test('deny on the wire is trailers-only with Envoy\'s fields', async (t) => {
  const s = await h2Connect(port, '127.0.0.10');
  t.teardown(() => s.close());
  const r = await h2Request(s, {
    method: 'POST',
    path: '/starwars.Deathstar/ExhaustPort',
    headers: { 'content-type': 'application/grpc', te: 'trailers' },
    body: Buffer.from([0, 0, 0, 0, 0]),
  });
  t.equal(r.status, 200);
  t.equal(r.headers['content-type'], 'application/grpc');
  t.equal(r.headers['grpc-status'], '7');
  t.equal(r.headers['grpc-message'], 'Access%20denied%0D%0A');
  t.equal(r.body, '');
  t.equal(r.trailers, undefined, 'no separate trailers frame: one HEADERS with END_STREAM');
  t.equal(r.rstCode, 0);
});

t.test('upstream down: UNAVAILABLE', async (t) => {
  const cfg = await starWarsDir({ upstream: 'h2c://127.0.0.1:1', extraHttp: ['{ method: "POST", path: "/starwars\\\\.Deathstar/.*" }'], admin: false });
  t.teardown(cfg.cleanup);
  const p = await startProxy({ configDir: cfg.dir });
  t.teardown(() => p.close(0));
  const relay = await startRelay(p.listeners[0]!.address.port, { from: '127.0.0.10' });
  t.teardown(() => relay.close());
  const r = await unary(client(relay), 'RequestLanding', 'x');
  t.equal(r.err?.code, grpc.status.UNAVAILABLE);
});
