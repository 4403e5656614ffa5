/**
 * Label selectors: read a Kubernetes LabelSelector, give every key a label
 * source (Cilium's `labels.GetExtendedKeyFrom`), and apply the namespace rules
 * of `ParseToCiliumRule` (pkg/k8s/apis/cilium.io/utils/utils.go,
 * CILIUM-SEMANTICS.md §1.3).
 */
import { Fields, indexPath, joinPath } from '../../config/reader.js';
import type { YNode } from '../../config/yaml-tree.js';
import type { LabelSelector, SelectorOperator, SelectorRequirement } from '../api.js';

export const POD_NAMESPACE_KEY = 'io.kubernetes.pod.namespace';
export const K8S_POD_NAMESPACE = `k8s:${POD_NAMESPACE_KEY}`;
export const ANY_POD_NAMESPACE = `any:${POD_NAMESPACE_KEY}`;
export const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
const OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];
// The CRD's MatchLabelsValue (and Kubernetes' IsValidLabelValue): what the API server
// admits as a matchLabels value; keys are not constrained by Cilium's schema.
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_VALUE_MAX = 63;

/**
 * `labels.GetExtendedKeyFrom`: `$host` → `reserved:host`, `reserved.x` →
 * `reserved:x`, `src:key` kept, a key without a source → `any:key`.
 */
export function sourcedKey(key: string): string {
  if (key.startsWith('$')) return `reserved:${key.slice(1)}`;
  const i = key.indexOf(':');
  if (i < 0) {
    if (key.startsWith('reserved.')) return `reserved:${key.slice('reserved.'.length)}`;
    return `any:${key}`;
  }
  const src = key.slice(0, i);
  return `${src === '' ? 'any' : src}:${key.slice(i + 1)}`;
}

/** A selector as written, requirements keyed as written (no sources added yet). */
export interface RawSelector {
  readonly matchLabels: readonly { key: string; value: string }[];
  readonly matchExpressions: readonly SelectorRequirement[];
  readonly text: string;
}

/** metav1.FormatLabelSelector-style text: `a=b,c in (x,y),!d`. */
function formatText(ml: readonly { key: string; value: string }[], me: readonly SelectorRequirement[]): string {
  const parts = ml.map((l) => `${l.key}=${l.value}`);
  for (const r of me) {
    switch (r.operator) {
      case 'In': parts.push(`${r.key} in (${r.values.join(',')})`); break;
      case 'NotIn': parts.push(`${r.key} notin (${r.values.join(',')})`); break;
      case 'Exists': parts.push(r.key); break;
      case 'DoesNotExist': parts.push(`!${r.key}`); break;
    }
  }
  return parts.length ? parts.join(',') : '{}';
}

/** Read a LabelSelector at `path`; reports errors and returns undefined if unusable. */
export function readSelector(f: Fields): RawSelector | undefined {
  const before = f.rep.errorCount;
  f.checkKnown(['matchLabels', 'matchExpressions']);
  const ml: { key: string; value: string }[] = [];
  const labels = f.strMap('matchLabels');
  if (labels) {
    for (const [key, value] of Object.entries(labels)) {
      if (key === '') f.rep.error(f.at('matchLabels'), f.sub('matchLabels'), 'label keys must not be empty');
      else if (value.length > LABEL_VALUE_MAX || !LABEL_VALUE.test(value)) {
        const at = f.map('matchLabels')?.node_(key) ?? f.at('matchLabels');
        f.rep.error(at, joinPath(f.sub('matchLabels'), key), value.length > LABEL_VALUE_MAX
          ? `label value must be at most ${LABEL_VALUE_MAX} characters`
          : `${JSON.stringify(value)} is not a valid label value (alphanumerics, '-', '_' or '.', beginning and ending with an alphanumeric)`);
      } else ml.push({ key, value });
    }
  }
  const me: SelectorRequirement[] = [];
  for (const { f: e } of f.maps('matchExpressions') ?? []) {
    e.checkKnown(['key', 'operator', 'values']);
    const key = e.str('key', { required: true, nonEmpty: true });
    const op = e.str('operator', { required: true });
    const values = e.strList('values') ?? [];
    if (op !== undefined && !(OPERATORS as readonly string[]).includes(op)) {
      e.error('operator', `must be one of "In", "NotIn", "Exists", "DoesNotExist", not ${JSON.stringify(op)}`);
      continue;
    }
    if ((op === 'In' || op === 'NotIn') && values.length === 0) {
      e.rep.error(e.at('values'), e.sub('values'), `must be specified when \`operator\` is 'In' or 'NotIn'`);
      continue;
    }
    if ((op === 'Exists' || op === 'DoesNotExist') && values.length > 0) {
      e.rep.error(e.at('values'), e.sub('values'), `may not be specified when \`operator\` is 'Exists' or 'DoesNotExist'`);
      continue;
    }
    if (key === undefined || op === undefined) continue;
    me.push({ key, operator: op as SelectorOperator, values });
  }
  if (f.rep.errorCount !== before) return undefined;
  return { matchLabels: ml, matchExpressions: me, text: formatText(ml, me) };
}

