// Server-streaming calls (StreamQuery) for the broker: Connect's streaming protocol in binary over
// the colony's one connection (cli/runtime/client.ts), its envelopes read by the same code as
// `coral query`'s (cli/runtime/connect-wire.ts), but not decoded by protobuf-es whole, so that a
// batch's cells go from the colony to the script as the bytes the colony wrote. Loaded at a
// script's first stream only: runs making unary calls alone never load protobuf-es or the API's
// descriptors (broker-rpc.ts).
//
// Measured (1M rows, docs/performance.md stream_sql): through connect-node, coral run spent ~3.6 s
// of CPU, most of it decoding each batch's values_json into a JS string (TextDecoder, ~0.8 s),
// joining chunks, and JSON.stringify escaping that string again for the pipe; Deno then unescaped
// it and parsed it a second time. Here the cells field of a message (the proto's
// ENCODING_JSON_COLUMNS string) is never decoded: its bytes are already a JSON text, so they are
// written into the line as a JSON value, and Deno parses each batch once. Only the small rest of
// the message (columns, row_count, truncated) goes through protobuf-es.
import { fromBinary, fromJson, getOption, hasOption, toBinary, type DescField, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { Encoding, field as fieldOptions } from "../../gen/coral/options/v1/options_pb.js";
import { toPlain, type Plain } from "../../surface/plain.js";
import type { ColonyClient } from "../runtime/client.js";
import { envelope, streamMessages, type Chunks } from "../runtime/connect-stream.js";
import { WireError } from "../runtime/connect-wire.js";

/** One response of a stream: its plain value without the cells, and the cells' JSON bytes. */
export interface StreamItem {
  plain: Record<string, Plain>;
  /** The JSON-encoded cells field, when the response has one: its proto name and its bytes. */
  raw?: { field: string; json: Buffer[] };
}

export type StreamCall = (method: string, json: unknown, signal: AbortSignal) => AsyncIterator<StreamItem>;

function cellsFieldOf(output: DescMessage): DescField | undefined {
  return output.fields.find(
    (f) => f.fieldKind === "scalar" && hasOption(f, fieldOptions) && getOption(f, fieldOptions).encoding === Encoding.JSON_COLUMNS,
  );
}

function varint(msg: Chunks, at: number): [number, number] {
  let v = 0;
  let shift = 0;
  for (;;) {
    if (at >= msg.length) throw new WireError("internal", "the colony sent a truncated message");
    const b = msg.byte(at++);
    // Lengths and tags fit in 35 bits; past that only the position matters (int64 values skipped).
    if (shift < 35) v += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) return [v, at];
    if (shift > 63) throw new WireError("internal", "the colony sent a malformed message");
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
      if (at + len > msg.length) throw new WireError("internal", "the colony sent a truncated message");
      if (number === cells) json = msg.slice(at, at + len);
      at += len;
    } else throw new WireError("internal", `the colony sent a message with wire type ${wire}`);
    if (at > msg.length) throw new WireError("internal", "the colony sent a truncated message");
    if (number !== cells) kept.push(...msg.slice(start, at));
  }
  return { rest: kept.length === 1 ? kept[0]! : Buffer.concat(kept), json };
}

export function streamClient(client: ColonyClient): StreamCall {
  return (name, json, signal) => {
    const method = QueryService.methods.find((m) => m.name === name)!;
    const output = method.output;
    const cells = cellsFieldOf(output);
    async function* responses(): AsyncGenerator<StreamItem> {
      let message: Uint8Array;
      try {
        message = toBinary(method.input, fromJson(method.input, json as JsonValue));
      } catch (e) {
        throw new WireError("invalid_argument", `${name}: ${(e as Error).message}`);
      }
      const res = await client.post(`/${QueryService.typeName}/${name}`, "application/connect+proto", envelope(message), signal);
      for await (const payload of streamMessages(res, client.body(res), client.limits.readMaxBytes)) {
        if (!cells) {
          yield { plain: toPlain(output, fromBinary(output, payload.joined())) as Record<string, Plain> };
          continue;
        }
        const { rest, json: raw } = splitCells(payload, cells.number);
        const plain = toPlain(output, fromBinary(output, rest)) as Record<string, Plain>;
        delete plain[cells.name];
        // The bytes go into a line of the pipe as they are: a newline would end the line early.
        if (raw?.some((b) => b.includes(0x0a))) throw new WireError("internal", `the colony sent ${cells.name} with a raw newline, which is not JSON's`);
        yield raw?.length ? { plain, raw: { field: cells.name, json: raw } } : { plain };
      }
    }
    return responses();
  };
}
