/**
 * ProxyConfig (l7warden.io/v1alpha1) validation: the document into a
 * `ProxyConfigSpec` with every default applied (types and defaults in
 * proxy-config.ts; SPEC.md "ProxyConfig"). Unknown fields are errors, as in
 * the policy kinds, so a misspelt limit is never silently ignored.
 */
import os from 'node:os';
import type { ProxyConfigDoc } from './documents.js';
import { readMetadata } from './metadata.js';
import {
  DEFAULT_LIMITS,
  type DnsListener,
  type EgressListener,
  type EndpointRef,
  type FlowLogSpec,
  type IngressListener,
  type Limits,
  type ListenerSpec,
  type ListenerTLS,
  type ProxyConfigSpec,
  type SecretOrDirRef,
  type SourceIdentityMethod,
  type Upstream,
  type UpstreamTLS,
} from './proxy-config.js';
import { Fields } from './reader.js';
import { parseIP } from '../policy/parse/cidr.js';

const MODES = ['ingress', 'egress', 'dns'] as const;
const IDENTITY_METHODS: readonly SourceIdentityMethod[] = ['proxyProtocol', 'clientCertificate', 'sourceAddress'];
const HOSTNAME = /^(?=.{1,253}$)[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$/;
const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Limits where 0 is meaningful (unlimited / no minimum); every other limit must be positive. */
const ZERO_OK: ReadonlySet<keyof Limits> = new Set(['maxBodyBytes', 'dnsMinTtlSeconds', 'dnsMaxTtlSeconds']);

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** `host:port`, `[v6]:port`. Returns a reason string when invalid. */
export function parseHostPort(text: string): HostPort | string {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0 || text[end + 1] !== ':') return `${JSON.stringify(text)} is not host:port ([v6]:port for IPv6)`;
    host = text.slice(1, end);
    portText = text.slice(end + 2);
    const ip = parseIP(host);
    if (!ip || ip.family !== 6) return `${JSON.stringify(host)} is not an IPv6 address`;
  } else {
    const i = text.lastIndexOf(':');
    if (i < 0) return `${JSON.stringify(text)} is not host:port`;
    host = text.slice(0, i);
    portText = text.slice(i + 1);
    if (host.includes(':')) return `${JSON.stringify(text)}: write IPv6 addresses in brackets, e.g. [::1]:53`;
    if (host === '') return `${JSON.stringify(text)} has no host (use 0.0.0.0 or [::] for all addresses)`;
    if (!parseIP(host) && !HOSTNAME.test(host)) return `${JSON.stringify(host)} is not an IP address or host name`;
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return `${JSON.stringify(portText)} is not a port number 0-65535`;
  return { host, port: Number(portText) };
}

function readHostPort(f: Fields, key: string, required: boolean): (HostPort & { address: string }) | undefined {
  const text = f.str(key, { required });
  if (text === undefined) return undefined;
  const hp = parseHostPort(text);
  if (typeof hp === 'string') {
    f.error(key, hp);
    return undefined;
  }
  return { ...hp, address: text };
}

function readUpstreamURL(f: Fields): Upstream | undefined {
  const text = f.str('upstream', { required: true });
  if (text === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    f.error('upstream', `${JSON.stringify(text)} is not a URL (http://host:port, https://host:port or h2c://host:port)`);
    return undefined;
  }
  const scheme = url.protocol.slice(0, -1);
  if (scheme !== 'http' && scheme !== 'https' && scheme !== 'h2c') {
    f.error('upstream', `scheme ${JSON.stringify(scheme)} is not supported (http, https or h2c)`);
    return undefined;
  }
  // The proxy forwards exactly the path it matched; a base path would change it.
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || url.username || url.password) {
    f.error('upstream', 'must be scheme://host:port with no path, query or credentials');
    return undefined;
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (!host) {
    f.error('upstream', 'has no host');
    return undefined;
  }
  // WHATWG URL drops default ports and only knows http/https defaults.
  const port = url.port ? Number(url.port) : scheme === 'https' ? 443 : 80;
  return { url: text, protocol: scheme, host, port };
}

/** `namespace/name` reference to a Secret (document or certs/ directory). */
function readSecretName(f: Fields, key: string, required: boolean): string | undefined {
  const s = f.str(key, { required });
  if (s === undefined) return undefined;
  const parts = s.split('/');
  if (parts.length !== 2 || !parts[0] || !parts[1]) {
    f.error(key, `${JSON.stringify(s)} must be namespace/name`);
    return undefined;
  }
  return s;
}

