/**
 * End-to-end harness for the egress listener: a test DNS upstream on loopback whose
 * names point at 127.0.0.x, capture servers on those addresses (HTTP, HTTPS, or raw
 * TCP) that record every connection and request, a config directory (Pods,
 * policies, Secrets, a ProxyConfig with a `dns` and an `egress` listener) started
 * with `startProxy` — what `l7warden run` starts — and real clients (curl, node).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { startProxy, type RunningProxy } from '../../src/cli/run.js';
import { TestDnsUpstream } from './dns-upstream.js';
import { KUBE_DNS, podYaml, type PodSpec } from './dns-harness.js';

export { KUBE_DNS, podYaml, type PodSpec };

export interface Captured {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
}

/** A server on one loopback address that records connections and requests. */
export interface Capture {
  readonly ip: string;
  readonly port: number;
  /** TCP connections accepted (the proof that nothing was dialled). */
  connections: number;
  readonly requests: Captured[];
  /** Raw bytes received (raw mode). */
  readonly raw: Buffer[];
  close(): Promise<void>;
}

export type CaptureKind = { kind: 'http' } | { kind: 'https'; cert: string; key: string } | { kind: 'echo' };

export async function startCapture(ip: string, port: number, how: CaptureKind): Promise<Capture> {
  const requests: Captured[] = [];
  const raw: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    req.resume();
    req.on('end', () => {
      const body = `upstream:${req.method} ${req.url} at ${ip}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  };
  let server: net.Server;
  if (how.kind === 'http') server = http.createServer(onRequest);
  else if (how.kind === 'https') server = https.createServer({ cert: how.cert, key: how.key }, onRequest);
  else
    server = net.createServer((s) => {
      s.on('error', () => {});
      s.on('data', (d: Buffer) => {
        if (raw.length < 1000) raw.push(d);
        s.write(Buffer.concat([Buffer.from('echo:'), d]));
      });
    });
  const cap: Capture = {
    ip,
    port: 0,
    connections: 0,
    requests,
    raw,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  // TLS servers count the raw TCP connection, before any handshake.
  server.on('connection', (s: net.Socket) => {
    cap.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, ip, () => resolve());
  });
  (cap as { port: number }).port = (server.address() as net.AddressInfo).port;
  return cap;
}

export interface CurlResult {
  readonly code: number; // curl exit code
  readonly status: number; // last HTTP status (0 when none)
  readonly connectStatus: number; // CONNECT answer (0 when none)
  readonly body: string;
  readonly stderr: string;
}

/** Run curl with a 10 s bound; `-w` appends the statuses. */
export function curl(args: readonly string[]): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      ['-sS', '--max-time', '10', '--noproxy', '', '-w', '\n%{http_code} %{http_connect}', ...args],
      { timeout: 15_000, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } },
      (err, stdout, stderr) => {
        const nl = stdout.lastIndexOf('\n');
        const tail = stdout.slice(nl + 1).trim().split(' ');
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
        resolve({
          code,
          status: Number(tail[0] ?? 0) || 0,
          connectStatus: Number(tail[1] ?? 0) || 0,
          body: stdout.slice(0, nl < 0 ? 0 : nl),
          stderr,
        });
      },
    );
  });
}

/** Send bytes on a fresh connection from `from` and collect what comes back until close (bounded). */
export function rawExchange(
  port: number,
  data: Buffer | string,
  opts: { from?: string; timeoutMs?: number; host?: string } = {},
): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: opts.host ?? '127.0.0.1', port, ...(opts.from ? { localAddress: opts.from } : {}) });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const timer = setTimeout(() => s.destroy(), opts.timeoutMs ?? 3000);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks).toString('latin1'), ...(error ? { error } : {}) });
    });
    s.on('connect', () => s.write(data));
  });
}

export interface EgressSetup {
  readonly pods: readonly PodSpec[];
  readonly policies: string;
  readonly secrets?: Record<string, Record<string, string>>;
  /** Extra YAML appended to the ProxyConfig's listener list. */
  readonly extraListeners?: string;
  readonly egressExtra?: string;
  readonly limits?: string;
}

export class EgressHarness {
  dns!: TestDnsUpstream;
  proxy!: RunningProxy;
  dir = '';
  readonly flows: string[] = [];

  static async start(setup: (dnsPort: number) => EgressSetup): Promise<EgressHarness> {
    const h = new EgressHarness();
    h.dns = await TestDnsUpstream.start({ answerAll: false, ttl: 60 });
    h.dir = await mkdtemp(join(tmpdir(), 'l7w-egress-'));
    const s = setup(h.dns.port);
    const files: Record<string, string> = {
      'pods.yaml': s.pods.map(podYaml).join('---\n'),
      'policy.yaml': s.policies,
      'proxy.yaml': `apiVersion: l7warden.io/v1alpha1
kind: ProxyConfig
metadata: { name: egress-test }
spec:
  flowLog: { file: "", nodeName: test-node }
${s.limits ? `  limits: ${s.limits}\n` : ''}  listeners:
    - name: dns
      mode: dns
      address: 127.0.0.1:0
      upstream: ${h.dns.address}
      serverEndpoint: { namespace: kube-system, pod: kube-dns }
    - name: egress
      mode: egress
      address: 127.0.0.1:0
${s.egressExtra ?? ''}${s.extraListeners ?? ''}`,
    };
    for (const [ref, data] of Object.entries(s.secrets ?? {})) {
      const [ns, name] = ref.split('/');
      const items = Object.entries(data)
        .map(([k, v]) => `  ${k}: |\n${v.trimEnd().split('\n').map((l) => `    ${l}`).join('\n')}`)
        .join('\n');
      files[`secret-${ns}-${name}.yaml`] = `apiVersion: v1\nkind: Secret\nmetadata: { name: ${name}, namespace: ${ns} }\ntype: kubernetes.io/tls\nstringData:\n${items}\n`;
    }
    for (const [n, text] of Object.entries(files)) {
      await mkdir(dirname(join(h.dir, n)), { recursive: true });
      await writeFile(join(h.dir, n), text);
    }
    try {
      h.proxy = await startProxy({ configDir: h.dir, ephemeralPorts: true, flowLogFile: '', onFlow: (l) => h.flows.push(l) });
    } catch (e) {
      await h.dns.close();
      await rm(h.dir, { recursive: true, force: true });
      throw e;
    }
    return h;
  }

  port(name: string): number {
    const l = this.proxy.listeners.find((x) => x.name === name);
    if (!l) throw new Error(`no listener ${name}`);
    return l.address.port;
  }

  get egressPort(): number {
    return this.port('egress');
  }

  /** Parsed flow records (after a short wait for the batched sink). */
  async flowRecords(): Promise<Record<string, any>[]> {
    await new Promise((r) => setTimeout(r, 50));
    return this.flows.map((l) => (JSON.parse(l) as { flow: Record<string, any> }).flow);
  }

  async close(): Promise<void> {
    await this.proxy.close(0);
    await this.dns.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Bind several captures on the same port number on different loopback addresses. */
export async function capturesOnOnePort(ips: readonly string[], how: CaptureKind): Promise<Capture[]> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const first = await startCapture(ips[0]!, 0, how);
    const out = [first];
    try {
      for (const ip of ips.slice(1)) out.push(await startCapture(ip, first.port, how));
      return out;
    } catch {
      await Promise.all(out.map((c) => c.close()));
    }
  }
  throw new Error('could not bind captures on one port');
}
