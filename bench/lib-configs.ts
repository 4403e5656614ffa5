/**
 * The configurations the benchmarks share (bench/run.sh skips lib-* files):
 * the Star Wars ingress (deathstar behind one listener, tiefighter as the allowed
 * client) and the DNS listener with its client and policy.
 */
import { starWarsPolicy } from '../test/helpers/config-dir.js';

/** deathstar and tiefighter (tiefighter's pod IP is where the load tool connects from). */
export const starWarsPods = (tieIp: string) => `apiVersion: v1
kind: Pod
metadata: { name: deathstar, namespace: default, labels: { org: empire, class: deathstar } }
spec: { containers: [{ name: d, image: x, ports: [{ containerPort: 80 }] }] }
status: { podIP: 127.0.0.20 }
---
apiVersion: v1
kind: Pod
metadata: { name: tiefighter, namespace: default, labels: { org: empire, class: tiefighter } }
spec: { containers: [{ name: s, image: x }] }
status: { podIP: ${tieIp} }
`;

/** The Star Wars L7 rule (POST /v1/request-landing from org=empire), as the tests use it. */
export const STARWARS_POLICY = starWarsPolicy();

/** One ingress listener for deathstar in front of the upstream; flow log off unless a file is named. */
export const deathstarProxy = (upstreamPort: number, flowLog = '') => `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: bench }
spec:
  flowLog: { file: "${flowLog}" }
  listeners:
  - name: deathstar
    mode: ingress
    address: 127.0.0.1:0
    endpoint: { namespace: default, pod: deathstar }
    upstream: http://127.0.0.1:${upstreamPort}
    endpointPort: 80
`;

export const DNS_CLIENT_IP = '127.0.0.10';

/**
 * A dns listener in front of the bench resolver: `patterns` 'off' = no policy and
 * enforcement never; n = a policy of n DNS patterns (n − 1 that never match, then
 * "*.example.test"). Files for a config directory.
 */
export function dnsConfigFiles(upstreamPort: number, patterns: 'off' | number, flowLog = ''): Record<string, string> {
  const pods = `apiVersion: v1
kind: Pod
metadata: { name: kube-dns, namespace: kube-system, labels: { k8s-app: kube-dns } }
status: { podIP: 127.0.0.53 }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: default, labels: { app: client } }
status: { podIP: ${DNS_CLIENT_IP} }
`;
  const rules: string[] = [];
  if (patterns !== 'off') {
    for (let i = 1; i < patterns; i++) rules.push(`              - matchPattern: "*.zone${i}.example.org"`);
    rules.push(`              - matchPattern: "*.example.test"`);
  }
  const policy =
    patterns === 'off'
      ? ''
      : `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-dns, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toEndpoints:
        - matchLabels: { "k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns }
      toPorts:
        - ports: [{ port: "${upstreamPort}", protocol: ANY }]
          rules:
            dns:
${rules.join('\n')}
`;
  const proxy = `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: bench }
spec:
  enforcement: ${patterns === 'off' ? 'never' : 'default'}
  flowLog: { file: "${flowLog}" }
  listeners:
    - name: dns
      mode: dns
      address: 127.0.0.1:0
      upstream: 127.0.0.1:${upstreamPort}
      serverEndpoint: { namespace: kube-system, pod: kube-dns }
  limits:
    dnsMaxInFlight: 1000
`;
  return { 'pods.yaml': pods, 'policy.yaml': policy, 'proxy.yaml': proxy };
}
