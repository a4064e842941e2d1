import { describe, expect, it } from "vitest";
import { closest, editDistance } from "./suggest.js";

describe("editDistance", () => {
  it.each([
    ["query", "query", 0],
    ["qurey", "query", 1], // one transposition, as a typist counts it
    ["quer", "query", 1],
    ["metricz", "metrics", 1],
    ["", "run", 3],
    ["colony", "init", 6],
  ])("%s → %s = %i", (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
    expect(editDistance(b, a)).toBe(d);
  });
});

describe("closest", () => {
  const commands = ["colony", "demo", "query", "run", "init"];
  it("guesses within a third of the word's length", () => {
    expect(closest("qurey", commands)).toBe("query");
    expect(closest("colonyy", commands)).toBe("colony");
    expect(closest("rn", commands)).toBe("run");
  });
  it("takes a prefix of three or more characters", () => {
    expect(closest("met", ["metrics", "services"])).toBe("metrics");
  });
  it("guesses nothing for words that resemble no candidate", () => {
    expect(closest("frobnicate", commands)).toBeUndefined();
    expect(closest("x", commands)).toBeUndefined();
  });
});
