// The broker's split of a batch into its header and its cells' bytes, over every way the network can
// cut the bytes into chunks, and the line that carries them to the script.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { StreamQueryResponseSchema } from "../../gen/coral/colony/v1/query_pb.js";
import { itemLine } from "./broker.js";
import { Chunks } from "../runtime/connect-stream.js";
import { splitCells } from "./broker-stream.js";

const CELLS = StreamQueryResponseSchema.fields.find((f) => f.name === "values_json")!.number;

/** `bytes` cut into chunks of `size` bytes. */
function cut(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size));
  return out;
}

const batch = (values: unknown[][], extra: Partial<{ truncated: boolean; columns: { name: string; type: string }[] }> = {}) =>
  create(StreamQueryResponseSchema, { rowCount: values[0]?.length ?? 0, valuesJson: JSON.stringify(values), ...extra });

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
