import t from 'tap';
import { connect as tlsConnect, createServer as createTlsServer, type Server } from 'node:tls';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { createSecureServer, connect as h2connect } from 'node:http2';
import { Pool } from 'undici';
import { originateOptions, classifyUpstreamTLSError, upstreamTLSError, assertVerificationEnv, caFromSecret } from '../../src/tls/originate.js';
import { makeCA, makeLeaf } from '../../src/cli/certs.js';
import { leafSecret, secretDoc, rejectsWarden, listenLocal } from '../helpers/tls-pki.js';
import type { TestT } from '../helpers/tap.js';

const ca = makeCA();
const api = makeLeaf(ca, { dns: ['api.internal'] });
const ipLeaf = makeLeaf(ca, { ips: ['127.0.0.1'] });
const secrets = [secretDoc('default/api-ca', { 'ca.crt': ca.certPem })];

type TT = TestT;
const listen = listenLocal;

function upstream(t: TT, leaf: { certPem: string; keyPem: string }): Promise<number> {
  const s = createTlsServer({ cert: leaf.certPem, key: leaf.keyPem }, (sock) => { sock.on('error', () => {}); sock.end('hi'); });
  s.on('tlsClientError', () => {});
  return listen(t, s);
}

function dial(port: number, opts: object): Promise<{ authorized: boolean; servername: string | false | undefined }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ...opts });
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    s.once('error', reject);
    s.once('secureConnect', () => { resolve({ authorized: s.authorized, servername: (s as unknown as { servername?: string }).servername }); s.destroy(); });
  });
}

t.test('verifies chain and the configured servername', async (t) => {
  const port = await upstream(t, api);
  const good = originateOptions({ host: '127.0.0.1' }, { secret: 'default/api-ca', servername: 'api.internal', insecureSkipVerify: false }, secrets);
  t.equal(good.verifyName, 'api.internal');
  t.equal(good.servername, 'api.internal');
  const ok = await dial(port, good.http2);
  t.equal(ok.authorized, true);

  // Wrong name: the certificate is for api.internal, policy says other.internal.
  const wrongName = originateOptions({ host: '127.0.0.1' }, { secret: 'default/api-ca', servername: 'other.internal', insecureSkipVerify: false }, secrets);
  const e1 = await dial(port, wrongName.http2).then(() => undefined, (e) => e);
  t.ok(e1, 'name mismatch refused');
  t.same(classifyUpstreamTLSError(e1), { kind: 'verification', code: 'ERR_TLS_CERT_ALTNAME_INVALID', message: e1.message });
  const we = upstreamTLSError(e1, 'https://127.0.0.1');
  t.equal(we?.code, 'L7W_ERR_UPSTREAM_TLS');
  t.match(we?.message, /certificate verification failed \(ERR_TLS_CERT_ALTNAME_INVALID\)/);

  // Name defaults to the upstream URL's host (never a client Host: the API takes none).
  const byHost = originateOptions({ host: 'API.internal.' }, { secret: 'default/api-ca', insecureSkipVerify: false }, secrets);
  t.equal(byHost.verifyName, 'api.internal');
  t.equal((await dial(port, byHost.http2)).authorized, true, 'connect address is 127.0.0.1, name from config');

  // No secret: system roots, which do not know our CA.
  const system = originateOptions({ host: 'api.internal' }, undefined, secrets);
  t.equal(system.ca, undefined);
  const e2 = await dial(port, system.http2).then(() => undefined, (e) => e);
  t.equal(classifyUpstreamTLSError(e2)?.kind, 'verification');
  t.match(classifyUpstreamTLSError(e2)?.code, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY/);

  // Explicit insecureSkipVerify: connects despite the wrong name and unknown CA.
  const insecure = originateOptions({ host: '127.0.0.1' }, { servername: 'other.internal', insecureSkipVerify: true }, secrets);
  t.equal((await dial(port, insecure.http2)).authorized, false, 'connected, unverified');
  // …and NODE_TLS_REJECT_UNAUTHORIZED cannot turn verification off: it is explicit.
  t.equal(wrongName.http2.rejectUnauthorized, true);
});

