// `check` and `explain` against the bundled Star Wars demo and small broken configs,
// through the same main() the binary runs, plus one spawn of the built binary.
import t from 'tap';
import { mkdtempSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { main } from '../../src/cli/commands.js';

async function run(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const demo = 'config';

t.test('check: the demo config is valid and summarised on one line', async (t) => {
  const r = await run(['check', '--config', demo]);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /^config: valid: \d+ documents, 1 policies \(1 rules\), 3 endpoints, \d+ identities$/);
});

t.test('check: every error is reported with file:line:col and exit 1', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'l7w-check-'));
  writeFileSync(
    join(dir, 'bad.yaml'),
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a}
spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports:
      - port: "99999"
        protocol: TCP
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b}
spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports:
      - port: "80"
      rules:
        http:
        - method: GET
`,
  );
  const r = await run(['check', '--config', dir]);
  t.equal(r.code, 1);
  const lines = r.err.split('\n').filter((l) => l.includes('bad.yaml:'));
  t.ok(lines.length >= 2, `both documents' errors are reported:\n${r.err}`);
  t.match(lines[0] ?? '', /bad\.yaml:9:\d+: spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port: /);
  t.match(r.err, /L7 rules can only apply to TCP/);
});

t.test('explain: the Star Wars table', async (t) => {
  const cases: [string, string, string, string, 'ALLOWED' | 'DENIED', RegExp][] = [
    ['default/tiefighter', 'default/deathstar', 'POST', '/v1/request-landing', 'ALLOWED', /CiliumNetworkPolicy default\/rule1 ingress\[0\]/],
    ['default/tiefighter', 'default/deathstar', 'PUT', '/v1/exhaust-port', 'DENIED', /\(L7/],
    ['default/tiefighter', 'default/deathstar', 'POST', '/v1/request-landing?x=1', 'DENIED', /\(L7/],
    ['default/tiefighter', 'default/deathstar', 'GET', '/v1/request-landing', 'DENIED', /\(L7/],
    ['default/xwing', 'default/deathstar', 'POST', '/v1/request-landing', 'DENIED', /POLICY_DENIED/],
    ['org=empire,class=tiefighter', '127.0.0.20', 'POST', '/v1/request-landing', 'ALLOWED', /rule1/],
    ['127.0.0.11', 'default/deathstar', 'POST', '/v1/request-landing', 'DENIED', /L3_L4/],
  ];
  for (const [from, to, method, path, want, why] of cases) {
    const r = await run(['explain', '--config', demo, '--from', from, '--to', to, '--port', '80', '--method', method, '--path', path]);
    t.equal(r.code, 0, `${from} ${method} ${path}: ${r.err}`);
    t.equal(r.out.split('\n')[0], want, `${from} ${method} ${path}`);
    t.match(r.out, why, `${from} ${method} ${path} names its rule`);
  }
});

t.test('explain -o json and unknown peers', async (t) => {
  const r = await run(['explain', '--config', demo, '--from', '10.9.9.9', '--to', 'default/deathstar', '--port', '80/TCP', '--method', 'POST', '--path', '/v1/request-landing', '-o', 'json']);
  t.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  t.equal(j.verdict, 'denied');
  t.equal(j.source.identity, 2, 'an unknown address is world');
  t.match(j.source.note, /no endpoint/);
  const l = await run(['explain', '--config', demo, '--from', 'org=empire,class=bomber', '--to', 'default/deathstar', '--method', 'POST', '--path', '/v1/request-landing', '-o', 'json']);
  const jl = JSON.parse(l.out);
  t.match(jl.source.note, /match no endpoint/);
  t.equal(jl.verdict, 'denied', 'labels outside the namespace the policy pins are not selected');
  const u = await run(['explain', '--config', demo, '--from', 'default/nobody', '--to', 'default/deathstar']);
  t.equal(u.code, 2);
  t.match(u.err, /no pod default\/nobody/);
});

t.test('explain shows every policy behind the matched entry and its policy_log', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'l7w-explain-entry-'));
  cpSync(join(demo, 'starwars-app.yaml'), join(dir, 'starwars-app.yaml'));
  const l4 = (name: string, log: string) => `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
  endpointSelector: {matchLabels: {org: empire, class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  log: {value: ${log}}
`;
  writeFileSync(join(dir, 'p.yaml'), l4('zulu', 'z') + l4('alpha', 'a'));
  const args = ['explain', '--config', dir, '--from', 'default/tiefighter', '--to', 'default/deathstar', '--port', '80'];
  const r = await run(args);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /ingress: allowed at L3_L4 by CiliumNetworkPolicy default\/zulu /, 'the first rule decided');
  t.match(r.out, /\n {4}ingress entry: {2}CiliumNetworkPolicy default\/alpha, CiliumNetworkPolicy default\/zulu\n/, 'both policies, sorted');
  t.match(r.out, /\n {4}ingress policy_log: \["a","z"\]/);
  const j = JSON.parse((await run([...args, '-o', 'json'])).out);
  t.same(j.ingress.entryPolicies, ['CiliumNetworkPolicy default/alpha', 'CiliumNetworkPolicy default/zulu']);
  t.same(j.ingress.policyLog, ['a', 'z']);
  t.notOk('entryPolicies' in j.egress, 'no list where no policy selects the source');
});

t.test('the built binary exits with the documented codes', async (t) => {
  const bin = join(process.cwd(), 'dist/cli/main.js');
  const ok = spawnSync(process.execPath, [bin, 'check', '--config', demo], { encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stderr);
  const usage = spawnSync(process.execPath, [bin, 'nosuch'], { encoding: 'utf8' });
  t.equal(usage.status, 2);
  const dir = mkdtempSync(join(tmpdir(), 'l7w-bin-'));
  cpSync(demo, dir, { recursive: true });
  writeFileSync(join(dir, 'broken.yaml'), 'kind: CiliumNetworkPolicy\napiVersion: cilium.io/v2\nmetadata: {name: x}\nspec: {endpointSelector: {}}\n');
  const bad = spawnSync(process.execPath, [bin, 'check', '--config', dir], { encoding: 'utf8' });
  t.equal(bad.status, 1);
  t.match(bad.stderr, /broken\.yaml:\d+:\d+: /);
});
