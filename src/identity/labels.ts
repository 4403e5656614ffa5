/**
 * Identity label sets (CILIUM-SEMANTICS.md §6, §1.2): which labels of a Pod are
 * security-relevant, how they are written (`source:key=value`), and the lookup map
 * selectors are matched against.
 *
 * The label filter is Cilium's default one (pkg/labelsfilter/filter.go,
 * defaultLabelPrefixCfg): an ordered list of regexes matched at the start of the
 * label key; the longest include match and the shortest exclude match are compared,
 * and with no inclusive user prefixes configured a label is kept unless an exclude
 * matches more than any include. Changing this list changes which pods share an
 * identity, so it is kept byte-identical to Cilium's.
 */
import type { NamespaceDoc, PodDoc } from '../config/documents.js';
import type { Identity } from './identity.js';

/** Cilium's default label filter, in order (`source:` prefix optional, `!` = exclude). */
export const DEFAULT_LABEL_FILTER: readonly string[] = Object.freeze([
  'reserved:.*',
  'io\\.kubernetes\\.pod\\.namespace',
  'io\\.cilium\\.k8s\\.namespace\\.labels',
  'app\\.kubernetes\\.io',
  'io\\.cilium\\.k8s\\.policy\\.cluster',
  'io\\.cilium\\.k8s\\.policy\\.serviceaccount',
  '!io\\.kubernetes',
  '!kubernetes\\.io',
  '!statefulset\\.kubernetes\\.io/pod-name',
  '!apps\\.kubernetes\\.io/pod-index',
  '!batch\\.kubernetes\\.io/job-completion-index',
  '!batch\\.kubernetes\\.io/controller-uid',
  '!.*beta\\.kubernetes\\.io',
  '!k8s\\.io',
  '!pod-template-generation',
  '!pod-template-hash',
  '!controller-revision-hash',
  '!controller-uid',
  '!annotation.*',
  '!etcd_node',
  '!topology\\.kubernetes\\.io',
]);

interface FilterEntry {
  readonly source: string; // "" = any source
  readonly exclude: boolean;
  readonly re: RegExp;
}

function parseFilterEntry(entry: string): FilterEntry {
  // Cilium splits at the first colon, then strips a leading `!` from the pattern.
  const i = entry.indexOf(':');
  const source = i >= 0 && /^[a-z]+$/.test(entry.slice(0, i)) ? entry.slice(0, i) : '';
  let pattern = source ? entry.slice(i + 1) : entry;
  const exclude = pattern.startsWith('!');
  if (exclude) pattern = pattern.slice(1);
  // Go's FindStringIndex must report a match starting at 0; a leftmost-first match
  // anchored with ^ is the same match (both engines are leftmost-first here).
  return { source, exclude, re: new RegExp(`^(?:${pattern})`) };
}

const DEFAULT_FILTER = DEFAULT_LABEL_FILTER.map(parseFilterEntry);

/** Cluster name used for `k8s:io.cilium.k8s.policy.cluster` (Cilium's default). */
export const DEFAULT_CLUSTER = 'default';

/** Label keys Cilium adds to every pod identity. */
export const POD_NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';
export const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
export const SERVICE_ACCOUNT_LABEL = 'io.cilium.k8s.policy.serviceaccount';
export const CLUSTER_LABEL = 'io.cilium.k8s.policy.cluster';

/**
 * True when a label with this source and key is security-relevant under Cilium's
 * default filter (labelPrefixCfg.filterLabels with whitelist = false).
 */
export function isIdentityLabel(source: string, key: string): boolean {
  let included = 0;
  let ignored = 0;
  for (const f of DEFAULT_FILTER) {
    if (f.source !== '' && f.source !== source) continue;
    const m = f.re.exec(key);
    if (!m) continue;
    const len = m[0].length;
    if (f.exclude) {
      if (ignored === 0 || len < ignored) ignored = len;
    } else if (len > included) {
      included = len;
    }
  }
  return ignored === 0 || included > ignored;
}

/** Format one label the way Cilium prints it: `source:key=value`, `=value` omitted when empty. */
export function formatLabel(source: string, key: string, value: string): string {
  return value === '' ? `${source}:${key}` : `${source}:${key}=${value}`;
}

