// Server-streaming calls (StreamQuery) for the broker: Connect's streaming protocol in binary over
// node:http, read here rather than by connect-node, so that a batch's cells go from the colony to
// the script as the bytes the colony wrote. Loaded at a script's first stream only: runs making
// unary calls alone never load protobuf-es or the API's descriptors (broker-rpc.ts).
//
// Measured (1M rows, docs/performance.md stream_sql): through connect-node, coral run spent ~3.6 s
// of CPU, most of it decoding each batch's values_json into a JS string (TextDecoder, ~0.8 s),
// joining chunks, and JSON.stringify escaping that string again for the pipe; Deno then unescaped
// it and parsed it a second time. Here the cells field of a message (the proto's
// ENCODING_JSON_COLUMNS string) is never decoded: its bytes are already a JSON text, so they are
// written into the line as a JSON value, and Deno parses each batch once. Only the small rest of
// the message (columns, row_count, truncated) goes through protobuf-es.
import { request, Agent, type IncomingMessage } from "node:http";
import { fromBinary, fromJson, getOption, hasOption, toBinary, type DescField, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { Encoding, field as fieldOptions } from "../../gen/coral/options/v1/options_pb.js";
import { toPlain, type Plain } from "../../surface/plain.js";

/** One response of a stream: its plain value without the cells, and the cells' JSON bytes. */
export interface StreamItem {
  plain: Record<string, Plain>;
  /** The JSON-encoded cells field, when the response has one: its proto name and its bytes. */
  raw?: { field: string; json: Buffer[] };
}

export type StreamCall = (method: string, json: unknown, signal: AbortSignal) => AsyncIterator<StreamItem>;

/** Connect streaming envelope flags. */
const COMPRESSED = 0x01;
const END_STREAM = 0x02;
/** A colony message larger than this is refused rather than buffered (the colony's batches are ~1 MiB). */
export const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

function cellsFieldOf(output: DescMessage): DescField | undefined {
  return output.fields.find(
    (f) => f.fieldKind === "scalar" && hasOption(f, fieldOptions) && getOption(f, fieldOptions).encoding === Encoding.JSON_COLUMNS,
  );
}

/**
 * A message as the chunks it arrived in, read without joining them: a batch's cells (most of its
 * bytes) go on to the script as these same buffers.
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
}

function varint(msg: Chunks, at: number): [number, number] {
  let v = 0;
  let shift = 0;
  for (;;) {
    if (at >= msg.length) throw new ConnectError("the colony sent a truncated message", Code.Internal);
    const b = msg.byte(at++);
    // Lengths and tags fit in 35 bits; past that only the position matters (int64 values skipped).
    if (shift < 35) v += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) return [v, at];
    if (shift > 63) throw new ConnectError("the colony sent a malformed message", Code.Internal);
  }
}

/**
 * Splits a binary message into the bytes of its cells field (number `cells`, a string) and the
 * rest, without decoding or copying the cells. A field repeated in the message keeps its last
 * occurrence, as protobuf's parsers do.
 */
export function splitCells(msg: Chunks, cells: number): { rest: Buffer; json?: Buffer[] } {
  const kept: Buffer[] = [];
  let json: Buffer[] | undefined;
  let at = 0;
  while (at < msg.length) {
    const start = at;
    let tag: number;
    [tag, at] = varint(msg, at);
    const wire = tag & 7;
    const number = Math.floor(tag / 8);
    if (wire === 0) [, at] = varint(msg, at);
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      let len: number;
      [len, at] = varint(msg, at);
      if (at + len > msg.length) throw new ConnectError("the colony sent a truncated message", Code.Internal);
      if (number === cells) json = msg.slice(at, at + len);
      at += len;
    } else throw new ConnectError(`the colony sent a message with wire type ${wire}`, Code.Internal);
    if (at > msg.length) throw new ConnectError("the colony sent a truncated message", Code.Internal);
    if (number !== cells) kept.push(...msg.slice(start, at));
  }
  return { rest: kept.length === 1 ? kept[0]! : Buffer.concat(kept), json };
}

