/** Cilium allow/deny semantics (CILIUM-SEMANTICS.md §2) on small hand-written configs. */
import t from 'tap';
import { compileFiles, compileOk, http, pod } from '../helpers/policy-fixtures.js';
import { formatRuleRef } from '../../src/policy/api.js';
import type { PolicySnapshotImpl } from '../../src/policy/snapshot.js';
import type { DecisionQuery, Verdict } from '../../src/policy/types.js';

const PODS =
  pod('server', { app: 'server' }, '10.0.0.1', { ports: '    ports:\n    - {name: web, containerPort: 8080}\n    - {name: dns, containerPort: 53, protocol: UDP}' }) +
  pod('client', { app: 'client' }, '10.0.0.2') +
  pod('other', { app: 'other' }, '10.0.0.3');

function cnp(name: string, spec: string): string {
  return `---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: default}\nspec:\n${spec}`;
}

function ask(s: PolicySnapshotImpl, from: string, to: string, port: number, extra: Partial<DecisionQuery> = {}): Verdict {
  const id = (n: string) => (n.includes('.') ? s.identityForIP(n) : s.endpointByName('default', n)!.identity);
  return s.decide({ src: id(from), dst: id(to), port, protocol: 'TCP', ...extra });
}

t.test('ingress: [] is rejected as Cilium does; ingress: [{}] enables default deny', async (t) => {
  const bad = await compileFiles({ 'a.yaml': PODS + cnp('x', '  endpointSelector: {}\n  ingress: []\n') });
  t.match(bad.loadErrors[0]?.message ?? '', /at least one of Ingress/);
  const s = await compileOk({ 'a.yaml': PODS + cnp('x', '  endpointSelector: {matchLabels: {app: server}}\n  ingress: [{}]\n') });
  const v = ask(s, 'client', 'server', 80);
  t.equal(v.allowed, false);
  t.equal(v.ingress?.enforced, true);
  t.equal(v.dropReason, 'POLICY_DENIED');
  t.equal(ask(s, 'client', 'other', 80).allowed, true, 'unselected pod stays open');
});

t.test('deny entries count for default deny; deny wins over allow on a port range', async (t) => {
  const s = await compileOk({
    'a.yaml':
      PODS +
      cnp(
        'x',
        `  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8000", endPort: 8100, protocol: TCP}]}]
`,
      ),
  });
  t.equal(ask(s, 'client', 'server', 80).allowed, true, 'L3 allow elsewhere');
  const d = ask(s, 'client', 'server', 8050);
  t.equal(d.allowed, false);
  t.equal(d.dropReason, 'POLICY_DENY');
  t.equal(formatRuleRef(d.rule!), 'CiliumNetworkPolicy default/x ingressDeny[0]');
  t.equal(ask(s, 'client', 'server', 8101).allowed, true);
  t.equal(ask(s, 'client', 'server', 8050, { protocol: 'UDP' }).allowed, true, 'deny was TCP only');
  const only = await compileOk({
    'a.yaml': PODS + cnp('y', '  endpointSelector: {matchLabels: {app: server}}\n  ingressDeny:\n  - fromEndpoints: [{matchLabels: {app: other}}]\n'),
  });
  t.equal(ask(only, 'client', 'server', 80).allowed, false, 'a deny-only policy still enables default deny');
  t.equal(ask(only, 'other', 'server', 80).dropReason, 'POLICY_DENY');
});

t.test('enableDefaultDeny: false leaves the direction open but deny rules apply, L7 only observes', async (t) => {
  const s = await compileOk({
    'a.yaml':
      PODS +
      cnp(
        'x',
        `  endpointSelector: {matchLabels: {app: server}}
  enableDefaultDeny: {ingress: false}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: other}}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`,
      ),
  });
  const v = ask(s, 'client', 'server', 80, { http: http('DELETE', '/') });
  t.equal(v.allowed, true, 'L7 rules never block');
  t.equal(v.type, 'L7', 'but the port is still L7 (visibility)');
  t.equal(v.ingress?.enforced, false);
  t.equal(ask(s, 'other', 'server', 9999).allowed, true);
  t.equal(ask(s, 'other', 'server', 443).dropReason, 'POLICY_DENY');
});

