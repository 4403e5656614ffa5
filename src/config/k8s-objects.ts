/**
 * Pod, Namespace and Secret documents. These are full Kubernetes objects (often
 * `kubectl get -o yaml` output, with many fields we do not use), so only the
 * fields we read are validated; everything else is ignored.
 */
import type { ContainerPort, NamespaceDoc, PodDoc, SecretDoc } from './documents.js';
import { readMetadata } from './metadata.js';
import { Fields, indexPath } from './reader.js';
import { normalizeIP } from '../policy/parse/cidr.js';

const PORT_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export function readPod(top: Fields): PodDoc | undefined {
  const rep = top.rep;
  const before = rep.errorCount;
  const meta = readMetadata(top, { strict: false });
  const spec = top.map('spec');
  let serviceAccount = 'default';
  let hostNetwork = false;
  const containerPorts: ContainerPort[] = [];
  if (spec) {
    // serviceAccount is the deprecated alias the API server still fills in.
    serviceAccount = spec.str('serviceAccountName') || spec.str('serviceAccount') || 'default';
    hostNetwork = spec.bool('hostNetwork') ?? false;
    for (const { f: c } of spec.maps('containers') ?? []) {
      for (const { f: p } of c.maps('ports') ?? []) {
        const port = p.int('containerPort', { required: true, min: 1, max: 65535 });
        const rawName = p.str('name');
        const protocol = p.oneOf('protocol', ['TCP', 'UDP', 'SCTP']) ?? 'TCP';
        let name: string | undefined;
        if (rawName) {
          if (rawName.length > 15 || !PORT_NAME.test(rawName.toLowerCase()) || !/[a-z]/i.test(rawName) || rawName.includes('--')) {
            p.error('name', `${JSON.stringify(rawName)} is not a valid port name (IANA_SVC_NAME)`);
          } else name = rawName.toLowerCase();
        }
        if (port !== undefined) containerPorts.push({ ...(name ? { name } : {}), port, protocol });
      }
    }
  }
  const ips: string[] = [];
  const status = top.map('status');
  if (status) {
    const addIP = (text: string, at: { line: number; col: number }, path: string) => {
      const ip = normalizeIP(text);
      if (!ip) rep.error(at, path, `${JSON.stringify(text)} is not an IP address`);
      else if (!ips.includes(ip)) ips.push(ip);
    };
    const podIP = status.str('podIP');
    if (podIP) addIP(podIP, status.at('podIP'), status.sub('podIP'));
    for (const { f: p, i } of status.maps('podIPs') ?? []) {
      const ip = p.str('ip');
      if (ip) addIP(ip, p.at('ip'), indexPath(status.sub('podIPs'), i) + '.ip');
    }
  }
  if (rep.errorCount !== before || !meta) return undefined;
  return {
    name: meta.name,
    namespace: meta.namespace ?? 'default',
    labels: meta.labels,
    serviceAccount,
    ips,
    hostNetwork,
    containerPorts,
    pos: rep.pos(top.loc),
  };
}

export function readNamespace(top: Fields): NamespaceDoc | undefined {
  const meta = readMetadata(top, { strict: false });
  if (!meta) return undefined;
  return { name: meta.name, labels: meta.labels, pos: top.rep.pos(top.loc) };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function readSecret(top: Fields): SecretDoc | undefined {
  const rep = top.rep;
  const before = rep.errorCount;
  const meta = readMetadata(top, { strict: false });
  top.str('type');
  // No prototype (as in Fields.strMap): a `__proto__` item stays an item, and a
  // policy's `trustedCA: constructor` finds nothing instead of Object's constructor.
  const data: Record<string, Buffer> = Object.create(null) as Record<string, Buffer>;
  const d = top.map('data');
  for (const e of d?.node.entries ?? []) {
    const v = e.value;
    const path = d!.sub(e.key);
    if (v.kind === 'scalar' && v.value === null) {
      data[e.key] = Buffer.alloc(0);
      continue;
    }
    if (v.kind !== 'scalar' || typeof v.value !== 'string') {
      rep.error(v, path, 'must be a base64 string');
      continue;
    }
    // Folded / multi-line base64 is common in hand-written Secrets.
    const text = v.value.replace(/\s+/g, '');
    if (!BASE64.test(text) || text.length % 4 !== 0) {
      rep.error(v, path, 'is not valid base64');
      continue;
    }
    data[e.key] = Buffer.from(text, 'base64');
  }
  // stringData is merged over data, as the API server does on write.
  const sd = top.strMap('stringData');
  for (const [k, v] of Object.entries(sd ?? {})) data[k] = Buffer.from(v, 'utf8');
  if (rep.errorCount !== before || !meta) return undefined;
  return { namespace: meta.namespace ?? 'default', name: meta.name, data, pos: rep.pos(top.loc) };
}
