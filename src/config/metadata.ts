/**
 * Kubernetes object metadata. Policies and ProxyConfig get the strict check
 * (unknown metadata fields are errors, as ObjectMeta decoding would reject
 * them); Pods, Namespaces and Secrets are read leniently because they are
 * often pasted straight from `kubectl get -o yaml`.
 */
import { Fields } from './reader.js';

export const METADATA_FIELDS = [
  'name', 'generateName', 'namespace', 'selfLink', 'uid', 'resourceVersion', 'generation',
  'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'labels', 'annotations',
  'ownerReferences', 'finalizers', 'managedFields',
];

export interface Meta {
  readonly name: string;
  readonly namespace?: string; // as written; callers apply their default
  readonly labels: Readonly<Record<string, string>>;
}

/** RFC 1123 label, the syntax of namespace names. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Read `metadata`; reports errors and returns undefined when name is missing. */
export function readMetadata(top: Fields, opts: { strict: boolean }): Meta | undefined {
  const m = top.map('metadata', { required: true });
  if (!m) return undefined;
  if (opts.strict) m.checkKnown(METADATA_FIELDS);
  const name = m.str('name', { required: true, nonEmpty: true });
  const namespace = m.str('namespace');
  if (namespace !== undefined && namespace !== '' && (namespace.length > 63 || !DNS_LABEL.test(namespace))) {
    m.error('namespace', `${JSON.stringify(namespace)} is not a valid namespace name (RFC 1123 label)`);
  }
  const labels = m.strMap('labels') ?? {};
  if (opts.strict) m.strMap('annotations');
  if (name === undefined) return undefined;
  return { name, ...(namespace ? { namespace } : {}), labels };
}
