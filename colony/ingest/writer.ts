import {
  BIGINT,
  DOUBLE,
  DuckDBDataChunk,
  DuckDBTimestampTZValue,
  INTEGER,
  TIMESTAMPTZ,
  VARCHAR,
  type DuckDBConnection,
  type DuckDBType,
  type DuckDBValue,
} from "@duckdb/node-api";
import { Kysely, sql, type Transaction } from "kysely";
import { DuckDBDialect } from "../store/dialect.js";
import { HTTP_SERVER_DURATION, type Database } from "../store/schema.js";
import { bucketIndexSql } from "../store/sketch.js";
import type { Store } from "../store/store.js";

export interface SpanRecord {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  serviceName: string;
  name: string;
  kind: "SERVER" | "CLIENT" | "INTERNAL" | "PRODUCER" | "CONSUMER";
  startTimeMs: number;
  durationNs: number;
  statusCode: "UNSET" | "OK" | "ERROR";
  httpStatusCode: number | null;
  attributes: Record<string, string | number | boolean>;
}

export interface ResourceRecord {
  serviceName: string;
  namespace: string;
  region: string;
  instanceId: string;
  seenAtMs: number;
}

export interface HostSample {
  timestampMs: number;
  hostName: string;
  serviceName: string;
  cpuPercent: number;
  memoryPercent: number;
  memoryUsedBytes: number;
  memoryTotalBytes: number;
}

/**
 * Spans of one trace are assumed to start within this distance of each other. It bounds the scan of
 * `spans` when a batch touches a trace, so the cost of a batch does not grow with retention.
 */
const TRACE_HORIZON_MS = 3_600_000;
const MINUTE_MS = 60_000;
const CHUNK_ROWS = 2048;

const SPAN_TYPES = [VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, TIMESTAMPTZ, BIGINT, VARCHAR, INTEGER, VARCHAR];
const HOST_TYPES = [TIMESTAMPTZ, VARCHAR, VARCHAR, DOUBLE, DOUBLE, BIGINT, BIGINT];

const IS_ERROR = sql`(status_code = 'ERROR' OR coalesce(http_status_code, 0) >= 500)`;

function tstz(ms: number): DuckDBTimestampTZValue {
  return new DuckDBTimestampTZValue(BigInt(Math.round(ms * 1000)));
}

function floorMinute(ms: number): Date {
  return new Date(Math.floor(ms / MINUTE_MS) * MINUTE_MS);
}

/**
 * The one write path into the store, shared by OTLP ingestion and the demo generator.
 *
 * Raw rows go through the DuckDB appender into a connection-local staging table; one transaction then
 * moves them into the raw table and recomputes exactly the rollup rows the batch touched from raw data.
 * Recomputing instead of incrementing keeps rollups correct when batches overlap, arrive late or are
 * replayed. Calls on one Writer are serialised because they share a connection.
 */
