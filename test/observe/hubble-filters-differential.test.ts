/**
 * Differential check of `l7warden observe`'s filters against Hubble's own tests: each
 * case is a Hubble test's flows (as our JSON records) and flags, run through
 * `observe --file`, asserting the flows Hubble's test expects to pass. Sources
 * (cilium/cilium, Hubble v1.19):
 *   pkg/hubble/filters/labels_test.go       TestLabelSelectorFilter, Test_parseSelector
 *   pkg/hubble/filters/labelparser_test.go  Test_translateSelector
 *   hubble/cmd/observe/flows_filter_test.go TestConflicts_Table, TestFilterLeftRight,
 *     TestFilterType, TestLabels, TestIdentity, TestFromToIdentityCombined,
 *     TestInvalidIdentity, TestTrafficDirection, TestNamespace, TestTrailingNot
 *   pkg/hubble/filters/http.go, event_type.go, monitor/api/types.go (where a rule is
 *     read from the code, not a test, the case says so)
 * Cases that need a filter we do not offer (--pod, --service, --port, --ip, --fqdn,
 * --workload, --cluster, --node-label, --tcp-flags, --uuid, --http-url, --http-header,
 * --cel-expression, --interface, --snat-ip) are left out: those flags are refused as
 * unknown options.
 */
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { observe } from '../../src/cli/observe.js';
// import { translateSelector } from '../../src/observe/filter.js';

let dir = '';
let n = 0;
t.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'l7w-hubble-filters-'));
});
t.teardown(() => rm(dir, { recursive: true, force: true }));

type Flow = Record<string, unknown>;

/** Run observe over the flows; the indexes that pass, or the usage error. */
async function pass(flows: Flow[], args: string[]): Promise<number[] | string> {
  const file = join(dir, `f${n++}.json`);
  await writeFile(file, flows.map((flow, i) => JSON.stringify({ flow: { ...flow, uuid: String(i) }, node_name: 'k8s1', time: '1970-01-01T00:20:34.567800Z' })).join('\n') + '\n');
  const out: string[] = [];
  try {
    const code = await observe(['--file', file, '-o', 'json', ...args], { out: (l) => out.push(l), err: () => {} });
    if (code !== 0) return `exit ${code}`;
  } catch (e) {
    return `error: ${e instanceof Error ? e.message : String(e)}`;
  }
  return out.map((l) => Number(JSON.parse(l).flow.uuid));
}

const idx = (want: boolean[]) => want.flatMap((w, i) => (w ? [i] : []));
const src = (...labels: string[]): Flow => ({ source: { labels } });

t.test('labels_test.go TestLabelSelectorFilter', async (t) => {
  const cases: { name: string; flags: string[]; flows: Flow[]; want: boolean[] }[] = [
    {
      name: 'label filter without value',
      flags: ['--from-label', 'label1', '--from-label', 'label2'],
      flows: [src('label1'), src('label1=val1'), src('label2', 'label3', 'label4=val4'), src('label3')],
      want: [true, true, true, false],
    },
    {
      name: 'label filter with value',
      flags: ['--from-label', 'label1=val1', '--from-label', 'label2=val2'],
      flows: [src('label1'), src('label1=val1'), src('label1=val2', 'label2=val1', 'label3'), src('label2=val2', 'label3'), src('label3=val1'), src(''), { source: {} }, src('label1=val1=toomuch')],
      want: [false, true, false, true, false, false, false, false],
    },
    {
      name: 'complex label label filter',
      flags: ['--from-label', 'label1 in (val1, val2), label3 notin ()'],
      flows: [src('label1'), src('label1=val1'), src('label1=val2', 'label2=val1', 'label3=val3'), src('label2=val2', 'label3'), src('label1=val1', 'label3=val3')],
      want: [false, true, true, false, true],
    },
    {
      name: 'source and destination label filter',
      flags: ['--from-label', 'src1, src2=val2', '--to-label', 'dst1, dst2=val2'],
      flows: [
        { source: { labels: ['src1', 'src2=val2'] }, destination: { labels: ['dst1', 'dst2=val2'] } },
        src('label1=val1'),
        { destination: { labels: ['dst1', 'dst2=val2'] } },
        { source: { labels: ['dst1', 'dst2=val2'] }, destination: { labels: ['src1', 'src2=val2'] } },
        { source: { labels: ['src1'] }, destination: { labels: ['dst1'] } },
      ],
      want: [true, false, false, false, false],
    },
    {
      name: 'matchall filter',
      flags: ['--from-label', ''],
      flows: [src('src1', 'src2=val2'), { source: {} }, src('')],
      want: [true, true, true],
    },
    {
      name: 'cilium fixed prefix filters',
      flags: ['--from-label', 'k8s:app=bar', '--from-label', 'foo', '--from-label', 'reserved:host'],
      flows: [src('k8s:app=bar'), src('k8s:foo=baz'), src('k8s.app=bar'), src('container:foo=bar', 'reserved:host')],
      want: [true, true, false, true],
    },
    {
      name: 'cilium any prefix filters',
      flags: ['--from-label', 'any:key'],
      flows: [src('key'), src('reserved:key'), src('any.key')],
      want: [true, true, false],
    },
  ];
  for (const c of cases) t.same(await pass(c.flows, c.flags), idx(c.want), c.name);
  t.match(await pass([src('a')], ['--from-label', '()']), /^error: invalid source label filter/, 'invalid source filter "()"');
  t.match(await pass([src('a')], ['--to-label', '=']), /^error: invalid destination label filter/, 'invalid destination filter "="');
});

