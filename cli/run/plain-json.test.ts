import { create, toJson, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { toPlain } from "../../surface/plain.js";
import { apiShape } from "./api-shape-source.js";
import { checkRequest, plainOf } from "./plain-json.js";

// plainOf reads the colony's Connect JSON with the API's shape; it must give exactly what the
// protobuf runtime's toPlain gives for the decoded message, for every message the API answers with.

/** A message with every field set to a value that exercises its type (edge values included). */
function filled(desc: DescMessage, seed: number, depth = 0): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  for (const f of desc.fields) init[f.localName] = valueFor(f, seed + f.number, depth);
  return create(desc, init as never) as unknown as Record<string, unknown>;
}

function scalarFor(f: DescField & { scalar?: number }, seed: number): unknown {
  switch (f.scalar) {
    case 1:
    case 2:
      return [1.5, -0.25, Number.NaN, Number.POSITIVE_INFINITY, 0][seed % 5];
    case 3:
    case 6:
    case 16:
    case 18:
      return [2n ** 60n + 7n, -42n, 0n, 9007199254740993n][seed % 4];
    case 4:
      return [2n ** 63n + 1n, 5n][seed % 2];
    case 8:
      return seed % 2 === 0;
    case 9:
      return ["", "naïve 🙂", "x"][seed % 3];
    case 12:
      return new Uint8Array([0, 255, seed % 256]);
    default:
      return seed % 1000;
  }
}

function valueFor(f: DescField, seed: number, depth: number): unknown {
  const one = (kind: string, m?: DescMessage): unknown => {
    if (kind === "enum") return f.enum!.values[seed % f.enum!.values.length]!.number;
    if (kind === "message") {
      if (m!.typeName === "google.protobuf.Timestamp") return timestampFromMs([1_700_000_000_123, -62_135_596_800_000, 0][seed % 3]!);
      if (m!.typeName === "google.protobuf.Struct") return create(m!, { fields: {} } as never);
      if (m!.typeName.startsWith("google.protobuf.")) return create(m!);
      return depth > 3 ? create(m!) : filled(m!, seed, depth + 1);
    }
    return scalarFor(f as never, seed);
  };
  switch (f.fieldKind) {
    case "scalar":
      return seed % 3 === 0 && f.presence === 1 ? undefined : one("scalar");
    case "enum":
      return one("enum");
    case "message":
      return seed % 4 === 0 ? undefined : one("message", f.message);
    case "list":
      return [one(f.listKind, f.message), one(f.listKind, f.message)];
    case "map":
      return { a: one(f.mapKind, f.message), b: one(f.mapKind, f.message) };
  }
}

describe("plainOf", () => {
  for (const method of QueryService.methods) {
    it(`${method.output.name}: the same plain value as toPlain, set and empty`, () => {
      for (const seed of [0, 1, 2, 3, 5]) {
        const msg = filled(method.output, seed);
        expect(plainOf(method.output.typeName, toJson(method.output, msg as never), apiShape), `seed ${seed}`).toEqual(toPlain(method.output, msg as never));
      }
      const empty = create(method.output);
      expect(plainOf(method.output.typeName, toJson(method.output, empty), apiShape)).toEqual(toPlain(method.output, empty));
    });
  }
});

describe("checkRequest", () => {
  it("accepts proto3 JSON requests, refuses unknown fields and wrong types", () => {
    expect(checkRequest("coral.colony.v1.GetPercentileRequest", { service: "s", percentile: 0.99, timeRangeMs: "3600000" }, apiShape)).toBeUndefined();
    expect(checkRequest("coral.colony.v1.GetPercentileRequest", { service: "s", time_range_ms: 5, percentile: "NaN" }, apiShape)).toBeUndefined();
    expect(checkRequest("coral.colony.v1.GetPercentileRequest", { service: "s", percentile: "high" }, apiShape)).toMatch(/percentile/);
    expect(checkRequest("coral.colony.v1.ListServicesRequest", { colony: "127.0.0.1:1" }, apiShape)).toMatch(/no field "colony"/);
    expect(checkRequest("coral.colony.v1.GetPercentileRequest", { timeRangeMs: "1e3" }, apiShape)).toMatch(/integer/);
    expect(checkRequest("coral.colony.v1.GetPercentileRequest", { timeRangeMs: "99999999999999999999" }, apiShape)).toMatch(/out of range/);
  });
});
