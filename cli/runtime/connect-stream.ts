// Connect's streaming protocol over HTTP/1.1 as every client of the colony reads it: the request's
// envelope, the answer's envelopes and its end message. Apart from connect-wire.ts so that a
// `coral run` whose script makes unary calls only does not load it.
import type { IncomingMessage } from "node:http";
import { errorCode, tooLarge, unexpectedAnswer, WireError } from "./connect-wire.js";

/** One length-prefixed message: the body of a server-streaming call. */
export function envelope(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** Connect streaming envelope flags. */
const COMPRESSED = 0x01;
const END_STREAM = 0x02;

/**
 * A message as the chunks it arrived in, read without joining them: a batch's cells (most of its
 * bytes) go on to a script as these same buffers (cli/run/broker-stream.ts).
 */
export class Chunks {
  private part = 0;
  private partStart = 0;
  readonly length: number;

  constructor(readonly parts: Buffer[]) {
    this.length = parts.reduce((n, p) => n + p.length, 0);
  }

  /** The byte at `pos`; positions are read in increasing order (the cursor only moves forward). */
  byte(pos: number): number {
    while (pos >= this.partStart + this.parts[this.part]!.length) this.partStart += this.parts[this.part++]!.length;
    return this.parts[this.part]![pos - this.partStart]!;
  }

  /** The bytes from `start` to `end` as views of the chunks, no copies. */
  slice(start: number, end: number): Buffer[] {
    const out: Buffer[] = [];
    let at = 0;
    for (const p of this.parts) {
      const from = Math.max(start - at, 0);
      const to = Math.min(end - at, p.length);
      if (from < to) out.push(from === 0 && to === p.length ? p : p.subarray(from, to));
      at += p.length;
      if (at >= end) break;
    }
    return out;
  }

  joined(): Buffer {
    return this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
  }
}

/** Connect's envelopes from a response body: [flags, payload], one at a time, as the caller asks. */
export async function* envelopes(body: AsyncIterable<Buffer>, readMaxBytes: number): AsyncGenerator<[number, Chunks]> {
  let head = Buffer.alloc(0);
  let parts: Buffer[] | undefined;
  let missing = 0;
  let flags = 0;
  for await (const chunk of body) {
    let at = 0;
    while (at < chunk.length) {
      if (!parts) {
        const need = 5 - head.length;
        head = Buffer.concat([head, chunk.subarray(at, at + need)]);
        at += Math.min(need, chunk.length - at);
        if (head.length < 5) break;
        flags = head[0]!;
        missing = head.readUInt32BE(1);
        if (missing > readMaxBytes) throw tooLarge(missing, readMaxBytes);
        head = Buffer.alloc(0);
        parts = [];
      }
      const n = Math.min(missing, chunk.length - at);
      if (n > 0) parts.push(at === 0 && n === chunk.length ? chunk : chunk.subarray(at, at + n));
      missing -= n;
      at += n;
      if (missing === 0) {
        const done = new Chunks(parts);
        parts = undefined;
        yield [flags, done];
      }
    }
  }
  if (parts || head.length) throw new WireError("internal", "the colony's stream ended in the middle of a message");
}

/** The end-of-stream JSON of Connect: its error, if it carries one. */
function endStreamError(body: Buffer): WireError | undefined {
  let end: unknown;
  try {
    end = JSON.parse(body.toString("utf8"));
  } catch {
    return new WireError("internal", "the colony ended the stream with unreadable JSON");
  }
  const error = typeof end === "object" && end !== null ? (end as { error?: unknown }).error : undefined;
  if (error === undefined || error === null) return undefined;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return new WireError(errorCode(code), typeof message === "string" ? message : "");
}

/**
 * The messages of a server stream, each as its chunks, when the answer is one; else the failure it
 * carries. Ends at the end message (throwing its error), and fails when the body ends without one.
 */
export async function* streamMessages(res: IncomingMessage, body: AsyncIterable<Buffer>, readMaxBytes: number): AsyncGenerator<Chunks> {
  const type = res.headers["content-type"] ?? "";
  if (res.statusCode !== 200 || type !== "application/connect+proto") {
    const chunks: Buffer[] = [];
    let length = 0;
    for await (const c of body) {
      length += c.length;
      if (length > readMaxBytes) throw tooLarge(length, readMaxBytes);
      chunks.push(c);
    }
    throw unexpectedAnswer(res.statusCode ?? 0, type, Buffer.concat(chunks));
  }
  for await (const [flags, payload] of envelopes(body, readMaxBytes)) {
    if (flags & COMPRESSED) throw new WireError("internal", "the colony sent a compressed message, which coral did not ask for");
    if (flags & END_STREAM) {
      const e = endStreamError(payload.joined());
      if (e) throw e;
      return;
    }
    yield payload;
  }
  throw new WireError("internal", "the colony's stream ended without its end message");
}