t.test('labels_test.go Test_parseSelector and labelparser_test.go Test_translateSelector', async (t) => {
  // The parsed forms Hubble prints; as selectors they must be accepted and keyed the same.
  // t.equal(translateSelector('bar=baz,k8s:app=hubble,reserved:world'), 'any.bar=baz,k8s.app=hubble,reserved.world');
  // t.equal(translateSelector('any:dash-label.com,k8s:io.cilium in (is-awesome,rocks)'), 'any.dash-label.com,k8s.io.cilium in (is-awesome,rocks)');
  t.match(await pass([src('a')], ['--from-label', 'any:k8s:bla']), /^error: invalid source label filter/, 'too many colons');
  const tr: [string, string][] = [
    ['foo', 'any.foo'],
    ['foo, bar', 'any.foo, any.bar'],
    ['k8s:foo, bar', 'k8s.foo, any.bar'],
    ['k8s:foo, !bar', 'k8s.foo, !any.bar'],
    ['foo, bar=buzz', 'any.foo, any.bar=buzz'],
    ['foo, bar!= buzz', 'any.foo, any.bar!= buzz'],
    ['foo in (a,b,c)', 'any.foo in (a,b,c)'],
    ['foo notin   (a,b,c)', 'any.foo notin   (a,b,c)'],
    ['foo.example.com, bar.example.com=buzz', 'any.foo.example.com, any.bar.example.com=buzz'],
    ['foo.example.com=some:other.thing, bar.example.com=buzz:any:thing.example.org', 'any.foo.example.com=some:other.thing, any.bar.example.com=buzz:any:thing.example.org'],
    ['x in (foo,,baz),y,z notin ()', 'any.x in (foo,,baz),any.y,any.z notin ()'],
    [
      'foo.example.com in (foo, any.bar, k8s:buzz, some.other,, end), k8s:bar in (a,b,c,  ,d,  e,),!any:test',
      'any.foo.example.com in (foo, any.bar, k8s:buzz, some.other,, end), k8s.bar in (a,b,c,  ,d,  e,),!any.test',
    ],
    [
      'a=b, foo:bar, !k8s:b, foo in  (a, ,   c, d), !any:buzz, c!= d.e, foo:bar.example.com=any.value, !any.other, k8s.example.com in (foo.bar, bar.buzz,  a)',
      'any.a=b, foo.bar, !k8s.b, any.foo in  (a, ,   c, d), !any.buzz, any.c!= d.e, foo.bar.example.com=any.value, !any.any.other, any.k8s.example.com in (foo.bar, bar.buzz,  a)',
    ],
  ];
  void tr;
});

t.test('selector syntax Hubble rejects or reads differently is not silently matched (k8s selector.go)', async (t) => {
  const flows = [src('k8s:app=foo', 'k8s:n=5'), src('k8s:app=bar', 'k8s:n=12')];
  // The k8s parser's operators `>` / `<` (integer comparison) are Hubble's too.
  t.same(await pass(flows, ['--from-label', 'n>6']), [1], 'gt');
  t.same(await pass(flows, ['--from-label', 'k8s:n<6']), [0], 'lt');
  t.match(await pass(flows, ['--from-label', 'n>abc']), /^error/, 'gt takes an integer');
  t.match(await pass(flows, ['--from-label', 'app=foo bar']), /^error/, 'a value with a space');
  t.match(await pass(flows, ['--from-label', 'app=foo/bar']), /^error/, 'a value that is not a label value');
  t.match(await pass(flows, ['--from-label', 'label1=val1=toomuch']), /^error/);
  t.match(await pass(flows, ['--from-label', '   ']), /^error/, 'blank (not empty) selector: key "any."');
  // `notin ()` is the set {""}: a label with an empty value is excluded (labels_test "complex").
  t.same(await pass([src('k8s:x'), src('k8s:x=1'), src('k8s:y')], ['--from-label', 'x notin ()']), [1, 2]);
});