function readEndpointRef(f: Fields | undefined): EndpointRef | undefined {
  if (!f) return undefined;
  f.checkKnown(['namespace', 'pod']);
  const pod = f.str('pod', { required: true, nonEmpty: true });
  const namespace = f.str('namespace') || 'default';
  return pod === undefined ? undefined : { namespace, pod };
}

function readSourceIdentity(f: Fields): SourceIdentityMethod[] {
  const list = f.strList('sourceIdentity');
  if (list === undefined) return ['sourceAddress'];
  const seq = f.seq('sourceIdentity');
  const out: SourceIdentityMethod[] = [];
  list.forEach((m, i) => {
    const at = seq?.items[i] ?? f.at('sourceIdentity');
    const path = `${f.sub('sourceIdentity')}[${i}]`;
    if (!(IDENTITY_METHODS as readonly string[]).includes(m)) {
      f.rep.error(at, path, `must be one of ${IDENTITY_METHODS.map((x) => JSON.stringify(x)).join(', ')}, not ${JSON.stringify(m)}`);
    } else if (out.includes(m as SourceIdentityMethod)) {
      f.rep.error(at, path, `${m} is listed twice`);
    } else out.push(m as SourceIdentityMethod);
  });
  if (list.length === 0) f.error('sourceIdentity', 'must list at least one method');
  return out;
}

function readListenerTLS(f: Fields, wantsClientCert: boolean): ListenerTLS | undefined {
  f.checkKnown(['secret', 'sni', 'clientAuth', 'clientCA']);
  const secret = readSecretName(f, 'secret', true);
  const sni: SecretOrDirRef[] = [];
  for (const { f: s } of f.maps('sni') ?? []) {
    s.checkKnown(['secret']);
    const name = readSecretName(s, 'secret', true);
    if (name) sni.push({ secret: name });
  }
  const clientAuth = f.oneOf('clientAuth', ['none', 'request', 'require']) ?? (wantsClientCert ? 'request' : 'none');
  const clientCA = readSecretName(f, 'clientCA', false);
  if (secret === undefined) return undefined;
  return { secret, ...(sni.length ? { sni } : {}), clientAuth, ...(clientCA ? { clientCA } : {}) };
}

function readUpstreamTLS(f: Fields): UpstreamTLS {
  f.checkKnown(['secret', 'servername', 'insecureSkipVerify']);
  const secret = readSecretName(f, 'secret', false);
  const servername = f.str('servername', { nonEmpty: true });
  const insecureSkipVerify = f.bool('insecureSkipVerify') ?? false;
  if (insecureSkipVerify) f.rep.warn(f.at('insecureSkipVerify'), f.sub('insecureSkipVerify'), 'upstream certificates are not verified');
  return { ...(secret ? { secret } : {}), ...(servername ? { servername } : {}), insecureSkipVerify };
}

const COMMON = ['name', 'mode', 'address', 'sourceIdentity'];
const BY_MODE: Record<(typeof MODES)[number], readonly string[]> = {
  ingress: [...COMMON, 'endpoint', 'upstream', 'endpointPort', 'upstreamTLS', 'tls', 'l3DenyAction'],
  egress: [...COMMON, 'upstreamCA', 'dnsListener'],
  dns: [...COMMON, 'upstream', 'rejectResponseCode', 'serverEndpoint'],
};
const ALL_LISTENER_FIELDS = [...new Set(Object.values(BY_MODE).flat())];