/** Read a selector node (which must be a map). */
export function readSelectorNode(f: Fields | undefined): RawSelector | undefined {
  return f ? readSelector(f) : undefined;
}

/** Read a list of selectors; `undefined` when absent, `[]` when written empty. */
export function readSelectorList(parent: Fields, key: string): RawSelector[] | undefined {
  const items = parent.seq(key);
  if (!items) return undefined;
  const out: RawSelector[] = [];
  items.items.forEach((it: YNode, i) => {
    const f = Fields.of(parent.rep, it, indexPath(parent.sub(key), i));
    const s = readSelectorNode(f);
    if (s) out.push(s);
  });
  return out;
}

/** Selector with every key sourced; `prefix` forces a source (NetworkPolicy uses `k8s:`). */
export function sanitizeSelector(raw: RawSelector, forceSource?: string): SelectorRequirement[] {
  const key = (k: string) => (forceSource ? `${forceSource}:${k}` : sourcedKey(k));
  return [
    ...raw.matchLabels.map((l): SelectorRequirement => ({ key: key(l.key), operator: 'In', values: [l.value] })),
    ...raw.matchExpressions.map((r): SelectorRequirement => ({ key: key(r.key), operator: r.operator, values: r.values })),
  ];
}

export function hasKey(reqs: readonly SelectorRequirement[], key: string): boolean {
  return reqs.some((r) => r.key === key);
}

export function hasKeyPrefix(reqs: readonly SelectorRequirement[], prefix: string): boolean {
  return reqs.some((r) => r.key.startsWith(prefix));
}

export function selector(requirements: readonly SelectorRequirement[], text: string): LabelSelector {
  return { requirements, text };
}

/**
 * Peer selector (fromEndpoints / toEndpoints) of a CNP (`namespace` set) or a
 * CCNP (`namespace` ""), as `getEndpointSelector` builds it.
 */
export function peerSelector(raw: RawSelector, namespace: string, subjectMatchesInit: boolean): LabelSelector {
  const reqs = sanitizeSelector(raw);
  // The k8s namespace must not be added to selectors of reserved identities.
  if (hasKeyPrefix(reqs, 'reserved:')) return selector(reqs, raw.text);
  if (!hasKey(reqs, K8S_POD_NAMESPACE) && !hasKey(reqs, ANY_POD_NAMESPACE)) {
    if (namespace === '') {
      // Cluster-wide: only Cilium-managed pods (those with a namespace label), except
      // for rules about initializing pods, which have no labels at all yet.
      if (!subjectMatchesInit) reqs.push({ key: K8S_POD_NAMESPACE, operator: 'Exists', values: [] });
    } else if (
      !hasKeyPrefix(reqs, `k8s:${NAMESPACE_LABELS_PREFIX}`) &&
      !hasKeyPrefix(reqs, `any:${NAMESPACE_LABELS_PREFIX}`)
    ) {
      reqs.push({ key: K8S_POD_NAMESPACE, operator: 'In', values: [namespace] });
    }
  }
  return selector(reqs, raw.text);
}
