/**
 * Differential port of Cilium's DNS proxy tests (pkg/fqdn/dnsproxy/proxy_test.go) through
 * our code: the running DNS listener with `dig` where the case is about the wire
 * (refusal rcode, transport, case kept in the answer), and `decide({…, dns})` on a compiled
 * snapshot for TestFullPathDependence's dimensions the one-upstream listener cannot vary
 * (destination identity, destination port). Each case cites its Cilium test and asserts
 * Cilium's expected result.
 *
 * Not ported (and why):
 *  - the restore half of TestFullPathDependence, TestRestoredEndpoint: rules restored from
 *    the endpoint's checkpoint across an agent restart; l7warden has no restart state, it
 *    loads its policy before the listener opens.
 *  - TestCheckAllowedTwiceRemovedOnce: UpdateAllowed reference counting of the per-endpoint
 *    rule map; our rules are an immutable snapshot swapped whole.
 *  - TestProxyRequestContext_IsTimeout and the benchmarks: internals.
 *  - pkg/fqdn/dns/dns_test.go TestIsFQDN and the escaped rows of TestFQDN (`\.`): presentation
 *    escapes; our names come off the wire with label bytes limited to [A-Za-z0-9_-] (a dot
 *    inside a label is FORMERR, test/dns/proxy.test.ts). The plain rows are below.
 */
import t from 'tap';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { DnsHarness, dig } from '../helpers/dns-harness.js';
import { compileOk, pod } from '../helpers/policy-fixtures.js';
import { normalizeQName } from '../../src/policy/dns-pattern.js';

const EP1 = { name: 'ep1', labels: { app: 'ep1' }, ip: '127.0.0.10' };
const EP2 = { name: 'ep2', labels: { app: 'ep2' }, ip: '127.0.0.11' };
const EP3 = { name: 'ep3', labels: { app: 'ep3' }, ip: '127.0.0.12' };
const NAMED = { name: 'named', labels: { app: 'named' }, ip: '127.0.0.13' };
const NORULES = { name: 'norules', labels: { app: 'norules' }, ip: '127.0.0.14' };
const EMPTYDNS = { name: 'emptydns', labels: { app: 'emptydns' }, ip: '127.0.0.15' };

const KUBE_DNS_PEER = `toEndpoints: [{ matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns } }]`;

function cnp(name: string, app: string, egress: string): string {
  return `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: ${name}, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: ${app} } }
  egress:
${egress}
`;
}

/** kube-dns is the TestFullPathDependence DstID1 here; PORT is the upstream's port. */
const POLICIES = [
  cnp(
    'ep1',
    'ep1',
    `    - ${KUBE_DNS_PEER}
      toPorts: [{ ports: [{ port: "PORT", protocol: UDP }], rules: { dns: [{ matchPattern: "*.ubuntu.com." }, { matchPattern: "aws.amazon.com." }] } }]
    - ${KUBE_DNS_PEER}
      toPorts: [{ ports: [{ port: "PORT", protocol: TCP }], rules: { dns: [{ matchPattern: "sub.ubuntu.com." }] } }]`,
  ),
  // EP2: egress enforced, but nothing toward the DNS server.
  cnp('ep2', 'ep2', `    - toEntities: [world]\n      toPorts: [{ ports: [{ port: "443", protocol: TCP }] }]`),
  cnp(
    'ep3',
    'ep3',
    `    - ${KUBE_DNS_PEER}
      toPorts: [{ ports: [{ port: "PORT", protocol: UDP }], rules: { dns: [{ matchPattern: "example.com." }] } }]`,
  ),
  cnp(
    'named',
    'named',
    `    - ${KUBE_DNS_PEER}
      toPorts: [{ ports: [{ port: "PORT", protocol: ANY }], rules: { dns: [{ matchName: "cilium.io." }, { matchName: "simple.io." }] } }]`,
  ),
  cnp('norules', 'norules', `    - ${KUBE_DNS_PEER}\n      toPorts: [{ ports: [{ port: "PORT", protocol: ANY }] }]`),
  cnp('emptydns', 'emptydns', `    - ${KUBE_DNS_PEER}\n      toPorts: [{ ports: [{ port: "PORT", protocol: ANY }], rules: { dns: [] } }]`),
].join('');

