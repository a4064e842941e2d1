import { describe, expect, it } from "vitest";
import { cellOf, formatAge, formatCsv, formatTable, headerOf, humanCell } from "./render.js";

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

describe("table headers and fitting", () => {
  it("headers drop dotted prefixes and the unit suffix their cells show; counts read as plurals", () => {
    expect(headerOf("service.name")).toBe("NAME");
    expect(headerOf("duration_ns", "ns")).toBe("DURATION");
    expect(headerOf("duration_ns")).toBe("DURATION_NS");
    expect(headerOf("memory_used_bytes", "bytes")).toBe("MEMORY_USED");
    expect(headerOf("span_count")).toBe("SPANS");
    expect(headerOf("total_count")).toBe("TOTAL");
    const { text } = formatTable([{ request_count: 1 }], { columns: ["request_count"], units: {}, rawHeaders: true });
    expect(text.split("\n")[0]).toBe("REQUEST_COUNT");
  });

  it("ages read like kubectl's, and a clock ahead of ours is not 'negative ago'", () => {
    const now = new Date("2026-12-01T12:00:00Z");
    const at = (s: number) => formatAge(new Date(now.getTime() - s * 1000), now);
    expect([at(45), at(12 * 60), at(71 * 60), at(3 * 86_400 + 4 * 3600), at(-5)]).toEqual(["45s ago", "12m ago", "1h11m ago", "3d4h ago", "in 5s"]);
    expect(humanCell(new Date(now.getTime() - 90_000), undefined, now)).toBe("1m ago");
  });

  it("fits a width by cutting the widest text column, never ids or numbers", () => {
    const rows = [{ trace_id: "a".repeat(32), root_name: "GET /api/v1/customers/{id}/orders/{order}", n: 123456 }];
    const { text } = formatTable(rows, { columns: ["trace_id", "root_name", "n"], units: {}, maxWidth: 60 });
    const lines = text.trimEnd().split("\n");
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(60);
    expect(lines[1]).toContain("a".repeat(32));
    expect(lines[1]).toMatch(/GET \/api\S*…\s+123456$/);
  });

  it("gives up fitting rather than cutting text below 8 columns", () => {
    const { text } = formatTable([{ id: "x".repeat(40), name: "abcdefghijkl" }], { columns: ["id", "name"], units: {}, maxWidth: 20 });
    expect(text.split("\n")[1]).toBe(`${"x".repeat(40)}  abcdefg…`);
  });
});
