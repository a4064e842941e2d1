// The span and latency rollups (service_summary, service_latency_buckets, trace_summary): the
// per-batch contributions computed in JS, their merge into the stored rows (incremental), and their
// rebuild from raw spans (recompute and recovery).
import { BIGINT, BOOLEAN, DOUBLE, INTEGER, TIMESTAMPTZ, VARCHAR, DuckDBTimestampTZValue, type DuckDBConnection } from "@duckdb/node-api";
import { sql, type Transaction } from "kysely";
import { HTTP_SERVER_DURATION, type Database } from "../store/schema.js";
import { bucketIndexSql, quantileFromBuckets } from "../store/sketch.js";
import { appendChunks, tsLiteral, tstz } from "./appender.js";
import { addExemplars, mergeExemplars, rebuildExemplars, type Exemplar } from "./exemplars.js";

/**
 * Spans of one trace are assumed to start within this distance of each other. It bounds the scan of
 * `spans` when `recompute` rebuilds a trace (incremental merges find a trace's row by its key).
 */
export const TRACE_HORIZON_MS = 3_600_000;
export const MINUTE_MS = 60_000;

export const SUMMARY_DELTA_TYPES = [TIMESTAMPTZ, VARCHAR, VARCHAR, BIGINT, BIGINT, DOUBLE, BIGINT, BIGINT];
export const BUCKET_TYPES = [TIMESTAMPTZ, VARCHAR, VARCHAR, INTEGER, BIGINT];
export const PCT_TYPES = [TIMESTAMPTZ, VARCHAR, VARCHAR, DOUBLE, DOUBLE, DOUBLE];
export const TRACE_TYPES = [VARCHAR, VARCHAR, VARCHAR, TIMESTAMPTZ, BIGINT, INTEGER, BOOLEAN];

export const IS_ERROR = sql`(status_code = 'ERROR' OR coalesce(http_status_code, 0) >= 500)`;

export function floorMinute(ms: number): Date {
  return new Date(Math.floor(ms / MINUTE_MS) * MINUTE_MS);
}


/** A (service, metric, minute) rollup contribution, before it is merged with what is stored. */
export interface SummaryDelta {
  minuteMs: number;
  serviceName: string;
  metric: string;
  count: number;
  errors: number;
  sum: number;
  min: number;
  max: number;
  buckets: Map<number, number>;
  /** Spans of the batch kept as exemplars of their bucket (span latency only). */
  exemplars?: Map<number, Exemplar[]>;
}

/** One service's part of one trace as seen in a batch; merged with the stored row by `mergeTraces`. */
export interface TraceDelta {
  traceId: string;
  serviceName: string;
  rootName: string;
  /** Earliest local-root start, rounded to the microsecond the table stores. */
  rootStartUs: number;
  /** Latest local-root end, in ns after `baseUs` (absolute ns exceed 2^53). */
  rootEndNs: number;
  /** The microsecond `rootEndNs` counts from: the earliest span start of the batch it came from. */
  baseUs: number;
  spanCount: number;
  error: boolean;
}


export function addSummary(into: Map<string, SummaryDelta>, key: string, d: SummaryDelta): void {
  const t = into.get(key);
  if (!t) {
    into.set(key, { ...d, buckets: new Map(d.buckets), exemplars: d.exemplars && new Map([...d.exemplars].map(([b, l]) => [b, [...l]])) });
    return;
  }
  if (d.exemplars) addExemplars((t.exemplars ??= new Map()), d.exemplars);
  t.count += d.count;
  t.errors += d.errors;
  t.sum += d.sum;
  t.min = Math.min(t.min, d.min);
  t.max = Math.max(t.max, d.max);
  for (const [b, n] of d.buckets) t.buckets.set(b, (t.buckets.get(b) ?? 0) + n);
}

