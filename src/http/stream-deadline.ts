/**
 * `requestTimeoutMs` for HTTP/2 streams. Node's HTTP/1 server gives a request
 * `requestTimeout` to arrive whole (408 otherwise); its HTTP/2 server has nothing of
 * the kind, so a client could hold every stream of a session open by trickling DATA
 * frames, each of which also keeps the session from idling out. Here each stream must
 * have received its whole request (END_STREAM) within requestTimeoutMs: a stream
 * still receiving then gets 408 when no response has started (and RST_STREAM
 * NO_ERROR after it, RFC 9113 §8.1, so the client stops sending), else it is reset.
 *
 * gRPC streams to an HTTP/2 upstream are not given this deadline: a client-streaming
 * or bidirectional call legitimately sends for as long as it lives (Envoy has no
 * request timeout by default either); they stay bounded by http2MaxConcurrentStreams
 * and the session's idle timeout. Toward an HTTP/1.1 upstream, which cannot serve
 * gRPC, the content-type earns nothing.
 *
 * Cost: no timer per stream. Streams are kept in insertion order, which is deadline
 * order (one timeout for all), and one unref'd sweep, running only while streams are
 * tracked, stops at the first one not yet due.
 *
 * They are kept in a ring of slots, not a Map. A Map churned once per stream (set on
 * arrival, delete on close) rebuilds its hash table every few streams; a discarded
 * table keeps the entries it held, and once one table is in the old generation V8
 * allocates every later one there too (a large policy, or any burst, is enough to get
 * there). From then on each discarded table kept the streams it had held, and all they
 * referenced, alive for the scavenger until the next mark-compact. Measured on the h2c
 * half-load benchmark: ~660 KB survived each scavenge instead of ~65 KB, and
 * scavenges took 3.8 ms instead of 1.4 ms (--trace-gc-nvp; docs/http.md).
 */
import * as http2 from 'node:http2';

const BODY_408 = Buffer.from('408\r\n');

interface ReadableEnded {
  readonly _readableState?: { readonly ended?: boolean };
}

/** END_STREAM received (the request is whole), whether or not the body was read. */
function requestEnded(stream: http2.ServerHttp2Stream): boolean {
  return stream.endAfterHeaders || (stream as unknown as ReadableEnded)._readableState?.ended === true;
}

/** A tracked stream's place in the ring (its sequence number). */
const kSeq = Symbol('l7warden.deadlineSeq');
type Tracked = http2.ServerHttp2Stream & { [kSeq]?: number };

const MIN_SLOTS = 64;

export class StreamDeadlines {
  // Slot `seq & mask` holds the stream with that sequence number, or undefined once
  // it closed; #head..#tail are the sequence numbers still in the ring.
  #streams: (Tracked | undefined)[] = new Array<Tracked | undefined>(MIN_SLOTS).fill(undefined);
  #due = new Float64Array(MIN_SLOTS);
  #mask = MIN_SLOTS - 1;
  #head = 0;
  #tail = 0;
  /** Slots still holding an open stream. */
  #live = 0;
  #sweep: NodeJS.Timeout | undefined;
  /** The 'close' listener of every tracked stream: one function, no closure per stream. */
  readonly #onClose: (this: Tracked) => void;
  /** Streams answered 408 or reset (tests, metrics). */
  expired = 0;

  constructor(
    private readonly timeoutMs: number,
    private readonly everyMs: number,
  ) {
    const self = this;
    this.#onClose = function (this: Tracked) {
      self.#release(this);
    };
  }

  /** Streams tracked and still open. */
  get tracked(): number {
    return this.#live;
  }

  /** Slots in the ring: a power of two, 64 or under four times the most streams open at once. */
  get capacity(): number {
    return this.#streams.length;
  }

  /** Give a new stream its deadline (nothing to do when its request is already whole). */
  track(stream: http2.ServerHttp2Stream): void {
    if (this.timeoutMs <= 0 || requestEnded(stream)) return;
    this.#trim();
    if (this.#tail - this.#head === this.#streams.length) this.#resize();
    const t = stream as Tracked;
    const seq = this.#tail++;
    const slot = seq & this.#mask;
    this.#streams[slot] = t;
    this.#due[slot] = Date.now() + this.timeoutMs;
    t[kSeq] = seq;
    this.#live++;
    // 'close' fires once, so on() rather than once() (no wrapper per stream).
    stream.on('close', this.#onClose);
    if (this.#sweep === undefined) {
      this.#sweep = setInterval(() => this.#expire(), this.everyMs);
      this.#sweep.unref();
    }
  }

  #release(stream: Tracked): void {
    const seq = stream[kSeq];
    if (seq === undefined || seq < this.#head) return;
    const slot = seq & this.#mask;
    if (this.#streams[slot] !== stream) return;
    this.#streams[slot] = undefined;
    this.#live--;
    this.#trim();
  }

  /** Drop closed streams' slots from the head. */
  #trim(): void {
    const streams = this.#streams;
    const mask = this.#mask;
    while (this.#head < this.#tail && streams[this.#head & mask] === undefined) this.#head++;
  }

  /**
   * The ring is full: copy the open streams, in order, into a ring twice their number
   * (at least MIN_SLOTS). Closed streams behind a long-lived one (a slow upload at the
   * head) are dropped here, so the ring never grows with streams that have gone.
   */
  #resize(): void {
    const size = Math.max(MIN_SLOTS, 2 ** Math.ceil(Math.log2(Math.max(1, this.#live) * 2)));
    const streams = new Array<Tracked | undefined>(size).fill(undefined);
    const due = new Float64Array(size);
    const mask = size - 1;
    let seq = 0;
    for (let s = this.#head; s < this.#tail; s++) {
      const old = s & this.#mask;
      const stream = this.#streams[old];
      if (stream === undefined) continue;
      streams[seq & mask] = stream;
      due[seq & mask] = this.#due[old]!;
      stream[kSeq] = seq++;
    }
    this.#streams = streams;
    this.#due = due;
    this.#mask = mask;
    this.#head = 0;
    this.#tail = seq;
  }

  #expire(): void {
    const now = Date.now();
    while (this.#head < this.#tail) {
      const slot = this.#head & this.#mask;
      const stream = this.#streams[slot];
      if (stream !== undefined) {
        if (this.#due[slot]! > now) break;
        this.#streams[slot] = undefined;
        this.#live--;
      }
      this.#head++;
      if (stream === undefined || stream.destroyed || stream.closed || requestEnded(stream)) continue;
      this.expired++;
      if (!stream.headersSent) {
        stream.respond({ ':status': 408, 'content-type': 'text/plain', 'content-length': BODY_408.length });
        stream.end(BODY_408, () => {
          if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
        });
      } else {
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    }
    if (this.#head === this.#tail && this.#sweep !== undefined) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }
}