export class Writer {
  private ready: Promise<{ conn: DuckDBConnection; db: Kysely<Database> }> | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly store: Store) {}

  writeSpans(spans: SpanRecord[]): Promise<void> {
    if (spans.length === 0) return Promise.resolve();
    return this.serialise(async ({ conn, db }) => {
      let lo = Infinity;
      let hi = -Infinity;
      for (const s of spans) {
        if (s.startTimeMs < lo) lo = s.startTimeMs;
        if (s.startTimeMs > hi) hi = s.startTimeMs;
      }
      await db.transaction().execute(async (trx) => {
        await appendChunks(conn, "spans_batch", SPAN_TYPES, spans, (part) => [
          part.map((s) => s.traceId),
          part.map((s) => s.spanId),
          part.map((s) => s.parentSpanId),
          part.map((s) => s.serviceName),
          part.map((s) => s.name),
          part.map((s) => s.kind),
          part.map((s) => tstz(s.startTimeMs)),
          part.map((s) => BigInt(Math.round(s.durationNs))),
          part.map((s) => s.statusCode),
          part.map((s) => s.httpStatusCode),
          part.map((s) => JSON.stringify(s.attributes)),
        ]);
        await sql`INSERT INTO spans SELECT * FROM temp.spans_batch`.execute(trx);
        await rollupServices(trx, floorMinute(lo), new Date(floorMinute(hi).getTime() + MINUTE_MS));
        await rollupTraces(trx, new Date(lo - TRACE_HORIZON_MS), new Date(hi + TRACE_HORIZON_MS));
        await sql`DELETE FROM temp.spans_batch`.execute(trx);
      });
    });
  }

  writeHostSamples(samples: HostSample[]): Promise<void> {
    if (samples.length === 0) return Promise.resolve();
    return this.serialise(async ({ conn, db }) => {
      await db.transaction().execute(async (trx) => {
        await appendChunks(conn, "host_batch", HOST_TYPES, samples, (part) => [
          part.map((s) => tstz(s.timestampMs)),
          part.map((s) => s.hostName),
          part.map((s) => s.serviceName),
          part.map((s) => s.cpuPercent),
          part.map((s) => s.memoryPercent),
          part.map((s) => BigInt(Math.round(s.memoryUsedBytes))),
          part.map((s) => BigInt(Math.round(s.memoryTotalBytes))),
        ]);
        await sql`INSERT INTO host_samples SELECT * FROM temp.host_batch`.execute(trx);
        await sql`
          CREATE OR REPLACE TEMP TABLE host_keys AS
          SELECT DISTINCT host_name, service_name, date_trunc('minute', timestamp) AS minute FROM temp.host_batch`.execute(trx);
        await sql`
          DELETE FROM system_metrics_rollup r USING temp.host_keys k
          WHERE r.host_name = k.host_name AND r.service_name = k.service_name AND r.timestamp = k.minute`.execute(trx);
        await sql`
          INSERT INTO system_metrics_rollup
          SELECT k.minute, k.host_name, k.service_name, avg(h.cpu_percent), avg(h.memory_percent),
                 CAST(avg(h.memory_used_bytes) AS BIGINT), CAST(max(h.memory_total_bytes) AS BIGINT), count(*)
          FROM host_samples h
          JOIN temp.host_keys k
            ON h.host_name = k.host_name AND h.service_name = k.service_name AND date_trunc('minute', h.timestamp) = k.minute
          GROUP BY ALL`.execute(trx);
        await sql`DELETE FROM temp.host_batch`.execute(trx);
      });
    });
  }

  writeResources(resources: ResourceRecord[]): Promise<void> {
    if (resources.length === 0) return Promise.resolve();
    // One row per key: an upsert touching the same key twice in one statement is an error in DuckDB.
    const instances = new Map<string, ResourceRecord>();
    const services = new Map<string, { latest: ResourceRecord; firstMs: number }>();
    for (const r of resources) {
      const key = JSON.stringify([r.serviceName, r.instanceId]);
      const prev = instances.get(key);
      if (!prev || prev.seenAtMs <= r.seenAtMs) instances.set(key, r);
      const svc = services.get(r.serviceName);
      if (!svc) services.set(r.serviceName, { latest: r, firstMs: r.seenAtMs });
      else {
        if (svc.latest.seenAtMs <= r.seenAtMs) svc.latest = r;
        svc.firstMs = Math.min(svc.firstMs, r.seenAtMs);
      }
    }
    return this.serialise(async ({ db }) => {
      await db.transaction().execute(async (trx) => {
        await trx
          .insertInto("service_instances")
          .values([...instances.values()].map((r) => ({ service_name: r.serviceName, instance_id: r.instanceId, last_seen: new Date(r.seenAtMs) })))
          .onConflict((oc) =>
            oc.columns(["service_name", "instance_id"]).doUpdateSet({
              last_seen: sql`greatest(service_instances.last_seen, excluded.last_seen)`,
            }),
          )
          .execute();
        await trx
          .insertInto("services")
          .values(
            [...services.values()].map(({ latest, firstMs }) => ({
              name: latest.serviceName,
              namespace: latest.namespace,
              region: latest.region,
              instance_count: 0,
              first_seen: new Date(firstMs),
              last_seen: new Date(latest.seenAtMs),
            })),
          )
          .onConflict((oc) =>
            oc.column("name").doUpdateSet({
              // The newest report wins for placement; a late, older batch must not move a service back.
              namespace: sql`CASE WHEN excluded.last_seen >= services.last_seen THEN excluded.namespace ELSE services.namespace END`,
              region: sql`CASE WHEN excluded.last_seen >= services.last_seen THEN excluded.region ELSE services.region END`,
              first_seen: sql`least(services.first_seen, excluded.first_seen)`,
              last_seen: sql`greatest(services.last_seen, excluded.last_seen)`,
            }),
          )
          .execute();
        await trx
          .updateTable("services")
          .set({
            instance_count: (eb) =>
              eb.selectFrom("service_instances").select((e) => e.fn.countAll<number>().as("n")).whereRef("service_instances.service_name", "=", "services.name"),
          })
          .where("name", "in", [...services.keys()])
          .execute();
      });
    });
  }

  private serialise<T>(job: (ctx: { conn: DuckDBConnection; db: Kysely<Database> }) => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => job(await this.open()));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private open(): Promise<{ conn: DuckDBConnection; db: Kysely<Database> }> {
    this.ready ??= (async () => {
      const conn = await this.store.connect();
      const db = new Kysely<Database>({ dialect: new DuckDBDialect(conn) });
      // Staging tables are per connection (TEMP), so concurrent writers never see each other's batches.
      await sql`CREATE TEMP TABLE IF NOT EXISTS spans_batch AS SELECT * FROM spans LIMIT 0`.execute(db);
      await sql`CREATE TEMP TABLE IF NOT EXISTS host_batch AS SELECT * FROM host_samples LIMIT 0`.execute(db);
      return { conn, db };
    })();
    return this.ready;
  }

  /** Releases the writer's connection; the store stays open. */
  async close(): Promise<void> {
    if (!this.ready) return;
    await this.queue;
    const { db } = await this.ready;
    this.ready = undefined;
    await db.destroy();
  }
}