/** Combines two parts of one (trace, service) the way the stored-row merge in `mergeTraces` does. */
export function addTrace(into: Map<string, TraceDelta>, key: string, d: TraceDelta): void {
  const t = into.get(key);
  if (!t) {
    into.set(key, { ...d });
    return;
  }
  // Ends compared on a common base: the difference of two bases is small, so this stays exact.
  const dEnd = d.rootEndNs + (d.baseUs - t.baseUs) * 1000;
  if (d.rootStartUs < t.rootStartUs || (d.rootStartUs === t.rootStartUs && dEnd > t.rootEndNs)) t.rootName = d.rootName;
  t.rootStartUs = Math.min(t.rootStartUs, d.rootStartUs);
  t.rootEndNs = Math.max(t.rootEndNs, dEnd);
  t.spanCount += d.spanCount;
  t.error ||= d.error;
}


/**
 * Adds the batch's per-(service, metric, minute) contributions to service_summary and
 * service_latency_buckets. Counts, sums and bucket counts add; min and max combine; the percentile
 * columns are re-read from the merged buckets of the minute (within 0.54 % of the exact quantile).
 */
export async function mergeSummaries(conn: DuckDBConnection, deltas: SummaryDelta[]): Promise<string> {
  if (deltas.length === 0) return "";
  let lo = Infinity;
  let hi = -Infinity;
  for (const d of deltas) {
    lo = Math.min(lo, d.minuteMs);
    hi = Math.max(hi, d.minuteMs);
  }
  const from = new Date(lo);
  const to = new Date(hi + 1);
  await appendChunks(conn, "summary_delta", "temp", SUMMARY_DELTA_TYPES, deltas, (part) => [
    part.map((d) => tstz(d.minuteMs)),
    part.map((d) => d.serviceName),
    part.map((d) => d.metric),
    part.map((d) => saturated(d.count)),
    part.map((d) => saturated(d.errors)),
    part.map((d) => d.sum),
    part.map((d) => BigInt(Math.round(d.min))),
    part.map((d) => BigInt(Math.round(d.max))),
  ]);
  const bucketRows = deltas.flatMap((d) => [...d.buckets].map(([bucket, count]) => ({ d, bucket, count })));
  await appendChunks(conn, "bucket_delta", "temp", BUCKET_TYPES, bucketRows, (part) => [
    part.map((r) => tstz(r.d.minuteMs)),
    part.map((r) => r.d.serviceName),
    part.map((r) => r.d.metric),
    part.map((r) => r.bucket),
    part.map((r) => saturated(r.count)),
  ]);
  // Bucket counts add up exactly, so one upsert merges them (the unique index finds the stored row of
  // each key); the same round trip reads back the merged sketch of every touched minute. Values
  // inlined here are numbers and constants, never text from a request.
  const window = `b.timestamp >= ${tsLiteral(from.getTime())} AND b.timestamp < ${tsLiteral(to.getTime())}`;
  const merged = await conn.runAndReadAll(`
    INSERT INTO service_latency_buckets SELECT * FROM temp.bucket_delta
    ON CONFLICT (timestamp, service_name, metric, bucket) DO UPDATE SET count = ${saturatingSum("count")};
    SELECT epoch_ms(b.timestamp), b.service_name, b.metric, b.bucket, b.count FROM service_latency_buckets b
    SEMI JOIN temp.summary_delta k ON b.timestamp = k.timestamp AND b.service_name = k.service_name AND b.metric = k.metric
    WHERE ${window};`);

  // The merged sketch of each touched minute is a few hundred rows at most: percentiles in JS.
  const sketches = new Map<string, { minuteMs: number; serviceName: string; metric: string; buckets: { bucket: number; count: number }[] }>();
  for (const [ms, service, metric, bucket, count] of merged.getRowsJS() as [bigint, string, string, number, bigint][]) {
    const key = `${service}\u0000${metric}\u0000${ms}`;
    let s = sketches.get(key);
    if (!s) sketches.set(key, (s = { minuteMs: Number(ms), serviceName: service, metric, buckets: [] }));
    s.buckets.push({ bucket, count: Number(count) });
  }
  const pct = [...sketches.values()];
  await appendChunks(conn, "summary_pct", "temp", PCT_TYPES, pct, (part) => [
    part.map((s) => tstz(s.minuteMs)),
    part.map((s) => s.serviceName),
    part.map((s) => s.metric),
    part.map((s) => quantileFromBuckets(s.buckets, 0.5)),
    part.map((s) => quantileFromBuckets(s.buckets, 0.95)),
    part.map((s) => quantileFromBuckets(s.buckets, 0.99)),
  ]);

  const exemplars = await mergeExemplars(conn, deltas.flatMap((d) => (d.exemplars ? [{ ...d, exemplars: d.exemplars }] : [])));

  // The last step goes out with the commit, in the caller's final round trip.
  return `${exemplars}
    INSERT INTO service_summary
    SELECT d.timestamp, d.service_name, d.metric, d.request_count, d.error_count, d.sum_duration_ns, d.min_duration_ns,
           d.max_duration_ns, p.p50_duration_ns, p.p95_duration_ns, p.p99_duration_ns
    FROM temp.summary_delta d JOIN temp.summary_pct p USING (timestamp, service_name, metric)
    ON CONFLICT (timestamp, service_name, metric) DO UPDATE SET
      request_count = ${saturatingSum("request_count")},
      error_count = ${saturatingSum("error_count")},
      sum_duration_ns = sum_duration_ns + excluded.sum_duration_ns,
      min_duration_ns = least(min_duration_ns, excluded.min_duration_ns),
      max_duration_ns = greatest(max_duration_ns, excluded.max_duration_ns),
      p50_duration_ns = excluded.p50_duration_ns,
      p95_duration_ns = excluded.p95_duration_ns,
      p99_duration_ns = excluded.p99_duration_ns;
    DELETE FROM temp.summary_delta;
    DELETE FROM temp.bucket_delta;
    DELETE FROM temp.summary_pct;`;
}

