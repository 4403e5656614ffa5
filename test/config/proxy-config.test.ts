// ProxyConfig validation: defaults applied, every error located.
import t from 'tap';
import { loadConfigDir } from '../../src/config/load.js';
import { formatIssue } from '../../src/config/issues.js';
import { DEFAULT_LIMITS } from '../../src/config/proxy-config.js';
import { parseHostPort } from '../../src/config/validate-proxy-config.js';
import type { TestT } from '../helpers/tap.js';

const pods = `apiVersion: v1
kind: Pod
metadata: {name: deathstar}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: v1
kind: Secret
metadata: {name: deathstar-tls}
stringData: {tls.crt: c, tls.key: k}
`;

async function load(t: TestT, pc: string) {
  const dir = t.testdir({ config: { 'pc.yaml': pc, 'pods.yaml': pods } });
  t.chdir(dir);
  return loadConfigDir('config');
}

t.test('sketch from SPEC.md with defaults', async (t) => {
  const r = await load(t, `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: node-local }
spec:
  admin: { address: 127.0.0.1:9901 }
  listeners:
    - name: deathstar
      mode: ingress
      address: 127.0.0.1:8443
      endpoint: { namespace: default, pod: deathstar }
      upstream: h2c://127.0.0.1:8080
      tls: { secret: default/deathstar-tls }
      sourceIdentity: [proxyProtocol, clientCertificate, sourceAddress]
    - name: egress
      mode: egress
      address: 127.0.0.1:3128
    - name: dns
      mode: dns
      address: "[::1]:5353"
      upstream: 127.0.0.1:53
      serverEndpoint: { namespace: kube-system, pod: coredns }
  limits: { maxHeadersCount: 50 }
  flowLog: { file: "-", format: json, nodeName: n1 }
`);
  t.same(r.errors.map(formatIssue), []);
  const spec = r.docs.proxyConfig!.spec;
  t.same(spec.admin, { address: '127.0.0.1:9901', host: '127.0.0.1', port: 9901 });
  t.same(spec.listeners[0], {
    name: 'deathstar', mode: 'ingress', address: '127.0.0.1:8443', host: '127.0.0.1', port: 8443,
    endpoint: { namespace: 'default', pod: 'deathstar' },
    upstream: { url: 'h2c://127.0.0.1:8080', protocol: 'h2c', host: '127.0.0.1', port: 8080 },
    tls: { secret: 'default/deathstar-tls', clientAuth: 'request' },
    sourceIdentity: ['proxyProtocol', 'clientCertificate', 'sourceAddress'], l3DenyAction: 'forbidden',
  });
  t.same(spec.listeners[1], { name: 'egress', mode: 'egress', address: '127.0.0.1:3128', host: '127.0.0.1', port: 3128, sourceIdentity: ['sourceAddress'] });
  t.same(spec.listeners[2], {
    name: 'dns', mode: 'dns', address: '[::1]:5353', host: '::1', port: 5353, upstream: { host: '127.0.0.1', port: 53 },
    sourceIdentity: ['sourceAddress'], rejectResponseCode: 'refused', serverEndpoint: { namespace: 'kube-system', pod: 'coredns' },
  });
  t.equal(spec.enforcement, 'default');
  t.same(spec.limits, { ...DEFAULT_LIMITS, maxHeadersCount: 50 });
  t.same(spec.flowLog, { file: '-', format: 'json', nodeName: 'n1' });
});