t.test('enforcement modes always / never', async (t) => {
  const files = { 'a.yaml': PODS + cnp('x', '  endpointSelector: {matchLabels: {app: server}}\n  ingressDeny:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n') };
  const always = await compileOk(files, { enforcement: 'always' });
  t.equal(ask(always, 'client', 'other', 80).allowed, false, 'always: unselected pods are default-deny both ways');
  t.equal(ask(always, 'client', 'other', 80).decidedBy, 'egress');
  const never = await compileOk(files, { enforcement: 'never' });
  t.equal(ask(never, 'client', 'server', 80).allowed, true, 'never: nothing is enforced, not even denies');
});

t.test('protocol ANY, port ranges, port 0 appended, L7 per peer', async (t) => {
  const s = await compileOk({
    'a.yaml':
      PODS +
      cnp(
        'x',
        `  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "5000", endPort: 5010}]}]
  - fromEndpoints: [{matchLabels: {app: other}}]
  - fromEndpoints: [{matchLabels: {app: client}}, {matchLabels: {app: other}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/only"}]}}]
`,
      ),
  });
  for (const p of ['TCP', 'UDP', 'SCTP'] as const) t.equal(ask(s, 'client', 'server', 5005, { protocol: p }).allowed, true, `ANY covers ${p}`);
  t.equal(ask(s, 'client', 'server', 5011).allowed, false);
  t.equal(ask(s, 'client', 'server', 80, { http: http('GET', '/only') }).allowed, true);
  t.equal(ask(s, 'client', 'server', 80, { http: http('GET', '/other') }).allowed, false, 'client restricted by L7');
  const o = ask(s, 'other', 'server', 80, { http: http('POST', '/anything') });
  t.equal(o.allowed, true, 'L3-only allow for other gives it full L7 on port 80');
  t.equal(o.type, 'L7');
  t.equal(formatRuleRef(o.rule!), 'CiliumNetworkPolicy default/x ingress[1]');
});

t.test('same selector: L4-only merged with L7 = wildcard L7; HTTP lists concatenate', async (t) => {
  const s = await compileOk({
    'a.yaml':
      PODS +
      cnp(
        'x',
        `  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: other}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
  - fromEndpoints: [{matchLabels: {app: other}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: PUT}]}}]
`,
      ),
  });
  const c = ask(s, 'client', 'server', 80, { http: http('DELETE', '/') });
  t.equal(c.allowed, true);
  t.equal(c.type, 'L7');
  t.equal(ask(s, 'other', 'server', 80, { http: http('PUT', '/') }).allowed, true);
  t.equal(ask(s, 'other', 'server', 80, { http: http('DELETE', '/') }).allowed, false);
  t.match(s.dump(), /http: method=GET\n\s+http: method=PUT/);
});

t.test('named ports: ingress against the subject, egress against the pods the selector selects', async (t) => {
  const s = await compileOk({
    'a.yaml':
      PODS +
      cnp('in', '  endpointSelector: {matchLabels: {app: server}}\n  ingress:\n  - toPorts: [{ports: [{port: web, protocol: TCP}]}]\n') +
      cnp('out', '  endpointSelector: {matchLabels: {app: client}}\n  egress:\n  - toEndpoints: [{}]\n    toPorts: [{ports: [{port: dns}]}]\n'),
  });
  t.equal(ask(s, 'other', 'server', 8080).allowed, true);
  t.equal(ask(s, 'other', 'server', 80).allowed, false);
  const e = ask(s, 'client', 'server', 53, { protocol: 'UDP' });
  t.equal(e.egress?.allowed, true, 'egress named port resolved on the server pod');
  t.equal(e.allowed, false, "but the server's ingress only admits its port named web");
  t.equal(ask(s, 'client', 'server', 53, { protocol: 'TCP' }).egress?.allowed, false, 'the named port is UDP');
  // As Cilium: the name is resolved over the selector's selections (only server defines
  // dns, 53/UDP) and that number is opened to every identity the selector selects.
  t.equal(ask(s, 'client', 'other', 53, { protocol: 'UDP' }).egress?.allowed, true, 'other is selected too: 53/UDP opens to it');
  t.equal(ask(s, 'client', 'other', 54, { protocol: 'UDP' }).egress?.allowed, false, 'and only 53');
});

