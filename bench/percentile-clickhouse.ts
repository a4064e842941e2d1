// percentile on ClickHouse: GetPercentile (the same scale-6 buckets, merged by ClickHouse) against
// exact quantileExactInclusive (linear interpolation, as DuckDB's quantile_cont) and the sampling
// quantile() on the raw spans, behind a real colony on `--store chdb:DIR`. The load runs in a
// child process (clickhouse-load.ts: chdb binds one directory per process), with its own check
// that the bulk-loaded buckets equal what the ClickHouseWriter stores for the same spans.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { QueryService } from "../gen/coral/colony/v1/query_pb.js";
import { spawnColony } from "../test/helpers/colony.js";
import { cleanEnv, lastJson, median, mustSucceed, round, runProcess, timeMs, type BenchContext } from "./lib.js";

const MINUTE_MS = 60_000;

export interface ClickHouseSizeResult {
  spans: number;
  load_s: number;
  parity: { spans: number; identical: boolean };
  api_ms: number;
  exact_ms: number;
  approx_ms: number;
  speedup: number;
  api_values_ns: number[];
  exact_values_ns: number[];
  approx_values_ns: number[];
  api_rel_err_pct: number[];
  approx_rel_err_pct: number[];
  max_rel_err_pct: number;
  approx_max_rel_err_pct: number;
}

const relErrPct = (got: number, exact: number) => (Math.abs(got - exact) / exact) * 100;

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
  const { load_s, parity } = lastJson<{ load_s: number; parity: { spans: number; identical: boolean } }>(loaded.stdout);
  ctx.log(`  percentile (clickhouse): ${o.spans.toLocaleString("en-US")} spans bulk-loaded into chdb in ${load_s.toFixed(1)} s; buckets vs Writer on ${parity.spans}: ${parity.identical ? "identical" : "DIFFER"}`);
  if (!parity.identical) throw new Error("the ClickHouse bulk load's buckets differ from the ClickHouseWriter's; the benchmark would not measure real data");

  const colony = await spawnColony({ extraArgs: ["--store", `chdb:${dir}`], otlp: "off" });
  try {
    const client: Client<typeof QueryService> = createClient(QueryService, createConnectTransport({ baseUrl: colony.baseUrl, httpVersion: "1.1", useBinaryFormat: true }));
    const api = (q: number) => client.getPercentile(create(QueryService.method.getPercentile.input, { service: o.service, percentile: q, timeRangeMs: 3_600_000n }));
    // The same minutes GetPercentile merges: [floor(now − 1 h), now).
    const windowSql = () => {
      const now = Date.now();
      const since = Math.floor((now - 3_600_000) / MINUTE_MS) * MINUTE_MS;
      return `service_name = '${o.service}' AND kind = 'SERVER' AND start_time >= fromUnixTimestamp64Milli(toInt64(${since}), 'UTC') AND start_time < fromUnixTimestamp64Milli(toInt64(${now}), 'UTC')`;
    };
    const sqlValue = async (expr: string): Promise<number[]> => {
      const res = await client.executeQuery({ sql: `SELECT ${expr} FROM spans WHERE ${windowSql()}` });
      const v = res.rows[0]!.values[0]!.kind;
      if (v.case === "stringValue" && v.value.startsWith("[")) return (JSON.parse(v.value) as unknown[]).map(Number);
      if (v.case === "listValue") return v.value.values.map((x) => Number(x.kind.value));
      return [Number(v.value)];
    };
    const list = o.quantiles.join(", ");

    const apiValues: number[] = [];
    for (const q of o.quantiles) apiValues.push((await api(q)).value ?? NaN);
    const exactValues = await sqlValue(`quantilesExactInclusive(${list})(duration_ns)`);
    const approxValues = await sqlValue(`quantiles(${list})(duration_ns)`);
    const count = Number((await api(0.99)).sampleCount);
    if (count !== o.spans) throw new Error(`GetPercentile on ClickHouse counted ${count} spans in the window, expected ${o.spans}`);

    const apiMs: number[] = [];
    const exactMs: number[] = [];
    const approxMs: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      for (let k = 0; k < 5; k++) apiMs.push((await timeMs(() => api(0.99))).ms);
      exactMs.push((await timeMs(() => sqlValue("quantileExactInclusive(0.99)(duration_ns)"))).ms);
      approxMs.push((await timeMs(() => sqlValue("quantile(0.99)(duration_ns)"))).ms);
    }
    const apiErr = apiValues.map((v, i) => relErrPct(v, exactValues[i]!));
    const approxErr = approxValues.map((v, i) => relErrPct(v, exactValues[i]!));
    const out: ClickHouseSizeResult = {
      spans: o.spans,
      load_s: round(load_s, 1),
      parity,
      api_ms: round(median(apiMs), 2),
      exact_ms: round(median(exactMs), 1),
      approx_ms: round(median(approxMs), 1),
      speedup: round(median(exactMs) / median(apiMs), 1),
      api_values_ns: apiValues.map((v) => Math.round(v)),
      exact_values_ns: exactValues.map((v) => Math.round(v)),
      approx_values_ns: approxValues.map((v) => Math.round(v)),
      api_rel_err_pct: apiErr.map((e) => round(e, 3)),
      approx_rel_err_pct: approxErr.map((e) => round(e, 2)),
      max_rel_err_pct: round(Math.max(...apiErr), 3),
      approx_max_rel_err_pct: round(Math.max(...approxErr), 2),
    };
    ctx.log(
      `  percentile (clickhouse): ${o.spans.toLocaleString("en-US")} spans: api ${out.api_ms} ms, exact ${out.exact_ms} ms, approx ${out.approx_ms} ms; max error api ${out.max_rel_err_pct}%, approx ${out.approx_max_rel_err_pct}%`,
    );
    return out;
  } finally {
    await colony.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
