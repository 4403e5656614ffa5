/**
 * The admin address: `/healthz` (200 while the process runs) and `/readyz` (200 only
 * once every listener is bound and a policy snapshot is active; otherwise 503 with
 * the reason in the body). More endpoints (/metrics, /flows, /policy) come with the
 * observability work; `routes` lets them be added without touching this file.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReadinessSource {
  /** undefined when ready, else why not (one line). */
  notReadyReason(): string | undefined;
  /**
   * Extra lines for /readyz's body whatever the status, e.g. the last refused
   * reload's errors while the previous policy stays in force (docs/operations.md).
   */
  detail?(): string | undefined;
}

export type AdminRoute = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export class AdminServer {
  readonly #server: http.Server;
  readonly routes = new Map<string, AdminRoute>();
  /**
   * Paths whose route takes another method than GET/HEAD and checks it itself. Every
   * other known path answers anything but GET/HEAD with 405: a POST to /flows or
   * /metrics is a client's mistake and used to read like a success (200).
   */
  readonly ownMethods = new Set<string>(['/reload']);

  constructor(private readonly readiness: ReadinessSource) {
    this.#server = http.createServer((req, res) => this.#handle(req, res));
    this.#server.on('clientError', (_e, socket) => socket.destroy());
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    const send = (code: number, body: string) => {
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    try {
      const method = req.method ?? 'GET';
      if (method !== 'GET' && method !== 'HEAD' && !this.ownMethods.has(path) && (path === '/healthz' || path === '/readyz' || this.routes.has(path))) {
        res.setHeader('allow', 'GET, HEAD');
        return send(405, 'GET only\n');
      }
      if (path === '/healthz') return send(200, 'ok\n');
      if (path === '/readyz') {
        const why = this.readiness.notReadyReason();
        const more = this.readiness.detail?.() ?? '';
        return why === undefined ? send(200, `ready\n${more}`) : send(503, `not ready: ${why}\n${more}`);
      }
      const route = this.routes.get(path);
      if (route) return route(req, res);
      send(404, 'not found\n');
    } catch {
      if (!res.headersSent) send(500, 'internal error\n');
      else res.destroy();
    }
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
