/**
 * A request body as handed to the upstream client, in place of the client's own
 * stream. It replaces `pipeline(src, new PassThrough())` / `pipeline(src, new
 * Transform(count))`, which cost an AbortController, a DOMException on every
 * successful finish and several end-of-stream watchers per request.
 *
 * Semantics kept from that pipeline:
 *  - data is relayed with backpressure (the source is paused while this stream's
 *    buffer is full);
 *  - the source ending ends this stream; the source failing, or closing before its
 *    end (client reset), destroys this stream with an error, so the upstream
 *    request is aborted and never looks complete;
 *  - this stream being destroyed after the source ended leaves the source alone
 *    (undici destroys a body once read; destroying an HTTP/2 server stream would
 *    reset it before the response is sent); destroyed with an error, the source is
 *    destroyed too; destroyed earlier without one (an upstream that answered before
 *    reading the whole body: undici destroys the body when the response completes),
 *    the rest of the source is read and dropped, so the client's request ends
 *    normally after its response. Destroying the source there reset a client's
 *    HTTP/2 stream with INTERNAL_ERROR right after its complete response (and closed
 *    an HTTP/1 connection). An RST_STREAM(NO_ERROR) to stop the upload (RFC 9113
 *    §8.1) was tried: nghttp2 sends it ahead of response DATA still queued, and curl
 *    7.88 then saw no response at all. The rest is bounded like any upload (the
 *    request timeout, the stream deadline);
 *  - with `max > 0`, more than `max` bytes ⇒ `onOverflow()` and this stream is
 *    destroyed with an error before the byte that crossed the limit is relayed.
 */
import { Readable } from 'node:stream';
import type { Downstream } from './downstream.js';
import type { RequestFacts } from './request-guard.js';

const RELAY: unique symbol = Symbol('l7warden.relay');

type Source = Readable & { [RELAY]?: RelayBody };

export class RelayBody extends Readable {
  readonly #src: Source;
  readonly #max: number;
  readonly #onOverflow: (() => void) | undefined;
  #seen = 0;
  #srcEnded = false;

  constructor(src: Readable, max = 0, onOverflow?: () => void) {
    super();
    this.#src = src as Source;
    this.#max = max;
    this.#onOverflow = onOverflow;
    this.#src[RELAY] = this;
    // Security: a counting body may never be handed to an upstream client (the request
    // was denied, or its name is still resolving on egress) while the client keeps
    // sending. Its overflow / premature-close error was answered already (413, or the
    // client is gone); without a listener of its own that error was an unhandled
    // 'error' event and crashed the process. The upstream client adds its own listener.
    this.on('error', ignoreError);
    // Listeners are shared functions (`this` is the source): no closures per request.
    src.on('data', onSrcData);
    src.on('end', onSrcEnd);
    src.on('error', onSrcError);
    src.on('close', onSrcClose);
  }

  /** @internal */
  relayData(chunk: Buffer): void {
    if (this.destroyed) return;
    if (this.#max > 0) {
      this.#seen += chunk.length;
      if (this.#seen > this.#max) {
        this.#onOverflow?.();
        this.destroy(new Error('request body too large'));
        return;
      }
    }
    if (!this.push(chunk)) this.#src.pause();
  }

  /** @internal */
  relayEnd(): void {
    if (endedByClose(this.#src)) {
      this.relayClose();
      return;
    }
    this.#srcEnded = true;
    if (!this.destroyed) this.push(null);
  }

  /** @internal */
  relayError(err: Error): void {
    if (!this.destroyed) this.destroy(err);
  }

  /** @internal The source closed: before its end that is a cut body. */
  relayClose(): void {
    this.#detach();
    if (!this.#srcEnded && !this.destroyed) this.destroy(prematureClose());
  }

  override _read(): void {
    if (this.#src.isPaused()) this.#src.resume();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    const src = this.#src;
    if (src[RELAY] === this) {
      this.#detach();
      if (!this.#srcEnded && !src.destroyed) {
        if (err) src.destroy(err);
        else src.resume();
      }
    }
    cb(err);
  }

  #detach(): void {
    const src = this.#src;
    if (src[RELAY] !== this) return;
    src[RELAY] = undefined;
    src.off('data', onSrcData);
    src.off('end', onSrcEnd);
    src.off('close', onSrcClose);
    // The 'error' listener stays: a late error on the source must not be unhandled.
  }
}

function ignoreError(): void {}

/**
 * Security: Node ends an HTTP/2 server stream's readable side ('end', exactly as for
 * END_STREAM) when the stream is closed under it — the client's RST_STREAM with
 * NO_ERROR, or the session being torn down — and marks it `aborted` (closed before
 * our response was ending) or destroyed. Taken for the end of the body, a cut upload
 * was finished upstream (final chunk / END_STREAM) and looked complete. A real
 * END_STREAM arrives while the stream is open and not aborted.
 */
export function endedByClose(src: Readable): boolean {
  return (src as Readable & { aborted?: boolean }).aborted === true || src.destroyed;
}

function onSrcData(this: Source, chunk: Buffer): void {
  this[RELAY]?.relayData(chunk);
}
function onSrcEnd(this: Source): void {
  this[RELAY]?.relayEnd();
}
function onSrcError(this: Source, err: Error): void {
  this[RELAY]?.relayError(err);
}
function onSrcClose(this: Source): void {
  this[RELAY]?.relayClose();
}

function prematureClose(): Error {
  return Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}

/**
 * maxBodyBytes, for every listener kind: count while streaming; over the limit,
 * 413 with Connection: close (or an abort once a response started). An HTTP/1 body
 * with a declared Content-Length needs no counting: the guard refused a length over
 * the limit and Node's parser never delivers more body than declared (what follows
 * is the next request). Returns the stream to hand to the upstream.
 */
export function countBody(max: number, ds: Downstream, facts: RequestFacts): Readable {
  const body = ds.body!;
  if (ds.protocol !== 'HTTP/2' && !facts.chunked && facts.contentLength !== undefined && facts.contentLength <= max) return body;
  return new RelayBody(body, max, () => {
    overflowReply(ds);
  });
}

const TOO_LARGE = Buffer.from('413\r\n');

function overflowReply(ds: Downstream): void {
  if (ds.headersSent) {
    ds.abort();
    return;
  }
  ds.closeAfter();
  ds.respond(413, { 'content-type': 'text/plain', 'content-length': TOO_LARGE.length }, false);
  if (!ds.isHead) ds.write(TOO_LARGE);
  ds.end();
}
