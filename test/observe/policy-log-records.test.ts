/**
 * `policy_log` in flow records, end to end: a running proxy, real clients (Node's
 * HTTP client through the transparent egress listener, curl through the forward
 * proxy, dig through the DNS listener) and the records the flow log gets.
 *
 * Which records carry it is Hubble's choice (cilium/cilium):
 * - pkg/policy/correlation/correlation.go CorrelatePolicy returns early unless the
 *   event is a policy verdict (type 5) that was allowed (FORWARDED / REDIRECTED) or
 *   denied by a deny rule (DROPPED, POLICY_DENY); then `f.PolicyLog = info.Log`, the
 *   log of the policy-map entry the verdict matched (policy_match_type).
 * - Drop events (type 1) and L7 access-log records (type 129: HTTP and DNS, built by
 *   pkg/hubble/parser/seven) are never correlated: no `policy_log`.
 * - api/v1/flow/flow.proto: `repeated string policy_log = 21006`, declared after
 *   `ingress_denied_by`, so protojson writes it last; empty lists are omitted;
 *   "Duplicate values are elided; each entry is unique" (sorted, pkg/policy/origin.go).
 * - PR cilium/cilium#39902 shows it on an allowed egress policy verdict:
 *   `"policy_match_type":1,"egress_allowed_by":[…],"policy_log":["demo"]`.
 */
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { EgressHarness, KUBE_DNS, curl, rawExchange, startCapture } from '../helpers/egress-harness.js';
import { dig } from '../helpers/dns-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };

// An HTTP server the transparent connections reach, one the forward proxy reaches.
const target = await startCapture('127.0.0.80', 0, { kind: 'http' });
const l7target = await startCapture('127.0.0.84', 0, { kind: 'http' });
t.teardown(() => target.close());
t.teardown(() => l7target.close());
const CP = target.port;
const HP = l7target.port;

function cnp(name: string, body: string, log?: string): string {
  return `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: ${name} }
spec:
  endpointSelector: { matchLabels: { app: client } }
${body}${log !== undefined ? `  log: { value: ${JSON.stringify(log)} }\n` : ''}`;
}

const toTarget = `  egress:
  - toCIDR: [127.0.0.80/32]
    toPorts: [{ ports: [{ port: "${CP}", protocol: TCP }] }]
`;

const policies = (dnsPort: number) =>
  // Three rules on the same map entry (127.0.0.80 on CP), one value twice, one that
  // needs escaping, one rule without a value.
  cnp('zeta', toTarget, 'zeta') +
  cnp('alpha', toTarget, 'alpha') +
  cnp('alpha-again', toTarget, 'alpha') +
  cnp('quoted', toTarget, 'q"\\') +
  cnp('silent', toTarget) +
  // The L4-only entry for CP: anyone on that port (a broader entry than the above).
  cnp('wide', `  egress:
  - toPorts: [{ ports: [{ port: "${CP}", protocol: TCP }] }]
`, 'wide') +
  cnp('dns', `  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules: { dns: [{ matchPattern: "*" }] }
`, 'dns-rule') +
  cnp('l7', `  egress:
  - toCIDR: [127.0.0.84/32]
    toPorts:
    - ports: [{ port: "${HP}", protocol: TCP }]
      rules: { http: [{ method: GET }] }
`, 'l7-rule') +
  cnp('deny', `  egressDeny:
  - toCIDR: [127.0.0.99/32]
`, 'deny-rule') +
  // A second deny policy on the same entry, listed first (sorted by name).
  cnp('block', `  egressDeny:
  - toCIDR: [127.0.0.99/32]
`);

const h = await EgressHarness.start((dnsPort) => ({
  pods: [KUBE_DNS, APP],
  policies: policies(dnsPort),
  extraListeners: `    - name: tproxy
      mode: egress
      address: 127.0.0.1:0
      sourceIdentity: [proxyProtocol]
`,
}));
t.teardown(() => h.close());
const TP = h.port('tproxy');

let sport = 42000;

