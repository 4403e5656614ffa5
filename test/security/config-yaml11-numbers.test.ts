/**
 * Integers written as `010`, `0x50`, `0o10`, `1e2`, `+80`, `80.0` or `-0` are numbers
 * to the YAML 1.2 core schema this loader uses, but a YAML 1.1 reader — kubectl and
 * sigs.k8s.io/yaml, i.e. what applies the same file to a cluster — reads `010` as 8
 * and `1e2` as a string. `port: 010` was taken as port 10 here. Such spellings are
 * refused with file, line and field; plain decimals (and quoted strings where a field
 * takes one) are unchanged. A CiliumNetworkPolicy port is a string in the CRD (the API
 * server refuses `port: 80`), so there every unquoted number is refused, and only
 * the plain decimal is offered back quoted.
 */
import t from 'tap';
import { loadConfigDir } from '../../src/config/load.js';
import { formatIssue } from '../../src/config/issues.js';

const cnp = (port: string) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - toPorts:
    - ports: [{port: ${port}, protocol: TCP}]
`;
const knp = (port: string) => `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: n}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - ports: [{port: ${port}, protocol: TCP}]
`;
const proxy = (limit: string) => `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: {name: x}
spec:
  listeners:
  - {name: a, mode: egress, address: "127.0.0.1:0"}
  limits: {dnsMinTtlSeconds: ${limit}}
`;

async function errors(t: { testdir(files: Record<string, string>): string }, files: Record<string, string>): Promise<string[]> {
  const r = await loadConfigDir(t.testdir(files));
  return r.errors.map(formatIssue);
}

t.test('CiliumNetworkPolicy ports', async (t) => {
  t.same(await errors(t, { 'p.yaml': cnp('"80"') }), [], 'quoted');
  const plain = await errors(t, { 'p.yaml': cnp('80') });
  t.equal(plain.length, 1, 'plain decimal: a number where the CRD takes a string');
  t.match(plain[0], /\/p\.yaml:8:\d+: spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port: must be a string, not a number \(quote it: "80"\)/);
  for (const odd of ['010', '0x50', '0o120', '1e2', '+80', '80.0']) {
    const e = await errors(t, { 'p.yaml': cnp(odd) });
    t.equal(e.length, 1, odd);
    t.match(e[0], /\/p\.yaml:8:\d+: spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port: must be a string, not a number \(write it as a quoted decimal port, e\.g\. "80"\)/, odd);
  }
  const quotedOdd = await errors(t, { 'p.yaml': cnp('"010"') });
  t.match(quotedOdd[0], /port: "010" has a leading zero/, 'quoted 010: still not a port');
});

t.test('NetworkPolicy ports', async (t) => {
  t.same(await errors(t, { 'n.yaml': knp('8080') }), []);
  const e = await errors(t, { 'n.yaml': knp('010') });
  t.equal(e.length, 1);
  t.match(e[0], /\/n\.yaml:7:\d+: spec\.ingress\[0\]\.ports\[0\]\.port: write 010 as a plain decimal port/);
});

t.test('integer fields of the ProxyConfig', async (t) => {
  t.same(await errors(t, { 'x.yaml': proxy('600') }), []);
  for (const odd of ['0600', '6e2', '-0']) {
    const e = await errors(t, { 'x.yaml': proxy(odd) });
    t.equal(e.length, 1, odd);
    t.match(e[0], /\/x\.yaml:7:\d+: spec\.limits\.dnsMinTtlSeconds: write .+ as a plain decimal integer/, odd);
  }
});