/**
 * Counts are BIGINT. A client may send counts up to 2^53 − 1 per point (validate.ts), so enough of
 * them in one service-minute pass 2^63; an overflow error would then fail that batch and every later
 * one touching the minute — one client poisoning it for all. Counts stop at the maximum instead.
 */
export const INT64_MAX = 2n ** 63n - 1n;

export function saturated(n: number): bigint {
  return n >= 2 ** 63 ? INT64_MAX : BigInt(n);
}

export function saturatingSum(column: string): string {
  return `least(${column}::HUGEINT + excluded.${column}, ${INT64_MAX})::BIGINT`;
}


/**
 * Merges the batch's per-(trace, service) parts into trace_summary: span counts add, errors OR, and
 * the local root is the earliest root candidate (the longest on a tie), ending at the latest end.
 */
export async function mergeTraces(conn: DuckDBConnection, deltas: TraceDelta[]): Promise<string> {
  if (deltas.length === 0) return "";
  await appendChunks(conn, "trace_delta", "temp", TRACE_TYPES, deltas, (part) => [
    part.map((t) => t.traceId),
    part.map((t) => t.serviceName),
    part.map((t) => t.rootName),
    part.map((t) => new DuckDBTimestampTZValue(BigInt(t.rootStartUs))),
    part.map((t) => BigInt(t.rootEndNs - (t.rootStartUs - t.baseUs) * 1000)),
    part.map((t) => t.spanCount),
    part.map((t) => t.error),
  ]);
  // One upsert: the unique index on (trace_id, service_name) finds the stored row of each trace, so
  // the cost follows the batch, not the size of the table. SET expressions read the stored row
  // (unqualified) and the batch's part (excluded.*).
  return `
    INSERT INTO trace_summary SELECT * FROM temp.trace_delta
    ON CONFLICT (trace_id, service_name) DO UPDATE SET
      root_name = CASE WHEN excluded.timestamp < timestamp OR (excluded.timestamp = timestamp AND excluded.duration_ns > duration_ns)
                       THEN excluded.root_name ELSE root_name END,
      timestamp = least(timestamp, excluded.timestamp),
      duration_ns = CAST(greatest(epoch_us(timestamp) * 1000 + duration_ns, epoch_us(excluded.timestamp) * 1000 + excluded.duration_ns)
                         - epoch_us(least(timestamp, excluded.timestamp)) * 1000 AS BIGINT),
      span_count = span_count + excluded.span_count,
      error = error OR excluded.error;
    DELETE FROM temp.trace_delta;`;
}