export interface ParsedLabel {
  readonly source: string;
  readonly key: string;
  readonly value: string;
}

/**
 * Parse `source:key=value`. The source ends at the first colon; the key ends at the
 * first `=` after it (label keys never contain `=`). A label without a source gets
 * `unspec` as Cilium's parser does.
 */
export function parseLabel(label: string): ParsedLabel {
  let source = 'unspec';
  let rest = label;
  const colon = label.indexOf(':');
  const eq = label.indexOf('=');
  if (colon > 0 && (eq < 0 || colon < eq)) {
    source = label.slice(0, colon);
    rest = label.slice(colon + 1);
  }
  const e = rest.indexOf('=');
  return e < 0 ? { source, key: rest, value: '' } : { source, key: rest.slice(0, e), value: rest.slice(e + 1) };
}

/**
 * The k8s labels of a pod's identity, before filtering: its own labels, its
 * namespace, its namespace's labels (Kubernetes always adds
 * `kubernetes.io/metadata.name`), its service account and the cluster name.
 */
function rawPodLabels(pod: PodDoc, ns: NamespaceDoc | undefined, cluster: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of Object.entries(pod.labels)) out.set(k, v);
  out.set(POD_NAMESPACE_LABEL, pod.namespace);
  const nsLabels: Record<string, string> = { ...(ns?.labels ?? {}) };
  nsLabels['kubernetes.io/metadata.name'] = pod.namespace;
  for (const [k, v] of Object.entries(nsLabels)) out.set(NAMESPACE_LABELS_PREFIX + k, v);
  out.set(SERVICE_ACCOUNT_LABEL, pod.serviceAccount);
  out.set(CLUSTER_LABEL, cluster);
  return out;
}

/**
 * The identity label set of a pod: sorted `k8s:key=value` strings after Cilium's
 * default label filter.
 */
export function podIdentityLabels(pod: PodDoc, ns: NamespaceDoc | undefined, cluster = DEFAULT_CLUSTER): string[] {
  const out: string[] = [];
  for (const [k, v] of rawPodLabels(pod, ns, cluster)) {
    if (isIdentityLabel('k8s', k)) out.push(formatLabel('k8s', k, v));
  }
  return sortLabels(out);
}

/** Sort and de-duplicate label strings (the canonical order of an identity's labels). */
export function sortLabels(labels: readonly string[]): string[] {
  return [...new Set(labels)].sort();
}

/**
 * The selector lookup of a label set: `source:key` and `any:key` both map to the
 * value, so a sourced selector requirement is one Map lookup (`any:` matches a key
 * from any source, a concrete source only itself; pkg/labels Get semantics).
 */
export function buildLookup(labels: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of labels) {
    const p = parseLabel(l);
    m.set(`${p.source}:${p.key}`, p.value);
    if (!m.has(`any:${p.key}`)) m.set(`any:${p.key}`, p.value);
  }
  return m;
}

/**
 * Build an Identity object for a number and a label set. `cidr`, `fqdnSelectors`
 * and `namespace` are derived from the labels: the single `cidr:` label, every
 * `fqdn:<key>` label, and `k8s:io.kubernetes.pod.namespace`.
 */
export function makeIdentity(id: number, labels: readonly string[]): Identity {
  const sorted = Object.freeze(sortLabels(labels));
  const lookup = buildLookup(sorted);
  let cidr: string | undefined;
  const fqdn = new Set<string>();
  for (const l of sorted) {
    const p = parseLabel(l);
    if (p.source === 'cidr' && cidr === undefined) cidr = p.key;
    else if (p.source === 'fqdn') fqdn.add(p.value === '' ? p.key : `${p.key}=${p.value}`);
  }
  const ident: Identity = {
    id,
    labels: sorted,
    lookup,
    namespace: lookup.get(`k8s:${POD_NAMESPACE_LABEL}`) ?? '',
    ...(cidr !== undefined ? { cidr } : {}),
    ...(fqdn.size > 0 ? { fqdnSelectors: fqdn } : {}),
  };
  return Object.freeze(ident);
}
