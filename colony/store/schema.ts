import { sql, type Kysely } from "kysely";

// Table and column names are public: users' raw SQL (and the RFD's examples) query them verbatim.

export type SpanKind = "SERVER" | "CLIENT" | "INTERNAL" | "PRODUCER" | "CONSUMER";
export type SpanStatus = "UNSET" | "OK" | "ERROR";

/** The metric recorded for the duration of SERVER spans. */
export const HTTP_SERVER_DURATION = "http.server.duration";

export interface SpansTable {
  trace_id: string;
  span_id: string;
  parent_span_id: string | null;
  service_name: string;
  name: string;
  kind: SpanKind;
  start_time: Date;
  duration_ns: number;
  status_code: SpanStatus;
  http_status_code: number | null;
  /** JSON text of the span's attributes. */
  attributes: string;
}

export interface TraceSummaryTable {
  trace_id: string;
  service_name: string;
  root_name: string;
  timestamp: Date;
  duration_ns: number;
  span_count: number;
  error: boolean;
}

export interface ServiceSummaryTable {
  timestamp: Date;
  service_name: string;
  metric: string;
  request_count: number;
  error_count: number;
  sum_duration_ns: number;
  min_duration_ns: number;
  max_duration_ns: number;
  p50_duration_ns: number;
  p95_duration_ns: number;
  p99_duration_ns: number;
}

export interface ServiceLatencyBucketsTable {
  timestamp: Date;
  service_name: string;
  metric: string;
  bucket: number;
  count: number;
}

/** Raw host samples; the rollup is recomputed from them so late or repeated batches never double count. */
export interface HostSamplesTable {
  timestamp: Date;
  host_name: string;
  service_name: string;
  /** NULL when the source did not report it (an OTLP host sends CPU and memory as separate metrics). */
  cpu_percent: number | null;
  memory_percent: number | null;
  memory_used_bytes: number | null;
  memory_total_bytes: number | null;
}

export interface SystemMetricsRollupTable {
  timestamp: Date;
  host_name: string;
  service_name: string;
  cpu_percent: number | null;
  memory_percent: number | null;
  memory_used_bytes: number | null;
  memory_total_bytes: number | null;
  sample_count: number;
}

export interface ServicesTable {
  name: string;
  namespace: string;
  region: string;
  instance_count: number;
  first_seen: Date;
  last_seen: Date;
}

export interface ServiceInstancesTable {
  service_name: string;
  instance_id: string;
  last_seen: Date;
}

/**
 * Minutes whose spans are committed but whose contributions to the span rollups (service_summary,
 * service_latency_buckets, trace_summary) are not merged yet. The Writer merges those in the
 * background, in larger batches than ingestion commits; after a crash, these minutes are rebuilt
 * from the raw spans when the colony starts.
 */
export interface RollupPendingTable {
  minute: Date;
  /** The span commit that touched the minute, in the order this process committed them. */
  seq: number;
}

/** The last stored point of each cumulative histogram stream (see colony/ingest/cumulative.ts). */
export interface HistogramStreamsTable {
  /** Service, metric and point attributes, as JSON. */
  stream: string;
  /** The stream's start, in ns since the epoch (text: the value exceeds 2^53). */
  start_ns: string;
  sum_ns: number;
  /** Totals per sketch bucket, as JSON `[[bucket, count], …]`. */
  buckets: string;
  updated_at: Date;
}

export interface Database {
  spans: SpansTable;
  trace_summary: TraceSummaryTable;
  service_summary: ServiceSummaryTable;
  service_latency_buckets: ServiceLatencyBucketsTable;
  host_samples: HostSamplesTable;
  system_metrics_rollup: SystemMetricsRollupTable;
  services: ServicesTable;
  service_instances: ServiceInstancesTable;
  rollup_pending: RollupPendingTable;
  histogram_streams: HistogramStreamsTable;
}

const tstz = sql`timestamptz`;

