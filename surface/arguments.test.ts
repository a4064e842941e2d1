import { describe, expect, it } from "vitest";
import { boundValue, checkBounds, fieldValue } from "./arguments.js";
import { UnitParseError } from "./units.js";

describe("fieldValue", () => {
  it("converts each rule to the field's protobuf-es value", () => {
    expect(fieldValue("durationMs", "5m")).toBe(300_000n);
    expect(fieldValue("durationNs", "1.5ms")).toBe(1_500_000n);
    expect(fieldValue("percent", "99.9")).toBe(0.999);
    expect(fieldValue("int", "1_000")).toBe(1000);
    expect(fieldValue("int64", "42")).toBe(42n);
    expect(fieldValue("double", "0.25")).toBe(0.25);
    expect(fieldValue("bool", "yes")).toBe(true);
    expect(fieldValue("string", " as is ")).toBe(" as is ");
  });

  it.each([
    ["int", "2147483648", /out of range \(at most 2,147,483,647\)/],
    ["int64", "1e300", /out of range/],
    ["int", "1.5", /not an integer/],
    ["durationMs", "99999999999999d", /too long a duration/],
    ["durationMs", "5", /not a duration/],
    ["double", "NaN", /not a number/],
    ["percent", "0", /./],
  ] as const)("refuses %s %s, saying why", (rule, text, message) => {
    expect(() => fieldValue(rule, text)).toThrow(UnitParseError);
    expect(() => fieldValue(rule, text)).toThrow(message);
  });
});

describe("bounds", () => {
  it("reads a percentile's bound as a fraction without refusing 0", () => {
    expect(boundValue("percent", "0")).toBe(0);
    expect(boundValue("percent", "100")).toBe(1);
    expect(boundValue("durationMs", "1h")).toBe(3_600_000);
  });

  it("words a refusal as the user writes values", () => {
    const limit = { parse: "int" as const, min: "1", max: "1000" };
    expect(() => checkBounds(limit, 1000, "1000")).not.toThrow();
    expect(() => checkBounds(limit, 1001, "1001")).toThrow("must be in 1..1000; got 1001");
    const percentile = { parse: "percent" as const, min: "0", minExclusive: true, max: "100" };
    expect(() => checkBounds(percentile, 0.999, "99.9")).not.toThrow();
    expect(() => checkBounds(percentile, 1.5, "150")).toThrow("must be in (0, 100]; got 150");
    expect(() => checkBounds({ parse: "durationMs" }, -1n, "-1ms")).not.toThrow();
  });
});
