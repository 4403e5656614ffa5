/**
 * One Cilium rule (a CNP/CCNP `spec` or `specs[i]`) into the sanitized `Rule`
 * model: `Rule.Sanitize` (pkg/policy/api/rule_validation.go) for validation,
 * `ParseToCiliumRule` (pkg/k8s/apis/cilium.io/utils/utils.go) for namespaces.
 */
import { Fields, indexPath } from '../../config/reader.js';
import type { PeerRule, PolicyKind, Rule, RuleSection, SelectorRequirement } from '../api.js';
import { readPeerRule, type SectionContext } from './peers.js';
import {
  ANY_POD_NAMESPACE,
  hasKey,
  K8S_POD_NAMESPACE,
  readSelector,
  sanitizeSelector,
  selector,
} from './selector.js';

export interface RuleContext {
  readonly kind: PolicyKind;
  readonly name: string;
  /** Policy namespace; "" for CiliumClusterwideNetworkPolicy. */
  readonly namespace: string;
}

const RULE_FIELDS = [
  'endpointSelector', 'nodeSelector', 'ingress', 'ingressDeny', 'egress', 'egressDeny',
  'labels', 'enableDefaultDeny', 'description', 'log',
];
const SECTIONS: readonly RuleSection[] = ['ingress', 'ingressDeny', 'egress', 'egressDeny'];

/** Subject selector of a CNP: always pinned to the policy's namespace. */
function pinSubject(f: Fields, reqs: SelectorRequirement[], namespace: string): SelectorRequirement[] {
  const out: SelectorRequirement[] = [];
  for (const r of reqs) {
    const nsKey = r.key === K8S_POD_NAMESPACE || r.key === ANY_POD_NAMESPACE;
    if (nsKey && r.operator === 'In' && (r.values.length !== 1 || r.values[0] !== namespace)) {
      f.rep.warn(f.loc, f.path, `namespace match ${r.key.slice(r.key.indexOf(':') + 1)} in (${r.values.join(',')}) removed: `
        + `the endpointSelector of a CiliumNetworkPolicy always applies in the policy's namespace "${namespace}"`);
      continue;
    }
    if (nsKey && r.operator === 'In') continue; // same namespace: replaced by the pinned requirement below
    out.push(r);
  }
  out.push({ key: K8S_POD_NAMESPACE, operator: 'In', values: [namespace] });
  return out;
}