/** The key of each rollup table the Writer upserts into, and how duplicate rows of a key combine. */
const ROLLUP_KEYS = [
  {
    table: "trace_summary",
    index: "trace_summary_key",
    columns: ["trace_id", "service_name"],
    merge: `arg_min(root_name, struct_pack(t := timestamp, d := -duration_ns)) AS root_name, min(timestamp) AS timestamp,
            CAST(max(epoch_us(timestamp) * 1000 + duration_ns) - epoch_us(min(timestamp)) * 1000 AS BIGINT) AS duration_ns,
            CAST(sum(span_count) AS INTEGER) AS span_count, bool_or(error) AS error`,
  },
  {
    table: "service_summary",
    index: "service_summary_key",
    columns: ["timestamp", "service_name", "metric"],
    merge: `CAST(sum(request_count) AS BIGINT) AS request_count, CAST(sum(error_count) AS BIGINT) AS error_count,
            sum(sum_duration_ns) AS sum_duration_ns, min(min_duration_ns) AS min_duration_ns, max(max_duration_ns) AS max_duration_ns,
            max(p50_duration_ns) AS p50_duration_ns, max(p95_duration_ns) AS p95_duration_ns, max(p99_duration_ns) AS p99_duration_ns`,
  },
  {
    table: "service_latency_buckets",
    index: "service_latency_buckets_key",
    columns: ["timestamp", "service_name", "metric", "bucket"],
    merge: `CAST(sum(count) AS BIGINT) AS count`,
  },
] as const;

