/**
 * Decisions per second for one L7 HTTP request (allowed by a method+path rule)
 * as the number of policies grows: 1, 100, 1,000 and 10,000 policies over 1,000
 * pods (one identity each). Policy j selects pod svc-(j mod 1000) and allows GET
 * and POST on two paths from a peer that no other policy of that subject names, on
 * port 80/TCP, so at 10,000 policies every subject has ten rules on the same port.
 * The measured request is svc-1 → svc-0 POST /api/v1/orders; both directions are
 * evaluated (svc-1 has no egress rules). Prints a markdown table with the ratio to
 * the 1-policy row. Run with `npm run bench -- decide`.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { compileSnapshot } from '../src/policy/compile.js';
import type { ConfigDocs, PodDoc, PolicyDoc } from '../src/config/documents.js';
import type { LabelSelector, Rule } from '../src/policy/api.js';
import type { DecisionQuery, HttpAttributes } from '../src/policy/types.js';

const PODS = 1000;
const pos = { file: 'bench.yaml', line: 1, col: 1 };

function sel(app: string): LabelSelector {
  return {
    text: `{app: ${app}}`,
    requirements: [
      { key: 'any:app', operator: 'In', values: [app] },
      { key: 'k8s:io.kubernetes.pod.namespace', operator: 'In', values: ['default'] },
    ],
  };
}

function policy(j: number): PolicyDoc {
  const subject = j % PODS;
  const peer = (subject + 1 + Math.floor(j / PODS)) % PODS;
  const rule: Rule = {
    ref: { kind: 'CiliumNetworkPolicy', namespace: 'default', name: `p${j}` },
    endpointSelector: sel(`svc-${subject}`),
    ingress: [
      {
        endpoints: [sel(`svc-${peer}`)],
        toPorts: [
          {
            ports: [{ port: '80', protocol: 'TCP' }],
            serverNames: [],
            rules: {
              http: [
                { method: 'GET', path: '/api/v1/products', headers: [], headerMatches: [] },
                { method: 'POST', path: '/api/v1/orders', headers: [], headerMatches: [] },
              ],
            },
          },
        ],
        pos,
      },
    ],
    ingressDeny: [],
    egress: [],
    egressDeny: [],
    enableDefaultDeny: {},
    pos,
  };
  return { kind: 'CiliumNetworkPolicy', name: `p${j}`, namespace: 'default', rules: [rule], pos };
}

function docs(policies: number): ConfigDocs {
  const pods: PodDoc[] = Array.from({ length: PODS }, (_, i) => ({
    name: `svc-${i}`,
    namespace: 'default',
    labels: { app: `svc-${i}` },
    serviceAccount: 'default',
    ips: [`10.${(i >> 8) & 255}.${i & 255}.1`],
    hostNetwork: false,
    containerPorts: [],
    pos,
  }));
  return {
    dir: 'bench',
    documentCount: PODS + policies,
    policies: Array.from({ length: policies }, (_, j) => policy(j)),
    pods,
    namespaces: [],
    secrets: [],
  };
}

const http: HttpAttributes = {
  method: 'POST',
  path: '/api/v1/orders',
  host: 'svc-0',
  header: () => undefined,
};

function measure(n: number): { rate: number; compileMs: number } {
  const t0 = performance.now();
  const { snapshot, errors } = compileSnapshot(docs(n));
  const compileMs = performance.now() - t0;
  if (!snapshot || errors.length) throw new Error(`compile failed: ${JSON.stringify(errors)}`);
  const src = snapshot.endpointByName('default', 'svc-1')!.identity;
  const dst = snapshot.endpointByName('default', 'svc-0')!.identity;
  const q: DecisionQuery = { src, dst, port: 80, protocol: 'TCP', http };
  const check = snapshot.decide(q);
  if (!check.allowed || check.type !== 'L7') throw new Error(`unexpected verdict ${JSON.stringify(check)}`);
  // Warm up, then take the best of five ~300 ms rounds.
  for (let i = 0; i < 200_000; i++) snapshot.decide(q);
  let best = 0;
  for (let round = 0; round < 5; round++) {
    let count = 0;
    const start = performance.now();
    let now = start;
    while (now - start < 300) {
      for (let i = 0; i < 10_000; i++) snapshot.decide(q);
      count += 10_000;
      now = performance.now();
    }
    best = Math.max(best, (count * 1000) / (now - start));
  }
  return { rate: best, compileMs };
}

// Each size runs in its own process, so one size's JIT feedback (object shapes,
// inline caches) and heap do not bias the next. The young generation is pinned
// (--max-semi-space-size=32): V8 otherwise sizes it from the heap, and the small
// heaps of the 1/100-policy runs then scavenge the per-decision Verdict objects
// more often, which measures heap size, not policy count.
const arg = process.argv[2];
if (arg !== undefined) {
  console.log(JSON.stringify(measure(Number(arg))));
  process.exit(0);
}
const rows: string[] = [];
let base = 0;
for (const n of [1, 100, 1000, 10_000]) {
  const r = spawnSync(process.execPath, [...process.execArgv, '--max-semi-space-size=32', fileURLToPath(import.meta.url), String(n)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const { rate, compileMs } = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { rate: number; compileMs: number };
  if (base === 0) base = rate;
  rows.push(
    `| ${n.toLocaleString('en-US')} | ${PODS.toLocaleString('en-US')} | ${Math.round(rate).toLocaleString('en-US')} | ${(rate / base).toFixed(2)} | ${compileMs.toFixed(0)} |`,
  );
}
console.log('| policies | identities | decisions/s (L7 HTTP, allowed) | ratio to 1 policy | compile ms |');
console.log('|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(r);
