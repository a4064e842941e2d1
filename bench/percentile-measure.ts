// The measurement the percentile benchmark makes on either store (percentile.ts on DuckDB,
// percentile-clickhouse.ts on ClickHouse): the real GetPercentile RPC of a running colony against the
// engine's exact and approximate quantiles over the same raw spans, read through ExecuteQuery.
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { QueryService } from "../gen/coral/colony/v1/query_pb.js";
import { median, round, timeMs, type BenchContext } from "./lib.js";

const MINUTE_MS = 60_000;

/** What one size measures, whichever the engine. */
export interface PercentileMeasurement {
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

/** The engine's SQL for the baselines, over `duration_ns` of the raw spans. */
export interface QuantileSql {
  /** A timestamp literal for epoch milliseconds. */
  at(ms: number): string;
  /** Every quantile at once, exact and approximate (each a list value). */
  exactAll(qs: readonly number[]): string;
  approxAll(qs: readonly number[]): string;
  /** p99 alone, exact and approximate: the timed baselines. */
  exactP99: string;
  approxP99: string;
}

const relErrPct = (got: number, exact: number) => (Math.abs(got - exact) / exact) * 100;

export async function measurePercentiles(
  ctx: BenchContext,
  o: {
    baseUrl: string;
    /** Prefix of the progress line, e.g. "percentile (clickhouse)". */
    label: string;
    /** Names the RPC in the error when its span count is wrong, e.g. "GetPercentile on ClickHouse". */
    rpc: string;
    service: string;
    spans: number;
    quantiles: readonly number[];
    rounds: number;
    sql: QuantileSql;
  },
): Promise<PercentileMeasurement> {
  const client: Client<typeof QueryService> = createClient(
    QueryService,
    createConnectTransport({ baseUrl: o.baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
  );
  const api = (q: number) =>
    client.getPercentile(create(QueryService.method.getPercentile.input, { service: o.service, percentile: q, timeRangeMs: 3_600_000n }));
  // The exact baseline reads raw spans over the same minutes GetPercentile merges: [floor(now − 1 h), now).
  const windowSql = () => {
    const now = Date.now();
    const since = Math.floor((now - 3_600_000) / MINUTE_MS) * MINUTE_MS;
    return `service_name = '${o.service}' AND kind = 'SERVER' AND start_time >= ${o.sql.at(since)} AND start_time < ${o.sql.at(now)}`;
  };
  const sqlValue = async (expr: string): Promise<number[]> => {
    const res = await client.executeQuery({ sql: `SELECT ${expr} FROM spans WHERE ${windowSql()}` });
    const v = res.rows[0]!.values[0]!.kind;
    // Nested values reach clients as JSON text (colony/store/readonly-sql.ts).
    if (v.case === "stringValue" && v.value.startsWith("[")) return (JSON.parse(v.value) as unknown[]).map(Number);
    if (v.case === "listValue") return v.value.values.map((x) => Number(x.kind.value));
    return [Number(v.value)];
  };

  // Accuracy: every quantile both ways (untimed).
  const apiValues: number[] = [];
  for (const q of o.quantiles) apiValues.push((await api(q)).value ?? NaN);
  const exactValues = await sqlValue(o.sql.exactAll(o.quantiles));
  const approxValues = await sqlValue(o.sql.approxAll(o.quantiles));
  const count = Number((await api(0.99)).sampleCount);
  if (count !== o.spans) throw new Error(`${o.rpc} counted ${count} spans in the window, expected ${o.spans}`);

  // Speed: p99 each way, interleaved round by round so noise hits all three alike.
  const apiMs: number[] = [];
  const exactMs: number[] = [];
  const approxMs: number[] = [];
  for (let r = 0; r < o.rounds; r++) {
    for (let k = 0; k < 5; k++) apiMs.push((await timeMs(() => api(0.99))).ms);
    exactMs.push((await timeMs(() => sqlValue(o.sql.exactP99))).ms);
    approxMs.push((await timeMs(() => sqlValue(o.sql.approxP99))).ms);
  }
  const apiErr = apiValues.map((v, i) => relErrPct(v, exactValues[i]!));
  const approxErr = approxValues.map((v, i) => relErrPct(v, exactValues[i]!));
  const out: PercentileMeasurement = {
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
    `  ${o.label}: ${o.spans.toLocaleString("en-US")} spans: api ${out.api_ms} ms, exact ${out.exact_ms} ms, approx ${out.approx_ms} ms; max error api ${out.max_rel_err_pct}%, approx ${out.approx_max_rel_err_pct}%`,
  );
  return out;
}
