/**
 * End-to-end DNS test harness: a config directory (Pods, policies, ProxyConfig with
 * a `dns` listener) loaded by the real loader, compiled by the real compiler, the
 * real DNS listener in front of the test upstream, and `dig` as the client.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { loadConfigDir } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/policy/compile.js';
import { IPCacheOverlay } from '../../src/identity/ipcache.js';
import type { PolicySnapshot } from '../../src/policy/types.js';
import type { DnsListener } from '../../src/config/proxy-config.js';
import { FqdnCache } from '../../src/fqdn/cache.js';
import { IPCacheFqdnSink } from '../../src/fqdn/ipcache-sink.js';
import { startDnsListener, type RunningDnsListener } from '../../src/listeners/dns.js';
import { DnsFlowRecorder } from '../../src/dns/flow.js';
import { FlowSink } from '../../src/observe/sink.js';
import { TestDnsUpstream, type DnsUpstreamOptions } from './dns-upstream.js';

export interface PodSpec {
  readonly name: string;
  readonly namespace?: string;
  readonly labels: Record<string, string>;
  readonly ip: string;
}

export const KUBE_DNS: PodSpec = {
  name: 'kube-dns',
  namespace: 'kube-system',
  labels: { 'k8s-app': 'kube-dns' },
  ip: '127.0.0.53',
};

export function podYaml(p: PodSpec): string {
  const labels = Object.entries(p.labels)
    .map(([k, v]) => `    ${JSON.stringify(k)}: ${JSON.stringify(v)}`)
    .join('\n');
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${p.name}
  namespace: ${p.namespace ?? 'default'}
  labels:
${labels}
status:
  podIP: ${p.ip}
`;
}

export interface HarnessOptions {
  readonly pods: readonly PodSpec[];
  /** Policy YAML; `PORT` is replaced by the upstream's port. */
  readonly policies: string;
  readonly listenerExtra?: string;
  readonly limitsExtra?: string;
  readonly upstream?: DnsUpstreamOptions;
  readonly enforcement?: 'default' | 'always' | 'never';
  readonly flows?: boolean;
  /** Passed to the listener (its default is 16 MiB). */
  readonly tcpPartialBudgetBytes?: number;
}

