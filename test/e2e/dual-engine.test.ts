// The same colony on DuckDB and on ClickHouse (embedded chdb), seeded with the same demo data, asked
// the same `coral query … --output json` questions: the answers must be byte-identical. Both
// colonies and every CLI run see one fixed "now" (test/helpers/fixed-clock.cjs), so the seed and
// every window are the same on both sides whenever each runs.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCoral, spawnColony, type SpawnedColony } from "../helpers/colony.js";

const NOW = Date.UTC(2026, 5, 1, 12, 0, 30, 250);
const clock = {
  NODE_OPTIONS: `--require ${fileURLToPath(new URL("../helpers/fixed-clock.cjs", import.meta.url))}`,
  CORAL_TEST_FIXED_NOW_MS: String(NOW),
};

let dir: string;
let duck: SpawnedColony;
let ch: SpawnedColony;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-dual-"));
  [duck, ch] = await Promise.all([
    spawnColony({ demo: true, otlp: "off", dbPath: join(dir, "coral.duckdb"), env: clock }),
    spawnColony({ demo: true, otlp: "off", extraArgs: ["--store", `chdb:${join(dir, "chdb")}`], env: clock }),
  ]);
}, 300_000);

afterAll(async () => {
  await Promise.all([duck?.stop(), ch?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

async function both(args: string[]): Promise<{ duck: { code: number; stdout: string; stderr: string }; ch: { code: number; stdout: string; stderr: string } }> {
  const [d, c] = await Promise.all([
    runCoral([...args, "--colony", duck.addr], { env: clock }),
    runCoral([...args, "--colony", ch.addr], { env: clock }),
  ]);
  return { duck: d, ch: c };
}

const COMMANDS: string[][] = [
  ["query", "services"],
  ["query", "services", "--namespace", "shop"],
  ["query", "service", "payments"],
  ["query", "service", "nope"],
  ["query", "metrics", "payments", "--metric", "http.server.duration", "--percentile", "99"],
  ["query", "metrics", "payments", "--percentile", "50", "--window", "5m"],
  ["query", "metrics", "legacy-api", "--percentile", "99.9", "--window", "3h"],
  ["query", "metrics", "payments", "--metric", "no.such.metric"],
  ["query", "metrics", "nope", "--percentile", "99"],
  ["query", "metrics", "payments", "--error-rate", "--window", "5m"],
  ["query", "metrics", "payments", "--error-rate", "--window", "1h"],
  ["query", "metrics", "payments", "--by", "http.route"],
  ["query", "metrics", "frontend", "--by", "service.instance.id", "--window", "15m", "--limit", "2"],
  ["query", "metrics", "payments", "--by", "no.such.attribute"],
  // Resource attributes (the demo's staged pods of payments), read from span_attributes.
  ["query", "metrics", "payments", "--by", "k8s.pod.name", "--window", "1h"],
  ["query", "metrics", "payments", "--by", "service.version", "--window", "3h", "--limit", "1"],
  ["query", "traces", "payments", "--slow", "--threshold", "500ms", "--limit", "10"],
  ["query", "traces", "legacy-api", "--slow", "--threshold", "1s", "--limit", "3", "--window", "3h"],
  ["query", "traces", "payments", "--errors", "--window", "1h"],
  ["query", "explain", "payments", "--slow", "1s"],
  ["query", "explain", "payments", "--errors", "--window", "1h"],
  ["query", "explain", "legacy-api", "--slow", "1500ms", "--window", "3h"],
  ["query", "explain", "payments", "--slow", "300ms", "--window", "3h"],
];

describe("coral query --output json: DuckDB and ClickHouse answer byte for byte alike", () => {
  it.each(COMMANDS.map((c) => [c.join(" "), c]))("%s", async (_, args) => {
    const r = await both([...args, "--output", "json"]);
    expect(r.ch.code).toBe(r.duck.code);
    expect(r.ch.stderr).toBe(r.duck.stderr);
    expect(r.ch.stdout).toBe(r.duck.stdout);
  });

  // Host averages are sums of doubles, added in each engine's own order (and averaged per minute by
  // each engine's avg): they may differ in the last bits, so they are compared to 1e-12, the rest exactly.
  it.each([
    ["payments"],
    ["legacy-api", "--window", "3h"],
    ["nope"],
  ])("query system %s (averages to 1e-12)", async (...rest) => {
    const r = await both(["query", "system", ...rest, "--output", "json"]);
    expect(r.ch.code).toBe(r.duck.code);
    expect(r.ch.stderr).toBe(r.duck.stderr);
    if (r.duck.code !== 0) return;
    const [c, d] = [JSON.parse(r.ch.stdout) as Record<string, unknown>, JSON.parse(r.duck.stdout) as Record<string, unknown>];
    expect(Object.keys(c)).toEqual(Object.keys(d));
    for (const k of Object.keys(d)) {
      const [x, y] = [c[k], d[k]];
      if (typeof y === "number" && !Number.isInteger(y)) expect(Math.abs((x as number) - y) / Math.abs(y), k).toBeLessThan(1e-12);
      else expect(x, k).toEqual(y);
    }
  });

  it("query trace, for the slowest and the failed traces the traces commands name", async () => {
    const slow = JSON.parse((await runCoral(["query", "traces", "payments", "--slow", "--threshold", "500ms", "--limit", "3", "-o", "json", "--colony", duck.addr], { env: clock })).stdout);
    const errors = JSON.parse((await runCoral(["query", "traces", "payments", "--errors", "--window", "1h", "--limit", "3", "-o", "json", "--colony", duck.addr], { env: clock })).stdout);
    const ids: string[] = [...slow.traces, ...errors.traces].map((t: { trace_id?: string; traceId?: string }) => t.trace_id ?? t.traceId ?? "");
    expect(ids.length).toBeGreaterThan(0);
    for (const id of [...ids, "0".repeat(32)]) {
      const r = await both(["query", "trace", id, "--output", "json"]);
      expect(r.ch.code, id).toBe(r.duck.code);
      expect(r.ch.stderr, id).toBe(r.duck.stderr);
      expect(r.ch.stdout, id).toBe(r.duck.stdout);
    }
  });

  // Raw SQL: the rows are the same; the column types are each engine's own (UInt64 vs BIGINT), so
  // only the types may differ.
  it.each([
    "SELECT service_name, count(*) AS n FROM spans GROUP BY service_name ORDER BY service_name",
    "SELECT name, namespace, region, instance_count FROM services ORDER BY name",
    "SELECT service_name, sum(request_count) AS requests, sum(error_count) AS errors FROM service_summary GROUP BY service_name ORDER BY service_name",
    "SELECT trace_id, duration_ns FROM trace_summary ORDER BY duration_ns DESC, trace_id LIMIT 5",
  ])("query sql %s: same rows", async (sql) => {
    const r = await both(["query", "sql", sql, "--output", "json"]);
    expect(r.ch.code).toBe(0);
    expect(r.duck.code).toBe(0);
    const rows = (s: string) => (JSON.parse(s) as { rows: unknown }).rows;
    expect(rows(r.ch.stdout)).toEqual(rows(r.duck.stdout));
  });
});