function readListener(f: Fields): ListenerSpec | undefined {
  const before = f.rep.errorCount;
  const name = f.str('name', { required: true, nonEmpty: true });
  if (name !== undefined && !NAME.test(name)) f.error('name', `${JSON.stringify(name)} must be lowercase letters, digits and "-"`);
  const mode = f.oneOf('mode', MODES);
  if (!f.has('mode')) f.rep.error(f.loc, f.sub('mode'), 'is required');
  if (mode) {
    const special: Record<string, string> = {};
    for (const k of ALL_LISTENER_FIELDS) if (!BY_MODE[mode].includes(k)) special[k] = `not allowed for a listener in mode ${mode}`;
    f.checkKnown(BY_MODE[mode], special);
  } else {
    f.checkKnown(ALL_LISTENER_FIELDS);
  }
  const addr = readHostPort(f, 'address', true);
  const sourceIdentity = readSourceIdentity(f);
  if (!mode) return undefined;

  let out: ListenerSpec | undefined;
  if (mode === 'ingress') {
    const endpoint = readEndpointRef(f.map('endpoint', { required: true }));
    const upstream = readUpstreamURL(f);
    const ut = f.map('upstreamTLS');
    const upstreamTLS = ut ? readUpstreamTLS(ut) : undefined;
    if (upstreamTLS && upstream && upstream.protocol !== 'https') {
      f.error('upstreamTLS', `only applies to an https:// upstream, not ${upstream.protocol}://`);
    }
    const tf = f.map('tls');
    const tls = tf ? readListenerTLS(tf, sourceIdentity.includes('clientCertificate')) : undefined;
    if (sourceIdentity.includes('clientCertificate') && !f.has('tls')) {
      f.error('sourceIdentity', 'clientCertificate needs tls on this listener');
    }
    if (sourceIdentity.includes('clientCertificate') && tls?.clientAuth === 'none') {
      f.error('sourceIdentity', 'clientCertificate needs tls.clientAuth request or require');
    }
    const l3DenyAction = f.oneOf('l3DenyAction', ['forbidden', 'reset']) ?? 'forbidden';
    const endpointPort = f.int('endpointPort', { min: 1, max: 65535 });
    if (endpoint && upstream && addr && name) {
      const l: IngressListener = {
        name, mode, address: addr.address, host: addr.host, port: addr.port, endpoint, upstream,
        ...(endpointPort !== undefined ? { endpointPort } : {}),
        ...(upstreamTLS ? { upstreamTLS } : {}), ...(tls ? { tls } : {}), sourceIdentity, l3DenyAction,
      };
      out = l;
    }
  } else {
    if (sourceIdentity.includes('clientCertificate')) {
      f.error('sourceIdentity', `clientCertificate is only available on ingress listeners with tls`);
    }
    if (mode === 'egress') {
      const upstreamCA = readSecretName(f, 'upstreamCA', false);
      const dnsListener = f.str('dnsListener', { nonEmpty: true });
      if (addr && name) {
        const l: EgressListener = {
          name, mode, address: addr.address, host: addr.host, port: addr.port, sourceIdentity,
          ...(upstreamCA ? { upstreamCA } : {}),
          ...(dnsListener !== undefined ? { dnsListener } : {}),
        };
        out = l;
      }
    } else {
      const up = readHostPort(f, 'upstream', true);
      const rejectResponseCode = f.oneOf('rejectResponseCode', ['refused', 'nameError']) ?? 'refused';
      const serverEndpoint = readEndpointRef(f.map('serverEndpoint'));
      if (up && addr && name) {
        const l: DnsListener = {
          name, mode, address: addr.address, host: addr.host, port: addr.port,
          upstream: { host: up.host, port: up.port }, sourceIdentity, rejectResponseCode,
          ...(serverEndpoint ? { serverEndpoint } : {}),
        };
        out = l;
      }
    }
  }
  return f.rep.errorCount === before ? out : undefined;
}

function readLimits(f: Fields | undefined): Limits {
  const limits: Record<string, number> = { ...DEFAULT_LIMITS };
  if (!f) return limits as unknown as Limits;
  const keys = Object.keys(DEFAULT_LIMITS) as (keyof Limits)[];
  f.checkKnown(keys);
  for (const k of keys) {
    const v = f.int(k, { min: ZERO_OK.has(k) ? 0 : 1, max: Number.MAX_SAFE_INTEGER });
    if (v !== undefined) limits[k] = v;
  }
  // Node's HTTP/1 server refuses a headers timeout longer than the request timeout
  // (a RangeError at startup): say so here, at the field that was set.
  if (limits.requestTimeoutMs! < limits.headersTimeoutMs!) {
    const key = f.has('requestTimeoutMs') ? 'requestTimeoutMs' : 'headersTimeoutMs';
    f.rep.error(f.at(key), f.sub(key), `requestTimeoutMs (${limits.requestTimeoutMs}) must be at least headersTimeoutMs (${limits.headersTimeoutMs})`);
  }
  if (limits.dnsMaxTtlSeconds! > 0 && limits.dnsMaxTtlSeconds! < limits.dnsMinTtlSeconds!) {
    const key = f.has('dnsMaxTtlSeconds') ? 'dnsMaxTtlSeconds' : 'dnsMinTtlSeconds';
    f.rep.error(f.at(key), f.sub(key), `dnsMaxTtlSeconds (${limits.dnsMaxTtlSeconds}) must be 0 (no maximum) or at least dnsMinTtlSeconds (${limits.dnsMinTtlSeconds})`);
  }
  return limits as unknown as Limits;
}