t.test('headers, headerMatches, secrets and mismatch actions', async (t) => {
  const secret = `---\napiVersion: v1\nkind: Secret\nmetadata: {name: token, namespace: default}\nstringData: {value: s3cret}\n`;
  const s = await compileOk({
    'a.yaml':
      PODS +
      secret +
      cnp(
        'x',
        `  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http:
        - path: /a
          headers: ["X-Flag: on", "X-Present", "X-H:true"]
        - path: /secret
          headerMatches: [{name: Authorization, secret: {namespace: default, name: token}}]
        - path: /missing
          headerMatches: [{name: Authorization, secret: {namespace: default, name: nope}}]
        - path: /fallback
          headerMatches: [{name: X-Key, value: v1, secret: {namespace: default, name: nope}}]
  - fromEndpoints: [{matchLabels: {app: other}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http:
        - path: /act
          headerMatches:
          - {name: X-Replace, value: good, mismatch: REPLACE}
          - {name: X-Log, value: l, mismatch: LOG}
          - {name: X-Del, value: keep, mismatch: DELETE}
          - {name: X-Add, value: added, mismatch: ADD}
`,
      ),
  });
  const h = (path: string, headers: Record<string, string>) => ask(s, 'client', 'server', 80, { http: http('GET', path, headers) });
  t.equal(h('/a', { 'x-flag': 'on', 'x-present': '', 'x-h:true': '1' }).allowed, true, 'split at first space; no-space string is a presence test');
  t.equal(h('/a', { 'x-flag': 'on', 'x-present': '', 'x-h': 'true' }).allowed, false, '"X-H:true" names a header literally');
  t.equal(h('/a', { 'x-flag': 'on ', 'x-present': '', 'x-h:true': '1' }).allowed, false, 'exact value');
  t.equal(h('/secret', { authorization: 's3cret' }).allowed, true, 'value from the Secret');
  t.equal(h('/secret', { authorization: 'other' }).allowed, false);
  t.equal(h('/missing', { authorization: '' }).allowed, false, 'missing secret, no value: never matches');
  t.equal(h('/fallback', { 'x-key': 'v1' }).allowed, true, 'missing secret falls back to value');
  const v = ask(s, 'other', 'server', 80, { http: http('GET', '/act', { 'x-replace': 'bad', 'x-log': 'l', 'x-del': 'wrong' }) });
  t.equal(v.allowed, true, 'mismatch actions do not deny');
  t.same(
    v.headerActions.map((a) => `${a.action}:${a.name}:${a.value ?? ''}`),
    ['REPLACE:x-replace:good', 'DELETE:x-del:keep', 'ADD:x-add:added'],
  );
  t.equal(ask(s, 'other', 'server', 80, { http: http('GET', '/nope') }).allowed, false);
});

t.test('serverNames and TLS contexts', async (t) => {
  const s = await compileOk({
    'a.yaml':
      PODS +
      cnp(
        'x',
        `  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
      serverNames: ["api.example.com", "*.cdn.example.com"]
  - toEndpoints: [{matchLabels: {app: other}}]
    toPorts:
    - ports: [{port: "443", protocol: TCP}]
      terminatingTLS: {secret: {namespace: default, name: term}}
      originatingTLS: {secret: {namespace: default, name: orig}}
      rules: {http: [{method: GET}]}
`,
      ),
  });
  t.equal(ask(s, 'client', 'server', 443, { sni: 'api.example.com' }).allowed, true);
  t.equal(ask(s, 'client', 'server', 443, { sni: 'API.example.com' }).allowed, true, 'case-insensitive');
  t.equal(ask(s, 'client', 'server', 443, { sni: 'x.cdn.example.com' }).allowed, true);
  t.equal(ask(s, 'client', 'server', 443, { sni: 'a.b.cdn.example.com' }).allowed, false);
  t.equal(ask(s, 'client', 'server', 443, { sni: 'evil.com' }).allowed, false);
  t.equal(ask(s, 'client', 'server', 443).allowed, false, 'serverNames require TLS (an SNI)');
  const v = ask(s, 'client', 'other', 443, { http: http('GET', '/') });
  t.equal(v.allowed, true);
  t.equal(v.egress?.terminatingTLS?.secret.name, 'term');
  t.equal(v.egress?.originatingTLS?.secret.name, 'orig');
});