/** Parse one rule; `specIndex` is set for `specs[i]`. */
export function readRule(ctx: RuleContext, f: Fields, specIndex: number | undefined): Rule | undefined {
  const before = f.rep.errorCount;
  f.checkKnown(RULE_FIELDS);
  const clusterwide = ctx.namespace === '';

  const esNode = f.map('endpointSelector');
  const nsNode = f.map('nodeSelector');
  if (!f.has('endpointSelector') && !f.has('nodeSelector')) {
    f.rep.error(f.loc, f.path, 'rule must have one of EndpointSelector or NodeSelector');
  } else if (f.has('endpointSelector') && f.has('nodeSelector')) {
    f.rep.error(f.at('nodeSelector'), f.sub('nodeSelector'), 'rule cannot have both EndpointSelector and NodeSelector');
  }
  if (!clusterwide && f.has('nodeSelector')) {
    f.rep.error(f.at('nodeSelector'), f.sub('nodeSelector'), 'nodeSelector is only allowed in a CiliumClusterwideNetworkPolicy');
  }

  const rawSubject = esNode ? readSelector(esNode) : undefined;
  const rawNode = nsNode ? readSelector(nsNode) : undefined;
  let endpointSelector;
  let subjectMatchesInit = false;
  if (rawSubject && esNode) {
    let reqs = sanitizeSelector(rawSubject);
    subjectMatchesInit = hasKey(reqs, 'reserved:init');
    if (!clusterwide) reqs = pinSubject(esNode, reqs, ctx.namespace);
    endpointSelector = selector(reqs, rawSubject.text);
  }
  const nodeSelector = rawNode ? selector(sanitizeSelector(rawNode), rawNode.text) : undefined;

  const sctx: SectionContext = {
    namespace: ctx.namespace,
    subjectMatchesInit,
    hostPolicy: f.has('nodeSelector'),
    secretNamespace: clusterwide ? 'default' : ctx.namespace,
  };
  const sections: Record<RuleSection, PeerRule[]> = { ingress: [], ingressDeny: [], egress: [], egressDeny: [] };
  let entries = 0;
  for (const section of SECTIONS) {
    const items = f.maps(section);
    if (!items) continue;
    entries += items.length;
    for (const { f: ef } of items) {
      const pr = readPeerRule(sctx, section, ef);
      if (pr) sections[section].push(pr);
    }
  }
  if (entries === 0 && (f.has('endpointSelector') || f.has('nodeSelector'))) {
    f.rep.error(f.loc, f.path, 'rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny');
  }

  const enableDefaultDeny: { ingress?: boolean; egress?: boolean } = {};
  const dd = f.map('enableDefaultDeny');
  if (dd) {
    dd.checkKnown(['ingress', 'egress']);
    const i = dd.bool('ingress');
    const e = dd.bool('egress');
    if (i !== undefined) enableDefaultDeny.ingress = i;
    if (e !== undefined) enableDefaultDeny.egress = e;
  }
  const description = f.str('description');

  for (const { f: lf } of f.maps('labels') ?? []) {
    lf.checkKnown(['key', 'value', 'source']);
    lf.str('key', { required: true, nonEmpty: true });
    lf.str('value');
    lf.str('source');
  }
  const log = f.map('log');
  let logValue: string | undefined;
  if (log) {
    log.checkKnown(['value']);
    const v = log.str('value');
    // CRD: maxLength 32 (characters, not UTF-16 units) and pattern ^\PC*$ (no control,
    // format or unassigned characters); printable non-ASCII text is admitted.
    if (v !== undefined && ([...v].length > 32 || !/^\P{C}*$/u.test(v))) {
      log.error('value', 'must be at most 32 printable characters');
    }
    // An empty value logs nothing (pkg/policy/origin.go: Logs() of "" is nil).
    if (v) logValue = v;
  }

  if (f.rep.errorCount !== before) return undefined;
  return {
    ref: {
      kind: ctx.kind,
      namespace: ctx.namespace,
      name: ctx.name,
      ...(specIndex !== undefined ? { specIndex } : {}),
    },
    ...(endpointSelector ? { endpointSelector } : {}),
    ...(nodeSelector ? { nodeSelector } : {}),
    ingress: sections.ingress,
    ingressDeny: sections.ingressDeny,
    egress: sections.egress,
    egressDeny: sections.egressDeny,
    enableDefaultDeny,
    ...(description !== undefined ? { description } : {}),
    ...(logValue !== undefined ? { log: logValue } : {}),
    pos: f.rep.pos(f.loc),
  };
}

/** Read `spec` and `specs` of a CNP/CCNP object (Cilium keeps `spec` first, then `specs`). */
export function readCiliumPolicyRules(ctx: RuleContext, top: Fields): Rule[] | undefined {
  const before = top.rep.errorCount;
  const rules: Rule[] = [];
  const spec = top.map('spec');
  const specsSeq = top.seq('specs');
  if (!top.has('spec') && !top.has('specs')) {
    top.rep.error(top.loc, '', `Invalid ${ctx.kind} spec(s): empty policy`);
    return undefined;
  }
  if (spec) {
    const r = readRule(ctx, spec, undefined);
    if (r) rules.push(r);
  }
  if (specsSeq) {
    specsSeq.items.forEach((it, i) => {
      const f = Fields.of(top.rep, it, indexPath('specs', i));
      if (!f) return;
      const r = readRule(ctx, f, i);
      if (r) rules.push(r);
    });
  }
  return top.rep.errorCount === before ? rules : undefined;
}
