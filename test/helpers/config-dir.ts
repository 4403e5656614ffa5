/**
 * Temporary config directories for tests: write files, get the path, remove it in
 * teardown. `starWars()` builds the Star Wars demo (CILIUM-SEMANTICS.md §7.1):
 * tiefighter 127.0.0.10 (org=empire), xwing 127.0.0.11 (org=alliance), deathstar,
 * the L7 rule POST /v1/request-landing (plus a gRPC method for the gRPC table),
 * and one ingress listener on 127.0.0.1:0 in front of `upstream`.
 */
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';

export async function makeConfigDir(files: Record<string, string>): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'l7w-cfg-'));
  for (const [name, text] of Object.entries(files)) {
    const p = join(dir, name);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, text);
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export const STARWARS_PODS = `
apiVersion: v1
kind: Namespace
metadata: { name: default }
---
apiVersion: v1
kind: Pod
metadata: { name: deathstar, namespace: default, labels: { org: empire, class: deathstar } }
spec: { containers: [{ name: deathstar, image: x, ports: [{ containerPort: 80, name: http }] }] }
status: { podIP: 127.0.0.20 }
---
apiVersion: v1
kind: Pod
metadata: { name: tiefighter, namespace: default, labels: { org: empire, class: tiefighter } }
spec: { containers: [{ name: s, image: x }] }
status: { podIP: 127.0.0.10 }
---
apiVersion: v1
kind: Pod
metadata: { name: xwing, namespace: default, labels: { org: alliance, class: xwing } }
spec: { containers: [{ name: s, image: x }] }
status: { podIP: 127.0.0.11 }
`;

/** The demo's L7 rule, with extra HTTP rules appended (YAML flow maps). */
export function starWarsPolicy(extraHttp: string[] = []): string {
  const rules = ['{ method: "POST", path: "/v1/request-landing" }', ...extraHttp];
  return `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: rule1 }
spec:
  endpointSelector: { matchLabels: { org: empire, class: deathstar } }
  ingress:
  - fromEndpoints: [{ matchLabels: { org: empire } }]
    toPorts:
    - ports: [{ port: "80", protocol: TCP }]
      rules:
        http:
${rules.map((r) => `        - ${r}`).join('\n')}
`;
}

/** n extra policies on other (non-existent-label) endpoints: exercises lookup with many rules. */
export function manyPolicies(n: number): string {
  const docs: string[] = [];
  for (let i = 0; i < n; i++) {
    docs.push(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: filler-${i} }
spec:
  endpointSelector: { matchLabels: { app: filler-${i} } }
  ingress:
  - fromEndpoints: [{ matchLabels: { org: empire } }]
    toPorts:
    - ports: [{ port: "${1000 + (i % 5000)}", protocol: TCP }]
      rules: { http: [{ method: "GET", path: "/filler/${i}/.*" }] }
`);
  }
  return docs.join('---\n');
}

export interface ProxyConfigOpts {
  upstream: string;
  endpointPort?: number;
  extraListenerYaml?: string;
  limits?: Record<string, number>;
  admin?: boolean;
  l3DenyAction?: 'forbidden' | 'reset';
  sourceIdentity?: string[];
  flowLogFile?: string;
}

export function proxyConfig(o: ProxyConfigOpts): string {
  const limits = o.limits ? `  limits: { ${Object.entries(o.limits).map(([k, v]) => `${k}: ${v}`).join(', ')} }\n` : '';
  return `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: test }
spec:
${o.admin === false ? '' : '  admin: { address: "127.0.0.1:0" }\n'}  flowLog: { file: "${o.flowLogFile ?? ''}", nodeName: test-node }
${limits}  listeners:
  - name: deathstar
    mode: ingress
    address: 127.0.0.1:0
    endpoint: { namespace: default, pod: deathstar }
    upstream: ${o.upstream}
    endpointPort: ${o.endpointPort ?? 80}
    sourceIdentity: [${(o.sourceIdentity ?? ['sourceAddress']).join(', ')}]
${o.l3DenyAction ? `    l3DenyAction: ${o.l3DenyAction}\n` : ''}${o.extraListenerYaml ?? ''}`;
}

export async function starWarsDir(o: ProxyConfigOpts & { policy?: string | false; extraHttp?: string[]; extraFiles?: Record<string, string> }) {
  const files: Record<string, string> = {
    'pods.yaml': STARWARS_PODS,
    'proxy.yaml': proxyConfig(o),
    ...(o.extraFiles ?? {}),
  };
  if (o.policy !== false) files['policy.yaml'] = o.policy ?? starWarsPolicy(o.extraHttp);
  return makeConfigDir(files);
}
