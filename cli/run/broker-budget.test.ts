import { describe, expect, it } from "vitest";
import { DEFAULT_BUDGET, exhaustedMessage, formatBudget, parseBudget, reportLine } from "./broker-budget.js";

describe("--budget", () => {
  it("takes comma lists and repeats; later values win; none lifts a limit", () => {
    const b = parseBudget(["rpcs=5,rows=100", "bytes=2MiB,time=30s", "rows=none"]);
    expect(b).toEqual({ rpcs: 5, rows: Infinity, bytes: 2 * 1024 ** 2, time: 30_000 });
    expect(parseBudget([])).toEqual(DEFAULT_BUDGET);
    expect(parseBudget(["bytes=100MB"]).bytes).toBe(100e6);
    expect(parseBudget(["bytes=4096"]).bytes).toBe(4096);
  });

  it("names the budget and the expected form when a value is wrong", () => {
    expect(() => parseBudget(["rpcs=many"])).toThrow('--budget rpcs: "many" is not a whole number');
    expect(() => parseBudget(["time=30"])).toThrow(/--budget time: "30" is not a duration/);
    expect(() => parseBudget(["bytes=1XB"])).toThrow(/--budget bytes: "1XB" is not a size/);
    expect(() => parseBudget(["calls=3"])).toThrow('--budget: expected rpcs=N, rows=N, bytes=SIZE or time=DURATION, got "calls=3"');
    expect(() => parseBudget(["rpcs"])).toThrow(/got "rpcs"/);
  });

  it("formats as the flag is written", () => {
    expect(formatBudget(DEFAULT_BUDGET)).toBe("rpcs=10000,rows=10000000,bytes=1073741824,time=300s");
    expect(formatBudget({ ...DEFAULT_BUDGET, rows: Infinity })).toContain("rows=none");
  });

  it("a refusal says which budget, what was used and how to raise it", () => {
    const used = { rpcs: 3, rows: 120, bytes: 4096, time: 1500 };
    expect(exhaustedMessage("rpcs", used, { ...DEFAULT_BUDGET, rpcs: 3 })).toBe(
      "this run's rpcs budget (3 RPCs) is used up: 3 RPCs, 120 rows, 4096 bytes, 1.5 s of colony time so far — raise it with: coral run --budget rpcs=N",
    );
    expect(reportLine(["rows"], used, DEFAULT_BUDGET)).toBe(
      "coral run: budget exceeded (rows): used 3 RPCs, 120 rows, 4096 bytes, 1.5 s of colony time; budget rpcs=10000,rows=10000000,bytes=1073741824,time=300s",
    );
  });
});
