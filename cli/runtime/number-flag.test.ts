import { describe, expect, it } from "vitest";
import { numberFlag } from "./number-flag.js";

describe("numberFlag", () => {
  it("takes numbers within the bounds, underscores as separators", () => {
    expect(numberFlag("--batch", " 512 ", { min: 1, max: 100_000, integer: true })).toBe(512);
    expect(numberFlag("--rate", "1_000.5", { min: 1 })).toBe(1000.5);
    expect(numberFlag("--seed", "0", { min: 0, integer: true })).toBe(0);
  });

  it.each([
    ["--batch", "0", { min: 1, max: 100_000, integer: true }, '--batch: expected a whole number from 1 to 100000, got "0"'],
    ["--batch", "1.5", { min: 1, max: 100_000, integer: true }, '--batch: expected a whole number from 1 to 100000, got "1.5"'],
    ["--rate", "fast", { min: 1 }, '--rate: expected a number of at least 1, got "fast"'],
    ["$CORAL_SCRIPT_TIMEOUT", "", { min: 0, max: 10 }, '$CORAL_SCRIPT_TIMEOUT: expected a number from 0 to 10, got ""'],
    ["--seed", "Infinity", { min: 0, integer: true }, '--seed: expected a whole number of at least 0, got "Infinity"'],
  ] as const)("%s %j is refused in the one wording", (flag, text, rule, message) => {
    expect(() => numberFlag(flag, text, rule)).toThrow(message);
  });
});
