/**
 * `toPorts` of CNP/CCNP rule elements: ports, L7 rules, TLS contexts and server
 * names, validated as Cilium's `PortRule.sanitize` / `L7Rules.sanitize` /
 * `PortProtocol.sanitize` do (pkg/policy/api/rule_validation.go), with Cilium's
 * error wording. Schema errors (wrong types, unknown fields) come first, as the
 * CRD schema would reject them before Cilium's code runs.
 */
import { Fields, indexPath, type Reporter } from '../../config/reader.js';
import type { Loc } from '../../config/yaml-tree.js';
import type {
  DNSRule,
  HeaderMatch,
  HTTPRule,
  L7Rules,
  MismatchAction,
  PortProtocol,
  PortProtocolName,
  PortRule,
  SecretRef,
  TLSContext,
} from '../api.js';
import { patternError } from '../regex.js';
import { matchNameError, matchPatternError } from '../dns-pattern.js';

const MAX_PORTS = 40;
const SVC_NAME = /^([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*$/;

/** pkg/iana IsSvcName (RFC 6335 §5.1): 1-15 chars, a letter, single inner dashes. */
export function isSvcName(name: string): boolean {
  return name.length > 0 && name.length <= 15 && SVC_NAME.test(name);
}

export interface PortContext {
  readonly rep: Reporter;
  /** Namespace used when a TLS / header secret reference names none ("default" for CCNP). */
  readonly secretNamespace: string;
  readonly ingress: boolean;
  readonly deny: boolean;
  readonly hostPolicy: boolean;
}

interface ParsedPort {
  readonly pp: PortProtocol;
  readonly loc: Loc;
  readonly path: string;
  readonly protoLoc: Loc;
  readonly protoPath: string;
  readonly isZero: boolean;
  readonly portLoc: Loc;
}

/** Port value as Cilium reads it: a decimal number 0-65535 or an IANA service name. */
export function parsePortValue(raw: unknown): { port: string; isZero: boolean } | string {
  let text: string;
  if (typeof raw === 'number') {
    if (!Number.isInteger(raw)) return `${JSON.stringify(raw)} is not a port`;
    text = String(raw);
  } else if (typeof raw === 'string') text = raw;
  else return 'must be a string';
  if (text === '') return 'Port must be specified';
  if (isSvcName(text)) return { port: text.toLowerCase(), isZero: false };
  if (!/^\d+$/.test(text)) return `${JSON.stringify(text)} is not a port (a number 0-65535 or an IANA service name)`;
  // Go's strconv.ParseUint(s, 0, 16) reads a leading 0 as octal ("080" is 64);
  // refusing it avoids a port that silently differs from what the author meant.
  if (text.length > 1 && text.startsWith('0')) return `${JSON.stringify(text)} has a leading zero (Cilium would read it as an octal number)`;
  const n = Number(text);
  if (n > 65535) return `${JSON.stringify(text)} is not a port (a number 0-65535 or an IANA service name)`;
  return { port: String(n), isZero: n === 0 };
}

function parsePortProtocol(ctx: PortContext, f: Fields, hasDNSRules: boolean): ParsedPort | undefined {
  f.checkKnown(['port', 'endPort', 'protocol']);
  const portNode = f.node_('port');
  let port: { port: string; isZero: boolean } | undefined;
  if (portNode === undefined) {
    ctx.rep.error(f.loc, f.sub('port'), 'Port must be specified');
  } else {
    // The CRD types port as a string: the API server refuses `port: 80` ("must be of
    // type string"), so an unquoted number is refused here too, with the fix.
    if (portNode.kind === 'scalar' && typeof portNode.value === 'number') {
      // YAML 1.1 spellings (010, 0x50, 1e2, +80, 80.0) are numbers too, but differently
      // so to kubectl: suggest the quoted decimal only where the text already is one.
      const plain = /^(0|[1-9][0-9]*)$/.test(portNode.text ?? '');
      ctx.rep.error(portNode, f.sub('port'), `must be a string, not a number (${plain ? `quote it: "${portNode.text}"` : 'write it as a quoted decimal port, e.g. "80"'})`);
    } else {
      const v = parsePortValue(portNode.kind === 'scalar' ? portNode.value : undefined);
      if (typeof v === 'string') ctx.rep.error(portNode, f.sub('port'), portNode.kind === 'scalar' ? v : 'must be a string');
      else port = v;
    }
  }
  const endPort = f.int('endPort', { min: 0, max: 65535 });
  let protocol: PortProtocolName = 'ANY';
  const protoText = f.str('protocol');
  let protoOk = true;
  // The CRD's protocol enum is exact (no lower case), unlike Cilium's Go
  // ParseL4Proto, which upper-cases: the API server refuses `tcp` before Go sees it.
  // "" is ANY, as the field's zero value (CILIUM-SEMANTICS.md §1.6).
  if (protoText !== undefined) {
    if (protoText === 'TCP' || protoText === 'UDP' || protoText === 'SCTP' || protoText === 'ANY') protocol = protoText;
    else if (protoText === '') protocol = 'ANY';
    else if (protoText === 'VRRP' || protoText === 'IGMP') {
      f.error('protocol', `protocol ${protoText} is not supported by l7warden (only TCP, UDP, SCTP and ANY traffic is proxied)`);
      protoOk = false;
    } else {
      f.error('protocol', `must be one of "TCP", "UDP", "SCTP", "ANY" (or "VRRP", "IGMP", which l7warden does not support), not ${JSON.stringify(protoText)}`);
      protoOk = false;
    }
  }
  if (!port || !protoOk) return undefined;
  let end: number | undefined;
  if (endPort !== undefined && endPort !== 0) {
    if (!/^\d+$/.test(port.port)) {
      f.error('endPort', 'endPort can only be used with a numeric port');
      return undefined;
    }
    const start = Number(port.port);
    // Port 0 is the wildcard (every port): "0"-80 would quietly open all of them.
    // cilium/proxy refuses the policy ("Invalid port range including the wildcard
    // zero port", tests/cilium_network_policy_test.cc InvalidWildcardPortRange).
    if (start === 0) {
      f.error('endPort', `endPort ${endPort} cannot be used with port 0, the wildcard port (all ports)`);
      return undefined;
    }
    if (endPort < start) {
      f.error('endPort', `endPort ${endPort} must not be less than port ${start}`);
      return undefined;
    }
    if (hasDNSRules && endPort > start) {
      f.error('endPort', 'DNS rules do not support port ranges');
      return undefined;
    }
    if (endPort > start) end = endPort;
  }
  return {
    pp: end === undefined ? { port: port.port, protocol } : { port: port.port, endPort: end, protocol },
    loc: f.loc,
    path: f.path,
    protoLoc: f.at('protocol'),
    protoPath: f.sub('protocol'),
    isZero: port.isZero,
    portLoc: f.at('port'),
  };
}

function readSecretRef(ctx: PortContext, f: Fields): SecretRef | undefined {
  f.checkKnown(['namespace', 'name']);
  const name = f.str('name', { required: true, nonEmpty: true });
  const ns = f.str('namespace');
  if (name === undefined) return undefined;
  return { namespace: ns || ctx.secretNamespace, name };
}

function readTLS(ctx: PortContext, f: Fields): TLSContext | undefined {
  f.checkKnown(['secret', 'trustedCA', 'certificate', 'privateKey']);
  const sf = f.map('secret', { required: true });
  const secret = sf ? readSecretRef(ctx, sf) : undefined;
  const trustedCA = f.str('trustedCA');
  const certificate = f.str('certificate');
  const privateKey = f.str('privateKey');
  if (!secret) return undefined;
  return {
    secret,
    ...(trustedCA ? { trustedCA } : {}),
    ...(certificate ? { certificate } : {}),
    ...(privateKey ? { privateKey } : {}),
  };
}

function readPattern(f: Fields, key: string): string | undefined {
  const s = f.str(key);
  if (s === undefined || s === '') return undefined;
  const err = patternError(s);
  if (err) {
    f.error(key, err);
    return undefined;
  }
  return s;
}

// The CRD's enum has no "": the default (fail) is written by leaving mismatch out.
const MISMATCH: readonly MismatchAction[] = ['LOG', 'ADD', 'DELETE', 'REPLACE'];

function readHTTPRule(ctx: PortContext, f: Fields): HTTPRule | undefined {
  const before = ctx.rep.errorCount;
  f.checkKnown(['method', 'path', 'host', 'headers', 'headerMatches']);
  const method = readPattern(f, 'method');
  const path = readPattern(f, 'path');
  const host = readPattern(f, 'host');
  const headers = f.strList('headers') ?? [];
  headers.forEach((h, i) => {
    if (h.trim() === '') ctx.rep.error(f.at('headers'), indexPath(f.sub('headers'), i), 'header must not be empty');
  });
  const headerMatches: HeaderMatch[] = [];
  for (const { f: hm } of f.maps('headerMatches') ?? []) {
    hm.checkKnown(['name', 'value', 'secret', 'mismatch']);
    const name = hm.str('name', { required: true, nonEmpty: true });
    const value = hm.str('value');
    const sf = hm.map('secret');
    const secret = sf ? readSecretRef(ctx, sf) : undefined;
    const mismatch = hm.oneOf('mismatch', MISMATCH) ?? '';
    if (name === undefined) continue;
    headerMatches.push({
      name,
      ...(value !== undefined && value !== '' ? { value } : {}),
      ...(secret ? { secret } : {}),
      mismatch,
    });
  }
  if (ctx.rep.errorCount !== before) return undefined;
  return {
    ...(method !== undefined ? { method } : {}),
    ...(path !== undefined ? { path } : {}),
    ...(host !== undefined ? { host } : {}),
    headers,
    headerMatches,
  };
}

// The CRD's matchName / matchPattern / serverNames patterns: labels separated by
// single dots, an optional trailing dot, no leading dot.
const FQDN_NAME = /^([-a-zA-Z0-9_]+[.]?)+$/;
const FQDN_PATTERN = /^([-a-zA-Z0-9_*]+[.]?)+$/;
const MAX_NAME = 255;
// cilium/proxy SniPattern::isValid (cilium/network_policy.h): each label of a server
// name is `*`, `**`, or DNS characters with single `*`s around or between them.
// Envoy refuses the whole policy otherwise ("SniPattern: Unsupported match pattern").
const SNI_LABEL = /^(?:\*\*?|\*?[-a-zA-Z0-9_]+(?:\*[-a-zA-Z0-9_]+)*\*?)$/;

/** An FQDNSelector (toFQDNs item or DNS rule), validated. */
export function readFQDNSelector(f: Fields): DNSRule | undefined {
  f.checkKnown(['matchName', 'matchPattern']);
  const name = f.str('matchName');
  const pattern = f.str('matchPattern');
  // The CRD's oneOf counts a field as given when its key is present, even as "".
  const hasName = name !== undefined;
  const hasPattern = pattern !== undefined;
  if (hasName && hasPattern) {
    f.rep.error(f.loc, f.path, 'only one of MatchName or MatchPattern is allowed in an FQDNSelector');
    return undefined;
  }
  if (!hasName && !hasPattern) {
    f.rep.error(f.loc, f.path, 'one of matchName or matchPattern is required');
    return undefined;
  }
  if (hasName) {
    const err = matchNameError(name) ?? (FQDN_NAME.test(name) ? undefined : `${JSON.stringify(name)} is not a DNS name (empty label)`);
    if (err) {
      f.error('matchName', err);
      return undefined;
    }
    return { matchName: name };
  }
  const err = matchPatternError(pattern!) ?? (FQDN_PATTERN.test(pattern!) ? undefined : `${JSON.stringify(pattern)} is not a DNS name pattern (empty label)`);
  if (err) {
    f.error('matchPattern', err);
    return undefined;
  }
  return { matchPattern: pattern! };
}

interface ReadL7 {
  readonly rules?: L7Rules;
  readonly nonEmpty: boolean;
  readonly hasDNS: boolean;
  readonly loc: Loc;
  readonly path: string;
  readonly dnsLoc: Loc;
}

function readL7Rules(ctx: PortContext, f: Fields): ReadL7 {
  const before = ctx.rep.errorCount;
  f.checkKnown(['http', 'HTTP', 'dns'], {
    kafka: 'Kafka rules are not supported by l7warden (removed from Cilium in 1.20)',
    l7proto: 'l7proto rules are not supported by l7warden (removed from Cilium in 1.20)',
    l7: 'l7 rules are not supported by l7warden (removed from Cilium in 1.20)',
  });
  if (f.has('http') && f.has('HTTP')) f.error('HTTP', 'both "http" and "HTTP" are given; use "http"');
  // Cilium's Go JSON decoding matches field names case-insensitively, so its own
  // examples/policies/l7/http/http.yaml, written with `HTTP:`, works there
  // (CILIUM-SEMANTICS.md §7.2); it is the same field here. The CRD schema would
  // refuse it through kubectl, the one place this loader is more lenient.
  const httpKey = f.has('http') ? 'http' : 'HTTP';
  const httpItems = f.maps(httpKey);
  const dnsItems = f.maps('dns');
  let nTypes = 0;
  if (httpItems) nTypes++;
  if (dnsItems) nTypes++;
  if (nTypes > 1) {
    ctx.rep.error(f.loc, f.path, 'multiple L7 protocol rule types specified in single rule');
  } else if (nTypes === 0 && !f.keys().some((k) => k !== 'http' && k !== 'HTTP' && k !== 'dns')) {
    // The CRD's oneOf [http, dns]: `rules: {}` is refused by the API server.
    ctx.rep.error(f.loc, f.path, 'must have one of http or dns (leave rules out for no L7 rules)');
  }
  const http: HTTPRule[] = [];
  for (const { f: h } of httpItems ?? []) {
    const r = readHTTPRule(ctx, h);
    if (r) http.push(r);
  }
  const dns: DNSRule[] = [];
  for (const { f: d } of dnsItems ?? []) {
    const r = readFQDNSelector(d);
    if (r) dns.push(r);
  }
  // Flags are returned even when items had errors, so the port checks that depend
  // on them (TCP only, no port 0, DNS not on ingress) still report in this run.
  const ok = ctx.rep.errorCount === before;
  const hasDNS = (dnsItems?.length ?? 0) > 0;
  const nonEmpty = (httpItems?.length ?? 0) > 0 || hasDNS;
  return {
    ...(nonEmpty && ok ? { rules: hasDNS ? { dns } : { http } } : {}),
    nonEmpty,
    hasDNS,
    loc: f.loc,
    path: f.path,
    dnsLoc: f.at('dns'),
  };
}

/** One `toPorts` element. */
export function readPortRule(ctx: PortContext, f: Fields): PortRule | undefined {
  const before = ctx.rep.errorCount;
  if (ctx.deny) {
    // PortDenyRule has only `ports`: deny rules are L3/L4 and are enforced before any L7.
    const notInDeny = 'is not allowed in deny rules (deny rules are L3/L4 only)';
    f.checkKnown(['ports'], {
      rules: `L7 rules ${notInDeny}`,
      terminatingTLS: `terminatingTLS ${notInDeny}`,
      originatingTLS: `originatingTLS ${notInDeny}`,
      serverNames: `serverNames ${notInDeny}`,
      listener: `listener ${notInDeny}`,
    });
  } else {
    f.checkKnown(['ports', 'rules', 'terminatingTLS', 'originatingTLS', 'serverNames'], {
      listener: 'listener (CiliumEnvoyConfig redirection) is not supported by l7warden',
    });
  }

  const rf = ctx.deny ? undefined : f.map('rules');
  const l7 = rf ? readL7Rules(ctx, rf) : undefined;
  const hasDNS = l7?.hasDNS ?? false;

  if (l7?.hasDNS && ctx.ingress) ctx.rep.error(l7.dnsLoc, `${l7.path}.dns`, 'DNS rules are not allowed on ingress');
  if (l7?.nonEmpty && ctx.hostPolicy) ctx.rep.error(l7.loc, l7.path, 'host policies do not support L7 rules yet');

  let terminatingTLS: TLSContext | undefined;
  let originatingTLS: TLSContext | undefined;
  let serverNames: string[] = [];
  if (!ctx.deny) {
    const tf = f.map('terminatingTLS');
    if (tf) terminatingTLS = readTLS(ctx, tf);
    const of = f.map('originatingTLS');
    if (of) originatingTLS = readTLS(ctx, of);
    serverNames = f.strList('serverNames') ?? [];
    const snSeq = f.seq('serverNames');
    // CRD: minItems 1 and x-kubernetes-list-type set (no duplicates).
    if (snSeq && snSeq.items.length === 0) f.error('serverNames', 'must have at least 1 item (leave serverNames out to allow any)');
    if (serverNames.length > 0 && l7?.nonEmpty && !f.has('terminatingTLS')) {
      f.error('serverNames', 'ServerNames are not allowed with L7 rules without TLS termination');
    }
    const snItems = f.seq('serverNames')?.items ?? [];
    serverNames.forEach((sn, i) => {
      const at = snItems[i] ?? f.at('serverNames');
      const p = indexPath(f.sub('serverNames'), i);
      if (sn === '') ctx.rep.error(at, p, 'Empty server name is not allowed');
      else if (sn.length > MAX_NAME) ctx.rep.error(at, p, `must be at most ${MAX_NAME} characters`);
      else if (!/^[-a-zA-Z0-9_.*]+$/.test(sn)) ctx.rep.error(at, p, `${JSON.stringify(sn)} may only contain [-a-zA-Z0-9_.*]`);
      else if (!FQDN_PATTERN.test(sn)) ctx.rep.error(at, p, `${JSON.stringify(sn)} is not a server name pattern (empty label)`);
      else if (!sn.replace(/[.]$/, '').split('.').every((l) => SNI_LABEL.test(l))) ctx.rep.error(at, p, `${JSON.stringify(sn)} is not a server name pattern ("**" must be a whole label, "*" not repeated within one)`);
      else if (sn.endsWith('.')) ctx.rep.error(at, p, `${JSON.stringify(sn)} must not end with "."`);
      else if (serverNames.indexOf(sn) < i) ctx.rep.error(at, p, `Duplicate value: ${JSON.stringify(sn)}`);
    });
  }

  const portItems = f.maps('ports') ?? [];
  const ports: PortProtocol[] = [];
  const portsSeq = f.seq('ports');
  if (portsSeq && portsSeq.items.length > MAX_PORTS) {
    f.error('ports', `too many ports, the max is ${MAX_PORTS}`);
  }
  let zeroPort: ParsedPort | undefined;
  for (const { f: pf } of portItems) {
    const p = parsePortProtocol(ctx, pf, hasDNS);
    if (!p) continue;
    ports.push(p.pp);
    if (p.isZero && !zeroPort) zeroPort = p;
    // DNS L7 rules may be TCP, UDP or ANY; all other L7 rules are TCP only.
    if (l7?.nonEmpty && !hasDNS && p.pp.protocol !== 'TCP') {
      ctx.rep.error(p.protoLoc, p.protoPath, `L7 rules can only apply to TCP (not ${p.pp.protocol}) except for DNS rules`);
    }
  }
  if (l7?.nonEmpty) {
    if (zeroPort) ctx.rep.error(zeroPort.portLoc, `${zeroPort.path}.port`, 'L7 rules can not be used when a port is 0');
    if (hasDNS && (!portsSeq || portsSeq.items.length === 0)) {
      ctx.rep.error(l7.dnsLoc, `${l7.path}.dns`, 'Port 53 must be specified for DNS rules');
    }
  }
  if (ctx.rep.errorCount !== before) return undefined;
  return {
    ports,
    ...(l7?.rules ? { rules: l7.rules } : {}),
    ...(terminatingTLS ? { terminatingTLS } : {}),
    ...(originatingTLS ? { originatingTLS } : {}),
    serverNames,
  };
}
