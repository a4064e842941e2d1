import { create } from "@bufbuild/protobuf";
import { FieldOptions_OptionTargetType, FieldOptionsSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { GetPercentileResponseSchema } from "../gen/coral/colony/v1/query_pb.js";
import { toPlain } from "./plain.js";

describe("toPlain", () => {
  it("an unset optional field is null (no data), a set one its value, zero included", () => {
    expect(toPlain(GetPercentileResponseSchema, create(GetPercentileResponseSchema, { unit: "nanoseconds" }))).toEqual({ value: null, unit: "nanoseconds", sample_count: 0 });
    expect(toPlain(GetPercentileResponseSchema, create(GetPercentileResponseSchema, { value: 0 }))).toMatchObject({ value: 0 });
  });

  it("enums are their names, in lists too (the SDK's types say string)", () => {
    const msg = create(FieldOptionsSchema, { targets: [FieldOptions_OptionTargetType.TARGET_TYPE_FILE, FieldOptions_OptionTargetType.TARGET_TYPE_FIELD] });
    const plain = toPlain(FieldOptionsSchema, msg) as { targets: unknown[] };
    expect(plain.targets).toEqual(["TARGET_TYPE_FILE", "TARGET_TYPE_FIELD"]);
  });
});
