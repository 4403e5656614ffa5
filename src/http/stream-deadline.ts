/**
 * `requestTimeoutMs` for HTTP/2 streams. Node's HTTP/1 server gives a request
 * `requestTimeout` to arrive whole (408 otherwise); its HTTP/2 server has nothing of
 * the kind, so a client could hold every stream of a session open by trickling DATA
 * frames, each of which also keeps the session from idling out. Here each stream must
 * have received its whole request (END_STREAM) within requestTimeoutMs: a stream
 * still receiving then gets 408 when no response has started (and RST_STREAM
 * NO_ERROR after it, RFC 9113 §8.1, so the client stops sending), else it is reset.
 *
 * gRPC streams are not given this deadline: a client-streaming or bidirectional call
 * legitimately sends for as long as it lives (Envoy has no request timeout by default
 * either); they stay bounded by http2MaxConcurrentStreams and the session's idle
 * timeout.
 *
 * Cost: no timer per stream. Streams are kept in insertion order, which is deadline
 * order (one timeout for all), and one unref'd sweep, running only while streams are
 * tracked, stops at the first one not yet due.
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

export class StreamDeadlines {
  readonly #due = new Map<http2.ServerHttp2Stream, number>();
  #sweep: NodeJS.Timeout | undefined;
  /** Streams answered 408 or reset (tests, metrics). */
  expired = 0;

  constructor(
    private readonly timeoutMs: number,
    private readonly everyMs: number,
  ) {}

  /** Give a new stream its deadline (nothing to do when its request is already whole). */
  track(stream: http2.ServerHttp2Stream): void {
    if (this.timeoutMs <= 0 || requestEnded(stream)) return;
    this.#due.set(stream, Date.now() + this.timeoutMs);
    stream.once('close', () => this.#due.delete(stream));
    if (this.#sweep === undefined) {
      this.#sweep = setInterval(() => this.#expire(), this.everyMs);
      this.#sweep.unref();
    }
  }

  #expire(): void {
    const now = Date.now();
    for (const [stream, due] of this.#due) {
      if (due > now) break;
      this.#due.delete(stream);
      if (stream.destroyed || stream.closed || requestEnded(stream)) continue;
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
    if (this.#due.size === 0 && this.#sweep !== undefined) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }
}
