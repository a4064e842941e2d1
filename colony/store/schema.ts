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

export interface Database {
  spans: SpansTable;
  trace_summary: TraceSummaryTable;
  service_summary: ServiceSummaryTable;
  service_latency_buckets: ServiceLatencyBucketsTable;
  host_samples: HostSamplesTable;
  system_metrics_rollup: SystemMetricsRollupTable;
  services: ServicesTable;
  service_instances: ServiceInstancesTable;
}

const tstz = sql`timestamptz`;

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

  // Host metrics became optional per sample (OTLP reports CPU and memory as separate metrics).
  // Files created before that have NOT NULL here; dropping it is idempotent and keeps their data.
  for (const table of ["host_samples", "system_metrics_rollup"]) {
    for (const column of ["cpu_percent", "memory_percent", "memory_used_bytes", "memory_total_bytes"]) {
      await sql`ALTER TABLE ${sql.table(table)} ALTER COLUMN ${sql.ref(column)} DROP NOT NULL`.execute(db);
    }
  }
}
