// The broker's own reading of Connect streams: envelopes and the split of a batch into its header
// and its cells' bytes, over every way the network can cut the bytes into chunks.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { StreamQueryResponseSchema } from "../../gen/coral/colony/v1/query_pb.js";
import { itemLine } from "./broker.js";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { rpcFailure } from "../runtime/errors.js";
import { Chunks, envelopes, splitCells, streamClient } from "./broker-stream.js";

const CELLS = StreamQueryResponseSchema.fields.find((f) => f.name === "values_json")!.number;

function envelope(flags: number, payload: Uint8Array): Buffer {
  const b = Buffer.alloc(5 + payload.length);
  b[0] = flags;
  b.writeUInt32BE(payload.length, 1);
  b.set(payload, 5);
  return b;
}

/** `bytes` cut into chunks of `size` bytes. */
function cut(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size));
  return out;
}

async function* from(chunks: Buffer[]): AsyncGenerator<Buffer> {
  yield* chunks;
}

async function collect(chunks: Buffer[]): Promise<[number, Buffer][]> {
  const out: [number, Buffer][] = [];
  for await (const [flags, c] of envelopes(from(chunks))) out.push([flags, Buffer.concat(c.parts)]);
  return out;
}

const batch = (values: unknown[][], extra: Partial<{ truncated: boolean; columns: { name: string; type: string }[] }> = {}) =>
  create(StreamQueryResponseSchema, { rowCount: values[0]?.length ?? 0, valuesJson: JSON.stringify(values), ...extra });

describe("envelopes", () => {
  const messages = [toBinary(StreamQueryResponseSchema, batch([[1, 2, 3]])), new Uint8Array(0), Buffer.from('{"metadata":{}}')];
  const wire = Buffer.concat([envelope(0, messages[0]!), envelope(0, messages[1]!), envelope(2, messages[2]!)]);

  for (const size of [1, 2, 5, 7, 64, wire.length]) {
    it(`reads the same messages from chunks of ${size} bytes`, async () => {
      expect(await collect(cut(wire, size))).toEqual([
        [0, Buffer.from(messages[0]!)],
        [0, Buffer.alloc(0)],
        [2, Buffer.from(messages[2]!)],
      ]);
    });
  }

  it("a body that ends inside a message is an error, not a short stream", async () => {
    await expect(collect([wire.subarray(0, wire.length - 1)])).rejects.toThrow(/ended in the middle of a message/);
    await expect(collect([wire.subarray(0, 3)])).rejects.toThrow(/ended in the middle of a message/);
  });

  it("refuses a message length it would have to buffer past the limit", async () => {
    const huge = Buffer.from([0, 0xff, 0xff, 0xff, 0xff]);
    const err = await collect([huge]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
  });
});

describe("splitCells", () => {
  const values = [
    [1, null, 2 ** 53 + 2, -0.5],
    ['quote " backslash \\ newline \n tab \t', "ünïcödé 🙂", "", "nan"],
  ];
  const msg = batch(values, { truncated: true, columns: [{ name: "n", type: "BIGINT" }, { name: "s", type: "VARCHAR" }] });
  const bytes = Buffer.from(toBinary(StreamQueryResponseSchema, msg));

  for (const size of [1, 3, 16, bytes.length]) {
    it(`keeps the cells as the colony's bytes and the rest as a message (chunks of ${size})`, () => {
      const { rest, json } = splitCells(new Chunks(cut(bytes, size)), CELLS);
      expect(Buffer.concat(json!).toString("utf8")).toBe(msg.valuesJson);
      expect(JSON.parse(Buffer.concat(json!).toString("utf8"))).toEqual(values);
      const header = fromBinary(StreamQueryResponseSchema, rest);
      expect(header.valuesJson).toBe("");
      expect(header.rowCount).toBe(4);
      expect(header.truncated).toBe(true);
      expect(header.columns.map((c) => c.name)).toEqual(["n", "s"]);
    });
  }

  it("a message without cells has none", () => {
    const { json } = splitCells(new Chunks([Buffer.from(toBinary(StreamQueryResponseSchema, create(StreamQueryResponseSchema, { rowCount: 0 })))]), CELLS);
    expect(json).toBeUndefined();
  });

  it("a truncated message is an error", () => {
    expect(() => splitCells(new Chunks([bytes.subarray(0, bytes.length - 3)]), CELLS)).toThrow(/truncated/);
  });
});

describe("itemLine", () => {
  it("is one JSON line whose cells are the raw bytes, and counts its bytes exactly", () => {
    const cells = [Buffer.from('[[1,2],["a'), Buffer.from('\\"b",null]]')];
    const line = itemLine(7, { plain: { columns: [], row_count: 2, truncated: false }, raw: { field: "values_json", json: cells } });
    const text = Buffer.concat(line.parts.map((p) => (typeof p === "string" ? Buffer.from(p) : p)));
    expect(line.bytes).toBe(text.length);
    expect(text.at(-1)).toBe(0x0a);
    expect(text.subarray(0, -1).includes(0x0a)).toBe(false);
    expect(JSON.parse(text.toString("utf8"))).toEqual({ id: 7, item: { columns: [], row_count: 2, truncated: false }, raw: { values_json: [[1, 2], ["a\"b", null]] } });
  });

  it("a response without cells is the item alone", () => {
    const line = itemLine(3, { plain: { n: Number.NaN } });
    expect(line.parts).toEqual(['{"id":3,"item":{"n":{"$":["num","NaN"]}}}\n']);
    expect(line.bytes).toBe(Buffer.byteLength(line.parts[0] as string));
  });
});

describe("answers that are not a stream", () => {
  const cases: [string, number, string, string, { code: string; message: RegExp }][] = [
    ["a Connect error with its HTTP status", 401, "application/json", '{"code":"unauthenticated","message":"bad token"}', { code: "unauthenticated", message: /rejected the request: bad token/ }],
    ["a 404 from something else", 404, "text/plain", "nope", { code: "unavailable", message: /did not answer as a Coral colony \(HTTP 404\)/ }],
    ["a 200 of another content type", 200, "text/html", "<html>", { code: "unavailable", message: /unsupported content type text\/html/ }],
  ];
  for (const [what, status, type, body, expected] of cases) {
    it(`${what}: reported as coral query reports it`, async () => {
      const server = createServer((req, res) => {
        req.resume();
        res.writeHead(status, { "content-type": type }).end(body);
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      try {
        const err = await streamClient(addr, "t")("StreamQuery", { sql: "SELECT 1" }, new AbortController().signal)
          .next()
          .catch((e: unknown) => e);
        const f = rpcFailure(err, addr);
        expect(f.code).toBe(expected.code);
        expect(f.message).toMatch(expected.message);
      } finally {
        server.close();
      }
    });
  }
});
