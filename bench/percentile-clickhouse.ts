// percentile on ClickHouse: GetPercentile (the same scale-6 buckets, merged by ClickHouse) against
// exact quantileExactInclusive (linear interpolation, as DuckDB's quantile_cont) and the sampling
// quantile() on the raw spans, behind a real colony on `--store chdb:DIR`. The load runs in a
// child process (clickhouse-load.ts: chdb binds one directory per process), with its own check
// that the bulk-loaded buckets equal what the ClickHouseWriter stores for the same spans.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { spawnColony } from "../test/helpers/colony.js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { QueryService } from "../gen/coral/colony/v1/query_pb.js";
import { cleanEnv, lastJson, median, mustSucceed, round, runProcess, timeMs, type BenchContext } from "./lib.js";
import { measurePercentiles, type PercentileMeasurement } from "./percentile-measure.js";

export interface ClickHouseSizeResult extends PercentileMeasurement {
  spans: number;
  load_s: number;
  parity: { spans: number; identical: boolean };
  /** Active parts of service_latency_buckets when read (1: fully merged). */
  bucket_parts: number;
  /**
   * Where api_ms goes: the median of ExecuteQuery `SELECT 1` on the same colony (the RPC, the
   * guard and one chdb query, no data), and of the bucket read alone in the load's process.
   */
  rpc_floor_ms: number;
  bucket_read_ms: number;
}

export async function measureClickHouse(
  ctx: BenchContext,
  o: { spans: number; paritySpans: number; rounds: number; service: string; quantiles: readonly number[]; offsetMs: number; spreadMs: number },
): Promise<ClickHouseSizeResult> {
  const dir = join(ctx.tmp, `percentile-chdb-${o.spans}`);
  const startMs = Date.now() - o.offsetMs - o.spreadMs;
  const loaded = mustSucceed(
    "bench/clickhouse-load.ts",
    await runProcess(process.execPath, ["--import", "tsx", "bench/clickhouse-load.ts", dir, String(o.spans), String(startMs), String(o.paritySpans)], { env: cleanEnv() }),
  );
  const { load_s, parity, bucket_parts, bucket_read_ms } = lastJson<{ load_s: number; parity: { spans: number; identical: boolean }; bucket_parts: number; bucket_read_ms: number }>(loaded.stdout);
  ctx.log(`  percentile (clickhouse): ${o.spans.toLocaleString("en-US")} spans bulk-loaded into chdb in ${load_s.toFixed(1)} s; buckets vs Writer on ${parity.spans}: ${parity.identical ? "identical" : "DIFFER"}`);
  if (!parity.identical) throw new Error("the ClickHouse bulk load's buckets differ from the ClickHouseWriter's; the benchmark would not measure real data");

  const colony = await spawnColony({ extraArgs: ["--store", `chdb:${dir}`], otlp: "off" });
  try {
    const m = await measurePercentiles(ctx, {
      baseUrl: colony.baseUrl,
      label: "percentile (clickhouse)",
      rpc: "GetPercentile on ClickHouse",
      service: o.service,
      spans: o.spans,
      quantiles: o.quantiles,
      rounds: o.rounds,
      sql: {
        at: (ms) => `fromUnixTimestamp64Milli(toInt64(${ms}), 'UTC')`,
        exactAll: (qs) => `quantilesExactInclusive(${qs.join(", ")})(duration_ns)`,
        approxAll: (qs) => `quantiles(${qs.join(", ")})(duration_ns)`,
        exactP99: "quantileExactInclusive(0.99)(duration_ns)",
        approxP99: "quantile(0.99)(duration_ns)",
      },
    });
    const rpc = createClient(QueryService, createConnectTransport({ baseUrl: colony.baseUrl, httpVersion: "1.1", useBinaryFormat: true }));
    const floor: number[] = [];
    for (let i = 0; i < 5 * o.rounds; i++) floor.push((await timeMs(() => rpc.executeQuery({ sql: "SELECT 1" }))).ms);
    const rpc_floor_ms = round(median(floor), 2);
    ctx.log(`  percentile (clickhouse): where api ${m.api_ms} ms goes: ExecuteQuery SELECT 1 ${rpc_floor_ms} ms, the bucket read in process ${bucket_read_ms} ms; ${bucket_parts} bucket part(s)`);
    return { spans: o.spans, load_s: round(load_s, 1), parity, bucket_parts, rpc_floor_ms, bucket_read_ms, ...m };
  } finally {
    await colony.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
