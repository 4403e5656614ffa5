/**
 * The configuration directory loader, `kubectl apply -f DIR` style (SPEC.md
 * "Configuration"): every *.yaml / *.yml / *.json file under DIR, recursively,
 * in sorted order; each file one or more documents, dispatched by `kind`;
 * Secrets also from `certs/<ns>/<name>/{tls.crt,tls.key,ca.crt}`.
 *
 * Every problem in every file is collected in one run and nothing here throws
 * on bad input: a user fixes all their mistakes at once, and a hot reload with a
 * broken file is refused with the full list.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ConfigIssue, SourcePos } from './issues.js';
import type { ConfigDocs, LoadResult, NamespaceDoc, PodDoc, PolicyDoc, ProxyConfigDoc, SecretDoc } from './documents.js';
import { readNamespace, readPod, readSecret } from './k8s-objects.js';
import { Fields, indexPath, Reporter } from './reader.js';
import { readProxyConfig } from './validate-proxy-config.js';
import { parseYaml, type Loc, type ParsedYaml, type YNode } from './yaml-tree.js';
import type { PolicyKind } from '../policy/api.js';
import { readPolicyDoc } from '../policy/parse/policy-doc.js';

export interface LoadOptions {
  /**
   * Directory of `<namespace>/<name>/{tls.crt,tls.key,ca.crt}` Secrets. Default:
   * a `certs` directory beside the config directory, when there is one.
   */
  readonly certsDir?: string;
  /**
   * Parses a file's text (default: `parseYaml` here). A running proxy passes a
   * worker thread's (yaml-thread.ts) so a reload does not stall its traffic.
   */
  readonly parse?: (text: string) => Promise<ParsedYaml>;
}

/** Documents are validated in slices of about this long, with the event loop let run between them. */
const SLICE_MS = 10;

const CONFIG_EXT = new Set(['.yaml', '.yml', '.json']);
const CERT_FILES = ['tls.crt', 'tls.key', 'ca.crt'];
const MAX_FILE_BYTES = 32 * 1024 * 1024;

/** kind → the apiVersion it must carry. */
const API_VERSIONS: Readonly<Record<string, string>> = {
  CiliumNetworkPolicy: 'cilium.io/v2',
  CiliumClusterwideNetworkPolicy: 'cilium.io/v2',
  NetworkPolicy: 'networking.k8s.io/v1',
  Pod: 'v1',
  Namespace: 'v1',
  Secret: 'v1',
  List: 'v1',
  ProxyConfig: 'l7warden.io/v1alpha1',
};

interface Located<T> {
  readonly doc: T;
  readonly where: string;
}

/** A reference from ProxyConfig or a policy to a Pod or Secret, checked once all documents are in. */
export interface CrossRef {
  readonly target: 'pod' | 'secret';
  readonly namespace: string;
  readonly name: string;
  readonly file: string;
  readonly at: Loc;
  readonly path: string;
  /** Missing Pods / listener Secrets are errors; a policy's missing Secret is a warning (Cilium still loads it). */
  readonly severity: 'error' | 'warning';
}

function where(p: SourcePos): string {
  return `${p.file}:${p.line}:${p.col}`;
}

function errMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code ? `${e.code}: ${e.message}` : String(err);
}

/** Every config file under `root`, relative paths sorted; hidden entries (`..data` of ConfigMap mounts) skipped. */
async function listConfigFiles(root: string, onError: (file: string, message: string) => void): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = async (rel: string): Promise<void> => {
    const abs = path.join(root, rel);
    let real: string;
    try {
      real = await fsp.realpath(abs);
    } catch (err) {
      onError(path.join(root, rel), `cannot read: ${errMessage(err)}`);
      return;
    }
    if (seen.has(real)) return; // symlink loop
    seen.add(real);
    let names: string[];
    try {
      names = await fsp.readdir(abs);
    } catch (err) {
      onError(path.join(root, rel), `cannot read directory: ${errMessage(err)}`);
      return;
    }
    names.sort();
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const childRel = rel ? path.join(rel, name) : name;
      let st;
      try {
        st = await fsp.stat(path.join(root, childRel)); // follows symlinks
      } catch (err) {
        onError(path.join(root, childRel), `cannot read: ${errMessage(err)}`);
        continue;
      }
      if (st.isDirectory()) await walk(childRel);
      else if (st.isFile() && CONFIG_EXT.has(path.extname(name).toLowerCase())) out.push(childRel);
    }
  };
  await walk('');
  return out.sort();
}

