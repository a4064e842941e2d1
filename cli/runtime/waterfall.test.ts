import { describe, expect, it } from "vitest";
import { formatWaterfall } from "./waterfall.js";

const MS = 1e6;

function span(id: string, parent: string, service: string, name: string, startMs: number, durationMs: number, error = false) {
  return { span_id: id, parent_span_id: parent, service, name, start_offset_ns: startMs * MS, duration_ns: durationMs * MS, error };
}

const table = (rows: ReturnType<typeof span>[], width = 80) => formatWaterfall(rows, { width, wide: false });
/** The span lines: between the header and the blank line before the legend. */
const spanLines = (text: string) => {
  const lines = text.split("\n");
  return lines.slice(3, lines.indexOf("", 3));
};

describe("waterfall", () => {
  it("draws the tree by depth, names a service where the trace enters it, scales bars to the trace", () => {
    const text = formatWaterfall(
      [
        span("a", "", "frontend", "GET /", 0, 100),
        span("b", "a", "frontend", "GET /stock", 10, 40),
        span("c", "b", "inventory", "GET /stock", 12, 36, true),
      ],
      { width: 80, wide: false, traceId: "4bf92f3577b34da6a3ce929d0e0e4736" },
    );
    expect(text).toBe(
      [
        "4bf92f3577b34da6a3ce929d0e0e4736  3 spans · 2 services · 100.0ms · 1 failed",
        "",
        " SPAN                     DURATION 0                        100.0ms",
        " frontend GET /            100.0ms ████████████████████████████████",
        "   GET /stock               40.0ms    █████████████",
        "!    inventory GET /stock   36.0ms    █████████████",
        "",
        "█ critical path  ░ other spans  ! failed",
        "",
      ].join("\n"),
    );
  });

  it("marks the critical path: of two parallel calls, only the one the parent waited for", () => {
    const lines = spanLines(
      table([span("root", "", "api", "GET /", 0, 100), span("slow", "root", "api", "call slow", 0, 90), span("fast", "root", "api", "call fast", 10, 40)]),
    );
    expect(lines[0]).toMatch(/█+$/);
    expect(lines.find((l) => l.includes("call slow"))).toMatch(/█+$/);
    expect(lines.find((l) => l.includes("call fast"))).toMatch(/ ░+$/);
  });

  it("draws a span whose parent is missing at the top, marked, and the legend says why", () => {
    const text = table([span("a", "", "api", "root", 0, 10), span("x", "ffffffffffffffff", "worker", "orphan", 2, 5)]);
    expect(spanLines(text).map((l) => l.trim().split(/\s{2,}/)[0])).toEqual(["api root", "… worker orphan"]);
    expect(text).toContain("… parent missing");
  });

  it("draws every span once when parent links loop, point at themselves or ids repeat", () => {
    const rows = [
      span("a", "b", "svc", "loop a", 0, 10),
      span("b", "a", "svc", "loop b", 1, 5),
      span("c", "c", "svc", "self parent", 2, 3),
      span("d", "", "svc", "dup 1", 3, 3),
      span("d", "", "svc", "dup 2", 4, 3),
    ];
    const lines = spanLines(table(rows));
    expect(lines).toHaveLength(rows.length);
    for (const name of ["loop a", "loop b", "self parent", "dup 1", "dup 2"]) expect(lines.filter((l) => l.includes(name))).toHaveLength(1);
  });

  it("keeps a 100,000-span chain within 80 columns and names depths past the indent limit", () => {
    const rows = Array.from({ length: 100_000 }, (_, i) => span(`s${i}`, i === 0 ? "" : `s${i - 1}`, "svc", `step ${i}`, i * 0.001, 100_000 * 0.001 - i * 0.001));
    const text = table(rows);
    expect(spanLines(text)).toHaveLength(100_000);
    expect(text.split("\n").reduce((m, l) => Math.max(m, l.length), 0)).toBeLessThanOrEqual(80);
    expect(text).toContain("(99999) step 99999");
  });

  it("cuts long names to fit the width, and shows control characters as escapes", () => {
    const long = "x".repeat(200);
    const text = table([span("a", "", `svc\x1b[31m${long}`, `GET /${long}`, 0, 1)]);
    for (const l of text.split("\n")) expect(l.length).toBeLessThanOrEqual(80);
    expect(text).toContain("svc\\u001b[31m");
    expect(text).toContain("…");
    for (const w of [40, 60]) for (const l of table([span("a", "", "svc", long, 0, 1)], w).split("\n")) expect(l.length).toBeLessThanOrEqual(w);
  });

  it("draws a trace of zero-length spans without dividing by zero", () => {
    const lines = spanLines(table([span("a", "", "svc", "instant", 0, 0), span("b", "a", "svc", "also", 0, 0)]));
    for (const l of lines) expect(l).toMatch(/0ns [█░]$/);
  });

  it("wide: span ids and names whole, a longer time line", () => {
    const long = "y".repeat(120);
    const text = formatWaterfall([span("00f067aa0ba902b7", "", "svc", long, 0, 5)], { width: 80, wide: true });
    expect(text).toContain("00f067aa0ba902b7 svc " + long);
    expect(text).toMatch(/█{60}/);
  });
});
