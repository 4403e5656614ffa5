/**
 * Differential check of our L3/L4 and DNS flow records against what Hubble's own
 * parsers make of the same events, over a running proxy (transparent egress
 * listener fed PROXY headers, the DNS listener fed dig):
 *
 * - policy-verdict events (type 5) carry `policy_match_type` and `is_reply: false`
 *   (cilium/cilium pkg/hubble/parser/threefour/parser.go decodePolicyMatchType,
 *   decodeIsReply; parser_test.go TestDecodePolicyVerdictNotify, TestDecodeIsReply
 *   "PolicyVerdictNotify forward statically assumes is_reply=false"); the match type
 *   is the map entry the datapath's lookup finds (pkg/monitor/api/types.go:
 *   L3-only 1, L3-L4 2, L4-only 3, all 4).
 * - drop events (type 1) have no `is_reply` and no match type (TestDecodeIsReply
 *   "DropNotify statically assumes is_reply=unknown").
 * - DNS answers: Summary as seven/dns.go dnsSummary (IPs %q only when present,
 *   `CNAMEs: %q`, gopacket's rcode text), and the deprecated `reply: true` Hubble
 *   sets on replies (seven/parser.go Decode: Reply = is_reply; api/v1/flow/flow.proto
 *   `bool reply = 16`).
 */
import t from 'tap';
import { EgressHarness, KUBE_DNS, rawExchange } from '../helpers/egress-harness.js';
import { dig } from '../helpers/dns-harness.js';

const APP = { name: 'app', labels: { app: 'client' }, ip: '127.0.0.10' };
const ALLOWALL = { name: 'allowall', labels: { app: 'allowall' }, ip: '127.0.0.12' };
const OPEN = { name: 'open', labels: { app: 'open' }, ip: '127.0.0.13' };
// Nothing listens on these ports: the decision (and its record) comes before the dial.
const P1 = 9;
const P2 = 7;

const policy = (dnsPort: number) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: l34 }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
  - toEndpoints:
    - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
    toPorts:
    - ports: [{ port: "${dnsPort}", protocol: ANY }]
      rules: { dns: [{ matchPattern: "*" }] }
  - toCIDR: [127.0.0.81/32]
  - toCIDR: [127.0.0.80/32]
    toPorts: [{ ports: [{ port: "${P1}", protocol: TCP }] }]
  - toPorts: [{ ports: [{ port: "${P2}", protocol: TCP }] }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: allowall }
spec:
  endpointSelector: { matchLabels: { app: allowall } }
  egress: [{ toEntities: [all] }]
`;

const h = await EgressHarness.start((dnsPort) => ({
  pods: [KUBE_DNS, APP, ALLOWALL, OPEN],
  policies: policy(dnsPort),
  extraListeners: `    - name: tproxy
      mode: egress
      address: 127.0.0.1:0
      sourceIdentity: [proxyProtocol]