class Collector {
  readonly errors: ConfigIssue[] = [];
  readonly warnings: ConfigIssue[] = [];
  readonly policies: Located<PolicyDoc>[] = [];
  readonly pods: Located<PodDoc>[] = [];
  readonly namespaces: Located<NamespaceDoc>[] = [];
  readonly secrets: Located<SecretDoc>[] = [];
  readonly proxyConfigs: ProxyConfigDoc[] = [];
  readonly refs: CrossRef[] = [];
  documentCount = 0;
  private readonly keys = new Map<string, SourcePos>();

  reporter(file: string): Reporter {
    return new Reporter(file, this.errors, this.warnings);
  }

  /** Record an object's identity; a second object with the same identity is an error. */
  unique(rep: Reporter, at: Loc, kindLabel: string, id: string, pos: SourcePos): boolean {
    const key = `${kindLabel}\u0000${id}`;
    const first = this.keys.get(key);
    if (first) {
      rep.error(at, '', `duplicate ${kindLabel} ${id} (first defined at ${where(first)})`);
      return false;
    }
    this.keys.set(key, pos);
    return true;
  }
}

/** Dispatch one object by kind. `inherited` is the kind/apiVersion a typed List (PodList…) implies. */
function dispatch(c: Collector, rep: Reporter, node: YNode, basePath: string, inherited?: { kind: string; apiVersion: string }): void {
  const top = Fields.of(rep, node, basePath);
  if (!top) return;
  const p = (key: string) => (basePath ? `${basePath}.${key}` : key);
  const kindNode = top.node_('kind');
  let kind = top.str('kind');
  let apiVersion = top.str('apiVersion');
  if (kind === undefined && kindNode === undefined && inherited) {
    kind = inherited.kind;
    apiVersion ??= inherited.apiVersion;
  }
  if (kind === undefined) {
    if (kindNode === undefined) rep.error(top.loc, p('kind'), 'is required');
    return;
  }

  // `kubectl get pods -o yaml` prints `kind: List`; the API prints PodList etc.
  const typedList = kind.endsWith('List') && kind !== 'List' ? kind.slice(0, -'List'.length) : undefined;
  if (kind === 'List' || (typedList && API_VERSIONS[typedList])) {
    if (kind === 'List' && apiVersion !== undefined && apiVersion !== 'v1') {
      top.error('apiVersion', `apiVersion ${JSON.stringify(apiVersion)} is not supported for kind List (want "v1")`);
    }
    const items = top.seq('items');
    if (!items) {
      if (!top.has('items')) rep.warn(top.loc, p('items'), `${kind} has no items`);
      return;
    }
    const itemDefault = typedList ? { kind: typedList, apiVersion: apiVersion ?? API_VERSIONS[typedList]! } : undefined;
    items.items.forEach((it, i) => dispatch(c, rep, it, indexPath(p('items'), i), itemDefault));
    return;
  }

  c.documentCount++;
  const want = API_VERSIONS[kind];
  if (want === undefined) {
    rep.warn(top.loc, basePath, `kind ${JSON.stringify(kind)}${apiVersion ? ` (${apiVersion})` : ''} is not used by l7warden; skipped`);
    return;
  }
  if (apiVersion === undefined) {
    if (!top.has('apiVersion')) rep.error(top.loc, p('apiVersion'), `is required (want ${JSON.stringify(want)})`);
    return;
  }
  if (apiVersion !== want) {
    top.error('apiVersion', `apiVersion ${JSON.stringify(apiVersion)} is not supported for kind ${kind} (want ${JSON.stringify(want)})`);
    return;
  }

  // Objects inside a List report paths from the document root (`items[2].spec…`).
  const sf = basePath ? new Fields(rep.scoped(basePath), top.node, '') : top;
  switch (kind) {
    case 'CiliumNetworkPolicy':
    case 'CiliumClusterwideNetworkPolicy':
    case 'NetworkPolicy': {
      const doc = readPolicyDoc(sf, kind as PolicyKind);
      if (!doc) return;
      const id = doc.namespace ? `${doc.namespace}/${doc.name}` : doc.name;
      if (c.unique(rep, top.loc, kind, id, doc.pos)) {
        c.policies.push({ doc, where: where(doc.pos) });
        collectPolicySecretRefs(c, rep.file, doc, basePath);
      }
      return;
    }
    case 'Pod': {
      const doc = readPod(sf);
      if (doc && c.unique(rep, top.loc, 'Pod', `${doc.namespace}/${doc.name}`, doc.pos)) c.pods.push({ doc, where: where(doc.pos) });
      return;
    }
    case 'Namespace': {
      const doc = readNamespace(sf);
      if (doc && c.unique(rep, top.loc, 'Namespace', doc.name, doc.pos)) c.namespaces.push({ doc, where: where(doc.pos) });
      return;
    }
    case 'Secret': {
      const doc = readSecret(sf);
      if (doc && c.unique(rep, top.loc, 'Secret', `${doc.namespace}/${doc.name}`, doc.pos)) c.secrets.push({ doc, where: where(doc.pos) });
      return;
    }
    case 'ProxyConfig': {
      const doc = readProxyConfig(sf);
      if (!doc) return;
      if (c.proxyConfigs.length > 0) {
        rep.error(top.loc, '', `only one ProxyConfig is allowed (first defined at ${where(c.proxyConfigs[0]!.pos)})`);
        return;
      }
      c.proxyConfigs.push(doc);
      collectProxyConfigRefs(c, rep.file, doc, sf, basePath);
      return;
    }
  }
}