const PODS = [EP1, EP2, EP3, NAMED, NORULES, EMPTYDNS];

const h = await DnsHarness.start({ pods: PODS, policies: POLICIES });
t.teardown(() => h.close());

t.test('proxy_test.go TestFullPathDependence, cases on the wire (kube-dns = DstID1, its port = 53)', async (t) => {
  const cases: [string, typeof EP1, 'UDP' | 'TCP', string, 'NOERROR' | 'REFUSED'][] = [
    ['1', EP1, 'UDP', 'www.ubuntu.com', 'NOERROR'],
    ['2 (TCP only allows sub.ubuntu.com)', EP1, 'TCP', 'www.ubuntu.com', 'REFUSED'],
    ['3', EP1, 'TCP', 'sub.ubuntu.com', 'NOERROR'],
    ['4', EP1, 'UDP', 'sub.ubuntu.com', 'NOERROR'],
    ['(EP1 UDP aws.amazon.com)', EP1, 'UDP', 'aws.amazon.com', 'NOERROR'],
    ['9 (EP2 is allowed by no policy)', EP2, 'UDP', 'cilium.io', 'REFUSED'],
    ['10', EP3, 'UDP', 'example.com', 'NOERROR'],
    ['11 (EP3 may only ask example.com)', EP3, 'UDP', 'aws.amazon.io', 'REFUSED'],
  ];
  for (const [n, ep, proto, name, want] of cases) {
    const before = h.upstream.queriesFor(name).length;
    const r = await dig(h.port, name, { from: ep.ip, ...(proto === 'TCP' ? { args: ['+tcp'] } : {}) });
    t.equal(r.status, want, `case ${n}: ${ep.name} ${proto} ${name} ⇒ ${want}`);
    const sent = h.upstream.queriesFor(name).slice(before);
    if (want === 'REFUSED') t.equal(sent.length, 0, `case ${n}: nothing sent upstream`);
    else t.equal(sent.at(-1)?.transport, proto.toLowerCase(), `case ${n}: forwarded over ${proto}`);
  }
});

