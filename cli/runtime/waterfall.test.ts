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

  describe("attributes of the critical path and failed spans", () => {
    const attributed = (row: ReturnType<typeof span>, attributes: Record<string, string | number>, resource: Record<string, string | number> = {}) => ({
      ...row,
      attributes,
      resource_attributes: resource,
    });
    /** The lines after the tree: from the ATTRIBUTES heading to the blank line before the legend. */
    const section = (text: string) => {
      const lines = text.split("\n");
      const from = lines.findIndex((l) => l.startsWith("ATTRIBUTES"));
      return from < 0 ? [] : lines.slice(from, lines.indexOf("", from));
    };

    it("lists where and why first (route, status, pod, release), a span's own value over its resource's, in tree order", () => {
      const text = table([
        attributed(span("a", "", "frontend", "POST /checkout", 0, 100), { "http.method": "POST", "zz.custom": "z", "http.route": "/checkout", "http.status_code": 200 }, {
          "k8s.pod.name": "frontend-5b7d8c9f4-c9wnd",
          "service.version": "3.12.0",
          "service.name": "frontend",
        }),
        attributed(span("b", "a", "payments", "POST /charge", 10, 80, true), { "http.status_code": 503, "cloud.region": "eu-west-1" }, { "cloud.region": "us-east-1", "k8s.pod.name": "payments-x" }),
        attributed(span("c", "a", "frontend", "GET /fast", 1, 2), { "http.route": "/fast" }),
      ]);
      expect(section(text)).toEqual([
        "ATTRIBUTES of the critical path and failed spans",
        " frontend POST /checkout  100.0ms",
        "     http.route=/checkout  http.status_code=200",
        "     k8s.pod.name=frontend-5b7d8c9f4-c9wnd  service.version=3.12.0  zz.custom=z",
        // On the critical path too: the parent's work waited for it before the call to payments.
        " frontend GET /fast  2.0ms",
        "     http.route=/fast",
        "!payments POST /charge  80.0ms",
        "     http.status_code=503  k8s.pod.name=payments-x  cloud.region=eu-west-1",
      ]);
    });

    it("stays within the width with hostile keys and values, two lines a span, and says how many pairs are left out", () => {
      const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${String(i).padStart(3, "0")}`, `v${i}`]));
      const hostile = { "http.route": `/\x1b[31m${"r".repeat(500)}`, [`key\n${"k".repeat(200)}`]: "x", ...many };
      for (const width of [40, 60, 80]) {
        const text = table([attributed(span("a", "", "svc", "GET /", 0, 10, true), hostile)], width);
        for (const l of text.split("\n")) expect(l.length, l).toBeLessThanOrEqual(width);
        const lines = section(text);
        expect(lines).toHaveLength(4);
        expect(lines[2]).toContain("http.route=/\\u001b[31mr");
        expect(lines[3]).toMatch(/ \+\d+ more$/);
      }
    });

    it("names at most six spans in a terminal (failed first, then most time of their own) and says how many more; wide lists every one, with its id and every pair", () => {
      const rows = Array.from({ length: 20 }, (_, i) => attributed(span(`s${i}`, "", "svc", `op ${i}`, i, 5, true), { "http.route": `/r${i}`, ...Object.fromEntries(Array.from({ length: 30 }, (_, k) => [`x${k}`, "v"])) }));
      const lines = section(table(rows));
      expect(lines.filter((l) => l.startsWith("!"))).toHaveLength(6);
      expect(lines.at(-1)).toBe("… 14 more such spans: --output wide lists them all");
      const wide = section(formatWaterfall(rows, { width: 80, wide: true }));
      expect(wide.filter((l) => l.startsWith("!"))).toHaveLength(20);
      expect(wide).toContain("!s19 svc op 19  5.0ms");
      expect(wide.filter((l) => l.includes("x29=v"))).toHaveLength(20);
    });

    it("of a long critical path, keeps the spans that spent the time themselves, in tree order", () => {
      // A chain where each span waits for its child, but step 9's child is short: step 9 works ~980 ms itself.
      const durationMs = (i: number) => (i === 10 ? 5 : i === 11 ? 2 : 1000 - 2 * i);
      const rows = Array.from({ length: 12 }, (_, i) => attributed(span(`s${i}`, i === 0 ? "" : `s${i - 1}`, "svc", `step ${i}`, i, durationMs(i)), { "http.route": `/s${i}` }));
      const named = section(table(rows)).filter((l) => l.startsWith(" svc"));
      // Step 9, then step 10 (3 ms of its own), then the earliest of those with 2 ms.
      expect(named.map((l) => Number(/step (\d+)/.exec(l)![1]))).toEqual([0, 1, 2, 3, 9, 10]);
    });

    it("has no section when no such span has attributes", () => {
      expect(section(table([span("a", "", "svc", "GET /", 0, 10, true)]))).toEqual([]);
    });
  });
});