function joinPrefix(prefix: string, p: string): string {
  return prefix ? `${prefix}.${p}` : p;
}

function collectPolicySecretRefs(c: Collector, file: string, doc: PolicyDoc, prefix: string): void {
  for (const rule of doc.rules) {
    const specPath = rule.ref.specIndex === undefined ? 'spec' : `specs[${rule.ref.specIndex}]`;
    for (const section of ['ingress', 'egress'] as const) {
      rule[section].forEach((el, i) => {
        el.toPorts.forEach((pr, j) => {
          const base = joinPrefix(prefix, `${specPath}.${section}[${i}].toPorts[${j}]`);
          for (const tlsKey of ['terminatingTLS', 'originatingTLS'] as const) {
            const t = pr[tlsKey];
            if (t) c.refs.push({ target: 'secret', ...t.secret, file, at: el.pos, path: `${base}.${tlsKey}.secret`, severity: 'warning' });
          }
        });
      });
    }
  }
}

function collectProxyConfigRefs(c: Collector, file: string, doc: ProxyConfigDoc, top: Fields, prefix: string): void {
  const spec = top.map('spec');
  const items = spec?.seq('listeners')?.items ?? [];
  doc.spec.listeners.forEach((l, i) => {
    const node = items[i];
    const lf = node && node.kind === 'map' ? new Fields(top.rep, node, `spec.listeners[${i}]`) : undefined;
    const at = (key: string): Loc => lf?.at(key) ?? doc.pos;
    const p = (key: string) => joinPrefix(prefix, `spec.listeners[${i}].${key}`);
    const secret = (ref: string, key: string) => {
      const [ns, name] = ref.split('/') as [string, string];
      c.refs.push({ target: 'secret', namespace: ns, name, file, at: at(key), path: p(key), severity: 'error' });
    };
    if (l.mode === 'ingress') {
      c.refs.push({ target: 'pod', ...l.endpoint, name: l.endpoint.pod, file, at: at('endpoint'), path: p('endpoint'), severity: 'error' });
      if (l.tls) {
        secret(l.tls.secret, 'tls');
        for (const s of l.tls.sni ?? []) secret(s.secret, 'tls');
        if (l.tls.clientCA) secret(l.tls.clientCA, 'tls');
      }
      if (l.upstreamTLS?.secret) secret(l.upstreamTLS.secret, 'upstreamTLS');
    } else if (l.mode === 'egress') {
      if (l.upstreamCA) secret(l.upstreamCA, 'upstreamCA');
    } else if (l.serverEndpoint) {
      c.refs.push({ target: 'pod', namespace: l.serverEndpoint.namespace, name: l.serverEndpoint.pod, file, at: at('serverEndpoint'), path: p('serverEndpoint'), severity: 'error' });
    }
  });
}