async function appendChunks<T>(
  conn: DuckDBConnection,
  table: string,
  types: DuckDBType[],
  rows: readonly T[],
  columns: (part: readonly T[]) => DuckDBValue[][],
): Promise<void> {
  const appender = await conn.createAppender(table, "main", "temp");
  try {
    for (let off = 0; off < rows.length; off += CHUNK_ROWS) {
      const part = rows.slice(off, off + CHUNK_ROWS);
      const chunk = DuckDBDataChunk.create(types, part.length);
      chunk.setColumns(columns(part));
      appender.appendDataChunk(chunk);
    }
    appender.flushSync();
  } finally {
    appender.closeSync();
  }
}

/** Recomputes service_summary and service_latency_buckets for the (service, minute) keys in the batch. */
async function rollupServices(trx: Transaction<Database>, from: Date, to: Date): Promise<void> {
  await sql`
    CREATE OR REPLACE TEMP TABLE service_keys AS
    SELECT DISTINCT service_name, date_trunc('minute', start_time) AS minute
    FROM temp.spans_batch WHERE kind = 'SERVER'`.execute(trx);
  // Constant bounds let DuckDB skip row groups by zone map; the key join then picks exact minutes.
  const affected = sql`
    SELECT s.service_name, date_trunc('minute', s.start_time) AS minute, s.duration_ns, s.status_code, s.http_status_code
    FROM spans s
    SEMI JOIN temp.service_keys k ON s.service_name = k.service_name AND date_trunc('minute', s.start_time) = k.minute
    WHERE s.kind = 'SERVER' AND s.start_time >= ${from} AND s.start_time < ${to}`;
  for (const table of ["service_summary", "service_latency_buckets"] as const) {
    await sql`
      DELETE FROM ${sql.table(table)} t USING temp.service_keys k
      WHERE t.service_name = k.service_name AND t.timestamp = k.minute AND t.metric = ${HTTP_SERVER_DURATION}`.execute(trx);
  }
  await sql`
    INSERT INTO service_summary
    SELECT minute, service_name, ${HTTP_SERVER_DURATION}, count(*), count(*) FILTER (WHERE ${IS_ERROR}),
           sum(duration_ns), min(duration_ns), max(duration_ns),
           quantile_cont(duration_ns, 0.5), quantile_cont(duration_ns, 0.95), quantile_cont(duration_ns, 0.99)
    FROM (${affected}) GROUP BY minute, service_name`.execute(trx);
  await sql`
    INSERT INTO service_latency_buckets
    SELECT minute, service_name, ${HTTP_SERVER_DURATION}, ${sql.raw(bucketIndexSql("duration_ns"))} AS bucket, count(*)
    FROM (${affected}) GROUP BY minute, service_name, bucket`.execute(trx);
}

/**
 * Recomputes trace_summary for every trace in the batch. A service's local root is a span whose parent
 * is missing or belongs to another service; its row spans from the first local root's start to the
 * last local root's end, so a service entered twice in one trace still gets one honest row.
 */
async function rollupTraces(trx: Transaction<Database>, from: Date, to: Date): Promise<void> {
  await sql`CREATE OR REPLACE TEMP TABLE trace_keys AS SELECT DISTINCT trace_id FROM temp.spans_batch`.execute(trx);
  await sql`DELETE FROM trace_summary WHERE trace_id IN (SELECT trace_id FROM temp.trace_keys)`.execute(trx);
  await sql`
    INSERT INTO trace_summary
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
           coalesce(arg_min(name, start_time) FILTER (WHERE is_root), arg_min(name, start_time)),
           coalesce(min(start_time) FILTER (WHERE is_root), min(start_time)),
           coalesce(max(start_ns + duration_ns) FILTER (WHERE is_root) - min(start_ns) FILTER (WHERE is_root),
                    max(start_ns + duration_ns) - min(start_ns)),
           count(*),
           bool_or(${IS_ERROR})
    FROM marked
    GROUP BY trace_id, service_name`.execute(trx);
}