t.test('compile errors are located: conflicting TLS contexts, conflicting L7 parsers', async (t) => {
  const tls = await compileFiles({
    'p.yaml':
      PODS +
      cnp(
        'x',
        `  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts: [{ports: [{port: "443", protocol: TCP}], terminatingTLS: {secret: {namespace: default, name: a}}, rules: {http: [{}]}}]
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts: [{ports: [{port: "443", protocol: TCP}], terminatingTLS: {secret: {namespace: default, name: b}}, rules: {http: [{}]}}]
`,
      ),
  });
  t.equal(tls.snapshot, undefined);
  t.match(tls.errors[0], { path: 'spec.egress[1]', message: /cannot merge conflicting terminating TLS contexts/ });
  t.match(tls.errors[0]?.file, /p\.yaml$/);
  t.ok((tls.errors[0]?.line ?? 0) > 1);
  const parsers = await compileFiles({
    'p.yaml':
      PODS +
      cnp(
        'x',
        `  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts: [{ports: [{port: "53", protocol: TCP}], rules: {dns: [{matchName: a.com}]}}]
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts: [{ports: [{port: "53", protocol: TCP}], rules: {http: [{method: GET}]}}]
`,
      ),
  });
  t.match(parsers.errors[0], { path: 'spec.egress[1]', message: /cannot merge conflicting L7 parsers \(http\/dns\)/ });
});

t.test('FQDN identities learned at run time use the selector fallback', async (t) => {
  const s = await compileOk({
    'a.yaml':
      PODS +
      cnp('x', '  endpointSelector: {matchLabels: {app: client}}\n  egress:\n  - toFQDNs: [{matchPattern: "*.github.com"}]\n    toPorts: [{ports: [{port: "443", protocol: TCP}]}]\n'),
  });
  const sel = s.fqdnSelectors.find((f) => f.key === '*.github.com');
  t.ok(sel?.matches('api.github.com'));
  t.ok(sel?.matches('API.GitHub.com.'));
  t.notOk(sel?.matches('github.com'));
  const fq = s.identityForLabels(['reserved:world', 'fqdn:*.github.com']);
  t.notOk(s.identities.has(fq.id), 'not a compile-time identity');
  s.ipcache.upsert('140.82.112.6', fq);
  const client = s.endpointByName('default', 'client')!.identity;
  const dst = s.identityForIP('140.82.112.6');
  t.equal(dst.id, fq.id);
  t.equal(s.decide({ src: client, dst, port: 443, protocol: 'TCP' }).allowed, true);
  t.equal(s.decide({ src: client, dst: s.identityForIP('140.82.112.7'), port: 443, protocol: 'TCP' }).allowed, false);
  t.equal(s.identityForLabels(['fqdn:*.github.com', 'reserved:world']).id, fq.id, 'stable for the same labels');
});

t.test('ReDoS: /(a+)+b against a 10 KiB path stays linear', async (t) => {
  const s = await compileOk({
    'a.yaml': PODS + cnp('x', '  endpointSelector: {matchLabels: {app: server}}\n  ingress:\n  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{path: "/(a+)+b"}]}}]\n'),
  });
  const path = `/${'a'.repeat(10 * 1024)}`;
  const start = process.hrtime.bigint();
  const v = ask(s, 'client', 'server', 80, { http: http('GET', path) });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  t.equal(v.allowed, false);
  t.ok(ms < 50, `decided in ${ms.toFixed(2)} ms`);
  t.equal(ask(s, 'client', 'server', 80, { http: http('GET', '/aaab') }).allowed, true);
});
