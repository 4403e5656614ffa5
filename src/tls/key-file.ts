/**
 * Private key files must not be readable by group or others (SECURITY.md §5):
 * a key that anyone on the host can read is a key an attacker already has. The
 * config loader calls this for certs/<ns>/<name>/tls.key before reading it.
 */
import { statSync } from 'node:fs';
import { WardenError } from '../core/errors.js';

/**
 * Throws WardenError L7W_ERR_TLS if `path` is not a regular file or has any
 * group/other permission bit set (accepts 0600 and 0400). `label` names the Secret
 * in the message. Skipped on Windows, where mode bits do not describe access.
 */
export function assertPrivateKeyFileMode(path: string, label = path, platform: NodeJS.Platform = process.platform): void {
  if (platform === 'win32') return;
  let st;
  try { st = statSync(path); } catch (err) {
    throw new WardenError('L7W_ERR_TLS', `${label}: cannot read key file (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  if (!st.isFile()) throw new WardenError('L7W_ERR_TLS', `${label}: key file is not a regular file`);
  const mode = st.mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new WardenError('L7W_ERR_TLS', `${label}: key file mode ${mode.toString(8).padStart(4, '0')} is readable by group/others; chmod 600 it`);
  }
}
