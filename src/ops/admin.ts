/**
 * Admin-address pieces of hot reload: `POST /reload` and the /readyz body.
 *
 * /readyz stays 200 while a refused change leaves the previous policy in force
 * (Envoy keeps serving its last accepted configuration; a 503 would take every
 * replica out of service for a bad push while they enforce a valid policy). The
 * body names the refusal: `ready` then the error lines.
 */
import type * as http from 'node:http';
import type { ReloadReport } from './reload.js';

/** Extra /readyz lines: the last refused reload, while it is the latest word. */
export function readinessDetail(lastError: ReloadReport | undefined, version: number): string | undefined {
  if (!lastError) return undefined;
  return (
    `last reload refused (${lastError.trigger} at ${lastError.at.toISOString()}); policy version ${version} stays in force:\n` +
    lastError.errors.map((e) => `  ${e}\n`).join('')
  );
}

/** The body POST /reload answers with. */
export function reloadBody(r: ReloadReport): string {
  return r.ok
    ? `reloaded: policy version ${r.version}\n`
    : `refused: policy version ${r.version} stays in force\n${r.errors.map((e) => `${e}\n`).join('')}`;
}

/** POST /reload: 200 when the new configuration is in force, 422 when refused. */
export function reloadRoute(reload: (trigger: string) => Promise<ReloadReport>) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const send = (code: number, body: string, extra: Record<string, string> = {}) => {
      if (res.destroyed) return;
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...extra });
      res.end(body);
    };
    if (req.method !== 'POST') return send(405, 'POST only\n', { allow: 'POST' });
    req.resume();
    reload('POST /reload').then(
      (r) => send(r.ok ? 200 : 422, reloadBody(r)),
      (e: unknown) => send(500, `reload failed: ${e instanceof Error ? e.message : String(e)}\n`),
    );
  };
}
