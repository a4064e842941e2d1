import { describe, expect, it } from "vitest";
import { cellOf, formatCsv, formatTable, humanCell } from "./render.js";

describe("table", () => {
  it("aligns columns, right-aligns numbers and applies units", () => {
    const { text } = formatTable(
      [
        { name: "payments", p99: 892_100_000, rate: 0.0012 },
        { name: "legacy-api", p99: 1_523_400_000, rate: 0.035 },
      ],
      { columns: ["name", "p99", "rate"], units: { p99: "ns", rate: "ratio" } },
    );
    expect(text).toBe(["NAME            P99   RATE", "payments    892.1ms  0.12%", "legacy-api    1.52s  3.50%", ""].join("\n"));
  });

  it("shows control characters in values as escapes, so a row stays one line", () => {
    expect(humanCell("evil\nname\x1b[31m")).toBe("evil\\nname\\u001b[31m");
    const { text } = formatTable([{ name: "a\tb\r\n" }], { columns: ["name"], units: {} });
    expect(text.split("\n")).toEqual(["NAME", "a\\tb\\r\\n", ""]);
  });

  it("shows nested fields by dotted path and missing values as -", () => {
    const row = { service: { name: "payments" }, first_seen: null };
    expect(cellOf(row, "service.name")).toBe("payments");
    expect(humanCell(cellOf(row, "first_seen"))).toBe("-");
    expect(humanCell(new Date("2026-11-24T10:00:00.123Z"))).toBe("2026-11-24T10:00:00Z");
  });
});

describe("csv", () => {
  it("quotes what needs quoting and keeps raw values", () => {
    const csv = formatCsv([{ a: 'say "hi", ok', b: 892_100_000, c: null }], ["a", "b", "c"]);
    expect(csv).toBe('a,b,c\r\n"say ""hi"", ok",892100000,\r\n');
  });
});