/*
 * The rebuilds below never delete a row and insert one with the same key in one transaction: on a
 * unique index DuckDB has loaded from the database file (any index, after a restart), that insert
 * fails with "Duplicate key … violates unique constraint" even though the old row is deleted
 * (measured on DuckDB 1.5; an index built by the running process allows it, which is why only a
 * restarted colony failed). So the rebuilt rows are computed into temp tables, upserted over the
 * stored ones with every column overwritten, and only stored rows the rebuild no longer produces
 * are deleted: the upserted and the deleted keys never meet.
 */

/**
 * Recomputes the `http.server.duration` rows of service_summary and service_latency_buckets from
 * raw spans for every (service, minute) with a SERVER span in [from, to) (minute boundaries).
 * Minutes without raw spans keep their rows (retention deletes spans, not rollups), and so do other
 * metrics, which OTLP histograms write.
 */
export async function rollupServices(trx: Transaction<Database>, from: Date, to: Date): Promise<void> {
  // Constant bounds let DuckDB skip row groups by zone map.
  const server = sql`
    SELECT service_name, date_trunc('minute', start_time) AS minute, duration_ns, status_code, http_status_code
    FROM spans WHERE kind = 'SERVER' AND start_time >= ${from} AND start_time < ${to}`;
  await sql`
    CREATE OR REPLACE TEMP TABLE rebuilt_summary AS
    SELECT minute AS timestamp, service_name, ${HTTP_SERVER_DURATION} AS metric, count(*) AS request_count,
           count(*) FILTER (WHERE ${IS_ERROR}) AS error_count, sum(duration_ns) AS sum_duration_ns,
           min(duration_ns) AS min_duration_ns, max(duration_ns) AS max_duration_ns,
           quantile_cont(duration_ns, 0.5) AS p50_duration_ns, quantile_cont(duration_ns, 0.95) AS p95_duration_ns,
           quantile_cont(duration_ns, 0.99) AS p99_duration_ns
    FROM (${server}) GROUP BY minute, service_name`.execute(trx);
  await sql`
    CREATE OR REPLACE TEMP TABLE rebuilt_buckets AS
    SELECT minute AS timestamp, service_name, ${HTTP_SERVER_DURATION} AS metric, ${sql.raw(bucketIndexSql("duration_ns"))} AS bucket, count(*) AS count
    FROM (${server}) GROUP BY minute, service_name, bucket`.execute(trx);
  await sql`
    INSERT INTO service_summary
    SELECT timestamp, service_name, metric, request_count, error_count, sum_duration_ns, min_duration_ns, max_duration_ns,
           p50_duration_ns, p95_duration_ns, p99_duration_ns
    FROM temp.rebuilt_summary
    ON CONFLICT (timestamp, service_name, metric) DO UPDATE SET
      request_count = excluded.request_count,
      error_count = excluded.error_count,
      sum_duration_ns = excluded.sum_duration_ns,
      min_duration_ns = excluded.min_duration_ns,
      max_duration_ns = excluded.max_duration_ns,
      p50_duration_ns = excluded.p50_duration_ns,
      p95_duration_ns = excluded.p95_duration_ns,
      p99_duration_ns = excluded.p99_duration_ns`.execute(trx);
  await sql`
    INSERT INTO service_latency_buckets SELECT timestamp, service_name, metric, bucket, count FROM temp.rebuilt_buckets
    ON CONFLICT (timestamp, service_name, metric, bucket) DO UPDATE SET count = excluded.count`.execute(trx);
  // Every rebuilt (service, minute) has a summary row, so only buckets can be left over.
  await sql`
    DELETE FROM service_latency_buckets b USING temp.rebuilt_summary k
    WHERE b.timestamp >= ${from} AND b.timestamp < ${to}
      AND b.timestamp = k.timestamp AND b.service_name = k.service_name AND b.metric = k.metric
      AND NOT EXISTS (SELECT 1 FROM temp.rebuilt_buckets r
                      WHERE r.timestamp = b.timestamp AND r.service_name = b.service_name AND r.metric = b.metric AND r.bucket = b.bucket)`.execute(trx);
  await rebuildExemplars(trx, from, to);
}

