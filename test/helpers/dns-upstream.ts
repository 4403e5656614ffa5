/**
 * A DNS server on loopback (UDP + TCP on one port) for tests and benchmarks. It
 * answers from a small zone whose addresses point at 127.0.0.x hosts, and can
 * misbehave on demand per name: wrong ID, wrong question, bad RDLENGTH, compression
 * loops, truncated packets, answers off the CNAME chain, silence, huge answers,
 * answers sent from another port, forged answers before the real one.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

export type Misbehavior =
  | 'wrongId' // answer with another ID only
  | 'wrongQuestion' // answer with the right ID for another name only
  | 'spoofFirst' // a forged answer (wrong ID, other IP) then a forged one (other question), then the real one
  | 'badRdlength' // A record with RDLENGTH 16
  | 'rdlengthBeyond' // A record whose RDLENGTH runs past the end of the packet
  | 'compressionLoop' // answer owner is a pointer to itself
  | 'forwardPointer' // answer owner points forward
  | 'truncatedPacket' // the answer cut in the middle of a record
  | 'trailingGarbage' // valid answer + junk bytes
  | 'offChain' // an A record whose owner is not on the CNAME chain
  | 'dotLabel' // answer owner is one label containing a dot, spelling the question name
  | 'silent' // never answers
  | 'otherPort' // answers from a different socket/port
  | 'large' // 120 A records (> 512 bytes)
  | 'tc' // UDP: an empty answer with TC set (TCP answers normally)
  | 'servfail' // rcode SERVFAIL
  | 'nxdomain'; // rcode NXDOMAIN

export interface RecordSpec {
  readonly a?: readonly string[];
  readonly aaaa?: readonly string[];
  /** The name is an alias: answer CNAME to this target, then the target's records. */
  readonly cname?: string;
  readonly ttl?: number;
}

export interface LoggedQuery {
  readonly name: string;
  readonly type: string;
  readonly transport: 'udp' | 'tcp';
  readonly id: number;
}

export interface DnsUpstreamOptions {
  /** Names not in the zone: answer A 127.0.0.x derived from the name (default true). */
  readonly answerAll?: boolean;
  readonly ttl?: number;
  /** Keep a log of queries (tests; off in benchmarks). */
  readonly log?: boolean;
}

const fqdn = (n: string) => (n.endsWith('.') ? n.slice(0, -1) : n).toLowerCase();

