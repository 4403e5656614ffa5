/**
 * `l7warden replay` on a recorded Star Wars session: the bundled demo API
 * (src/demo/deathstar.ts) behind a proxy running the demo policy
 * (config/sw_l3_l4_l7_policy.yaml); the flow log is replayed against the same
 * policy (exit 0, nothing changes) and against a tightened one without the L7
 * allow (exit 1, the formerly allowed landings listed with the deciding rule),
 * in text and -o json.
 */
import t from 'tap';
import { mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Server } from 'node:http';
import { startProxy } from '../../src/cli/run.js';
import { startDeathstar } from '../../src/demo/deathstar.js';
import { main } from '../../src/cli/commands.js';
import { STARWARS_PODS } from '../helpers/config-dir.js';
import { h1Request } from '../helpers/clients.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const TIE = '127.0.0.10';
const XWING = '127.0.0.11';

let work = '';
let flowFile = '';
let sameDir = '';
let tightDir = '';
let demo: Server;

function proxyYaml(upstreamPort: number): string {
  return `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: replay }
spec:
  flowLog: { file: "FLOWS", nodeName: replay-node }
  listeners:
  - name: deathstar
    mode: ingress
    address: 127.0.0.1:0
    endpoint: { namespace: default, pod: deathstar }
    upstream: http://127.0.0.1:${upstreamPort}
    endpointPort: 80
`;
}

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l: string) => out.push(l), err: (l: string) => err.push(l) } };
}

t.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'l7w-replay-'));
  flowFile = join(work, 'flows.json');
  const d = await startDeathstar(0);
  demo = d.server;
  // The recorded session runs the demo's own policy file, unchanged.
  sameDir = join(work, 'same');
  tightDir = join(work, 'tight');
  for (const dir of [sameDir, tightDir]) {
    await (await import('node:fs/promises')).mkdir(dir);
    await writeFile(join(dir, 'pods.yaml'), STARWARS_PODS);
    await writeFile(join(dir, 'proxy.yaml'), proxyYaml(d.port).replace('FLOWS', flowFile));
  }
  await copyFile(join(ROOT, 'config', 'sw_l3_l4_l7_policy.yaml'), join(sameDir, 'policy.yaml'));
  // Tightened: the L7 allow list removed and the rule moved to port 8080, so nothing
  // allows port 80 any more (deathstar stays selected: default deny).
  const original = await readFile(join(ROOT, 'config', 'sw_l3_l4_l7_policy.yaml'), 'utf8');
  const tightened = original.replace(/      rules:\n        http:\n        - method: "POST"\n          path: "\/v1\/request-landing"\n/, '').replace('port: "80"', 'port: "8080"');
  t.not(tightened, original, 'the tightened policy differs');
  await writeFile(join(tightDir, 'policy.yaml'), tightened);

  const proxy = await startProxy({ configDir: sameDir, ephemeralPorts: true });
  const port = proxy.listeners[0]!.address.port;
  const ok = (await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body: '' })).status;
  const ok2 = (await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: TIE, body: '' })).status;
  const deny = (await h1Request(port, { method: 'PUT', path: '/v1/exhaust-port', from: TIE })).status;
  const l3 = (await h1Request(port, { method: 'POST', path: '/v1/request-landing', from: XWING })).status;
  t.same([ok, ok2, deny, l3], [200, 200, 403, 403], 'the demo behaves as in Cilium\'s guide');
  await proxy.close(0);
});
t.teardown(async () => {
  await new Promise<void>((r) => demo?.close(() => r()));
  await rm(work, { recursive: true, force: true });
});

t.test('the recorded session holds request and response records', async (t) => {
  const lines = (await readFile(flowFile, 'utf8')).split('\n').filter(Boolean);
  t.equal(lines.length, 8);
});

t.test('unchanged policy: exit 0, nothing listed', async (t) => {
  const c = io();
  t.equal(await main(['replay', '--flows', flowFile, '--config', sameDir], c.io), 0);
  t.same(c.out, ['4 decisions replayed, 0 would change']);
  const j = io();
  t.equal(await main(['replay', '--flows', flowFile, '--config', sameDir, '-o', 'json'], j.io), 0);
  const r = JSON.parse(j.out.join('\n'));
  t.equal(r.checked, 4);
  t.equal(r.changed, 0);
  t.same(r.flows, []);
});

