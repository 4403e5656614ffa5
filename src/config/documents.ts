/**
 * What the config directory loader hands to the rest of the program: every
 * document, validated and typed, with where it came from. Produced by
 * `loadConfigDir` (config/load.ts), consumed by the policy compiler, the
 * identity registry, the certificate store and the listeners.
 */
import type { SourcePos, ConfigIssue } from './issues.js';
import type { PolicyKind, Rule } from '../policy/api.js';
import type { ProxyConfigSpec } from './proxy-config.js';

export interface PolicyDoc {
  readonly kind: PolicyKind;
  readonly name: string;
  readonly namespace: string; // "" for CiliumClusterwideNetworkPolicy
  readonly rules: readonly Rule[];
  readonly pos: SourcePos;
}

export interface ContainerPort {
  readonly name?: string; // lowercased
  readonly port: number;
  readonly protocol: 'TCP' | 'UDP' | 'SCTP';
}

export interface PodDoc {
  readonly name: string;
  readonly namespace: string; // default "default"
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount: string; // default "default"
  readonly ips: readonly string[]; // status.podIP + status.podIPs, normalized
  readonly hostNetwork: boolean;
  readonly containerPorts: readonly ContainerPort[];
  readonly pos: SourcePos;
}

export interface NamespaceDoc {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly pos: SourcePos;
}

export interface SecretDoc {
  readonly namespace: string;
  readonly name: string;
  /** `data` (base64-decoded) merged with `stringData`; keys such as tls.crt, tls.key, ca.crt. */
  readonly data: Readonly<Record<string, Buffer>>;
  readonly pos: SourcePos;
}

export interface ProxyConfigDoc {
  readonly name: string;
  readonly spec: ProxyConfigSpec; // defaults applied
  readonly pos: SourcePos;
}

export interface ConfigDocs {
  readonly dir: string;
  readonly documentCount: number;
  readonly policies: readonly PolicyDoc[];
  readonly pods: readonly PodDoc[];
  readonly namespaces: readonly NamespaceDoc[];
  readonly secrets: readonly SecretDoc[];       // from documents and from certs/<ns>/<name>/ files
  readonly proxyConfig?: ProxyConfigDoc;        // at most one (two is an error)
}

export interface LoadResult {
  readonly docs: ConfigDocs;
  readonly errors: readonly ConfigIssue[];   // non-empty means the config is invalid
  readonly warnings: readonly ConfigIssue[]; // e.g. unknown kinds, skipped
}