function readFlowLog(f: Fields | undefined): FlowLogSpec {
  const nodeName = () => {
    try {
      return os.hostname();
    } catch {
      return 'localhost';
    }
  };
  if (!f) return { file: '-', format: 'json', nodeName: nodeName() };
  f.checkKnown(['file', 'format', 'nodeName', 'maxBytes', 'maxFiles']);
  const file = f.str('file') ?? '-';
  f.oneOf('format', ['json']);
  const node = f.str('nodeName', { nonEmpty: true });
  // Size bound and rotation of a flow log file (observability, issue 5).
  const maxBytes = f.int('maxBytes', { min: 4096, max: Number.MAX_SAFE_INTEGER });
  const maxFiles = f.int('maxFiles', { min: 1, max: 1000 });
  return {
    file,
    format: 'json',
    nodeName: node ?? nodeName(),
    ...(maxBytes !== undefined ? { maxBytes } : {}),
    ...(maxFiles !== undefined ? { maxFiles } : {}),
  };
}

/** Validate a ProxyConfig `spec` map. */
export function validateProxyConfigSpec(spec: Fields): ProxyConfigSpec | undefined {
  const rep = spec.rep;
  const before = rep.errorCount;
  spec.checkKnown(['admin', 'listeners', 'enforcement', 'limits', 'flowLog']);
  let admin: ProxyConfigSpec['admin'];
  const af = spec.map('admin');
  if (af) {
    af.checkKnown(['address']);
    const a = readHostPort(af, 'address', true);
    if (a) admin = { address: a.address, host: a.host, port: a.port };
  }
  const listeners: ListenerSpec[] = [];
  const names = new Map<string, string>();
  const addrs = new Map<string, string>();
  const egress: { l: EgressListener; f: Fields }[] = [];
  if (admin && admin.port !== 0) addrs.set(`${admin.host.toLowerCase()}:${admin.port}`, 'spec.admin');
  for (const { f, i } of spec.maps('listeners') ?? []) {
    // Names are checked before the listener itself, so a duplicate is reported
    // even when the first listener of that name had errors of its own.
    const rawName = f.node_('name');
    const name = rawName?.kind === 'scalar' && typeof rawName.value === 'string' ? rawName.value : undefined;
    const prevName = name !== undefined ? names.get(name) : undefined;
    if (prevName) f.error('name', `listener name ${JSON.stringify(name)} is already used by ${prevName}`);
    else if (name !== undefined) names.set(name, f.path);
    const l = readListener(f);
    if (!l || prevName) continue;
    // Port 0 asks the OS for a free port, so two of them never collide.
    const key = `${l.host.toLowerCase()}:${l.port}`;
    const prevAddr = addrs.get(key);
    if (l.port !== 0 && prevAddr) {
      f.error('address', `address ${l.address} is already used by ${prevAddr}`);
      continue;
    }
    if (l.port !== 0) addrs.set(key, `spec.listeners[${i}]`);
    listeners.push(l);
    if (l.mode === 'egress') egress.push({ l, f });
  }
  // An egress listener resolves names through a dns listener: the named one, or the only one.
  const dnsNames = listeners.filter((l) => l.mode === 'dns').map((l) => l.name);
  for (const { l, f } of egress) {
    if (l.dnsListener !== undefined && !dnsNames.includes(l.dnsListener)) {
      f.error('dnsListener', `${JSON.stringify(l.dnsListener)} is not a dns listener of this ProxyConfig`);
    } else if (l.dnsListener === undefined && dnsNames.length > 1) {
      f.error('dnsListener', `is required when there are several dns listeners (${dnsNames.join(', ')})`);
    }
  }
  const enforcement = spec.oneOf('enforcement', ['default', 'always', 'never']) ?? 'default';
  const limits = readLimits(spec.map('limits'));
  const flowLog = readFlowLog(spec.map('flowLog'));
  if (rep.errorCount !== before) return undefined;
  return { ...(admin ? { admin } : {}), listeners, enforcement, limits, flowLog };
}

/** A whole ProxyConfig document. */
export function readProxyConfig(top: Fields): ProxyConfigDoc | undefined {
  const before = top.rep.errorCount;
  top.checkKnown(['apiVersion', 'kind', 'metadata', 'spec']);
  const meta = readMetadata(top, { strict: true });
  const sf = top.map('spec', { required: true });
  const spec = sf ? validateProxyConfigSpec(sf) : undefined;
  if (!meta || !spec || top.rep.errorCount !== before) return undefined;
  return { name: meta.name, spec, pos: top.rep.pos(top.loc) };
}
