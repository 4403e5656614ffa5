/**
 * Real clients for tests, all bound to loopback: node:http (optionally from a
 * chosen source address, to act as a pod), node:http2, raw net sockets (for bytes
 * no well-behaved client would send) and curl. Every call is bounded in time.
 */
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { execFile } from 'node:child_process';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  trailers?: Record<string, string | string[] | undefined>;
}

export function h1Request(
  port: number,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer; from?: string; host?: string },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path ?? '/',
        headers: { host: opts.host ?? 'deathstar', ...(opts.headers ?? {}) },
        agent: false,
        timeout: 5000,
        ...(opts.from ? { localAddress: opts.from } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('latin1'), trailers: res.trailers }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

export async function h2Connect(port: number, from?: string): Promise<http2.ClientHttp2Session> {
  const s = http2.connect(`http://127.0.0.1:${port}`, from ? { localAddress: from } : {});
  s.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('error', reject);
  });
  return s;
}

export function h2Request(
  s: http2.ClientHttp2Session,
  opts: { method?: string; path?: string; headers?: http2.OutgoingHttpHeaders; body?: string | Buffer; authority?: string },
): Promise<Reply & { rstCode?: number }> {
  return new Promise((resolve, reject) => {
    const st = s.request({
      ':method': opts.method ?? 'GET',
      ':path': opts.path ?? '/',
      ':authority': opts.authority ?? 'deathstar',
      ...(opts.headers ?? {}),
    }, { endStream: opts.body === undefined });
    const timer = setTimeout(() => {
      st.close(http2.constants.NGHTTP2_CANCEL);
      reject(new Error('h2 timeout'));
    }, 5000);
    let status = 0;
    let headers: Record<string, string | string[] | undefined> = {};
    let trailers: Record<string, string | string[] | undefined> | undefined;
    const chunks: Buffer[] = [];
    st.on('response', (h) => {
      status = Number(h[':status']);
      headers = h as Record<string, string>;
    });
    st.on('trailers', (t) => {
      trailers = t as Record<string, string>;
    });
    st.on('data', (d: Buffer) => chunks.push(d));
    st.on('error', () => {});
    st.on('close', () => {
      clearTimeout(timer);
      resolve({ status, headers, body: Buffer.concat(chunks).toString('latin1'), ...(trailers ? { trailers } : {}), rstCode: st.rstCode });
    });
    if (opts.body !== undefined) st.end(opts.body);
  });
}

/** Write raw bytes, collect everything until the server closes or `ms` pass. */
export function rawExchange(port: number, bytes: string | Buffer, opts: { ms?: number; from?: string } = {}): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const sock = net.connect({ host: '127.0.0.1', port, ...(opts.from ? { localAddress: opts.from } : {}) });
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const timer = setTimeout(done, opts.ms ?? 1500);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('close', done);
    sock.on('error', () => {});
    sock.write(bytes);
  });
}

/** Status codes of every response in a raw HTTP/1 byte stream, in order. */
export function statuses(raw: string): number[] {
  const out: number[] = [];
  const re = /HTTP\/1\.[01] (\d{3}) /g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(raw)) !== null) out.push(Number(m[1]));
  return out;
}

export function curl(args: string[], ms = 8000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', String(Math.ceil(ms / 1000)), ...args], { timeout: ms + 1000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number | null) ?? 1 : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr });
    });
  });
}
