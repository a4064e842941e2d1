import { sql, type Kysely } from "kysely";

// Table and column names are public: users' raw SQL (and the RFD's examples) query them verbatim.

export type SpanKind = "SERVER" | "CLIENT" | "INTERNAL" | "PRODUCER" | "CONSUMER";
export type SpanStatus = "UNSET" | "OK" | "ERROR";

/** The metric recorded for the duration of SERVER spans. */
export const HTTP_SERVER_DURATION = "http.server.duration";

/** A column's SQL type; the JS type kysely sees follows from it (see Column). */
type SqlType = "varchar" | "bigint" | "integer" | "double precision" | "boolean" | "timestamptz";

/** One column: its SQL type and constraints, and (as a phantom) the JS type of its values. */
interface Column<V> {
  readonly type: SqlType;
  readonly nullable: boolean;
  readonly primaryKey: boolean;
  /** Never set: carries V to the row types below. */
  readonly js?: V;
}

const column =
  <V>(type: SqlType) =>
  (o: { nullable?: boolean; primaryKey?: boolean } = {}): Column<V> => ({ type, nullable: o.nullable ?? false, primaryKey: o.primaryKey ?? false });
const text = <V extends string = string>(o?: { primaryKey?: boolean }) => column<V>("varchar")(o);
const nullableText = () => column<string | null>("varchar")({ nullable: true });
const bigint = () => column<number>("bigint")();
const int = () => column<number>("integer")();
const nullableInt = () => column<number | null>("integer")({ nullable: true });
const nullableBigint = () => column<number | null>("bigint")({ nullable: true });
const double = () => column<number>("double precision")();
const nullableDouble = () => column<number | null>("double precision")({ nullable: true });
const bool = () => column<boolean>("boolean")();
const time = () => column<Date>("timestamptz")();

/** One host's reading, raw (host_samples) or averaged over a minute (system_metrics_rollup). */
const HOST_READING = {
  timestamp: time(),
  host_name: text(),
  service_name: text(),
  /** NULL when the source did not report it (an OTLP host sends CPU and memory as separate metrics). */
  cpu_percent: nullableDouble(),
  memory_percent: nullableDouble(),
  memory_used_bytes: nullableBigint(),
  memory_total_bytes: nullableBigint(),
};

/**
 * Every table, declared once, columns in their stored order (appenders write by position): the
 * DDL that `migrate` runs and the row types kysely checks queries against both come from here.
 */
const TABLES = {
  spans: {
    trace_id: text(),
    span_id: text(),
    parent_span_id: nullableText(),
    service_name: text(),
    name: text(),
    kind: text<SpanKind>(),
    start_time: time(),
    duration_ns: bigint(),
    status_code: text<SpanStatus>(),
    http_status_code: nullableInt(),
    /** JSON text of the span's attributes. */
    attributes: text(),
  },
  /**
   * One row per attribute of a span (resource attributes included), so group-by and explain read
   * columns instead of extracting values from `spans.attributes` (~60× faster on 1M spans). Written
   * in the transaction that stores the span; the span's duration, kind and failure ride along so
   * those reads never join back to `spans`. A span attribute hides a resource attribute of the
   * same key; a null value has no row.
   */
  span_attributes: {
    service_name: text(),
    start_time: time(),
    trace_id: text(),
    span_id: text(),
    kind: text<SpanKind>(),
    duration_ns: bigint(),
    /** Failed as GetErrorRate counts it: status ERROR, or an HTTP status of 500 or more. */
    failed: bool(),
    key: text(),
    /** Strings as they are; numbers, booleans, arrays and maps as JSON (json_extract_string's text). */
    value: text(),
    /** From the span's OTLP resource rather than the span itself. */
    resource: bool(),
  },
  trace_summary: {
    trace_id: text(),
    service_name: text(),
    root_name: text(),
    timestamp: time(),
    duration_ns: bigint(),
    span_count: int(),
    error: bool(),
  },
  service_summary: {
    timestamp: time(),
    service_name: text(),
    metric: text(),
    request_count: bigint(),
    error_count: bigint(),
    sum_duration_ns: double(),
    min_duration_ns: bigint(),
    max_duration_ns: bigint(),
    p50_duration_ns: double(),
    p95_duration_ns: double(),
    p99_duration_ns: double(),
  },
  service_latency_buckets: {
    timestamp: time(),
    service_name: text(),
    metric: text(),
    bucket: int(),
    count: bigint(),
  },
  /**
   * A few SERVER spans per latency bucket and minute (the slowest of each, at most
   * EXEMPLARS_PER_BUCKET: colony/ingest/exemplars.ts), so a percentile can name requests it
   * describes. Kept, like the spans they point at, for the retention period.
   */
  latency_exemplars: {
    /** The minute, as in service_latency_buckets. */
    timestamp: time(),
    service_name: text(),
    metric: text(),
    bucket: int(),
    trace_id: text(),
    span_id: text(),
    start_time: time(),
    duration_ns: bigint(),
  },
  /** Raw host samples; the rollup is recomputed from them so late or repeated batches never double count. */
  host_samples: HOST_READING,
  system_metrics_rollup: { ...HOST_READING, sample_count: int() },
  services: {
    name: text({ primaryKey: true }),
    namespace: text(),
    region: text(),
    instance_count: int(),
    first_seen: time(),
    last_seen: time(),
  },
  service_instances: {
    service_name: text(),
    instance_id: text(),
    last_seen: time(),
  },
  /**
   * Minutes whose spans are committed but whose contributions to the span rollups (service_summary,
   * service_latency_buckets, trace_summary) are not merged yet. The Writer merges those in the
   * background, in larger batches than ingestion commits; after a crash, these minutes are rebuilt
   * from the raw spans when the colony starts.
   */
  rollup_pending: {
    minute: time(),
    /** The span commit that touched the minute, in the order this process committed them. */
    seq: bigint(),
  },
  /** The last stored point of each cumulative histogram stream (see colony/ingest/cumulative.ts). */
  histogram_streams: {
    /** Service, metric and point attributes, as JSON. */
    stream: text({ primaryKey: true }),
    /** The stream's start, in ns since the epoch (text: the value exceeds 2^53). */
    start_ns: text(),
    sum_ns: double(),
    /** Totals per sketch bucket, as JSON `[[bucket, count], …]`. */
    buckets: text(),
    updated_at: time(),
  },
  /** The data versions this file has been brought to, one row each (colony/store/migrations.ts). */
  schema_migrations: {
    version: int(),
    applied_at: time(),
  },
} satisfies Record<string, Record<string, Column<unknown>>>;

