// Exemplars: a few spans kept per latency bucket and minute, so a percentile can name requests
// whose duration it describes (GetExemplars). Which spans is decided by their rank alone (the
// slowest of the bucket, then the smallest trace and span id), never by arrival order: the
// incremental merge, the rebuild from raw spans after a crash and the migration of an older file
// all keep the same rows.
import { BIGINT, INTEGER, TIMESTAMPTZ, VARCHAR, type DuckDBConnection } from "@duckdb/node-api";
import { sql, type Transaction } from "kysely";
import { HTTP_SERVER_DURATION, type Database } from "../store/schema.js";
import { EXEMPLARS_PER_BUCKET } from "../store/exemplar-limits.js";
import { bucketIndexSql } from "../store/sketch.js";
import { appendChunks, tsLiteral, tstz } from "./appender.js";

export interface Exemplar {
  traceId: string;
  spanId: string;
  startTimeMs: number;
  /** Rounded to the nanosecond, as `spans.duration_ns` stores it. */
  durationNs: number;
}

/** The rank both sides use: slower first, then trace id, then span id (SQL: ORDER BY below). */
function ranksBefore(a: Exemplar, b: Exemplar): boolean {
  if (a.durationNs !== b.durationNs) return a.durationNs > b.durationNs;
  if (a.traceId !== b.traceId) return a.traceId < b.traceId;
  return a.spanId < b.spanId;
}

const RANK_SQL = "duration_ns DESC, trace_id, span_id";

/** Keeps `e` among the bucket's exemplars if it ranks among the first EXEMPLARS_PER_BUCKET. */
export function offerExemplar(into: Map<number, Exemplar[]>, bucket: number, e: Exemplar): void {
  let kept = into.get(bucket);
  if (!kept) into.set(bucket, (kept = []));
  if (kept.length === EXEMPLARS_PER_BUCKET && !ranksBefore(e, kept[kept.length - 1]!)) return;
  let i = kept.length;
  while (i > 0 && ranksBefore(e, kept[i - 1]!)) i--;
  kept.splice(i, 0, e);
  if (kept.length > EXEMPLARS_PER_BUCKET) kept.pop();
}

/** Adds the exemplars of `from` to those of `into`, bucket by bucket. */
export function addExemplars(into: Map<number, Exemplar[]>, from: ReadonlyMap<number, readonly Exemplar[]>): void {
  for (const [bucket, list] of from) for (const e of list) offerExemplar(into, bucket, e);
}

export interface ExemplarDelta {
  minuteMs: number;
  serviceName: string;
  metric: string;
  exemplars: ReadonlyMap<number, readonly Exemplar[]>;
}

const DELTA_TYPES = [TIMESTAMPTZ, VARCHAR, VARCHAR, INTEGER, VARCHAR, VARCHAR, TIMESTAMPTZ, BIGINT];

export const EXEMPLAR_STAGING = "CREATE TEMP TABLE IF NOT EXISTS exemplar_delta AS SELECT * FROM latency_exemplars LIMIT 0";

/**
 * Stages the batch's exemplars (on the rollup lane's connection, inside the merge's transaction)
 * and returns the SQL that merges them: added to the stored ones, then every touched key cut back
 * to its first EXEMPLARS_PER_BUCKET by rank. Values inlined are numbers, never request text.
 */
export async function mergeExemplars(conn: DuckDBConnection, deltas: readonly ExemplarDelta[]): Promise<string> {
  const rows = deltas.flatMap((d) => [...d.exemplars].flatMap(([bucket, list]) => list.map((e) => ({ d, bucket, e }))));
  if (rows.length === 0) return "";
  let lo = Infinity;
  let hi = -Infinity;
  for (const d of deltas) {
    lo = Math.min(lo, d.minuteMs);
    hi = Math.max(hi, d.minuteMs);
  }
  await appendChunks(conn, "exemplar_delta", "temp", DELTA_TYPES, rows, (part) => [
    part.map((r) => tstz(r.d.minuteMs)),
    part.map((r) => r.d.serviceName),
    part.map((r) => r.d.metric),
    part.map((r) => r.bucket),
    part.map((r) => r.e.traceId),
    part.map((r) => r.e.spanId),
    part.map((r) => tstz(r.e.startTimeMs)),
    part.map((r) => BigInt(r.e.durationNs)),
  ]);
  return `
    INSERT INTO latency_exemplars SELECT * FROM temp.exemplar_delta;
    DELETE FROM latency_exemplars WHERE rowid IN (
      SELECT rowid FROM (
        SELECT e.rowid, row_number() OVER (PARTITION BY e.timestamp, e.service_name, e.metric, e.bucket ORDER BY ${RANK_SQL}) AS rank
        FROM latency_exemplars e
        SEMI JOIN (SELECT DISTINCT timestamp, service_name, metric, bucket FROM temp.exemplar_delta) k
          ON e.timestamp = k.timestamp AND e.service_name = k.service_name AND e.metric = k.metric AND e.bucket = k.bucket
        WHERE e.timestamp >= ${tsLiteral(lo)} AND e.timestamp <= ${tsLiteral(hi)})
      WHERE rank > ${EXEMPLARS_PER_BUCKET});
    DELETE FROM temp.exemplar_delta;`;
}

/**
 * The exemplars of every (service, minute) with a SERVER span in [from, to), rebuilt from the raw
 * spans (inside the caller's transaction): the same rows the incremental merges would have kept.
 * No unique index on the table, so deleting and inserting the same keys in one transaction is safe.
 */
export async function rebuildExemplars(trx: Transaction<Database>, from: Date, to: Date): Promise<void> {
  // Every exemplar of these minutes is rebuilt: retention deletes exemplars with their spans, so
  // no minute keeps exemplars without the spans they come from.
  await sql`DELETE FROM latency_exemplars WHERE metric = ${HTTP_SERVER_DURATION} AND timestamp >= ${from} AND timestamp < ${to}`.execute(trx);
  await sql`
    INSERT INTO latency_exemplars
    SELECT timestamp, service_name, metric, bucket, trace_id, span_id, start_time, duration_ns FROM (
      SELECT date_trunc('minute', start_time) AS timestamp, service_name, ${HTTP_SERVER_DURATION} AS metric,
             ${sql.raw(bucketIndexSql("duration_ns"))} AS bucket, trace_id, span_id, start_time, duration_ns
      FROM spans WHERE kind = 'SERVER' AND start_time >= ${from} AND start_time < ${to})
    QUALIFY row_number() OVER (PARTITION BY timestamp, service_name, metric, bucket ORDER BY ${sql.raw(RANK_SQL)}) <= ${sql.lit(EXEMPLARS_PER_BUCKET)}`.execute(trx);
}
