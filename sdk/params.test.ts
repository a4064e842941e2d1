import { describe, expect, it } from "vitest";
import { createParams } from "./params.js";

describe("params", () => {
  it("a parameter named like a reader does not replace it, and stays readable", () => {
    const p = createParams({ has: "1", string: "x", number: "7", limit: "20" });
    expect(typeof p.has).toBe("function");
    expect(p.has("has")).toBe(true);
    expect(p.string("has")).toBe("1");
    expect(p.string("string")).toBe("x");
    expect(p.number("number")).toBe(7);
    expect(p.limit).toBe("20");
    expect(Object.keys(p)).toEqual(["has", "string", "number", "limit"]);
  });

  it("keeps __proto__ an ordinary parameter", () => {
    const p = createParams(JSON.parse('{"__proto__": "x"}') as Record<string, string>);
    expect(p.string("__proto__")).toBe("x");
    expect(Object.getPrototypeOf(Object.getPrototypeOf(p))).toBe(Object.prototype);
    expect(typeof p.number).toBe("function");
  });
});