export class DnsHarness {
  upstream!: TestDnsUpstream;
  listener!: RunningDnsListener;
  #snapshot!: PolicySnapshot;
  readonly #swapListeners = new Set<(s: PolicySnapshot) => void>();
  /** The snapshot in force; assigning one is a policy swap (listeners hear it, as from PolicyStore). */
  get snapshot(): PolicySnapshot {
    return this.#snapshot;
  }
  set snapshot(s: PolicySnapshot) {
    this.#snapshot = s;
    for (const fn of this.#swapListeners) fn(s);
  }
  fqdn!: FqdnCache;
  overlay = new IPCacheOverlay();
  sink?: FlowSink;
  readonly flowLines: string[] = [];
  #dir = '';

  static async start(opts: HarnessOptions): Promise<DnsHarness> {
    const h = new DnsHarness();
    try {
      await h.#start(opts);
    } catch (err) {
      // A configuration the loader refuses: what was started so far must not outlive it.
      await h.upstream?.close();
      if (h.#dir) await rm(h.#dir, { recursive: true, force: true });
      throw err;
    }
    return h;
  }

  async #start(opts: HarnessOptions): Promise<void> {
    this.upstream = await TestDnsUpstream.start(opts.upstream);
    this.#dir = await mkdtemp(join(tmpdir(), 'l7w-dns-'));
    const pods = [KUBE_DNS, ...opts.pods].map(podYaml).join('---\n');
    await writeFile(join(this.#dir, 'pods.yaml'), pods);
    await writeFile(join(this.#dir, 'policy.yaml'), opts.policies.replaceAll('PORT', String(this.upstream.port)));
    await writeFile(
      join(this.#dir, 'proxy.yaml'),
      `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: dns-test }
spec:
  enforcement: ${opts.enforcement ?? 'default'}
  listeners:
    - name: dns
      mode: dns
      address: 127.0.0.1:0
      upstream: ${this.upstream.address}
      serverEndpoint: { namespace: kube-system, pod: kube-dns }
${opts.listenerExtra ?? ''}
  limits:
    dnsUpstreamTimeoutMs: 400
${opts.limitsExtra ?? ''}
`,
    );
    const loaded = await loadConfigDir(this.#dir);
    if (loaded.errors.length) throw new Error(`config errors: ${loaded.errors.map((e) => JSON.stringify(e)).join('\n')}`);
    const compiled = compileSnapshot(loaded.docs, {
      ipOverlay: this.overlay,
      enforcement: loaded.docs.proxyConfig?.spec.enforcement ?? 'default',
    });
    if (!compiled.snapshot) throw new Error(`compile errors: ${JSON.stringify(compiled.errors)}`);
    this.snapshot = compiled.snapshot;
    const spec = loaded.docs.proxyConfig?.spec;
    const l = spec?.listeners.find((x) => x.mode === 'dns') as DnsListener | undefined;
    if (!spec || !l) throw new Error('no dns listener');
    const sinkTarget = new IPCacheFqdnSink(this.overlay, () => this.snapshot);
    this.fqdn = new FqdnCache(sinkTarget, {
      minTtlSeconds: spec.limits.dnsMinTtlSeconds,
      maxTtlSeconds: spec.limits.dnsMaxTtlSeconds,
      maxIpsPerName: spec.limits.dnsMaxIpsPerHostname,
    });
    this.fqdn.setSnapshot(this.snapshot);
    let flows: DnsFlowRecorder | undefined;
    if (opts.flows) {
      this.sink = new FlowSink({ file: '' });
      this.sink.subscribe((line) => this.flowLines.push(line));
      flows = new DnsFlowRecorder(this.sink, 'test-node');
    }
    this.listener = await startDnsListener({
      spec: l,
      limits: spec.limits,
      snapshot: () => this.snapshot,
      fqdn: this.fqdn,
      onSwap: (fn) => {
        this.#swapListeners.add(fn);
        return () => this.#swapListeners.delete(fn);
      },
      ...(flows ? { flows } : {}),
      ...(opts.tcpPartialBudgetBytes !== undefined ? { tcpPartialBudgetBytes: opts.tcpPartialBudgetBytes } : {}),
    });
  }

  get port(): number {
    return this.listener.port;
  }

  async close(): Promise<void> {
    await this.listener.close();
    await this.upstream.close();
    this.fqdn.stop();
    await this.sink?.close();
    await rm(this.#dir, { recursive: true, force: true });
  }
}

export interface DigResult {
  readonly status: string;
  readonly answers: { name: string; ttl: number; type: string; data: string }[];
  readonly flags: string[];
  readonly raw: string;
}

/** Run the system `dig` against the proxy. */
export function dig(port: number, name: string, opts: { from?: string; args?: string[]; type?: string } = {}): Promise<DigResult> {
  const args = [
    '@127.0.0.1',
    '-p',
    String(port),
    name,
    opts.type ?? 'A',
    '+tries=1',
    '+time=3',
    '+noall',
    '+comments',
    '+answer',
    '+nocookie',
    ...(opts.from ? ['-b', opts.from] : []),
    ...(opts.args ?? []),
  ];
  return new Promise((resolve, reject) => {
    execFile('dig', args, { timeout: 10_000 }, (err, stdout) => {
      const raw = String(stdout);
      const m = /status: ([A-Z]+)/.exec(raw);
      if (!m) {
        if (err) reject(new Error(`dig failed: ${err.message}\n${raw}`));
        else resolve({ status: 'NONE', answers: [], flags: [], raw });
        return;
      }
      const flagsM = /flags: ([a-z ]+);/.exec(raw);
      const answers = raw
        .split('\n')
        .filter((l) => l && !l.startsWith(';'))
        .map((l) => l.split(/\s+/))
        .filter((p) => p.length >= 5)
        .map((p) => ({ name: p[0]!, ttl: Number(p[1]), type: p[3]!, data: p[4]! }));
      resolve({ status: m[1]!, answers, flags: (flagsM?.[1] ?? '').trim().split(/\s+/), raw });
    });
  });
}

/** A CNP letting pods with `labels` query the DNS server for `rules` (YAML list items). */
export function dnsPolicy(name: string, labels: Record<string, string>, dnsRules: string[], extraEgress = ''): string {
  const ml = Object.entries(labels)
    .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
    .join(', ');
  return `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: ${name}
  namespace: default
spec:
  endpointSelector:
    matchLabels: { ${ml} }
  egress:
    - toEndpoints:
        - matchLabels:
            "k8s:io.kubernetes.pod.namespace": kube-system
            "k8s:k8s-app": kube-dns
      toPorts:
        - ports:
            - port: "PORT"
              protocol: ANY
          rules:
            dns:
${dnsRules.map((r) => `              - ${r}`).join('\n')}
${extraEgress}
`;
}