/** A GET with Node's HTTP client over a connection to the transparent listener (PROXY v1 header first). */
function transparentGet(dst: string, dport: number, path: string): Promise<{ port: number; status: number; body: string }> {
  const p = sport++;
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: TP });
    sock.once('connect', () => sock.write(`PROXY TCP4 ${APP.ip} ${dst} ${p} ${dport}\r\n`));
    const req = http.request({ host: dst, port: dport, path, agent: false, createConnection: () => sock }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ port: p, status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function waitFor(pred: (f: Record<string, any>) => boolean, n = 1): Promise<Record<string, any>[]> {
  let found: Record<string, any>[] = [];
  for (let i = 0; i < 100; i++) {
    found = (await h.flowRecords()).filter(pred);
    if (found.length >= n) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return found;
}

/** The raw line of a record (by uuid): what the flow file holds. */
function lineOf(f: Record<string, any>): string {
  return h.flows.find((l) => l.includes(`"uuid":"${f.uuid}"`))!;
}

t.test('an allowed connection: the policy verdict carries every rule of the matched entry', async (t) => {
  const r = await transparentGet('127.0.0.80', CP, '/hello');
  t.equal(r.status, 200, 'the request reached the server');
  t.match(r.body, /upstream:GET \/hello/);
  const [f] = await waitFor((f) => !f.l7 && f.l4?.TCP?.source_port === r.port);
  t.ok(f, 'record');
  t.same(f?.event_type, { type: 5 }, 'policy-verdict event');
  t.equal(f?.verdict, 'FORWARDED');
  t.equal(f?.policy_match_type, 2, 'the L3-L4 entry');
  t.same(f?.policy_log, ['alpha', 'q"\\', 'zeta'], 'sorted by bytes, "alpha" once, the wide L4-only entry not included');
  // correlation.go toProto: every policy behind the entry, sorted, each once; the
  // wide L4-only entry is another key.
  t.same(
    f?.egress_allowed_by?.map((p: { name: string }) => p.name),
    ['alpha', 'alpha-again', 'quoted', 'silent', 'zeta'],
    'egress_allowed_by lists every policy of the matched entry',
  );
  const line = lineOf(f!);
  t.equal(line, JSON.stringify(JSON.parse(line)), 'the text is JSON.stringify of its object form');
  t.same(Object.keys(f!).at(-1), 'policy_log', 'written last, as protojson writes field 21006');
  t.ok(line.includes(`"revision":"${f!.egress_allowed_by[0].revision}"}],"policy_log":["alpha","q\\"\\\\","zeta"]},"node_name":`), 'right after egress_allowed_by, escaped');
});

t.test('a connection only the L4-only entry allows: that entry\'s value', async (t) => {
  const p = sport++;
  // Nothing listens on 127.0.0.82: the decision (and its record) comes before the dial.
  await rawExchange(TP, `PROXY TCP4 ${APP.ip} 127.0.0.82 ${p} ${CP}\r\nx`);
  const [f] = await waitFor((f) => !f.l7 && f.l4?.TCP?.source_port === p);
  t.equal(f?.policy_match_type, 3);
  t.same(f?.policy_log, ['wide']);
});

t.test('a denied connection is a drop event: no policy_log (never correlated)', async (t) => {
  const p = sport++;
  await rawExchange(TP, `PROXY TCP4 ${APP.ip} 127.0.0.99 ${p} ${CP}\r\nx`);
  const [f] = await waitFor((f) => !f.l7 && f.l4?.TCP?.source_port === p);
  t.equal(f?.verdict, 'DROPPED');
  t.equal(f?.drop_reason_desc, 'POLICY_DENY', 'the deny rule decided');
  t.same(f?.event_type, { type: 1, sub_type: 181 });
  t.notOk(f && 'policy_log' in f, 'no policy_log on a drop event');
  t.same(
    f?.egress_denied_by?.map((p: { name: string }) => p.name),
    ['block', 'deny'],
    'egress_denied_by lists both deny policies of the entry, sorted',
  );

  const q = sport++;
  await rawExchange(TP, `PROXY TCP4 ${APP.ip} 127.0.0.98 ${q} ${CP + 1 > 65535 ? CP - 1 : CP + 1}\r\nx`);
  const [g] = await waitFor((f) => !f.l7 && f.l4?.TCP?.source_port === q);
  t.equal(g?.drop_reason_desc, 'POLICY_DENIED', 'default deny');
  t.notOk(g && 'policy_log' in g);
});

t.test('HTTP through the forward proxy: L7 records carry no policy_log', async (t) => {
  const r = await curl(['--interface', APP.ip, '-x', `http://127.0.0.1:${h.egressPort}`, `http://127.0.0.84:${HP}/l7`]);
  t.equal(r.status, 200, r.stderr);
  const recs = await waitFor((f) => f.l7?.http?.url === `http://127.0.0.84:${HP}/l7`, 2);
  t.equal(recs.length, 2, 'a request and a response record');
  for (const f of recs) {
    t.same(f.event_type, { type: 129 }, `${f.l7.type}: an L7 access-log event`);
    t.notOk('policy_log' in f, `${f.l7.type}: Hubble's L7 parser sets no policy_log`);
    const line = lineOf(f);
    t.equal(line, JSON.stringify(JSON.parse(line)));
  }
  t.ok(recs.find((f) => f.l7.type === 'REQUEST')?.egress_allowed_by, 'the request still names the allowing rule');
  const denied = await curl(['--interface', APP.ip, '-X', 'POST', '-x', `http://127.0.0.1:${h.egressPort}`, `http://127.0.0.84:${HP}/l7-post`]);
  t.equal(denied.status, 403);
  const [d] = await waitFor((f) => f.l7?.type === 'REQUEST' && f.l7.http?.url === `http://127.0.0.84:${HP}/l7-post`);
  t.equal(d?.verdict, 'DROPPED');
  t.notOk(d && 'policy_log' in d);
});

t.test('DNS through the DNS proxy: no policy_log on queries or answers', async (t) => {
  h.dns.setRecord('logged.example.test', { a: ['127.0.0.91'] });
  const r = await dig(h.port('dns'), 'logged.example.test', { from: APP.ip });
  t.same(r.answers.map((a) => a.data), ['127.0.0.91'], 'answered');
  const recs = await waitFor((f) => f.l7?.dns?.query === 'logged.example.test.', 2);
  t.equal(recs.length, 2, 'a query and an answer record');
  for (const f of recs) {
    t.notOk('policy_log' in f, `${f.l7.type}: DNS records are L7 access-log events`);
    t.ok(f.l7.type === 'RESPONSE' || f.egress_allowed_by, 'the query names its rule');
  }
});

t.test('one record for both directions: the union of the enforced directions\' lists', async (t) => {
  const { compileOk, pod } = await import('../helpers/policy-fixtures.js');
  const { HttpFlowRecorder } = await import('../../src/observe/flow.js');
  const { policyLog } = await import('../../src/observe/hubble.js');
  const cnp2 = (name: string, sel: string, body: string, log: string) =>
    `---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {${sel}}}\n${body}  log: {value: ${JSON.stringify(log)}}\n`;
  const s = await compileOk({
    'pods.yaml': pod('a', { id: 'a' }, '172.16.0.1') + pod('b', { id: 'b' }, '172.16.0.2'),
    'p.yaml':
      cnp2('out', 'id: a', '  egress:\n  - toEndpoints: [{matchLabels: {id: b}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n', 'shared') +
      cnp2('out2', 'id: a', '  egress:\n  - toEndpoints: [{matchLabels: {id: b}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n', 'zz-out') +
      cnp2('in', 'id: b', '  ingress:\n  - fromEndpoints: [{matchLabels: {id: a}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n', 'shared') +
      cnp2('in2', 'id: b', '  ingress:\n  - fromEndpoints: [{matchLabels: {id: a}}]\n    toPorts: [{ports: [{port: "80", protocol: TCP}]}]\n', 'Ingress') +
      cnp2('out81', 'id: a', '  egress:\n  - toEndpoints: [{matchLabels: {id: b}}]\n    toPorts: [{ports: [{port: "81", protocol: TCP}]}]\n', 'out-81') +
      cnp2('no', 'id: b', '  ingressDeny:\n  - fromEndpoints: [{matchLabels: {id: a}}]\n    toPorts: [{ports: [{port: "81", protocol: TCP}]}]\n', 'deny-81'),
  });
  const a = s.identityForIP('172.16.0.1');
  const b = s.identityForIP('172.16.0.2');
  const v = s.decide({ src: a, dst: b, port: 80, protocol: 'TCP' });
  t.same(v.egressLog, ['shared', 'zz-out']);
  t.same(v.ingressLog, ['Ingress', 'shared']);
  t.same(policyLog(v), ['Ingress', 'shared', 'zz-out'], 'union, sorted by bytes, "shared" once');
  const denied = s.decide({ src: a, dst: b, port: 81, protocol: 'TCP' });
  t.equal(denied.dropReason, 'POLICY_DENY');
  t.equal(denied.decidedBy, 'ingress');
  t.same(policyLog(denied), ['deny-81'], 'what a DROPPED policy-verdict event would carry: the denying direction\'s');

  const lines: string[] = [];
  const sink = { active: true, emit: (r: { toLine(): string }) => lines.push(r.toLine()) } as never;
  const fr = new HttpFlowRecorder(sink, 'node');
  fr.connection(s, { ip: '172.16.0.1', port: 40000, identity: a }, { ip: '172.16.0.2', port: 80, identity: b }, v, 'EGRESS');
  fr.connection(s, { ip: '172.16.0.1', port: 40001, identity: a }, { ip: '172.16.0.2', port: 81, identity: b }, denied, 'EGRESS');
  const [allowLine, denyLine] = lines;
  t.equal(allowLine, JSON.stringify(JSON.parse(allowLine!)));
  const flow = (JSON.parse(allowLine!) as { flow: Record<string, unknown> }).flow;
  t.same(flow['policy_log'], ['Ingress', 'shared', 'zz-out']);
  t.ok(flow['egress_allowed_by'] && flow['ingress_allowed_by'], 'both directions named');
  t.notOk(denyLine!.includes('policy_log'), 'a deny is written as a drop event: no policy_log');
});