/**
 * The tables users' SQL is meant to read, in the order the docs list them, each with what one of
 * its rows stands for. The rest (rollup_pending, histogram_streams, schema_migrations) are the
 * colony's bookkeeping. docs/scripting.md's table of tables and `coral mcp`'s tool descriptions
 * come from here (schema.test.ts checks the docs).
 */
export const USER_TABLES = {
  services: "service",
  spans: "span (bounded retention)",
  span_attributes: "span or resource attribute of a span (kept with its span)",
  trace_summary: "trace and service",
  service_summary: "service, metric, minute",
  service_latency_buckets: "service, metric, minute, bucket",
  latency_exemplars: "slow span kept per service, metric, minute and bucket (kept with its span)",
  system_metrics_rollup: "host, minute",
  host_samples: "host sample",
} as const satisfies Partial<Record<keyof typeof TABLES, string>>;

/** One line per user table: "`name` | one row per | `columns`", as docs/scripting.md shows them. */
export function userTableRows(): { table: string; rowPer: string; columns: string[] }[] {
  return Object.entries(USER_TABLES).map(([table, rowPer]) => ({ table, rowPer, columns: Object.keys(TABLES[table as keyof typeof TABLES]) }));
}

/** Keys of more than one column, as named constraints. */
const COMPOSITE_KEYS: Partial<Record<keyof typeof TABLES, { name: string; columns: string[] }>> = {
  service_instances: { name: "service_instances_pk", columns: ["service_name", "instance_id"] },
};

type RowOf<T> = { [K in keyof T]: T[K] extends Column<infer V> ? V : never };

export type Database = { [T in keyof typeof TABLES]: RowOf<(typeof TABLES)[T]> };
export type ServicesTable = Database["services"];
export type TraceSummaryTable = Database["trace_summary"];

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

/**
 * Creates every table that does not exist yet; safe to run on every start. `fresh`: the file had
 * none of them, so there is no older data to bring up to date (migrations.ts).
 */
export async function migrate(db: Kysely<Database>): Promise<{ fresh: boolean }> {
  const existing = await sql<{ n: number }>`SELECT count(*) AS n FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = 'spans'`.execute(db);
  const fresh = Number(existing.rows[0]!.n) === 0;
  for (const [table, columns] of Object.entries(TABLES) as [keyof typeof TABLES, Record<string, Column<unknown>>][]) {
    let create = db.schema.createTable(table).ifNotExists();
    for (const [name, c] of Object.entries(columns)) {
      create = create.addColumn(name, sql.raw(c.type), (b) => (c.primaryKey ? b.primaryKey() : c.nullable ? b : b.notNull()));
    }
    const key = COMPOSITE_KEYS[table];
    if (key) create = create.addPrimaryKeyConstraint(key.name, key.columns as never);
    await create.execute();
  }

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
  return { fresh };
}
