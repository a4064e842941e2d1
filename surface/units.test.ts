import { describe, expect, it } from "vitest";
import {
  UnitParseError,
  formatBytes,
  formatDurationNs,
  formatRatio,
  parseBoolean,
  parseDurationMs,
  parseDurationNs,
  parseNumber,
  parsePercent,
} from "./units.js";

describe("durations", () => {
  it.each([
    ["500ms", 500e6],
    ["1.5s", 1.5e9],
    ["250us", 250e3],
    ["250µs", 250e3],
    ["5m", 300e9],
    ["1h30m", 5400e9],
    ["2d", 172800e9],
    ["42ns", 42],
    [" 1h ", 3600e9],
  ])("%s → %d ns", (text, ns) => {
    expect(parseDurationNs(text)).toBe(ns);
  });

  it("converts to whole milliseconds", () => {
    expect(parseDurationMs("5m")).toBe(300_000);
    expect(parseDurationMs("1h")).toBe(3_600_000);
  });

  it.each(["5xs", "", "500", "ms", "1h 30m", "-5m", "1.2.3s"])("refuses %j, saying how to write one", (text) => {
    expect(() => parseDurationNs(text)).toThrow(UnitParseError);
    expect(() => parseDurationNs(text)).toThrow(/write it like 500ms/);
  });
});

describe("percent", () => {
  it("maps (0, 100] onto (0, 1] without binary noise", () => {
    expect(parsePercent("99")).toBe(0.99);
    expect(parsePercent("99.9")).toBe(0.999);
    expect(parsePercent("100")).toBe(1);
    expect(parsePercent("50%")).toBe(0.5);
  });
  it.each(["0", "100.1", "-1", "abc", ""])("refuses %j", (text) => {
    expect(() => parsePercent(text)).toThrow(/not a percentage in \(0, 100\]/);
  });
});

describe("numbers and booleans", () => {
  it("parses numbers, integers only when asked", () => {
    expect(parseNumber("1_000")).toBe(1000);
    expect(parseNumber("2.5")).toBe(2.5);
    expect(() => parseNumber("2.5", true)).toThrow(/not an integer/);
    expect(() => parseNumber("")).toThrow(/not a number/);
  });
  it("parses booleans", () => {
    expect(parseBoolean("yes")).toBe(true);
    expect(parseBoolean("OFF")).toBe(false);
    expect(() => parseBoolean("maybe")).toThrow(/not a boolean/);
  });
});

describe("formatting", () => {
  it("picks a readable duration unit", () => {
    expect(formatDurationNs(892_100_000)).toBe("892.1ms");
    expect(formatDurationNs(1_523_400_000)).toBe("1.52s");
    expect(formatDurationNs(45_200)).toBe("45.2µs");
    expect(formatDurationNs(12)).toBe("12ns");
    expect(formatDurationNs(90e9)).toBe("1.5m");
  });
  it("formats ratios and bytes", () => {
    expect(formatRatio(0.0012)).toBe("0.12%");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(8 * 1024 ** 3)).toBe("8.0 GiB");
  });
});