/** Creates every table that does not exist yet; safe to run on every start. */
export async function migrate(db: Kysely<Database>): Promise<void> {
  await db.schema
    .createTable("spans")
    .ifNotExists()
    .addColumn("trace_id", "varchar", (c) => c.notNull())
    .addColumn("span_id", "varchar", (c) => c.notNull())
    .addColumn("parent_span_id", "varchar")
    .addColumn("service_name", "varchar", (c) => c.notNull())
    .addColumn("name", "varchar", (c) => c.notNull())
    .addColumn("kind", "varchar", (c) => c.notNull())
    .addColumn("start_time", tstz, (c) => c.notNull())
    .addColumn("duration_ns", "bigint", (c) => c.notNull())
    .addColumn("status_code", "varchar", (c) => c.notNull())
    .addColumn("http_status_code", "integer")
    .addColumn("attributes", "varchar", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("trace_summary")
    .ifNotExists()
    .addColumn("trace_id", "varchar", (c) => c.notNull())
    .addColumn("service_name", "varchar", (c) => c.notNull())
    .addColumn("root_name", "varchar", (c) => c.notNull())
    .addColumn("timestamp", tstz, (c) => c.notNull())
    .addColumn("duration_ns", "bigint", (c) => c.notNull())
    .addColumn("span_count", "integer", (c) => c.notNull())
    .addColumn("error", "boolean", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("service_summary")
    .ifNotExists()
    .addColumn("timestamp", tstz, (c) => c.notNull())
    .addColumn("service_name", "varchar", (c) => c.notNull())
    .addColumn("metric", "varchar", (c) => c.notNull())
    .addColumn("request_count", "bigint", (c) => c.notNull())
    .addColumn("error_count", "bigint", (c) => c.notNull())
    .addColumn("sum_duration_ns", "double precision", (c) => c.notNull())
    .addColumn("min_duration_ns", "bigint", (c) => c.notNull())
    .addColumn("max_duration_ns", "bigint", (c) => c.notNull())
    .addColumn("p50_duration_ns", "double precision", (c) => c.notNull())
    .addColumn("p95_duration_ns", "double precision", (c) => c.notNull())
    .addColumn("p99_duration_ns", "double precision", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("service_latency_buckets")
    .ifNotExists()
    .addColumn("timestamp", tstz, (c) => c.notNull())
    .addColumn("service_name", "varchar", (c) => c.notNull())
    .addColumn("metric", "varchar", (c) => c.notNull())
    .addColumn("bucket", "integer", (c) => c.notNull())
    .addColumn("count", "bigint", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("host_samples")
    .ifNotExists()
    .addColumn("timestamp", tstz, (c) => c.notNull())
    .addColumn("host_name", "varchar", (c) => c.notNull())
    .addColumn("service_name", "varchar", (c) => c.notNull())
    .addColumn("cpu_percent", "double precision")
    .addColumn("memory_percent", "double precision")
    .addColumn("memory_used_bytes", "bigint")
    .addColumn("memory_total_bytes", "bigint")
    .execute();

  await db.schema
    .createTable("system_metrics_rollup")
    .ifNotExists()
    .addColumn("timestamp", tstz, (c) => c.notNull())
    .addColumn("host_name", "varchar", (c) => c.notNull())
    .addColumn("service_name", "varchar", (c) => c.notNull())
    .addColumn("cpu_percent", "double precision")
    .addColumn("memory_percent", "double precision")
    .addColumn("memory_used_bytes", "bigint")
    .addColumn("memory_total_bytes", "bigint")
    .addColumn("sample_count", "integer", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("services")
    .ifNotExists()
    .addColumn("name", "varchar", (c) => c.primaryKey())
    .addColumn("namespace", "varchar", (c) => c.notNull())
    .addColumn("region", "varchar", (c) => c.notNull())
    .addColumn("instance_count", "integer", (c) => c.notNull())
    .addColumn("first_seen", tstz, (c) => c.notNull())
    .addColumn("last_seen", tstz, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("service_instances")
    .ifNotExists()
    .addColumn("service_name", "varchar", (c) => c.notNull())
    .addColumn("instance_id", "varchar", (c) => c.notNull())
    .addColumn("last_seen", tstz, (c) => c.notNull())
    .addPrimaryKeyConstraint("service_instances_pk", ["service_name", "instance_id"])
    .execute();

  await db.schema
    .createTable("rollup_pending")
    .ifNotExists()
    .addColumn("minute", tstz, (c) => c.notNull())
    .addColumn("seq", "bigint", (c) => c.notNull())
    .execute();

  await db.schema
    .createTable("histogram_streams")
    .ifNotExists()
    .addColumn("stream", "varchar", (c) => c.primaryKey())
    .addColumn("start_ns", "varchar", (c) => c.notNull())
    .addColumn("sum_ns", "double precision", (c) => c.notNull())
    .addColumn("buckets", "varchar", (c) => c.notNull())
    .addColumn("updated_at", tstz, (c) => c.notNull())
    .execute();

  // One row per key in the rollups the Writer merges into: a unique index lets each batch merge with
  // one upsert that looks keys up in the index, instead of scanning the last hour of the table.
  // Files written before the index existed already hold one row per key (every write path replaced
  // rows by key); should one hold duplicates anyway, they are merged first so the index can be built.
  for (const k of ROLLUP_KEYS) {
    const has = await sql<{ n: number }>`SELECT count(*) AS n FROM duckdb_indexes() WHERE index_name = ${k.index}`.execute(db);
    if (Number(has.rows[0]!.n) > 0) continue;
    const cols = sql.join(k.columns.map((c) => sql.ref(c)));
    const dups = await sql<{ n: number }>`SELECT count(*) AS n FROM (SELECT 1 FROM ${sql.table(k.table)} GROUP BY ${cols} HAVING count(*) > 1)`.execute(db);
    if (Number(dups.rows[0]!.n) > 0) {
      // One transaction: a kill between the DELETE and the INSERT would lose the table's rows.
      // (Deleting and re-inserting keys in one transaction is safe here: the index does not exist yet.)
      await db.transaction().execute(async (trx) => {
        await sql`CREATE OR REPLACE TEMP TABLE rollup_dedupe AS SELECT ${cols}, ${sql.raw(k.merge)} FROM ${sql.table(k.table)} GROUP BY ${cols}`.execute(trx);
        await sql`DELETE FROM ${sql.table(k.table)}`.execute(trx);
        await sql`INSERT INTO ${sql.table(k.table)} BY NAME SELECT * FROM temp.rollup_dedupe`.execute(trx);
        await sql`DROP TABLE temp.rollup_dedupe`.execute(trx);
      });
    }
    await sql`CREATE UNIQUE INDEX IF NOT EXISTS ${sql.ref(k.index)} ON ${sql.table(k.table)} (${cols})`.execute(db);
  }

  // Host metrics became optional per sample (OTLP reports CPU and memory as separate metrics).
  // Files created before that have NOT NULL here; dropping it is idempotent and keeps their data.
  for (const table of ["host_samples", "system_metrics_rollup"]) {
    for (const column of ["cpu_percent", "memory_percent", "memory_used_bytes", "memory_total_bytes"]) {
      await sql`ALTER TABLE ${sql.table(table)} ALTER COLUMN ${sql.ref(column)} DROP NOT NULL`.execute(db);
    }
  }
}
