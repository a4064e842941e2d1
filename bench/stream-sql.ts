// stream_sql: a script reads 1M rows with db.stream under `coral run`; rows/s, the script's RSS and
// that of `coral run` itself, which relays every batch from the colony to the script's pipe.
// Memory is "flat" when the resident size after the last row is within 1.25× of the size half-way:
// batches are dropped as they are consumed, so nothing should grow with the row count. (Half-way, not
// the first tenth: at 500k rows/s the first tenth arrives before the heap has reached its working size.)
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { QueryService } from "../gen/coral/colony/v1/query_pb.js";
import { tableRows } from "../surface/table.js";
import { coralBin, lastJson, median, mustSucceed, round, rssMb, runProcess, type BenchContext, type BenchResult, type Benchmark } from "./lib.js";
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

/**
 * The same query read by a Node Connect client (connect-node, protobuf-es) in this process, decoded
 * into row objects as the SDK does: the colony's own pace on this machine at this moment, with no
 * Deno and no pipe. (coral run itself no longer uses connect-node for streams; this stays the
 * baseline the goal was set against.)
 */
async function direct(addr: string, rows: number): Promise<number> {
  const client = createClient(QueryService, createConnectTransport({ baseUrl: `http://${addr}`, httpVersion: "1.1", useBinaryFormat: true, acceptCompression: [] }));
  const t0 = performance.now();
  let n = 0;
  let names: string[] = [];
  for await (const res of client.streamQuery({ sql: SQL, maxRows: BigInt(rows) })) {
    if (res.columns.length) names = res.columns.map((c) => c.name);
    n += tableRows(names, res.valuesJson, "json_columns").length;
  }
  return n / ((performance.now() - t0) / 1000);
}

export const streamSql: Benchmark = {
  name: "stream_sql",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const rows = ctx.quick ? 50_000 : 1_000_000;
    const runs = ctx.quick ? 1 : 3;
    const colony = await benchColony(ctx, rows, "stream-sql");
    try {
      const outs: StreamOutput[] = [];
      const parentPeaks: number[] = [];
      const directRates: number[] = [];
      for (let i = 0; i < runs; i++) {
        directRates.push(await direct(colony.addr, rows));
        let parentPeak = 0;
        let sampler: NodeJS.Timeout | undefined;
        const r = mustSucceed(
          "coral run stream.ts",
          await runProcess(process.execPath, [coralBin, "run", "--timeout", "600", "--colony", colony.addr, "--param", `sql=${SQL}`, "--param", `rows=${rows}`, script], {
            onSpawn: (pid) => (sampler = setInterval(() => (parentPeak = Math.max(parentPeak, rssMb(pid) ?? 0)), 50)),
          }),
        );
        clearInterval(sampler);
        parentPeaks.push(parentPeak);
        const out = lastJson<StreamOutput>(r.stdout);
        // A short stream that still exits 0 is a finding, not a crash: record it and keep measuring.
        if (out.rows !== rows) ctx.log(`  stream_sql: run ${i + 1} got ${out.rows} of ${rows} rows without an error (${(out.ms / 1000).toFixed(1)} s)`);
        outs.push(out);
        ctx.log(
          `  stream_sql: run ${i + 1}: ${Math.round(rows / (out.ms / 1000)).toLocaleString("en-US")} rows/s, peak RSS ${Math.round(out.peak_rss_mb)} MB (coral run ${Math.round(parentPeak)} MB)`,
        );
      }
      const rate = round(median(outs.map((o) => o.rows / (o.ms / 1000))), 0);
      const directRate = round(median(directRates), 0);
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
          direct_node_client_rows_per_s: directRate,
          ratio_vs_direct: round(rate / directRate, 2),
          peak_rss_mb: peak,
          start_rss_mb: round(median(outs.map((o) => o.start_rss_mb)), 1),
          coral_run_peak_rss_mb: round(median(parentPeaks), 1),
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
        notes: [
          `${rows.toLocaleString("en-US")} rows of \`${SQL}\` through coral run's pipe, median of ${runs} runs: ${rate.toLocaleString("en-US")} rows/s, peak RSS ${peak} MB (script), ${round(median(parentPeaks), 1)} MB (coral run)`,
          `the same query read directly by a Node Connect client (no Deno, no pipe), interleaved: ${directRate.toLocaleString("en-US")} rows/s → the pipe delivers ${round(rate / directRate, 2)} of it`,
        ],
      };
    } finally {
      await colony.stop();
    }
  },
};