t.test('tightened policy: exit 1, the allowed landings are listed with the deciding rule', async (t) => {
  const c = io();
  t.equal(await main(['replay', '--flows', flowFile, '--config', tightDir], c.io), 1);
  t.equal(c.out.length, 2 * 2 + 1, 'two flows, two lines each, and the summary');
  t.match(c.out[0]!, /^FORWARDED -> DROPPED  default\/tiefighter \(identity \d+\) -> default\/deathstar \(identity \d+\) 80\/TCP POST http:\/\/deathstar\/v1\/request-landing$/);
  t.match(c.out[1]!, /^  decided by: no rule \(L3_L4, POLICY_DENIED\); was CiliumNetworkPolicy default\/rule1; recorded .* \(line \d+\)$/);
  t.equal(c.out[4], '4 decisions replayed, 2 would change');

  const j = io();
  t.equal(await main(['replay', '--flows', flowFile, '--config', tightDir, '-o', 'json'], j.io), 1);
  const r = JSON.parse(j.out.join('\n'));
  t.equal(r.checked, 4);
  t.equal(r.changed, 2);
  for (const f of r.flows) {
    t.equal(f.old.verdict, 'FORWARDED');
    t.equal(f.new.verdict, 'DROPPED');
    t.equal(f.new.type, 'L3_L4');
    t.equal(f.new.dropReason, 'POLICY_DENIED');
    t.equal(f.request, 'POST http://deathstar/v1/request-landing');
    t.equal(f.port, '80/TCP');
    t.match(f.uuid, /^[0-9a-f-]{36}$/);
  }
});

t.test('an L7 change is attributed to the rule whose L7 rules no longer match', async (t) => {
  // Same L3/L4 allow, but the L7 list now only allows GET /v1/ — the landing is an L7 deny.
  const l7Dir = join(work, 'l7');
  await (await import('node:fs/promises')).mkdir(l7Dir);
  await copyFile(join(sameDir, 'pods.yaml'), join(l7Dir, 'pods.yaml'));
  await copyFile(join(sameDir, 'proxy.yaml'), join(l7Dir, 'proxy.yaml'));
  const original = await readFile(join(ROOT, 'config', 'sw_l3_l4_l7_policy.yaml'), 'utf8');
  await writeFile(join(l7Dir, 'policy.yaml'), original.replace('method: "POST"', 'method: "GET"'));
  const j = io();
  t.equal(await main(['replay', '--flows', flowFile, '--config', l7Dir, '-o', 'json'], j.io), 1);
  const r = JSON.parse(j.out.join('\n'));
  t.equal(r.changed, 2);
  t.equal(r.flows[0].new.type, 'L7');
  t.match(r.flows[0].new.rule, /^CiliumNetworkPolicy default\/rule1 ingress\[0\]$/);
});

t.test('lines that are JSON but not flows, or flows with fields of the wrong type, are left out, not a crash', async (t) => {
  const recorded = (await readFile(flowFile, 'utf8')).split('\n').filter(Boolean);
  const first = JSON.parse(recorded[0]!);
  const odd = [
    'null',
    '42',
    '[1,2]',
    '"text"',
    // A request whose headers are not a list: re-deciding it threw (not iterable).
    JSON.stringify({ flow: { ...first.flow, is_reply: false, l7: { type: 'REQUEST', http: { method: 'GET', url: 'http://deathstar/', headers: 5 } } } }),
  ];
  const mixed = join(work, 'mixed.json');
  await writeFile(mixed, [...odd, ...recorded].join('\n') + '\n');
  const c = io();
  t.equal(await main(['replay', '--flows', mixed, '--config', sameDir], c.io), 0);
  t.same(c.out, ['4 decisions replayed, 0 would change, 1 unreadable line(s) skipped'], 'the real flows are still replayed');
});

t.test('usage and input errors', async (t) => {
  const c = io();
  t.equal(await main(['replay', '--config', sameDir], c.io), 2, 'no --flows');
  t.equal(await main(['replay', '--flows', flowFile, '--config', sameDir, '-o', 'yaml'], c.io), 2);
  t.equal(await main(['replay', '--flows', join(work, 'nope.json'), '--config', sameDir], c.io), 1);
});