`,
}));
t.teardown(() => h.close());
const TP = h.port('tproxy');

let sport = 41000;
async function connect(src: string, dst: string, dport: number): Promise<number> {
  const p = sport++;
  await rawExchange(TP, `PROXY TCP4 ${src} ${dst} ${p} ${dport}\r\nx`);
  return p;
}
async function l34Record(src: string, p: number): Promise<Record<string, any> | undefined> {
  for (let i = 0; i < 100; i++) {
    const f = (await h.flowRecords()).find((r) => !r.l7 && r.IP?.source === src && r.l4?.TCP?.source_port === p);
    if (f) return f;
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

t.test('policy-verdict events name the matching map entry (threefour TestDecodePolicyVerdictNotify)', async (t) => {
  const cases: Array<{ name: string; src: string; dst: string; port: number; want: number }> = [
    { name: 'toCIDR + toPorts: L3-L4', src: APP.ip, dst: '127.0.0.80', port: P1, want: 2 },
    { name: 'toCIDR, no ports: L3-only', src: APP.ip, dst: '127.0.0.81', port: P1, want: 1 },
    { name: 'toPorts, no peer: L4-only', src: APP.ip, dst: '127.0.0.82', port: P2, want: 3 },
    // Both the L3-only (.81) and the L4-only (P2) entries match: the datapath's
    // lookup finds the port entry first (bpf/lib/policy.h), whatever the rule order.
    { name: 'L3-only and L4-only both match: L4-only', src: APP.ip, dst: '127.0.0.81', port: P2, want: 3 },
    { name: 'toEntities all: allow-all', src: ALLOWALL.ip, dst: '127.0.0.90', port: P1, want: 4 },
    { name: 'no egress policy: the allow-all entry', src: OPEN.ip, dst: '127.0.0.90', port: P1, want: 4 },
  ];
  for (const c of cases) {
    const p = await connect(c.src, c.dst, c.port);
    const f = await l34Record(c.src, p);
    if (!f) {
      t.fail(`${c.name}: no record`);
      continue;
    }
    t.same(f.event_type, { type: 5 }, `${c.name}: policy-verdict event`);
    t.equal(f.verdict, 'FORWARDED', c.name);
    t.equal(f.policy_match_type, c.want, `${c.name}: policy_match_type`);
    t.equal(f.is_reply, false, `${c.name}: a forwarded policy verdict is not a reply`);
    t.equal(f.reply, undefined, `${c.name}: deprecated reply omitted when false`);
    t.equal(f.Summary, 'TCP Flags: SYN');
  }
});

t.test('drop events: no is_reply, no policy_match_type (threefour TestDecodeIsReply)', async (t) => {
  const p = await connect(APP.ip, '127.0.0.99', P1);
  const f = await l34Record(APP.ip, p);
  t.ok(f, 'record');
  t.same(f?.event_type, { type: 1, sub_type: 133 });
  t.equal(f?.verdict, 'DROPPED');
  t.equal(f?.drop_reason_desc, 'POLICY_DENIED');
  t.notOk(f && 'is_reply' in f, 'is_reply absent: Hubble does not know whether a dropped packet was a reply');
  t.notOk(f && 'policy_match_type' in f, 'no match type on a drop');
});

t.test('DNS answers: Summary and reply as seven/dns.go and parser.go make them', async (t) => {
  h.dns.setRecord('ips.example.test', { a: ['127.0.0.91', '127.0.0.92'] });
  h.dns.setRecord('alias.example.test', { cname: 'target.example.test' });
  h.dns.setRecord('target.example.test', { a: ['127.0.0.93'] });
  h.dns.setRecord('empty.example.test', {});
  for (const name of ['ips.example.test', 'alias.example.test', 'empty.example.test', 'missing.example.test']) {
    await dig(h.port('dns'), name, { from: APP.ip });
  }
  let answers: Array<Record<string, any>> = [];
  for (let i = 0; i < 100 && answers.length < 4; i++) {
    answers = (await h.flowRecords()).filter((f) => f.l7?.type === 'RESPONSE' && f.l7.dns && f.destination_port !== 0);
    await new Promise((r) => setTimeout(r, 20));
  }
  const byName = (q: string) => answers.find((f) => f.l7.dns.query === q);
  const ips = byName('ips.example.test.');
  t.match(ips?.Summary, /^DNS Answer "127\.0\.0\.91,127\.0\.0\.92" TTL: \d+ \(Proxy ips\.example\.test\. A\)$/);
  t.equal(ips?.reply, true, 'reply: true on an answer');
  t.equal(ips?.is_reply, true);
  const alias = byName('alias.example.test.');
  t.match(alias?.Summary, /^DNS Answer "127\.0\.0\.93" CNAMEs: "target\.example\.test\.?" TTL: \d+ \(Proxy alias\.example\.test\. A\)$/, 'CNAMEs part');
  const empty = byName('empty.example.test.');
  if (empty) {
    t.equal(empty.l7.dns.rcode, undefined, 'NOERROR');
    t.match(empty.Summary, /^DNS Answer  TTL: \d+ \(Proxy empty\.example\.test\. A\)$/, 'no answer: nothing between "Answer" and "TTL" but the two spaces');
  }
  const missing = byName('missing.example.test.');
  if (missing?.l7.dns.rcode === 3) t.match(missing.Summary, /^DNS Answer RCode: Non-Existent Domain TTL: /);
  // The request records stay as they were: no reply field.
  const req = (await h.flowRecords()).find((f) => f.l7?.type === 'REQUEST' && f.l7.dns?.query === 'ips.example.test.');
  t.equal(req?.is_reply, false);
  t.notOk(req && 'reply' in req);
});
