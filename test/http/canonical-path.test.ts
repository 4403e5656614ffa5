import t from 'tap';
import { canonicalizeTarget, isValidAuthority, authorityKey } from '../../src/http/canonical-path.js';

const ok: Array<[string, string]> = [
  ['/', '/'],
  ['/v1/request-landing', '/v1/request-landing'],
  ['/v1/x?a=1', '/v1/x?a=1'],
  ['/a/b/', '/a/b/'],
  ['//admin', '/admin'],
  ['/a//b///c', '/a/b/c'],
  ['/public/../admin', '/admin'],
  ['/public/./x', '/public/x'],
  ['/a/b/..', '/a/'],
  ['/a/.', '/a/'],
  ['/../../etc', '/etc'],
  ['/%2e%2e/admin', '/admin'],
  ['/public/%2E%2E/admin', '/admin'],
  ['/%61dmin', '/admin'],
  ['/a%7Eb%2db%5fc', '/a~b-b_c'],
  ['/a%3bb', '/a%3Bb'],
  ['/a%252e', '/a%252e'], ['/a%2a', '/a%2A'],
  ['/a%20b', '/a%20b'],
  ['/q?x=%2f&y=%3d', '/q?x=%2f&y=%3d'], ['/a%2a?x=%2a', '/a%2A?x=%2a'],
  ['/q?a=../b', '/q?a=../b'],
  ['/.well-known/x', '/.well-known/x'],
  ['/admin;x=1', '/admin;x=1'],
  ['/a/..//b', '/b'],
];
for (const [inp, out] of ok) {
  const r = canonicalizeTarget(inp);
  t.same(r, { ok: true, path: out }, `${inp} -> ${out}`);
}

const bad = [
  '', '*', 'admin', '/a#b', '/public#/../admin', '/a\\..\\admin', '/a%00b', '/a%2Fb', '/a%2fb',
  '/a%5cb', '/a%5Cb', '/a%zz', '/a%4', '/a%', '/a b', '/a\u0000b', '/a\u00e9', '/a\x7f',
  '/user/..;foo=bar/admin', '/x/.;/admin', '/q?a=%00', '/q?a#b', '/q?%g1', '/q?a b',
];
for (const inp of bad) {
  const r = canonicalizeTarget(inp);
  t.equal(r.ok, false, `rejects ${JSON.stringify(inp)}`);
}

t.test('absolute-form', async (t) => {
  t.same(canonicalizeTarget('http://deathstar:80/v1/../v1/x?q'), { ok: true, path: '/v1/x?q', authority: 'deathstar:80', scheme: 'http' });
  t.same(canonicalizeTarget('HTTPS://a.b'), { ok: true, path: '/', authority: 'a.b', scheme: 'https' });
  t.same(canonicalizeTarget('http://a.b?x=1'), { ok: true, path: '/?x=1', authority: 'a.b', scheme: 'http' });
  t.equal(canonicalizeTarget('http:///x').ok, false);
  t.equal(canonicalizeTarget('ftp://a/x').ok, false);
  t.equal(canonicalizeTarget('http://a#x').ok, false);
});

t.test('idempotent: canonical output is a fixed point', async (t) => {
  for (const [inp] of ok) {
    const r = canonicalizeTarget(inp);
    if (!r.ok) continue;
    t.same(canonicalizeTarget(r.path), { ok: true, path: r.path }, r.path);
  }
});

t.test('fast path returns the same string', async (t) => {
  const s = '/v1/request-landing?x=1';
  const r = canonicalizeTarget(s);
  t.ok(r.ok && r.path === s);
});

t.test('authority', async (t) => {
  for (const a of ['deathstar', 'deathstar:80', 'a.b.c:65535', '127.0.0.1:8080', '[::1]:80', '[::1]', 'x_y.z'])
    t.ok(isValidAuthority(a), a);
  // Brackets hold only an IPv6 address (Envoy Url.ParsingForConnectTest: [1:1], [:::], [::12345678]).
  for (const a of ['', 'user@x', 'x/admin', 'x:99999', 'x:0', 'x:', 'x y', 'x?y', 'x#y', '[::1', ':80', 'x:8a', 'a%2eb', '[1.2.3.4]', '[1.2.3.4]:80', '[1:1]', '[:::]', '[::12345678]'])
    t.notOk(isValidAuthority(a), a);
  t.equal(authorityKey('DeathStar.:80', 'http'), 'deathstar');
  t.equal(authorityKey('x:443', 'https'), 'x');
  t.equal(authorityKey('x:8080', 'http'), 'x:8080');
});
