// The egress listener's `dnsListener` field: it must name a dns listener, and is
// required when there are several; every error is located.
import t from 'tap';
import { loadConfigDir } from '../../src/config/load.js';
import { formatIssue } from '../../src/config/issues.js';
import type { TestT } from '../helpers/tap.js';

const pc = (listeners: string) => `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: egress-config }
spec:
  listeners:
${listeners}`;

const dns = (name: string, port: number) => `    - { name: ${name}, mode: dns, address: "127.0.0.1:${port}", upstream: "127.0.0.1:53" }\n`;

async function load(t: TestT, text: string) {
  const dir = t.testdir({ config: { 'pc.yaml': text } });
  t.chdir(dir);
  return loadConfigDir('config');
}

t.test('named dns listener', async (t) => {
  const r = await load(t, pc(dns('a', 5301) + dns('b', 5302) + '    - { name: out, mode: egress, address: "127.0.0.1:3128", dnsListener: b }\n'));
  t.same(r.errors.map(formatIssue), []);
  const l = r.docs.proxyConfig?.spec.listeners.find((x) => x.name === 'out');
  t.equal(l?.mode === 'egress' ? l.dnsListener : undefined, 'b');
});

t.test('the only dns listener is the default', async (t) => {
  const r = await load(t, pc(dns('a', 5301) + '    - { name: out, mode: egress, address: "127.0.0.1:3128" }\n'));
  t.same(r.errors.map(formatIssue), []);
});

t.test('a name that is not a dns listener', async (t) => {
  const r = await load(t, pc(dns('a', 5301) + '    - { name: out, mode: egress, address: "127.0.0.1:3128", dnsListener: nope }\n'));
  t.equal(r.errors.length, 1);
  t.match(formatIssue(r.errors[0]!), /pc\.yaml:\d+:\d+: spec\.listeners\[1\]\.dnsListener: "nope" is not a dns listener/);
});

t.test('several dns listeners and no dnsListener', async (t) => {
  const r = await load(t, pc(dns('a', 5301) + dns('b', 5302) + '    - { name: out, mode: egress, address: "127.0.0.1:3128" }\n'));
  t.equal(r.errors.length, 1);
  t.match(formatIssue(r.errors[0]!), /spec\.listeners\[2\]\.dnsListener: is required when there are several dns listeners \(a, b\)/);
});

t.test('dnsListener is an egress field only', async (t) => {
  const r = await load(t, pc(dns('a', 5301).replace(' }', ', dnsListener: a }')));
  t.ok(r.errors.some((e) => /dnsListener/.test(formatIssue(e))));
});