async function loadFile(c: Collector, dir: string, rel: string, parse: LoadOptions['parse']): Promise<void> {
  const file = path.join(dir, rel);
  const rep = c.reporter(file);
  let text: string;
  try {
    const st = await fsp.stat(file);
    if (st.size > MAX_FILE_BYTES) {
      rep.error({ line: 1, col: 1 }, '', `file is larger than ${MAX_FILE_BYTES} bytes`);
      return;
    }
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    rep.error({ line: 1, col: 1 }, '', `cannot read: ${errMessage(err)}`);
    return;
  }
  let parsed: ParsedYaml;
  try {
    parsed = parse ? await parse(text) : parseYaml(text);
  } catch (err) {
    rep.error({ line: 1, col: 1 }, '', `YAML: cannot parse: ${errMessage(err)}`);
    return;
  }
  for (const e of parsed.errors) rep.error(e, '', `YAML: ${e.message}`);
  for (const w of parsed.warnings) rep.warn(w, '', `YAML: ${w.message}`);
  let slice = performance.now();
  for (const d of parsed.documents) {
    for (const pr of d.problems) rep.error(pr, '', `YAML: ${pr.message}`);
    dispatch(c, rep, d.root, '');
    if (performance.now() - slice > SLICE_MS) {
      // A file of thousands of policies: let requests run between slices of it.
      await new Promise((resolve) => setImmediate(resolve));
      slice = performance.now();
    }
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await fsp.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Secrets from `<certsDir>/<namespace>/<name>/{tls.crt,tls.key,ca.crt}`. */
async function loadCertsDir(c: Collector, certsDir: string): Promise<void> {
  const sorted = async (p: string) => (await fsp.readdir(p)).filter((n) => !n.startsWith('.')).sort();
  let namespaces: string[];
  try {
    namespaces = await sorted(certsDir);
  } catch (err) {
    c.reporter(certsDir).error({ line: 1, col: 1 }, '', `cannot read certificate directory: ${errMessage(err)}`);
    return;
  }
  for (const ns of namespaces) {
    const nsDir = path.join(certsDir, ns);
    if (!(await isDir(nsDir))) continue;
    for (const name of await sorted(nsDir).catch(() => [] as string[])) {
      const secretDir = path.join(nsDir, name);
      if (!(await isDir(secretDir))) continue;
      const rep = c.reporter(secretDir);
      const data: Record<string, Buffer> = {};
      for (const f of CERT_FILES) {
        const file = path.join(secretDir, f);
        try {
          // Only regular files of sane size: a FIFO blocked readFile (and with it this
          // load, and every reload serialized behind it) forever; /dev/zero never ends.
          const st = await fsp.stat(file);
          if (!st.isFile()) {
            c.reporter(file).error({ line: 1, col: 1 }, '', 'cannot read: not a regular file');
            continue;
          }
          if (st.size > MAX_FILE_BYTES) {
            c.reporter(file).error({ line: 1, col: 1 }, '', `file is larger than ${MAX_FILE_BYTES} bytes`);
            continue;
          }
          data[f] = await fsp.readFile(file);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
            c.reporter(file).error({ line: 1, col: 1 }, '', `cannot read: ${errMessage(err)}`);
          }
        }
      }
      if (Object.keys(data).length === 0) {
        rep.warn({ line: 1, col: 1 }, '', `no ${CERT_FILES.join(', ')} in this directory; skipped`);
        continue;
      }
      const pos: SourcePos = { file: secretDir, line: 1, col: 1 };
      if (c.unique(rep, pos, 'Secret', `${ns}/${name}`, pos)) {
        c.secrets.push({ doc: { namespace: ns, name, data, pos }, where: where(pos) });
      }
    }
  }
}

function checkRefs(c: Collector): void {
  const pods = new Set(c.pods.map((p) => `${p.doc.namespace}/${p.doc.name}`));
  const secrets = new Set(c.secrets.map((s) => `${s.doc.namespace}/${s.doc.name}`));
  for (const r of c.refs) {
    const id = `${r.namespace}/${r.name}`;
    const known = r.target === 'pod' ? pods.has(id) : secrets.has(id);
    if (known) continue;
    const rep = c.reporter(r.file);
    const msg = r.target === 'pod'
      ? `Pod ${id} is not defined by any Pod document`
      : `Secret ${id} is not defined (no Secret document and no certs/${id}/ directory)`;
    if (r.severity === 'error') rep.error(r.at, r.path, msg);
    else rep.warn(r.at, r.path, msg);
  }
}

/** Load and validate every document under `dir`. Never throws on bad input. */
export async function loadConfigDir(dir: string, opts: LoadOptions = {}): Promise<LoadResult> {
  const c = new Collector();
  if (!(await isDir(dir))) {
    c.reporter(dir).error({ line: 1, col: 1 }, '', 'config directory does not exist or is not a directory');
  } else {
    const files = await listConfigFiles(dir, (file, message) => c.reporter(file).error({ line: 1, col: 1 }, '', message));
    for (const rel of files) await loadFile(c, dir, rel, opts.parse);
  }
  if (opts.certsDir !== undefined) {
    await loadCertsDir(c, opts.certsDir);
  } else {
    const sibling = path.join(dir, '..', 'certs');
    if (await isDir(sibling)) await loadCertsDir(c, sibling);
  }
  checkRefs(c);
  const docs: ConfigDocs = {
    dir,
    documentCount: c.documentCount,
    policies: c.policies.map((p) => p.doc),
    pods: c.pods.map((p) => p.doc),
    namespaces: c.namespaces.map((n) => n.doc),
    secrets: c.secrets.map((s) => s.doc),
    ...(c.proxyConfigs[0] ? { proxyConfig: c.proxyConfigs[0] } : {}),
  };
  return { docs, errors: c.errors, warnings: c.warnings };
}
