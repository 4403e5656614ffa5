/**
 * Forwarding to the DNS upstream, UDP and TCP.
 *
 * UDP: a small pool of *connected* sockets, each on its own kernel-chosen random
 * port, so the kernel drops datagrams from any other address or port; every query
 * gets a fresh random 16-bit ID and a randomly chosen socket, and a socket is
 * replaced after `rotateAfter` queries (random source port per batch of queries,
 * Kaminsky-style poisoning defence). An answer is accepted only with our ID and the
 * question we sent (`matchesQuery`); anything else is counted and ignored, and the
 * real answer may still come. Timeouts: queries are kept in insertion order (one
 * timeout for all), one unref'd sweep expires them — no timer per query.
 *
 * TCP: one upstream connection per client connection, opened on its first query,
 * pipelined with our own IDs, 2-byte length framing; closed with the client's.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomFillSync } from 'node:crypto';
import { encodeForward, matchesQuery, type Query } from './codec.js';

export type UpstreamError = 'timeout' | 'error';
export type UpstreamCallback = (err: UpstreamError | undefined, answer?: Buffer) => void;

interface Pending {
  readonly q: Query;
  readonly cb: UpstreamCallback;
  readonly deadline: number;
}

/** Random 16-bit values, refilled in batches from the CSPRNG. */
class RandomPool {
  #buf = new Uint16Array(4096);
  #i = 4096;
  next(): number {
    if (this.#i >= this.#buf.length) {
      randomFillSync(this.#buf);
      this.#i = 0;
    }
    return this.#buf[this.#i++]!;
  }
}

export interface UpstreamStats {
  sent: number;
  answered: number;
  timeouts: number;
  /** Datagrams or frames that did not answer a pending query (wrong ID / question). */
  ignored: number;
  errors: number;
}

class PooledSocket {
  readonly pending = new Map<number, Pending>();
  uses = 0;
  retired = false;
  constructor(readonly sock: dgram.Socket) {}
}

export interface UdpUpstreamOptions {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly poolSize?: number;
  readonly rotateAfter?: number;
}

export class UdpUpstream {
  readonly stats: UpstreamStats = { sent: 0, answered: 0, timeouts: 0, ignored: 0, errors: 0 };
  readonly #rand = new RandomPool();
  readonly #pool: PooledSocket[] = [];
  readonly #retired = new Set<PooledSocket>();
  readonly #opts: Required<UdpUpstreamOptions>;
  #sweep: NodeJS.Timeout | undefined;
  #closed = false;
  #replacing = 0;

  constructor(opts: UdpUpstreamOptions) {
    this.#opts = { poolSize: 4, rotateAfter: 4096, ...opts };
  }

