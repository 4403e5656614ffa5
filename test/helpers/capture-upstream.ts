/**
 * A capture upstream: records every request it receives (method, url, headers,
 * raw headers, body) so tests can assert that denied requests never arrived and
 * that allowed ones arrived exactly as matched. HTTP/1.1 (`node:http`) or HTTP/2
 * cleartext (`node:http2`, core API, with response trailers). Answers 200 with
 * `upstream:<METHOD> <url>` unless a route handler says otherwise.
 */
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

export interface Captured {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly rawHeaders: string[];
  body: Buffer;
  readonly httpVersion: string;
}

export type Route = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => boolean;

export interface CaptureUpstream {
  readonly port: number;
  readonly url: string;
  readonly requests: Captured[];
  /** Handlers tried in order; return true when handled. */
  readonly routes: Route[];
  readonly server: http.Server | http2.Http2Server;
  close(): Promise<void>;
}

export async function startCaptureUpstream(host = '127.0.0.1'): Promise<CaptureUpstream> {
  const requests: Captured[] = [];
  const routes: Route[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    const c: Captured = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: { ...req.headers },
      rawHeaders: [...req.rawHeaders],
      body: Buffer.alloc(0),
      httpVersion: req.httpVersion,
    };
    requests.push(c);
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      c.body = Buffer.concat(chunks);
      for (const r of routes) if (r(req, res, c.body)) return;
      const body = `upstream:${c.method} ${c.url}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'x-upstream': 'capture' });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    req.on('error', () => {});
  });
  server.keepAliveTimeout = 30_000;
  // Upgraded sockets leave the server's own bookkeeping: track every socket to close it.
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://${host}:${port}`,
    requests,
    routes,
    server,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export interface CaptureH2 {
  readonly port: number;
  readonly url: string;
  readonly requests: Captured[];
  close(): Promise<void>;
}

/** HTTP/2 cleartext capture upstream; answers with a body and a custom trailer. */
export async function startCaptureH2(host = '127.0.0.1'): Promise<CaptureH2> {
  const requests: Captured[] = [];
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
    stream.on('error', () => {});
    const c: Captured = {
      method: String(headers[':method']),
      url: String(headers[':path']),
      headers: { ...headers } as Record<string, string>,
      rawHeaders: [...raw],
      body: Buffer.alloc(0),
      httpVersion: '2.0',
    };
    requests.push(c);
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => {
      c.body = Buffer.concat(chunks);
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-upstream': 'capture-h2' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'x-trailer': 'kept' }));
      stream.end(`upstream:${c.method} ${c.url}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `h2c://${host}:${port}`,
    requests,
    close: () =>
      new Promise((r) => {
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  };
}