/** The end-of-stream JSON of Connect: an error becomes a ConnectError with the colony's code. */
function endStreamError(body: Buffer): ConnectError | undefined {
  let end: { error?: { code?: unknown; message?: unknown } };
  try {
    end = JSON.parse(body.toString("utf8")) as typeof end;
  } catch {
    return new ConnectError("the colony ended the stream with unreadable JSON", Code.Internal);
  }
  if (!end.error) return undefined;
  const camel = typeof end.error.code === "string" ? end.error.code.replace(/(^|_)([a-z])/g, (_, _u, c: string) => c.toUpperCase()) : "";
  const code = (Code as unknown as Record<string, number>)[camel];
  return new ConnectError(typeof end.error.message === "string" ? end.error.message : "", typeof code === "number" ? code : Code.Unknown);
}

/** Connect's envelopes from a response body: [flags, payload], one at a time, as the caller asks. */
export async function* envelopes(body: AsyncIterable<Buffer>): AsyncGenerator<[number, Chunks]> {
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
        if (missing > MAX_MESSAGE_BYTES) throw new ConnectError(`the colony sent a message of ${missing} bytes (over ${MAX_MESSAGE_BYTES})`, Code.ResourceExhausted);
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
  if (parts || head.length) throw new ConnectError("the colony's stream ended in the middle of a message", Code.Internal);
}

const joined = (c: Chunks): Buffer => (c.parts.length === 1 ? c.parts[0]! : Buffer.concat(c.parts));

export function streamClient(address: string, token: string | undefined): StreamCall {
  const { hostname, port } = new URL(`http://${address}`);
  const host = hostname.replace(/^\[|\]$/g, "");
  const agent = new Agent({ keepAlive: true });
  return (name, json, signal) => {
    const method = QueryService.methods.find((m) => m.name === name)!;
    const output = method.output;
    const cells = cellsFieldOf(output);
    async function* responses(): AsyncGenerator<StreamItem> {
      let message: Uint8Array;
      try {
        message = toBinary(method.input, fromJson(method.input, json as JsonValue));
      } catch (e) {
        throw new ConnectError(`${name}: ${(e as Error).message}`, Code.InvalidArgument);
      }
      const envelope = Buffer.allocUnsafe(5 + message.length);
      envelope[0] = 0;
      envelope.writeUInt32BE(message.length, 1);
      envelope.set(message, 5);
      const headers: Record<string, string | number> = {
        "content-type": "application/connect+proto",
        "connect-protocol-version": "1",
        "content-length": envelope.length,
      };
      if (token) headers.authorization = `Bearer ${token}`;
      const req = request({ host, port, path: `/${QueryService.typeName}/${name}`, method: "POST", agent, signal, headers });
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        req.on("response", resolve);
        req.on("error", reject);
        req.end(envelope);
      });
      try {
        const type = res.headers["content-type"] ?? "";
        if (res.statusCode !== 200 || type !== "application/connect+proto") {
          const chunks: Buffer[] = [];
          for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
          const body = Buffer.concat(chunks);
          const e = type.startsWith("application/json") ? endStreamError(Buffer.from(`{"error":${body.toString("utf8") || "{}"}}`)) : undefined;
          if (e && e.code !== Code.Unknown) throw e;
          throw new ConnectError(res.statusCode === 200 ? `unsupported content type ${type}`.trim() : `HTTP ${res.statusCode}`, Code.Unknown);
        }
        for await (const [flags, payload] of envelopes(res as AsyncIterable<Buffer>)) {
          if (flags & COMPRESSED) throw new ConnectError("the colony sent a compressed message, which coral run did not ask for", Code.Internal);
          if (flags & END_STREAM) {
            const e = endStreamError(joined(payload));
            if (e) throw e;
            return;
          }
          if (!cells) {
            yield { plain: toPlain(output, fromBinary(output, joined(payload))) as Record<string, Plain> };
            continue;
          }
          const { rest, json: raw } = splitCells(payload, cells.number);
          const plain = toPlain(output, fromBinary(output, rest)) as Record<string, Plain>;
          delete plain[cells.name];
          // The bytes go into a line of the pipe as they are: a newline would end the line early.
          if (raw?.some((b) => b.includes(0x0a))) throw new ConnectError(`the colony sent ${cells.name} with a raw newline, which is not JSON's`, Code.Internal);
          yield raw?.length ? { plain, raw: { field: cells.name, json: raw } } : { plain };
        }
        throw new ConnectError("the colony's stream ended without its end message", Code.Internal);
      } finally {
        // Cancelled or failed midway: closing the connection is what stops the colony's query.
        if (!res.complete) res.destroy();
      }
    }
    return responses();
  };
}