t.test('errors', async (t) => {
  const r = await load(t, `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: {name: x}
spec:
  listeners:
  - name: a
    mode: ingress
    address: 127.0.0.1:8080
    endpoint: {pod: deathstar}
    upstream: ftp://h:1
    l3DenyAction: drop
    rejectResponseCode: refused
  - name: a
    mode: egress
    address: 127.0.0.1:9090
  - name: b
    mode: dns
    address: 127.0.0.1:8080
    upstream: 8.8.8.8
  - name: c
    mode: egress
    address: "::1:80"
    sourceIdentity: [clientCertificate, magic]
  enforcement: strict
  limits: {maxHeadersCount: 0, maxBodyBytes: 0, maxHeaderCount: 5}
`);
  t.same(r.errors.map(formatIssue), [
    'config/pc.yaml:12:5: spec.listeners[0].rejectResponseCode: not allowed for a listener in mode ingress',
    'config/pc.yaml:10:15: spec.listeners[0].upstream: scheme "ftp" is not supported (http, https or h2c)',
    'config/pc.yaml:11:19: spec.listeners[0].l3DenyAction: must be one of "forbidden", "reset", not "drop"',
    'config/pc.yaml:13:11: spec.listeners[1].name: listener name "a" is already used by spec.listeners[0]',
    'config/pc.yaml:19:15: spec.listeners[2].upstream: "8.8.8.8" is not host:port',
    'config/pc.yaml:22:14: spec.listeners[3].address: "::1:80": write IPv6 addresses in brackets, e.g. [::1]:53',
    'config/pc.yaml:23:41: spec.listeners[3].sourceIdentity[1]: must be one of "proxyProtocol", "clientCertificate", "sourceAddress", not "magic"',
    'config/pc.yaml:23:21: spec.listeners[3].sourceIdentity: clientCertificate is only available on ingress listeners with tls',
    'config/pc.yaml:24:16: spec.enforcement: must be one of "default", "always", "never", not "strict"',
    'config/pc.yaml:25:49: spec.limits.maxHeaderCount: unknown field (did you mean "maxHeadersCount"?)',
    'config/pc.yaml:25:29: spec.limits.maxHeadersCount: must be at least 1, not 0',
  ]);
});

t.test('dnsMaxTtlSeconds: 0 means no maximum; a maximum below dnsMinTtlSeconds is named at its field', async (t) => {
  const head = `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: {name: x}
spec:
  listeners:
  - {name: a, mode: egress, address: "127.0.0.1:0"}
`;
  const dflt = await load(t, head);
  t.same(dflt.errors, []);
  t.equal(dflt.docs.proxyConfig?.spec.limits.dnsMaxTtlSeconds, 0, 'off by default, as in Cilium');
  const ok = await load(t, `${head}  limits: {dnsMinTtlSeconds: 60, dnsMaxTtlSeconds: 86400}\n`);
  t.same(ok.errors, []);
  t.equal(ok.docs.proxyConfig?.spec.limits.dnsMaxTtlSeconds, 86400);
  const bad = await load(t, `${head}  limits: {dnsMinTtlSeconds: 600, dnsMaxTtlSeconds: 60}\n`);
  t.same(bad.errors.map(formatIssue), ['config/pc.yaml:7:53: spec.limits.dnsMaxTtlSeconds: dnsMaxTtlSeconds (60) must be 0 (no maximum) or at least dnsMinTtlSeconds (600)']);
});

t.test('a request timeout shorter than the headers timeout is named at its field (Node would throw at startup)', async (t) => {
  const head = `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: {name: x}
spec:
  listeners:
  - {name: a, mode: egress, address: "127.0.0.1:0"}
`;
  const set = await load(t, `${head}  limits: {requestTimeoutMs: 1000}\n`);
  t.same(set.errors.map(formatIssue), ['config/pc.yaml:7:30: spec.limits.requestTimeoutMs: requestTimeoutMs (1000) must be at least headersTimeoutMs (10000)']);
  const other = await load(t, `${head}  limits: {headersTimeoutMs: 400000}\n`);
  t.same(other.errors.map(formatIssue), ['config/pc.yaml:7:30: spec.limits.headersTimeoutMs: requestTimeoutMs (300000) must be at least headersTimeoutMs (400000)']);
  const ok = await load(t, `${head}  limits: {requestTimeoutMs: 1000, headersTimeoutMs: 1000}\n`);
  t.same(ok.errors, []);
});

t.test('duplicate addresses', async (t) => {
  const r = await load(t, `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: {name: x}
spec:
  admin: {address: 127.0.0.1:9901}
  listeners:
  - {name: a, mode: egress, address: "127.0.0.1:9901"}
  - {name: b, mode: egress, address: "127.0.0.1:0"}
  - {name: c, mode: egress, address: "127.0.0.1:0"}
`);
  t.same(r.errors.map(formatIssue), ['config/pc.yaml:7:38: spec.listeners[0].address: address 127.0.0.1:9901 is already used by spec.admin']);
});

t.test('parseHostPort', async (t) => {
  t.same(parseHostPort('[::1]:53'), { host: '::1', port: 53 });
  t.same(parseHostPort('localhost:8080'), { host: 'localhost', port: 8080 });
  t.equal(parseHostPort(':53'), '":53" has no host (use 0.0.0.0 or [::] for all addresses)');
  t.equal(parseHostPort('h:70000'), '"70000" is not a port number 0-65535');
  t.equal(parseHostPort('[1.2.3.4]:1'), '"1.2.3.4" is not an IPv6 address');
});