t.test('proxy_test.go TestFullPathDependence, all 18 cases through decide() (destination identity and port vary)', async (t) => {
  const dst = (n: number) => ({ name: `dst${n}`, labels: { [`Dst${n}`]: 'test' }, ip: `127.0.0.${20 + n}` });
  const sel = (n: number) => `toEndpoints: [{ matchLabels: { Dst${n}: test } }]`;
  const port = (p: number, proto: string, rules?: string) =>
    `toPorts: [{ ports: [{ port: "${p}", protocol: ${proto} }]${rules ? `, rules: { dns: [${rules}] }` : ''} }]`;
  const snap = await compileOk({
    'pods.yaml': [EP1, EP2, EP3, dst(1), dst(2), dst(3), dst(4)].map((p) => pod(p.name, p.labels, p.ip)).join(''),
    'p.yaml': [
      cnp(
        'ep1',
        'ep1',
        [
          `    - ${sel(1)}\n      ${port(53, 'UDP', '{ matchPattern: "*.ubuntu.com." }, { matchPattern: "aws.amazon.com." }')}`,
          `    - ${sel(2)}\n      ${port(53, 'UDP', '{ matchPattern: "cilium.io." }')}`,
          `    - ${sel(1)}\n      ${port(53, 'TCP', '{ matchPattern: "sub.ubuntu.com." }')}`,
          // cachedWildcardSelector: every identity.
          `    - toEntities: [all]\n      ${port(54, 'UDP', '{ matchPattern: "example.com." }')}`,
        ].join('\n'),
      ),
      cnp('ep2', 'ep2', `    - toEntities: [world]\n      ${port(443, 'TCP')}`),
      cnp(
        'ep3',
        'ep3',
        [
          `    - ${sel(1)}\n      ${port(53, 'UDP', '{ matchPattern: "example.com." }')}`,
          `    - ${sel(3)}\n      ${port(53, 'UDP', '{ matchPattern: "*" }')}`,
          // DstID4: a nil L7 rule (L3/L4 only).
          `    - ${sel(4)}\n      ${port(53, 'UDP')}`,
          `    - ${sel(3)}\n      ${port(53, 'TCP', '{ matchPattern: "example.com" }')}`,
        ].join('\n'),
      ),
    ].join(''),
  });
  const id = (ip: string) => snap.identityForIP(ip);
  const ep = [EP1, EP2, EP3];
  // [case, from EPn, to DstIDn, port, protocol, query, allowed]
  const table: [number, number, number, number, 'UDP' | 'TCP', string, boolean][] = [
    [1, 1, 1, 53, 'UDP', 'www.ubuntu.com', true],
    [2, 1, 1, 53, 'TCP', 'www.ubuntu.com', false],
    [3, 1, 1, 53, 'TCP', 'sub.ubuntu.com', true],
    [4, 1, 1, 53, 'UDP', 'sub.ubuntu.com', true],
    [5, 1, 1, 54, 'UDP', 'cilium.io', false],
    [6, 1, 2, 53, 'UDP', 'cilium.io', true],
    [7, 1, 2, 53, 'UDP', 'aws.amazon.com', false],
    [8, 1, 1, 54, 'UDP', 'example.com', true],
    [9, 2, 1, 53, 'UDP', 'cilium.io', false],
    [10, 3, 1, 53, 'UDP', 'example.com', true],
    [11, 3, 1, 53, 'UDP', 'aws.amazon.io', false],
    [12, 3, 1, 54, 'UDP', 'example.com', false],
    [13, 3, 2, 53, 'UDP', 'example.com', false],
    [14, 3, 3, 53, 'UDP', 'example.com', true],
    [15, 3, 3, 53, 'TCP', 'example.com', true],
    [16, 3, 3, 53, 'TCP', 'amazon.com', false],
    [17, 3, 4, 53, 'TCP', 'example.com', false],
    [18, 3, 4, 53, 'UDP', 'example.com', true],
  ];
  for (const [n, from, to, p, proto, q, want] of table) {
    const v = snap.decide({ src: id(ep[from - 1]!.ip), dst: id(dst(to).ip), port: p, protocol: proto, dns: normalizeQName(q) });
    t.equal(v.allowed, want, `case ${n}: EP${from} → DstID${to} ${p}/${proto} ${q} ⇒ ${want ? 'allowed' : 'rejected'}`);
  }
});

t.test('proxy_test.go TestAcceptFromMatchingEndpoint, TestRejectFromDifferentEndpoint, TestAcceptNonRegex, TestRejectNonRegex', async (t) => {
  t.equal((await dig(h.port, 'cilium.io.', { from: NAMED.ip })).status, 'NOERROR', 'cilium.io. from the endpoint the rule is for');
  t.equal((await dig(h.port, 'cilium.io.', { from: EP2.ip })).status, 'REFUSED', 'the same query from another endpoint');
  t.equal((await dig(h.port, 'simple.io.', { from: NAMED.ip })).status, 'NOERROR');
  const before = h.upstream.queriesFor('ciliumXio').length;
  t.equal((await dig(h.port, 'ciliumXio.', { from: NAMED.ip })).status, 'REFUSED', 'a matchName dot is a literal dot');
  t.equal(h.upstream.queriesFor('ciliumXio').length, before);
});

t.test('proxy_test.go TestRejectNonMatchingRefusedResponseWithRefused: a denied query over TCP gets REFUSED, no answers', async (t) => {
  const r = await dig(h.port, 'notcilium.io.', { from: NAMED.ip, args: ['+tcp'] });
  t.equal(r.status, 'REFUSED');
  t.equal(r.answers.length, 0);
});

t.test('proxy_test.go TestRespondViaCorrectProtocol: the TCP query is forwarded over TCP and the answer passed back', async (t) => {
  h.upstream.setRecord('cilium.io', { a: ['1.1.1.1'], ttl: 60 });
  const before = h.upstream.queriesFor('cilium.io').length;
  const r = await dig(h.port, 'cilium.io.', { from: NAMED.ip, args: ['+tcp'] });
  t.equal(r.status, 'NOERROR');
  t.same(r.answers, [{ name: 'cilium.io.', ttl: 60, type: 'A', data: '1.1.1.1' }], '"cilium.io.\\t60\\tIN\\tA\\t1.1.1.1"');
  const sent = h.upstream.queriesFor('cilium.io').slice(before);
  t.same(sent.map((q) => q.transport), ['tcp']);
});

