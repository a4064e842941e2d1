// Keeps the benchmarks from rotting: `npm run bench -- --quick` must run every benchmark to the end and
// write every field. No timing assertions — this machine's numbers belong in bench/results.json.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, expect, test } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "coral-bench-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("npm run bench -- --quick runs every benchmark and writes results.json", () => {
  const out = join(dir, "results.json");
  const r = spawnSync("npm", ["run", "--silent", "bench", "--", "--quick", "--out", out], { cwd: root, encoding: "utf8", timeout: 120_000 });
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  const { meta, ...benchmarks } = JSON.parse(readFileSync(out, "utf8")) as {
    meta: { mode: string; goals: { field: string }[]; errors: Record<string, string> };
  } & Record<string, Record<string, unknown>>;
  const results = { ...meta, benchmarks };
  expect(results.mode).toBe("quick");
  expect(results.errors).toEqual({});
  // The goals' field names are paths into the file: `.percentile.speedup`.
  const p = benchmarks.percentile!;
  for (const f of ["spans", "api_ms", "exact_ms", "speedup", "max_rel_err_pct", "scaling"]) expect(p).toHaveProperty(f);
  expect(p.writer_parity).toMatchObject({ identical: true });
  for (const f of ["coral_run_ms", "bare_deno_ms", "ratio"]) expect(results.benchmarks.run_overhead).toHaveProperty(f);
  expect(results.benchmarks.sdk_rpc).toHaveProperty("ratio_vs_fetch");
  for (const f of ["rows_per_s", "peak_rss_mb"]) expect(results.benchmarks.stream_sql).toHaveProperty(f);
  expect(results.benchmarks.ingest).toHaveProperty("writer_spans_per_s");
  // Each goal of the issue appears in the table (measured, or reported as not run).
  const goals = results.goals.map((g) => g.field);
  for (const g of ["percentile.speedup", "run_overhead.ratio", "ingest.spans_per_s", "ingest.lost", "sdk_rpc.ratio_vs_fetch", "stream_sql.rows_per_s"]) {
    expect(goals).toContain(g);
  }
  // The plot is drawn from the same results.
  expect(readFileSync(join(dir, "percentile.svg"), "utf8")).toMatch(/^<svg /);
}, 180_000);