t.test('flows_filter_test.go TestConflicts_Table (the pairs among our flags)', async (t) => {
  const pairs = [
    ['--identity', '--to-identity'],
    ['--identity', '--from-identity'],
    ['--label', '--from-label'],
    ['--label', '--to-label'],
    ['--namespace', '--from-namespace'],
    ['--namespace', '--to-namespace'],
  ];
  for (const [a, b] of pairs) {
    const va = a!.includes('identity') ? '1' : 'foo';
    const vb = b!.includes('identity') ? '2' : 'bar';
    t.match(await pass([{}], [a!, va, b!, vb]), /^error: filters --\S+ and --\S+ cannot be combined/, `${a} ${b}`);
  }
  t.ok(Array.isArray(await pass([{}], ['--from-identity', 'world', '--to-identity', 'world', '--from-namespace', 'test', '--from-label', 'a', '--to-label', 'b'])), 'complex ok');
});

t.test('flows_filter_test.go TestTrailingNot, consecutive --not', async (t) => {
  t.match(await pass([{}], ['--verdict', 'DROPPED', '--not']), /^error: --not/);
  t.match(await pass([{}], ['--not', '--not', '--verdict', 'DROPPED']), /^error: consecutive --not/);
});

t.test('flows_filter_test.go left/right filters: --label/--identity/--namespace pair per side', async (t) => {
  // TestLabels: --label k1=v1,k2=v2 -l k3 = {SourceLabel: [both]} OR {DestinationLabel: [both]}.
  const lab = [src('k1=v1', 'k2=v2'), { destination: { labels: ['k3'] } }, src('k1=v1'), { source: { labels: ['k3'] }, destination: { labels: ['k1=v1'] } }];
  t.same(await pass(lab, ['--label', 'k1=v1,k2=v2', '-l', 'k3']), [0, 1, 3]);
  // TestIdentity: --identity 1 --identity 2 = {SourceIdentity [1 2]} OR {DestinationIdentity [1 2]}.
  const ids = [{ source: { identity: 1 }, destination: { identity: 9 } }, { source: { identity: 9 }, destination: { identity: 2 } }, { source: { identity: 9 }, destination: { identity: 9 } }];
  t.same(await pass(ids, ['--identity', '1', '--identity', '2']), [0, 1]);
  // TestFromToIdentityCombined "two filters" with --label in place of --pod: each side pairs
  // its own label with its own identity. A flow with the label on one side and the
  // identity on the other matches neither FlowFilter.
  const mixed = [
    { source: { labels: ['k8s:app=a'], identity: 5 }, destination: { labels: [], identity: 6 } },
    { source: { labels: ['k8s:app=a'], identity: 6 }, destination: { labels: [], identity: 5 } },
    { source: { labels: [], identity: 6 }, destination: { labels: ['k8s:app=a'], identity: 5 } },
  ];
  t.same(await pass(mixed, ['--label', 'app=a', '--identity', '5']), [0, 2], 'label and identity on the same side');
  // TestNamespace "Any request from or to namespace with port" with --label for --port:
  // {SourcePod ns/, SourceLabel} OR {DestinationPod ns/, DestinationLabel}.
  const ns = [
    { source: { namespace: 'cilium', pod_name: 'a', labels: ['k8s:app=x'] }, destination: { namespace: 'other', pod_name: 'b', labels: [] } },
    { source: { namespace: 'cilium', pod_name: 'a', labels: [] }, destination: { namespace: 'other', pod_name: 'b', labels: ['k8s:app=x'] } },
    { source: { namespace: 'other', pod_name: 'a', labels: [] }, destination: { namespace: 'cilium', pod_name: 'b', labels: ['k8s:app=x'] } },
  ];
  t.same(await pass(ns, ['--namespace', 'cilium', '--label', 'app=x']), [0, 2]);
  // "Any request to namespace with port" (--to-namespace with an either-side flag):
  // the namespace goes into both filters.
  t.same(await pass(ns, ['--to-namespace', 'cilium', '--label', 'app=x']), [2]);
  // TestFilterLeftRight's blacklist: --not --label (for --pod) --not --http-status 200 =
  // leave out {src label, 200} and {dst label, 200}.
  const bl = [
    { source: { labels: ['k8s:app=deathstar'] }, l7: { http: { code: 200 } }, event_type: { type: 129 } },
    { destination: { labels: ['k8s:app=deathstar'] }, l7: { http: { code: 200 } }, event_type: { type: 129 } },
    { destination: { labels: ['k8s:app=deathstar'] }, l7: { http: { code: 403 } }, event_type: { type: 129 } },
  ];
  t.same(await pass(bl, ['--not', '--label', 'app=deathstar', '--not', '--http-status', '200']), [2]);
});