/** One DNS-over-TCP exchange, as Cilium's dns.Client{Net: "tcp"} does it. */
function tcpQuery(port: number, name: string, from: string): Promise<dnsPacket.Packet> {
  return new Promise((resolve, reject) => {
    const msg = dnsPacket.encode({ type: 'query', id: 0x1234, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(msg.length);
    let acc = Buffer.alloc(0);
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from }, () => s.write(Buffer.concat([len, msg])));
    s.setTimeout(5000, () => {
      s.destroy();
      reject(new Error('timeout'));
    });
    s.on('data', (d) => {
      acc = Buffer.concat([acc, d]);
      if (acc.length >= 2 && acc.length >= 2 + acc.readUInt16BE(0)) {
        s.destroy();
        resolve(dnsPacket.decode(acc.subarray(2, 2 + acc.readUInt16BE(0))));
      }
    });
    s.on('error', reject);
  });
}

t.test('proxy_test.go TestRespondMixedCaseInRequestResponse: a mixed-case query is allowed out and its case comes back', async (t) => {
  h.upstream.setRecord('cilium.io', { a: ['1.1.1.1'], ttl: 60 });
  for (const q of ['CILIUM.io', 'ciliuM.io']) {
    const before = h.upstream.queriesFor('cilium.io').length;
    const r = await tcpQuery(h.port, q, NAMED.ip);
    t.equal(r.rcode, 'NOERROR', `${q}. allowed by matchName cilium.io.`);
    t.equal(r.answers?.length, 1);
    t.equal(r.answers?.[0]?.name, q, `answer owner "${q}." as asked`);
    t.equal((r.answers?.[0] as { data?: string } | undefined)?.data, '1.1.1.1');
    t.equal(r.questions?.[0]?.name, q, 'question echoed as asked');
    t.equal(h.upstream.queriesFor('cilium.io').slice(before).at(-1)?.name, q, 'forwarded with its case (0x20 schemes)');
  }
});

t.test('proxy_test.go TestCheckNoRules: no L7 rules, or an empty dns list, allows every name', async (t) => {
  for (const ep of [NORULES, EMPTYDNS]) {
    for (const q of ['cilium.io', 'anything.example.org']) {
      t.equal((await dig(h.port, q, { from: ep.ip })).status, 'NOERROR', `${ep.name}: ${q}`);
    }
  }
});

t.test('dns/dns_test.go TestFQDN (plain rows): lowercase and one trailing dot, the form rules are matched in', async (t) => {
  const rows: [string, string][] = [
    ['.', '.'],
    ['example.org', 'example.org.'],
    ['example.org.', 'example.org.'],
    ['EXAMPLE.ORG', 'example.org.'],
    ['eXAMPLE.org.', 'example.org.'],
  ];
  for (const [in_, want] of rows) t.equal(normalizeQName(in_), want, `FQDN(${JSON.stringify(in_)})`);
  // And on the wire: EXAMPLE.ORG. from NAMED is decided as example.org. (not allowed), CILIUM.IO. as cilium.io.
  t.equal((await dig(h.port, 'CILIUM.IO.', { from: NAMED.ip })).status, 'NOERROR');
  t.equal((await dig(h.port, 'EXAMPLE.ORG.', { from: NAMED.ip })).status, 'REFUSED');
});

t.test('proxy_test.go TestRejectNonMatchingRefusedResponseWithNameError: rejectResponseCode nameError ⇒ NXDOMAIN', async (t) => {
  const nx = await DnsHarness.start({ pods: PODS, policies: POLICIES, listenerExtra: '      rejectResponseCode: nameError' });
  t.teardown(() => nx.close());
  const r = await dig(nx.port, 'notcilium.io.', { from: NAMED.ip, args: ['+tcp'] });
  t.equal(r.status, 'NXDOMAIN');
  t.equal(r.answers.length, 0);
  t.equal(nx.upstream.queriesFor('notcilium.io').length, 0, 'nothing sent upstream');
  t.equal((await dig(nx.port, 'cilium.io.', { from: NAMED.ip })).status, 'NOERROR', 'allowed names unaffected');
});
