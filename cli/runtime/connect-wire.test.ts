// Connect's answers as every client of the colony reads them: envelopes over every way the network
// can cut the bytes into chunks, and what each answer that is not the expected one means.
import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { StreamQueryResponseSchema } from "../../gen/coral/colony/v1/query_pb.js";
import { envelopes } from "./connect-stream.js";
import { unexpectedAnswer, WireError } from "./connect-wire.js";

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

async function collect(chunks: Buffer[], readMaxBytes = 1 << 20): Promise<[number, Buffer][]> {
  const out: [number, Buffer][] = [];
  for await (const [flags, c] of envelopes(from(chunks), readMaxBytes)) out.push([flags, c.joined()]);
  return out;
}

describe("envelopes", () => {
  const batch = create(StreamQueryResponseSchema, { rowCount: 3, valuesJson: "[[1,2,3]]" });
  const messages = [toBinary(StreamQueryResponseSchema, batch), new Uint8Array(0), Buffer.from('{"metadata":{}}')];
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

  it("refuses a message length it would have to buffer past the limit, before reading it", async () => {
    const err = await collect([Buffer.from([0, 0xff, 0xff, 0xff, 0xff])]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WireError);
    expect(err).toMatchObject({ code: "resource_exhausted", message: expect.stringMatching(/a message of 4294967295 bytes, over the 1048576/) });
    expect(await collect([envelope(0, new Uint8Array(16))], 16)).toHaveLength(1);
    await expect(collect([envelope(0, new Uint8Array(17))], 16)).rejects.toMatchObject({ code: "resource_exhausted" });
  });
});

describe("an answer that is not the expected one", () => {
  const cases: [string, number, string, string, { code: string; message: string }][] = [
    ["Connect's error JSON", 401, "application/json", '{"code":"unauthenticated","message":"bad token"}', { code: "unauthenticated", message: "bad token" }],
    ["error JSON without a code: the status's", 503, "application/json", '{"message":"draining"}', { code: "unavailable", message: "draining" }],
    ["an unknown code", 500, "application/json", '{"code":"teapot","message":"x"}', { code: "unknown", message: "x" }],
    ["a status from something else", 404, "text/plain", "nope", { code: "unimplemented", message: "HTTP 404" }],
    ["JSON that is not an error", 502, "application/json", "[1]", { code: "unavailable", message: "HTTP 502" }],
    ["a 200 of another content type", 200, "text/html", "<html>", { code: "internal", message: "unsupported content type text/html" }],
  ];
  for (const [what, status, type, body, expected] of cases) {
    it(what, () => {
      expect(unexpectedAnswer(status, type, Buffer.from(body))).toMatchObject(expected);
    });
  }
});