/** Deterministic 127.0.0.x (x in 20..219) for a name. */
export function loopbackFor(name: string): string {
  let h = 0;
  for (const ch of fqdn(name)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `127.0.0.${20 + (h % 200)}`;
}

export class TestDnsUpstream {
  readonly host = '127.0.0.1';
  port = 0;
  readonly queries: LoggedQuery[] = [];
  #udp!: dgram.Socket;
  #other!: dgram.Socket;
  #tcp!: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #zone = new Map<string, RecordSpec>();
  readonly #bad = new Map<string, Misbehavior>();
  readonly #opts: Required<DnsUpstreamOptions>;

  constructor(opts: DnsUpstreamOptions = {}) {
    this.#opts = { answerAll: opts.answerAll ?? true, ttl: opts.ttl ?? 60, log: opts.log ?? true };
  }

  static async start(opts: DnsUpstreamOptions = {}): Promise<TestDnsUpstream> {
    const u = new TestDnsUpstream(opts);
    await u.#listen();
    return u;
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  setRecord(name: string, spec: RecordSpec): void {
    this.#zone.set(fqdn(name), spec);
  }

  misbehave(name: string, how: Misbehavior | undefined): void {
    if (how) this.#bad.set(fqdn(name), how);
    else this.#bad.delete(fqdn(name));
  }

  queriesFor(name: string): LoggedQuery[] {
    return this.queries.filter((q) => fqdn(q.name) === fqdn(name));
  }

  async #listen(): Promise<void> {
    // TCP first (port 0), then UDP on the same port; retry a few times if taken.
    for (let attempt = 0; attempt < 20; attempt++) {
      const tcp = net.createServer((s) => this.#onTcp(s));
      await new Promise<void>((res, rej) => {
        tcp.once('error', rej);
        tcp.listen(0, this.host, () => res());
      });
      const port = (tcp.address() as net.AddressInfo).port;
      const udp = dgram.createSocket('udp4');
      const ok = await new Promise<boolean>((res) => {
        udp.once('error', () => res(false));
        udp.bind(port, this.host, () => res(true));
      });
      if (!ok) {
        udp.close();
        await new Promise<void>((r) => tcp.close(() => r()));
        continue;
      }
      udp.on('error', () => {});
      udp.on('message', (msg, rinfo) => this.#onUdp(msg, rinfo));
      this.#udp = udp;
      this.#tcp = tcp;
      this.port = port;
      this.#other = dgram.createSocket('udp4');
      this.#other.on('error', () => {});
      await new Promise<void>((r) => this.#other.bind(0, this.host, () => r()));
      return;
    }
    throw new Error('could not bind the test DNS upstream');
  }

  #onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const out = this.#answer(msg, 'udp');
    for (const { buf, other } of out) {
      (other ? this.#other : this.#udp).send(buf, rinfo.port, rinfo.address);
    }
  }

  #onTcp(s: net.Socket): void {
    this.#sockets.add(s);
    s.on('close', () => this.#sockets.delete(s));
    s.on('error', () => {});
    let acc = Buffer.alloc(0);
    s.on('data', (d) => {
      acc = acc.length ? Buffer.concat([acc, d]) : d;
      while (acc.length >= 2) {
        const len = acc.readUInt16BE(0);
        if (acc.length < 2 + len) break;
        const msg = acc.subarray(2, 2 + len);
        acc = acc.subarray(2 + len);
        for (const { buf } of this.#answer(msg, 'tcp')) {
          const hdr = Buffer.alloc(2);
          hdr.writeUInt16BE(buf.length);
          s.write(Buffer.concat([hdr, buf]));
        }
      }
    });
  }

  #records(name: string, depth = 0): dnsPacket.Answer[] {
    const spec = this.#zone.get(fqdn(name));
    const ttl = spec?.ttl ?? this.#opts.ttl;
    if (!spec) {
      return this.#opts.answerAll ? [{ name, type: 'A', class: 'IN', ttl, data: loopbackFor(name) }] : [];
    }
    const out: dnsPacket.Answer[] = [];
    if (spec.cname && depth < 20) {
      out.push({ name, type: 'CNAME', class: 'IN', ttl, data: spec.cname });
      out.push(...this.#records(spec.cname, depth + 1));
      return out;
    }
    for (const a of spec.a ?? []) out.push({ name, type: 'A', class: 'IN', ttl, data: a });
    for (const a of spec.aaaa ?? []) out.push({ name, type: 'AAAA', class: 'IN', ttl, data: a });
    return out;
  }

  #answer(msg: Buffer, transport: 'udp' | 'tcp'): { buf: Buffer; other?: boolean }[] {
    let q: dnsPacket.Packet;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return [];
    }
    const question = q.questions?.[0];
    if (!question || q.type !== 'query') return [];
    const id = q.id ?? 0;
    if (this.#opts.log && this.queries.length < 10_000) {
      this.queries.push({ name: question.name, type: question.type, transport, id });
    }
    const how = this.#bad.get(fqdn(question.name));
    const rd = (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
    const flags = rd | dnsPacket.RECURSION_AVAILABLE;
    const wantsAddr = question.type === 'A' || question.type === 'AAAA' || (question.type as string) === 'ANY';
    let answers = wantsAddr ? this.#records(question.name) : [];
    if (question.type === 'A') answers = answers.filter((a) => a.type !== 'AAAA');
    if (question.type === 'AAAA') answers = answers.filter((a) => a.type !== 'A');
    const rcode = !wantsAddr || answers.length > 0 || this.#opts.answerAll ? 'NOERROR' : 'NXDOMAIN';
    const enc = (p: Partial<dnsPacket.Packet> & { rcode?: string }) =>
      dnsPacket.encode({ type: 'response', id, flags, questions: [question], answers, ...p } as dnsPacket.Packet);
    const good = () => enc({ rcode } as never);
    switch (how) {
      case undefined:
        return [{ buf: good() }];
      case 'silent':
        return [];
      case 'wrongId':
        return [{ buf: enc({ id: (id + 1) & 0xffff }) }];
      case 'wrongQuestion':
        return [{ buf: enc({ questions: [{ ...question, name: `evil-${question.name}` }] }) }];
      case 'spoofFirst': {
        const forged = [{ name: question.name, type: 'A' as const, class: 'IN' as const, ttl: 3600, data: '127.0.0.250' }];
        return [
          { buf: enc({ id: (id + 7) & 0xffff, answers: forged }) },
          { buf: enc({ questions: [{ ...question, name: `other.${question.name}` }], answers: forged }) },
          { buf: good() },
        ];
      }
      case 'otherPort':
        return [{ buf: good(), other: transport === 'udp' }];
      case 'servfail':
        return [{ buf: enc({ answers: [], flags: flags | 2 }) }];
      case 'nxdomain':
        return [{ buf: enc({ answers: [], flags: flags | 3 }) }];
      case 'tc':
        if (transport === 'tcp') return [{ buf: good() }];
        return [{ buf: enc({ answers: [], flags: flags | dnsPacket.TRUNCATED_RESPONSE }) }];
      case 'large': {
        const many: dnsPacket.Answer[] = [];
        for (let i = 0; i < 120; i++) {
          many.push({ name: question.name, type: 'A', class: 'IN', ttl: this.#opts.ttl, data: `127.0.1.${i + 1}` });
        }
        return [{ buf: enc({ answers: many }) }];
      }
      case 'offChain':
        return [
          {
            buf: enc({
              answers: [...answers, { name: 'elsewhere.example.', type: 'A', class: 'IN', ttl: 60, data: '127.0.0.251' }],
            }),
          },
        ];
      case 'trailingGarbage':
        return [{ buf: Buffer.concat([good(), Buffer.from([1, 2, 3])]) }];
      case 'truncatedPacket': {
        const b = good();
        return [{ buf: b.subarray(0, b.length - 3) }];
      }
      default:
        return [{ buf: this.#handBuilt(how, msg, id, flags) }];
    }
  }

  /** Answers dns-packet cannot produce: built byte by byte. */
  #handBuilt(how: Misbehavior, query: Buffer, id: number, flags: number): Buffer {
    // The question as sent: header(12) + name + type + class.
    let p = 12;
    while (p < query.length && query[p] !== 0) p += 1 + query[p]!;
    const qEnd = p + 5;
    const question = query.subarray(12, qEnd);
    const hdr = Buffer.alloc(12);
    hdr.writeUInt16BE(id, 0);
    hdr.writeUInt16BE(0x8000 | flags, 2);
    hdr.writeUInt16BE(1, 4);
    hdr.writeUInt16BE(1, 6);
    const ownerOffset = 12 + question.length;
    let owner: Buffer;
    let rdlen = 4;
    let rdata = Buffer.from([127, 0, 0, 252]);
    switch (how) {
      case 'compressionLoop':
        owner = Buffer.from([0xc0 | (ownerOffset >> 8), ownerOffset & 0xff]);
        break;
      case 'forwardPointer':
        owner = Buffer.from([0xc0 | ((ownerOffset + 20) >> 8), (ownerOffset + 20) & 0xff]);
        break;
      case 'dotLabel': {
        // One label spelling the whole question name with its dots.
        const labels: string[] = [];
        for (let i = 0; i < question.length - 5; ) {
          const len = question[i]!;
          labels.push(question.subarray(i + 1, i + 1 + len).toString('latin1'));
          i += 1 + len;
        }
        const joined = Buffer.from(labels.join('.'), 'latin1');
        owner = Buffer.concat([Buffer.from([joined.length]), joined, Buffer.from([0])]);
        break;
      }
      case 'badRdlength':
        owner = Buffer.from([0xc0, 12]);
        rdlen = 16;
        rdata = Buffer.concat([rdata, Buffer.alloc(12, 7)]);
        break;
      case 'rdlengthBeyond':
        owner = Buffer.from([0xc0, 12]);
        rdlen = 200;
        break;
      default:
        owner = Buffer.from([0xc0, 12]);
    }
    const rr = Buffer.alloc(10);
    rr.writeUInt16BE(1, 0);
    rr.writeUInt16BE(1, 2);
    rr.writeUInt32BE(60, 4);
    rr.writeUInt16BE(rdlen, 8);
    return Buffer.concat([hdr, question, owner, rr, rdata]);
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await Promise.all([
      new Promise<void>((r) => this.#tcp.close(() => r())),
      new Promise<void>((r) => this.#udp.close(() => r())),
      new Promise<void>((r) => this.#other.close(() => r())),
    ]);
  }
}
