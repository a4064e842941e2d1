// stream_sql: a script reads 1M rows with db.stream under `coral run`; rows/s and the script's RSS.
// Memory is "flat" when the resident size after the last row is within 1.25× of the size half-way:
// batches are dropped as they are consumed, so nothing should grow with the row count. (Half-way, not
// the first tenth: at 500k rows/s the first tenth arrives before the heap has reached its working size.)
import { join } from "node:path";
import { coralBin, lastJson, median, mustSucceed, round, runProcess, type BenchContext, type BenchResult, type Benchmark } from "./lib.js";
import { benchColony } from "./percentile.js";

const script = join(new URL("./scripts/", import.meta.url).pathname, "stream.ts");
const SQL = "SELECT trace_id, service_name, duration_ns, status_code FROM spans";

interface StreamOutput {
  rows: number;
  ms: number;
  start_rss_mb: number;
  peak_rss_mb: number;
  samples: [number, number][];
}

export const streamSql: Benchmark = {
  name: "stream_sql",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const rows = ctx.quick ? 50_000 : 1_000_000;
    const runs = ctx.quick ? 1 : 3;
    const colony = await benchColony(ctx, rows, "stream-sql");
    try {
      const outs: StreamOutput[] = [];
      for (let i = 0; i < runs; i++) {
        const r = mustSucceed(
          "coral run stream.ts",
          await runProcess(process.execPath, [coralBin, "run", "--timeout", "600", "--colony", colony.addr, "--param", `sql=${SQL}`, "--param", `rows=${rows}`, script]),
        );
        const out = lastJson<StreamOutput>(r.stdout);
        // A short stream that still exits 0 is a finding, not a crash: record it and keep measuring.
        if (out.rows !== rows) ctx.log(`  stream_sql: run ${i + 1} got ${out.rows} of ${rows} rows without an error (${(out.ms / 1000).toFixed(1)} s)`);
        outs.push(out);
        ctx.log(`  stream_sql: run ${i + 1}: ${Math.round(rows / (out.ms / 1000)).toLocaleString("en-US")} rows/s, peak RSS ${Math.round(out.peak_rss_mb)} MB`);
      }
      const rate = round(median(outs.map((o) => o.rows / (o.ms / 1000))), 0);
      const peak = round(median(outs.map((o) => o.peak_rss_mb)), 1);
      // Growth over the second half: the last sample over the half-way one, median over runs.
      const growth = round(median(outs.map((o) => o.samples[o.samples.length - 1]![1] / o.samples[Math.floor((o.samples.length - 1) / 2)]![1])), 2);
      const flat = growth <= 1.25;
      const short = outs.filter((o) => o.rows !== rows).map((o) => o.rows);
      return {
        fields: {
          rows,
          query: SQL,
          rows_per_s: rate,
          peak_rss_mb: peak,
          start_rss_mb: round(median(outs.map((o) => o.start_rss_mb)), 1),
          rss_growth_second_half: growth,
          memory_flat: flat,
          rss_samples: outs[Math.floor(outs.length / 2)]!.samples,
          incomplete_runs: short,
          runs,
        },
        goals: [
          { field: "stream_sql.rows_per_s", value: rate, goal: "≥ 500,000 rows/s", met: rate >= 500_000 },
          { field: "stream_sql.complete", value: short.length === 0, goal: `every run gets all ${rows.toLocaleString("en-US")} rows${short.length ? ` (short: ${short.join(", ")})` : ""}`, met: short.length === 0 },
          { field: "stream_sql.peak_rss_mb", value: peak, goal: `memory flat (RSS at the end / half-way ≤ 1.25; got ${growth})`, met: flat },
        ],
        notes: [`${rows.toLocaleString("en-US")} rows of \`${SQL}\`, median of ${runs} runs: ${rate.toLocaleString("en-US")} rows/s, peak RSS ${peak} MB`],
      };
    } finally {
      await colony.stop();
    }
  },
};
