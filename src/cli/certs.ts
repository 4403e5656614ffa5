/**
 * `l7warden certs`: a small CA and leaf certificates for tests and demos.
 *
 *   l7warden certs [--out DIR] [--ca-name NAME] --name NS/NAME
 *                  [--dns NAME]... [--ip ADDR]... [--client URI]... [--days N]
 *
 * Creates (or reuses) a CA in DIR/ca/{ca.crt,ca.key} and writes the leaf into
 * DIR/<ns>/<name>/{tls.crt,tls.key,ca.crt}: the layout the config loader reads as
 * a Secret `ns/name`. DIR defaults to `certs`.
 *
 * Keys come from node's crypto (RSA 2048, native and fast); node-forge only builds
 * and signs the X.509 structure, which node cannot do (NODE-NOTES.md §1.4; forge's
 * X.509 code is RSA-only, hence RSA). Private keys are written with mode 0600.
 *
 * `makeCA()` / `makeLeaf()` are the programmatic API tests use to generate
 * certificates into temp dirs.
 */
import { generateKeyPairSync, randomBytes, X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, renameSync, chmodSync, existsSync, unlinkSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { WardenError } from '../core/errors.js';
import { parse, EXIT, processIo, type Io } from './args.js';

const { pki } = forge;

export interface KeyPair {
  /** PEM, SPKI. */
  readonly publicKeyPem: string;
  /** PEM, PKCS#8. */
  readonly privateKeyPem: string;
}

export interface CertificateAuthority {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface Leaf {
  readonly certPem: string;
  readonly keyPem: string;
  /** The issuing CA's certificate (what `ca.crt` holds). */
  readonly caPem: string;
}

export interface MakeCAOptions {
  readonly commonName?: string;
  readonly days?: number;
  /** Reuse a key (tests pre-generate keys: RSA keygen is the slow part). */
  readonly keys?: KeyPair;
}

export interface MakeLeafOptions {
  readonly commonName?: string;
  readonly dns?: readonly string[];
  readonly ips?: readonly string[];
  /** URI SANs, e.g. a SPIFFE ID; marks the certificate usable for client auth. */
  readonly uris?: readonly string[];
  /** Validity window; defaults to [now - 1 h, now + days]. */
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly days?: number;
  readonly keys?: KeyPair;
}

export function generateKeys(): KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { publicKeyPem: publicKey, privateKeyPem: privateKey };
}

/** 16 random bytes, top bit cleared so the DER INTEGER stays positive. */
function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

function validity(cert: forge.pki.Certificate, days: number, notBefore?: Date, notAfter?: Date): void {
  // Back-date by an hour so a little clock skew between processes does not matter.
  const from = notBefore ?? new Date(Date.now() - 3600_000);
  cert.validity.notBefore = from;
  cert.validity.notAfter = notAfter ?? new Date(from.getTime() + 3600_000 + days * 86400_000);
}

export function makeCA(opts: MakeCAOptions = {}): CertificateAuthority {
  const keys = opts.keys ?? generateKeys();
  const cert = pki.createCertificate();
  cert.publicKey = pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = serialNumber();
  validity(cert, opts.days ?? 3650);
  const subject = [{ name: 'commonName', value: opts.commonName ?? 'l7warden test CA' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(pki.privateKeyFromPem(keys.privateKeyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return { certPem: pki.certificateToPem(cert), keyPem: keys.privateKeyPem };
}

export function makeLeaf(ca: CertificateAuthority, opts: MakeLeafOptions): Leaf {
  const dns = opts.dns ?? [];
  const ips = opts.ips ?? [];
  const uris = opts.uris ?? [];
  if (dns.length + ips.length + uris.length === 0) {
    throw new WardenError('L7W_ERR_USAGE', 'a leaf certificate needs at least one DNS name, IP address or URI');
  }
  for (const ip of ips) {
    if (isIP(ip) === 0) throw new WardenError('L7W_ERR_USAGE', `not an IP address: ${JSON.stringify(ip)}`);
  }
  for (const uri of uris) {
    if (!URL.canParse(uri)) throw new WardenError('L7W_ERR_USAGE', `not a URI: ${JSON.stringify(uri)}`);
  }
  const keys = opts.keys ?? generateKeys();
  const caCert = pki.certificateFromPem(ca.certPem);
  const cert = pki.createCertificate();
  cert.publicKey = pki.publicKeyFromPem(keys.publicKeyPem);
  cert.serialNumber = serialNumber();
  validity(cert, opts.days ?? 825, opts.notBefore, opts.notAfter);
  cert.setSubject([{ name: 'commonName', value: opts.commonName ?? dns[0] ?? uris[0] ?? ips[0] ?? 'leaf' }]);
  cert.setIssuer(caCert.subject.attributes);
  const server = dns.length + ips.length > 0;
  const client = uris.length > 0;
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: server, clientAuth: client },
    {
      name: 'subjectAltName',
      altNames: [
        ...dns.map((value) => ({ type: 2, value })),
        ...ips.map((ip) => ({ type: 7, ip })),
        ...uris.map((value) => ({ type: 6, value })),
      ],
    },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return { certPem: pki.certificateToPem(cert), keyPem: keys.privateKeyPem, caPem: ca.certPem };
}

/**
 * Write through a temp file and rename, so a reader (the loader, a file watcher)
 * never sees half a file; the temp file is created with the final mode, so a key
 * is never readable by others even for an instant.
 */
function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, data, { mode, flag: 'wx' });
    chmodSync(tmp, mode); // the umask may have narrowed or the mode option been ignored
    renameSync(tmp, path);
  } catch (err) {
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw err;
  }
}

/** Load DIR/ca/ if both files are there and belong together, else create it. */
export function ensureCA(dir: string, commonName?: string): { ca: CertificateAuthority; created: boolean } {
  const caDir = join(dir, 'ca');
  const crtPath = join(caDir, 'ca.crt');
  const keyPath = join(caDir, 'ca.key');
  if (existsSync(crtPath) || existsSync(keyPath)) {
    let ca: CertificateAuthority;
    try {
      ca = { certPem: readFileSync(crtPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') };
      const x509 = new X509Certificate(ca.certPem);
      if (!x509.ca) throw new Error('ca.crt is not a CA certificate');
      if (!x509.checkPrivateKey(createPrivateKey(ca.keyPem))) throw new Error('ca.key does not match ca.crt');
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new WardenError('L7W_ERR_TLS', `existing CA in ${caDir} is unusable: ${reason}`, { cause: err });
    }
    return { ca, created: false };
  }
  const ca = makeCA(commonName === undefined ? {} : { commonName });
  mkdirSync(caDir, { recursive: true, mode: 0o700 });
  writeAtomic(keyPath, ca.keyPem, 0o600);
  writeAtomic(crtPath, ca.certPem, 0o644);
  return { ca, created: true };
}

/** Write a leaf as the Secret directory DIR/<ns>/<name>/. Returns that directory. */
export function writeLeaf(dir: string, namespace: string, name: string, leaf: Leaf): string {
  const out = join(dir, namespace, name);
  mkdirSync(out, { recursive: true });
  writeAtomic(join(out, 'tls.key'), leaf.keyPem, 0o600);
  writeAtomic(join(out, 'tls.crt'), leaf.certPem, 0o644);
  writeAtomic(join(out, 'ca.crt'), leaf.caPem, 0o644);
  return out;
}

// Kubernetes object names: a DNS-1123 label for namespaces, a subdomain for Secrets.
const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function parseSecretName(s: string): { namespace: string; name: string } {
  const parts = s.split('/');
  const [namespace, name] = parts;
  if (parts.length !== 2 || !namespace || !name || !NAMESPACE_RE.test(namespace) || !NAME_RE.test(name)) {
    throw new WardenError('L7W_ERR_USAGE', `--name must be <namespace>/<name> (lowercase DNS names), got ${JSON.stringify(s)}`);
  }
  return { namespace, name };
}

export async function runCerts(argv: readonly string[], io: Io = processIo): Promise<number> {
  const { values } = parse(argv, {
    out: { type: 'string', default: 'certs' },
    'ca-name': { type: 'string' },
    name: { type: 'string' },
    dns: { type: 'string', multiple: true },
    ip: { type: 'string', multiple: true },
    client: { type: 'string', multiple: true },
    days: { type: 'string' },
  });
  if (typeof values.name !== 'string') throw new WardenError('L7W_ERR_USAGE', '--name <namespace>/<name> is required');
  const { namespace, name } = parseSecretName(values.name);
  const out = typeof values.out === 'string' ? values.out : 'certs';
  if (out === '') throw new WardenError('L7W_ERR_USAGE', '--out must not be empty');
  let days: number | undefined;
  if (typeof values.days === 'string') {
    if (!/^[1-9][0-9]{0,4}$/.test(values.days)) throw new WardenError('L7W_ERR_USAGE', `--days must be a positive integer, got ${JSON.stringify(values.days)}`);
    days = Number(values.days);
  }
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  const uris = strings(values.client);
  for (const u of uris) {
    if (!u.startsWith('spiffe://') && !URL.canParse(u)) throw new WardenError('L7W_ERR_USAGE', `--client must be a URI, got ${JSON.stringify(u)}`);
  }
  const caName = typeof values['ca-name'] === 'string' ? values['ca-name'] : undefined;
  const { ca, created } = ensureCA(out, caName);
  const leaf = makeLeaf(ca, {
    commonName: name,
    dns: strings(values.dns),
    ips: strings(values.ip),
    uris,
    ...(days === undefined ? {} : { days }),
  });
  const dir = writeLeaf(out, namespace, name, leaf);
  io.out(`${created ? 'created' : 'reused'} CA ${join(out, 'ca', 'ca.crt')}`);
  io.out(`wrote ${join(dir, 'tls.crt')}, ${join(dir, 'tls.key')} (0600), ${join(dir, 'ca.crt')}  (Secret ${namespace}/${name})`);
  return EXIT.ok;
}
