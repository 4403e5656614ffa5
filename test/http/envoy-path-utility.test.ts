/**
 * Differential port of Envoy's own path tests through our canonicalizer, judged
 * against Envoy *as Cilium configures it*: `normalize_path: true`,
 * `merge_slashes: true`, `path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT`
 * (cilium/cilium pkg/envoy/xds_server.go getHttpFilterChainProto, agent flag
 * `http-normalize-path`, default on).
 *
 * Sources (envoyproxy/envoy):
 *  - test/common/http/path_utility_test.cc: AlreadyNormalPaths, InvalidPaths,
 *    NormalizeValidPaths, NormalizeCasePath, MergeSlashes, RemoveQueryAndFragment,
 *    UnescapeSlashes (and the PathTransformer copies of the same rows).
 *  - source/common/http/conn_manager_utility.cc maybeNormalizePath: the order the
 *    three run in. A `#` is rejected (http_reject_path_with_fragment); `%2F`/`%5C`
 *    (either case) in the path are unescaped and mark the request for a redirect;
 *    then canonicalPath (Chromium's url::CanonicalizePath: dot segments, `\` as `/`,
 *    escaped unreserved characters decoded, other escapes kept as written, `%00`
 *    fails); then mergeSlashes. The query (from the first `?`) is never touched.
 *
 * Each row: the input, what that Envoy does with it, and what we do. Where we do
 * something else it is one of the choices SPEC.md / docs/http.md make deliberately,
 * named in the row:
 *  - `redirect-400`: Envoy answers 307 to the unescaped path; SPEC: encoded slashes
 *    and backslashes are "rejected or redirected"; we reject (400).
 *  - `stricter-400`: Envoy forwards a normalised form; we refuse (`\`, an invalid
 *    escape such as `%2` or `%%`, a target not starting with `/` — which Node's
 *    HTTP/1 parser and nghttp2 refuse before us anyway).
 *  - `hex-upper`: Envoy keeps a kept escape's hex as written ("in case the server is
 *    sensitive to that"); we upper-case it in the path (RFC 3986 §6.2.2.1), never in
 *    the query. Either way the upstream gets exactly the string that was matched.
 */
import t from 'tap';
import { canonicalizeTarget } from '../../src/http/canonical-path.js';

type Envoy = { forward: string } | { redirect: string } | 'reject';
type Why = 'same' | 'redirect-400' | 'stricter-400' | 'hex-upper';
type Row = readonly [input: string, envoy: Envoy, ours: string | 400, why: Why, from: string];

const F = (p: string): Envoy => ({ forward: p });
const R = (p: string): Envoy => ({ redirect: p });