  async start(): Promise<void> {
    for (let i = 0; i < this.#opts.poolSize; i++) this.#pool.push(await this.#open());
    const every = Math.max(10, Math.min(250, Math.floor(this.#opts.timeoutMs / 4)));
    this.#sweep = setInterval(() => this.#expire(), every);
    this.#sweep.unref();
  }

  async #open(): Promise<PooledSocket> {
    const type = net.isIPv6(this.#opts.host) ? 'udp6' : 'udp4';
    const sock = dgram.createSocket(type);
    const ps = new PooledSocket(sock);
    sock.on('error', () => {
      this.stats.errors++;
    });
    sock.on('message', (msg) => this.#onMessage(ps, msg));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.connect(this.#opts.port, this.#opts.host, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    return ps;
  }

  #onMessage(ps: PooledSocket, msg: Buffer): void {
    if (msg.length < 12) {
      this.stats.ignored++;
      return;
    }
    const id = msg.readUInt16BE(0);
    const p = ps.pending.get(id);
    if (!p || !matchesQuery(msg, id, p.q)) {
      this.stats.ignored++;
      return;
    }
    ps.pending.delete(id);
    this.stats.answered++;
    if (ps.retired && ps.pending.size === 0) this.#closeRetired(ps);
    p.cb(undefined, msg);
  }

  /** Forward a validated query; `cb` is called exactly once. */
  send(q: Query, cb: UpstreamCallback): void {
    if (this.#closed || this.#pool.length === 0) {
      cb('error');
      return;
    }
    const ps = this.#pool[this.#rand.next() % this.#pool.length]!;
    let id = this.#rand.next();
    for (let tries = 0; ps.pending.has(id); tries++) {
      if (tries > 16) {
        cb('error');
        return;
      }
      id = this.#rand.next();
    }
    const msg = encodeForward(q, id);
    ps.pending.set(id, { q, cb, deadline: Date.now() + this.#opts.timeoutMs });
    ps.uses++;
    this.stats.sent++;
    // No send callback: libuv then tries a synchronous send first (the cheaper path).
    // A failed send surfaces as an 'error' event and the query times out (SERVFAIL).
    ps.sock.send(msg);
    if (ps.uses >= this.#opts.rotateAfter && !ps.retired) this.#rotate(ps);
  }

  /** Replace a socket that has served its share with a fresh one (new random port). */
  #rotate(ps: PooledSocket): void {
    if (this.#replacing > 0) return;
    this.#replacing++;
    this.#open().then(
      (fresh) => {
        this.#replacing--;
        if (this.#closed) {
          fresh.sock.close();
          return;
        }
        const i = this.#pool.indexOf(ps);
        if (i >= 0) this.#pool[i] = fresh;
        else this.#pool.push(fresh);
        ps.retired = true;
        this.#retired.add(ps);
        if (ps.pending.size === 0) this.#closeRetired(ps);
      },
      () => {
        this.#replacing--;
        ps.uses = 0; // keep using it; try again later
      },
    );
  }

  #closeRetired(ps: PooledSocket): void {
    this.#retired.delete(ps);
    try {
      ps.sock.close();
    } catch {
      /* already closed */
    }
  }

  #expire(): void {
    const now = Date.now();
    const all = [...this.#pool, ...this.#retired];
    for (const ps of all) {
      for (const [id, p] of ps.pending) {
        if (p.deadline > now) break; // insertion order = deadline order
        ps.pending.delete(id);
        this.stats.timeouts++;
        p.cb('timeout');
      }
      if (ps.retired && ps.pending.size === 0) this.#closeRetired(ps);
    }
  }

  /** Local ports in use (tests check that they differ and rotate). */
  localPorts(): number[] {
    return this.#pool.map((p) => p.sock.address().port);
  }

  get inFlight(): number {
    let n = 0;
    for (const p of this.#pool) n += p.pending.size;
    for (const p of this.#retired) n += p.pending.size;
    return n;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweep) clearInterval(this.#sweep);
    for (const ps of [...this.#pool, ...this.#retired]) {
      for (const p of ps.pending.values()) p.cb('error');
      ps.pending.clear();
      try {
        ps.sock.close();
      } catch {
        /* already closed */
      }
    }
    this.#pool.length = 0;
    this.#retired.clear();
  }
}

/**
 * Split a TCP byte stream into 2-byte-length-prefixed DNS messages.
 *
 * The bytes of an incomplete message are kept as the chunks they came in and joined
 * once, when the message is complete: a 64 KB message trickled a byte per segment
 * used to be re-joined on every segment, ~2 GB copied for one message (and no
 * memory is reserved on the strength of a length prefix alone).
 */
export class FrameReader {
  #parts: Buffer[] = [];
  #have = 0;
  /** Length of the message being gathered, once its 2-byte prefix has arrived. */
  #need = -1;
  /** Bytes copied (joins of chunks): tests bound this instead of timing it. */
  copied = 0;

  /** Feed bytes; returns complete messages (possibly none). */
  push(chunk: Buffer): Buffer[] {
    if (chunk.length === 0) return [];
    let buf: Buffer;
    if (this.#have === 0) buf = chunk;
    else {
      this.#parts.push(chunk);
      this.#have += chunk.length;
      if (this.#need < 0 && this.#have >= 2) this.#need = (this.#byteAt(0) << 8) | this.#byteAt(1);
      if (this.#need < 0 || this.#have < 2 + this.#need) return [];
      buf = Buffer.concat(this.#parts, this.#have);
      this.copied += this.#have;
      this.#parts = [];
      this.#have = 0;
      this.#need = -1;
    }
    const out: Buffer[] = [];
    let off = 0;
    while (buf.length - off >= 2) {
      const len = buf.readUInt16BE(off);
      if (buf.length - off - 2 < len) break;
      out.push(buf.subarray(off + 2, off + 2 + len));
      off += 2 + len;
    }
    if (off < buf.length) {
      // The start of the next message: a copy, so it does not pin the whole read.
      const rest = Buffer.from(buf.subarray(off));
      this.copied += rest.length;
      this.#parts = [rest];
      this.#have = rest.length;
      this.#need = rest.length >= 2 ? rest.readUInt16BE(0) : -1;
    }
    return out;
  }

  #byteAt(i: number): number {
    for (const p of this.#parts) {
      if (i < p.length) return p[i]!;
      i -= p.length;
    }
    return 0;
  }

  /** Bytes waiting for the rest of their message. */
  get buffered(): number {
    return this.#have;
  }
}

export function frame(msg: Buffer): Buffer {
  const out = Buffer.allocUnsafe(msg.length + 2);
  out.writeUInt16BE(msg.length, 0);
  msg.copy(out, 2);
  return out;
}

/** One TCP connection to the upstream, carrying one client connection's queries. */
export class TcpUpstreamConn {
  readonly #pending = new Map<number, Pending & { timer: NodeJS.Timeout }>();
  readonly #rand = new RandomPool();
  readonly #reader = new FrameReader();
  #sock: net.Socket | undefined;
  #dead = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly timeoutMs: number,
    private readonly stats: UpstreamStats,
  ) {}

  #connect(): net.Socket {
    const s = net.connect({ host: this.host, port: this.port });
    s.setNoDelay(true);
    s.on('data', (d) => {
      let msgs: Buffer[];
      try {
        msgs = this.#reader.push(d);
      } catch {
        s.destroy();
        return;
      }
      for (const m of msgs) this.#onMessage(m);
    });
    s.on('error', () => {
      this.stats.errors++;
    });
    s.on('close', () => {
      if (this.#sock === s) this.#sock = undefined; // the next query reconnects
      this.#failPending();
    });
    return s;
  }

  #onMessage(msg: Buffer): void {
    if (msg.length < 12) {
      this.stats.ignored++;
      return;
    }
    const id = msg.readUInt16BE(0);
    const p = this.#pending.get(id);
    if (!p || !matchesQuery(msg, id, p.q)) {
      this.stats.ignored++;
      return;
    }
    clearTimeout(p.timer);
    this.#pending.delete(id);
    this.stats.answered++;
    p.cb(undefined, Buffer.from(msg));
  }

  #failPending(): void {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.cb('error');
    }
    this.#pending.clear();
  }

  send(q: Query, cb: UpstreamCallback): void {
    if (this.#dead) {
      cb('error');
      return;
    }
    this.#sock ??= this.#connect();
    let id = this.#rand.next();
    for (let tries = 0; this.#pending.has(id); tries++) {
      if (tries > 16) {
        cb('error');
        return;
      }
      id = this.#rand.next();
    }
    const timer = setTimeout(() => {
      if (this.#pending.get(id)?.q !== q) return;
      this.#pending.delete(id);
      this.stats.timeouts++;
      cb('timeout');
    }, this.timeoutMs);
    timer.unref();
    this.#pending.set(id, { q, cb, deadline: 0, timer });
    this.stats.sent++;
    this.#sock.write(frame(encodeForward(q, id)));
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  close(): void {
    this.#dead = true;
    this.#sock?.destroy();
    this.#sock = undefined;
    this.#failPending();
  }
}