/**
 * Recomputes trace_summary from raw spans for every trace with a span starting in [keysFrom, keysTo),
 * reading that trace's spans in [from, to). A service's local root is a span whose parent
 * is missing or belongs to another service; its row spans from the first local root's start to the
 * last local root's end, so a service entered twice in one trace still gets one honest row.
 */
export async function rollupTraces(trx: Transaction<Database>, keysFrom: Date, keysTo: Date, from: Date, to: Date): Promise<void> {
  await sql`
    CREATE OR REPLACE TEMP TABLE trace_keys AS
    SELECT DISTINCT trace_id FROM spans WHERE start_time >= ${keysFrom} AND start_time < ${keysTo}`.execute(trx);
  await sql`
    CREATE OR REPLACE TEMP TABLE rebuilt_traces AS
    WITH t AS (
      SELECT trace_id, span_id, parent_span_id, service_name, name, start_time, duration_ns, status_code, http_status_code
      FROM spans
      WHERE start_time >= ${from} AND start_time < ${to} AND trace_id IN (SELECT trace_id FROM temp.trace_keys)
    ),
    marked AS (
      SELECT c.*, (p.span_id IS NULL OR p.service_name <> c.service_name) AS is_root,
             epoch_us(c.start_time) * 1000 AS start_ns
      FROM t c LEFT JOIN t p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
    )
    SELECT trace_id, service_name,
           -- Every service has a local root unless parent links form a cycle; fall back rather than fail the batch.
           coalesce(arg_min(name, start_time) FILTER (WHERE is_root), arg_min(name, start_time)) AS root_name,
           coalesce(min(start_time) FILTER (WHERE is_root), min(start_time)) AS timestamp,
           coalesce(max(start_ns + duration_ns) FILTER (WHERE is_root) - min(start_ns) FILTER (WHERE is_root),
                    max(start_ns + duration_ns) - min(start_ns)) AS duration_ns,
           count(*) AS span_count,
           bool_or(${IS_ERROR}) AS error
    FROM marked
    GROUP BY trace_id, service_name`.execute(trx);
  await sql`
    INSERT INTO trace_summary SELECT trace_id, service_name, root_name, timestamp, duration_ns, span_count, error FROM temp.rebuilt_traces
    ON CONFLICT (trace_id, service_name) DO UPDATE SET
      root_name = excluded.root_name,
      timestamp = excluded.timestamp,
      duration_ns = excluded.duration_ns,
      span_count = excluded.span_count,
      error = excluded.error`.execute(trx);
  await sql`
    DELETE FROM trace_summary s
    WHERE s.trace_id IN (SELECT trace_id FROM temp.trace_keys)
      AND NOT EXISTS (SELECT 1 FROM temp.rebuilt_traces r WHERE r.trace_id = s.trace_id AND r.service_name = s.service_name)`.execute(trx);
}