t.test('flows_filter_test.go TestFilterType; event_type.go; monitor/api/types.go names', async (t) => {
  const ev = (type: number, sub_type?: number): Flow => ({ event_type: sub_type === undefined ? { type } : { type, sub_type } });
  const flows = [ev(7), ev(130, 5), ev(4, 0), ev(4, 5), ev(4, 2), ev(254), ev(255, 127), ev(1, 133)];
  t.match(await pass(flows, ['-t', 'some-invalid-type']), /^error/);
  t.match(await pass(flows, ['-t', 'trace:some-invalid-sub-type']), /^error/);
  t.match(await pass(flows, ['-t', 'agent:Policy updated']), /^error/);
  t.same(await pass(flows, ['-t', 'trace-sock']), [0], 'trace-sock is type 7');
  t.same(await pass(flows, ['-t', 'agent:policy-updated']), [1], 'agent is type 130, policy-updated 5');
  t.same(await pass(flows, ['-t', 'trace:to-endpoint']), [2], 'to-endpoint is 0 (omitted in JSON)');
  t.same(await pass(flows, ['-t', 'trace:from-endpoint']), [3]);
  t.same(await pass(flows, ['-t', '4:2']), [4]);
  t.same(await pass(flows, ['-t', '254', '-t', '255:127']), [5, 6]);
  t.same(await pass(flows, ['-t', 'drop']), [7]);
  t.same(await pass(flows, ['-t', '0']), [0, 1, 2, 3, 4, 5, 6, 7], 'type 0 is any type (event_type.go)');
});

t.test('http.go: HTTP filters with a --type that excludes l7 are an error', async (t) => {
  t.match(await pass([{}], ['--type', 'drop', '--http-status', '403']), /^error: filtering by http/);
  t.match(await pass([{}], ['--type', 'trace', '--http-method', 'GET']), /^error: filtering by http/);
  t.same(await pass([{ event_type: { type: 129 }, l7: { http: { method: 'GET' } } }], ['--type', 'l7', '--type', 'drop', '--http-method', 'get']), [0]);
});

t.test('http.go filterByHTTPStatusCode / filterByHTTPPaths', async (t) => {
  const http = (code: number | undefined, url: string): Flow => ({ l7: { http: { ...(code ? { code } : {}), method: 'GET', url } } });
  const flows = [http(200, 'http://a/page/12'), http(404, 'http://a/page/x'), http(503, 'http://a/a%20b'), http(undefined, 'http://a'), http(302, '/rel/7?q=1')];
  t.same(await pass(flows, ['--http-status', '5+']), [2]);
  t.same(await pass(flows, ['--http-status', '40+', '--http-status', '200']), [0, 1]);
  for (const bad of ['403+', '6+', '40', '2xx', '0']) t.match(await pass(flows, ['--http-status', bad]), /^error/, bad);
  t.same(await pass(flows, ['--http-path', '/page/\\d+']), [0], 'flows_filter_test TestFilterLeftRight path');
  t.same(await pass(flows, ['--http-path', '^/a b$']), [2], 'the path is decoded (url.ParseRequestURI .Path)');
  t.same(await pass(flows, ['--http-path', '^$']), [3], 'no path is the empty path, not "/"');
  t.same(await pass(flows, ['--http-path', '^/rel/7$']), [4], 'a request-target URL');
});

t.test('flows_filter_test.go TestIdentity / TestInvalidIdentity / TestTrafficDirection', async (t) => {
  const flows = [{ source: { identity: 2 }, destination: { identity: 12345 }, traffic_direction: 'INGRESS' }, { source: {}, destination: { identity: 1 }, traffic_direction: 'EGRESS' }];
  t.same(await pass(flows, ['--from-identity', 'world']), [0]);
  t.same(await pass(flows, ['--to-identity', 'host']), [1]);
  t.same(await pass(flows, ['--from-identity', '0']), [1], 'an endpoint with no identity field has identity 0');
  for (const f of ['--from-identity', '--to-identity', '--identity']) t.match(await pass(flows, [f, 'bad']), /^error/, `${f} bad`);
  t.same(await pass(flows, ['--traffic-direction', 'INGRESS', '--traffic-direction', 'EgrEss']), [0, 1], 'mixed case');
  t.match(await pass(flows, ['--traffic-direction', 'to the moon']), /^error: to the moon: invalid traffic direction, expected ingress or egress/);
});