const rows: Row[] = [
  // AlreadyNormalPaths
  ['/xyz', F('/xyz'), '/xyz', 'same', 'AlreadyNormalPaths'],
  ['/x/y/z', F('/x/y/z'), '/x/y/z', 'same', 'AlreadyNormalPaths'],
  // InvalidPaths: an escaped NUL fails Chromium's canonicalizer
  ['/xyz/.%00../abc', 'reject', 400, 'same', 'InvalidPaths'],
  ['/xyz/%00.%00./abc', 'reject', 400, 'same', 'InvalidPaths'],
  ['/xyz/AAAAA%%0000/abc', 'reject', 400, 'same', 'InvalidPaths'],
  // NormalizeValidPaths
  ['/a/b/../c', F('/a/c'), '/a/c', 'same', 'NormalizeValidPaths parent dir'],
  ['/a/b/./c', F('/a/b/c'), '/a/b/c', 'same', 'NormalizeValidPaths current dir'],
  ['a/b/../c', F('/a/c'), 400, 'stricter-400', 'NormalizeValidPaths non / start'],
  ['/a/b/../../../../c', F('/c'), '/c', 'same', 'NormalizeValidPaths out number parent'],
  ['/a/..\\c', F('/c'), 400, 'stricter-400', 'NormalizeValidPaths "..\\" canonicalization'],
  ['/%c0%af', F('/%c0%af'), '/%C0%AF', 'hex-upper', 'NormalizeValidPaths 2 bytes unicode reserved characters'],
  // %5c is unescaped first (UNESCAPE_AND_REDIRECT), then `\` is a `/`, then `//` merged
  ['/%5c%25', R('/%25'), 400, 'redirect-400', 'NormalizeValidPaths reserved characters'],
  ['/a/b/%2E%2E/c', F('/a/c'), '/a/c', 'same', 'NormalizeValidPaths %2E escape'],
  ['/a/b/%2E./c', F('/a/c'), '/a/c', 'same', 'NormalizeValidPaths'],
  ['/a/b/%2E/c', F('/a/b/c'), '/a/b/c', 'same', 'NormalizeValidPaths'],
  ['..', F('/'), 400, 'stricter-400', 'NormalizeValidPaths'],
  ['/../a/b', F('/a/b'), '/a/b', 'same', 'NormalizeValidPaths'],
  ['/./a/b', F('/a/b'), '/a/b', 'same', 'NormalizeValidPaths'],
  // NormalizeCasePath
  ['/A/B/C', F('/A/B/C'), '/A/B/C', 'same', 'NormalizeCasePath not normalize to lower case'],
  ['/a/b/%2e%2e/c', F('/a/c'), '/a/c', 'same', 'NormalizeCasePath %2e can be normalized to .'],
  ['/a/%2F%2f/c', R('/a/c'), 400, 'redirect-400', 'NormalizeCasePath %2F (escaped slashes unescaped, then merged)'],
  // MergeSlashes (relative inputs cannot reach a proxy; they are refused)
  ['', F(''), 400, 'stricter-400', 'MergeSlashes empty'],
  ['a//b/c', F('a/b/c'), 400, 'stricter-400', 'MergeSlashes relative'],
  ['/a//b/c/', F('/a/b/c/'), '/a/b/c/', 'same', 'MergeSlashes ends with slash'],
  ['a//b/c/', F('a/b/c/'), 400, 'stricter-400', 'MergeSlashes relative ends with slash'],
  ['/a', F('/a'), '/a', 'same', 'MergeSlashes no-op'],
  ['//a/b/c', F('/a/b/c'), '/a/b/c', 'same', 'MergeSlashes double / start'],
  ['/a//b/c', F('/a/b/c'), '/a/b/c', 'same', 'MergeSlashes double / in the middle'],
  ['/a/b/c//', F('/a/b/c/'), '/a/b/c/', 'same', 'MergeSlashes double / end'],
  ['/a///b/c', F('/a/b/c'), '/a/b/c', 'same', 'MergeSlashes triple / in the middle'],
  ['/a////b/c', F('/a/b/c'), '/a/b/c', 'same', 'MergeSlashes quadruple / in the middle'],
  ['/a//b?a=///c', F('/a/b?a=///c'), '/a/b?a=///c', 'same', 'MergeSlashes slashes in the query are ignored'],
  ['/a//b?', F('/a/b?'), '/a/b?', 'same', 'MergeSlashes empty query'],
  ['//a/?b', F('/a/?b'), '/a/?b', 'same', 'MergeSlashes ends with slash + query'],
  // RemoveQueryAndFragment: Cilium matches `:path` with its query, so the query is
  // kept; a fragment is rejected (http_reject_path_with_fragment, default true)
  ['/abc', F('/abc'), '/abc', 'same', 'RemoveQueryAndFragment'],
  ['/abc?', F('/abc?'), '/abc?', 'same', 'RemoveQueryAndFragment'],
  ['/abc?param=value', F('/abc?param=value'), '/abc?param=value', 'same', 'RemoveQueryAndFragment'],
  ['/abc?param=value1&param=value2', F('/abc?param=value1&param=value2'), '/abc?param=value1&param=value2', 'same', 'RemoveQueryAndFragment'],
  ['/abc??', F('/abc??'), '/abc??', 'same', 'RemoveQueryAndFragment'],
  ['/abc??param=value', F('/abc??param=value'), '/abc??param=value', 'same', 'RemoveQueryAndFragment'],
  ['/abc#', 'reject', 400, 'same', 'RemoveQueryAndFragment'],
  ['/abc#fragment', 'reject', 400, 'same', 'RemoveQueryAndFragment'],
  ['/abc#fragment?param=value', 'reject', 400, 'same', 'RemoveQueryAndFragment'],
  ['/abc##', 'reject', 400, 'same', 'RemoveQueryAndFragment'],
  ['/abc#?', 'reject', 400, 'same', 'RemoveQueryAndFragment'],
  ['/abc#?param=value', 'reject', 400, 'same', 'RemoveQueryAndFragment'],
  ['/abc?#', 'reject', 400, 'same', 'RemoveQueryAndFragment'],
  ['/abc?#fragment', 'reject', 400, 'same', 'RemoveQueryAndFragment'],
  ['/abc?param=value#', 'reject', 400, 'same', 'RemoveQueryAndFragment'],
  ['/abc?param=value#fragment', 'reject', 400, 'same', 'RemoveQueryAndFragment'],
  // UnescapeSlashes, followed by canonicalPath + mergeSlashes as the HCM runs them
  ['/a%2Fb%2fc/', R('/a/b/c/'), 400, 'redirect-400', 'UnescapeSlashes between other characters'],
  ['/a/b/c', F('/a/b/c'), '/a/b/c', 'same', 'UnescapeSlashes not %2f'],
  ['/abc%2', F('/abc%2'), 400, 'stricter-400', 'UnescapeSlashes incomplete'],
  ['/a%2F', R('/a/'), 400, 'redirect-400', 'UnescapeSlashes prefixed'],
  ['/%%2fa/', R('/%/a/'), 400, 'redirect-400', 'UnescapeSlashes double escape'],
  ['/%2%2fa/', R('/%2/a/'), 400, 'redirect-400', 'UnescapeSlashes incomplete escape'],
  ['/a%5Cb%5cc/', R('/a/b/c/'), 400, 'redirect-400', 'UnescapeSlashes %5C between other characters'],
  ['/a%5C', R('/a/'), 400, 'redirect-400', 'UnescapeSlashes %5C prefixed'],
  ['/x/%2E%2e/z%2f%2Fabc%5C../def', R('/z/def'), 400, 'redirect-400', 'UnescapeSlashes dot segments behind escaped slashes'],
  ['/a%5Cb%2fc%5c?%2fabcd%5C%%2f%', R('/a/b/c/?%2fabcd%5C%%2f%'), 400, 'redirect-400', 'UnescapeSlashes query is untouched'],
  // Escaped slashes in the query are data (unescapeSlashes stops at `?`)
  ['/a/b?x=%2F&y=%5c', F('/a/b?x=%2F&y=%5c'), '/a/b?x=%2F&y=%5c', 'same', 'UnescapeSlashes query is untouched'],
  // The HCM's order: canonicalPath *then* mergeSlashes ("Merge slashes after path
  // normalization"), so an empty segment is a segment that `..` removes
  ['/a//../b', F('/a/b'), '/a/b', 'same', 'maybeNormalizePath order'],
  ['/a//..', F('/a/'), '/a/', 'same', 'maybeNormalizePath order'],
  ['/public//../admin', F('/public/admin'), '/public/admin', 'same', 'maybeNormalizePath order'],
  ['/a/..//b', F('/b'), '/b', 'same', 'maybeNormalizePath order'],
  ['/a/.//b', F('/a/b'), '/a/b', 'same', 'maybeNormalizePath order'],
  ['/a/b/..//../c', F('/a/c'), '/a/c', 'same', 'maybeNormalizePath order'],
  // Envoy's query is untouched, escapes included
  ['/q?x=%2f&y=%3d', F('/q?x=%2f&y=%3d'), '/q?x=%2f&y=%3d', 'same', 'rfcNormalize query suffix appended as is'],
  ['/a%2a?b=%2a', F('/a%2a?b=%2a'), '/a%2A?b=%2a', 'hex-upper', 'rfcNormalize query suffix appended as is'],
];