t.test('IP upstream: no SNI (RFC 6066), verified against the IP SAN', async (t) => {
  const ipPort = await upstream(t, ipLeaf);
  const o = originateOptions({ host: '127.0.0.1' }, { secret: 'default/api-ca', insecureSkipVerify: false }, secrets);
  t.equal(o.servername, undefined);
  t.equal((await dial(ipPort, o.http2)).authorized, true);
  const dnsPort = await upstream(t, api);
  const e = await dial(dnsPort, o.http2).then(() => undefined, (err) => err);
  t.equal(classifyUpstreamTLSError(e)?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  const v6 = originateOptions({ host: '[::1]' }, { secret: 'default/api-ca', insecureSkipVerify: false }, secrets);
  t.equal(v6.verifyName, '::1');
  t.equal(v6.servername, undefined);
});

t.test('undici Pool connect options: success, and a classified failure', async (t) => {
  const server = createSecureServer({ cert: api.certPem, key: api.keyPem, allowHTTP1: true }, (req, res) => res.end('upstream ok'));
  const port = await listen(t, server);
  const good = originateOptions({ host: '127.0.0.1' }, { secret: 'default/api-ca', servername: 'api.internal', insecureSkipVerify: false }, secrets);
  const pool = new Pool(`https://127.0.0.1:${port}`, { connect: good.undiciConnect });
  t.teardown(() => pool.close());
  const r = await pool.request({ path: '/', method: 'GET' });
  t.equal(r.statusCode, 200);
  t.equal(await r.body.text(), 'upstream ok');

  const bad = originateOptions({ host: '127.0.0.1' }, { secret: 'default/api-ca', servername: 'evil.internal', insecureSkipVerify: false }, secrets);
  const pool2 = new Pool(`https://127.0.0.1:${port}`, { connect: bad.undiciConnect });
  t.teardown(() => pool2.close());
  const err = await pool2.request({ path: '/', method: 'GET' }).then(() => undefined, (e) => e);
  t.equal(classifyUpstreamTLSError(err)?.kind, 'verification', 'undici error classified');
  // Wrapped the way fetch wraps it: still found through `cause`.
  t.equal(classifyUpstreamTLSError(new TypeError('fetch failed', { cause: err }))?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
});

t.test('http2.connect options', async (t) => {
  const server = createSecureServer({ cert: api.certPem, key: api.keyPem }, (req, res) => res.end('h2 ok'));
  const port = await listen(t, server);
  const o = originateOptions({ host: '127.0.0.1' }, { secret: 'default/api-ca', servername: 'api.internal', insecureSkipVerify: false }, secrets);
  const body = await new Promise<string>((resolve, reject) => {
    const session = h2connect(`https://127.0.0.1:${port}`, o.http2);
    session.on('error', reject);
    const req = session.request({ ':path': '/' });
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { data += c; });
    req.on('end', () => { session.close(); resolve(data); });
    req.on('error', reject);
  });
  t.equal(body, 'h2 ok');
  const bad = originateOptions({ host: '127.0.0.1' }, { secret: 'default/api-ca', servername: 'nope.internal', insecureSkipVerify: false }, secrets);
  const err = await new Promise<unknown>((resolve) => {
    const session = h2connect(`https://127.0.0.1:${port}`, bad.http2);
    session.on('error', resolve);
    session.on('connect', () => { session.close(); resolve(undefined); });
  });
  t.equal(classifyUpstreamTLSError(err)?.kind, 'verification');
});

t.test('non-verification failures', async (t) => {
  // A plaintext upstream on an https:// URL: handshake failure, not verification.
  const plain = createNetServer((s) => { s.on('error', () => {}); s.end('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'); });
  const port = await listen(t, plain);
  const o = originateOptions({ host: '127.0.0.1' }, { secret: 'default/api-ca', servername: 'api.internal', insecureSkipVerify: false }, secrets);
  const e = await dial(port, o.http2).then(() => undefined, (err) => err);
  t.equal(classifyUpstreamTLSError(e)?.kind, 'handshake', `plaintext upstream: ${e?.code}`);
  // Refused connection: not a TLS error at all.
  const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  t.equal(classifyUpstreamTLSError(refused), undefined);
  t.equal(upstreamTLSError(refused, 'x'), undefined);
  t.equal(classifyUpstreamTLSError('string'), undefined);
  t.equal(classifyUpstreamTLSError(null), undefined);
  const agg = new AggregateError([refused, Object.assign(new Error('x'), { code: 'CERT_HAS_EXPIRED' })]);
  t.equal(classifyUpstreamTLSError(agg)?.code, 'CERT_HAS_EXPIRED');
  const loop: { code: string; cause?: unknown } = { code: 'X' };
  loop.cause = loop;
  t.equal(classifyUpstreamTLSError(loop), undefined, 'cyclic causes terminate');
});

t.test('configuration errors and the environment guard', async (t) => {
  await rejectsWarden(t, () => originateOptions({ host: 'a' }, { secret: 'default/none', insecureSkipVerify: false }, secrets), 'L7W_ERR_TLS', /default\/none: not found/);
  await rejectsWarden(t, () => caFromSecret([secretDoc('default/x', { 'tls.crt': api.certPem })], 'default/x'), 'L7W_ERR_TLS', /default\/x: ca\.crt is missing/);
  await rejectsWarden(t, () => caFromSecret([secretDoc('default/x', { 'ca.crt': 'junk' })], 'default/x'), 'L7W_ERR_TLS', /not a valid PEM/);
  await rejectsWarden(t, () => assertVerificationEnv({ NODE_TLS_REJECT_UNAUTHORIZED: '0' }), 'L7W_ERR_TLS', /NODE_TLS_REJECT_UNAUTHORIZED/);
  assertVerificationEnv({});
  assertVerificationEnv({ NODE_TLS_REJECT_UNAUTHORIZED: '1' });
  t.pass('other values accepted');
  const leafAsSecret = leafSecret('default/full', api);
  t.equal(caFromSecret([leafAsSecret], 'default/full'), ca.certPem);
});