const upperPathHex = (p: string): string => {
  const q = p.indexOf('?');
  const path = q < 0 ? p : p.slice(0, q);
  return path.replace(/%[0-9a-fA-F]{2}/g, (e) => e.toUpperCase()) + (q < 0 ? '' : p.slice(q));
};

for (const [input, envoy, ours, why, from] of rows) {
  const name = `${JSON.stringify(input)} (${from})`;
  const r = canonicalizeTarget(input);
  if (ours === 400) t.equal(r.ok, false, `${name}: refused`);
  else t.same(r, { ok: true, path: ours }, `${name}: ${ours}`);
  // The row's claim about Envoy and ours must be one the docs allow.
  if (envoy === 'reject') t.equal(ours, 400, `${name}: Envoy rejects, so do we`);
  else if ('redirect' in envoy) t.equal([ours, why].join(' '), '400 redirect-400', `${name}: Envoy redirects; we refuse`);
  else if (why === 'same') t.equal(ours, envoy.forward, `${name}: same as Envoy`);
  else if (why === 'hex-upper') t.equal(ours, upperPathHex(envoy.forward), `${name}: Envoy's path, hex upper-cased`);
  else t.equal([ours, why].join(' '), '400 stricter-400', `${name}: refused where Envoy normalises`);
  // Whatever we forward is a fixed point: canonicalizing it again changes nothing.
  if (r.ok) t.same(canonicalizeTarget(r.path), { ok: true, path: r.path }, `${name}: fixed point`);
}
