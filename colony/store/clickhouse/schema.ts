// The colony's tables on ClickHouse: the same names and user-visible columns as on DuckDB
// (colony/store/schema.ts), because users' raw SQL and the RFD's examples query them verbatim.
//
// Why the rollups are deltas computed in TypeScript, inserted into insert-only tables, rather than
// materialized views over `spans`:
// - Several colony processes may write to one ClickHouse at once, so nothing may read, modify and
//   write a stored row. Every rollup row written is a *contribution* (a delta); tables either add
//   them up in background merges (SummingMergeTree, AggregatingMergeTree with
//   SimpleAggregateFunction columns) or keep them apart, and every read merges at query time
//   (`GROUP BY` the key — the views below do it), so answers are exact before merges run.
// - The deltas are computed by the same code as on DuckDB (colony/ingest/span-deltas.ts,
//   rollups.ts addSummary/addTrace), so both engines bucket, count and pick trace roots alike. A
//   materialized view would need the scale-6 bucket function and the local-root rule (a self-join
//   of the batch) in ClickHouse SQL, a second implementation to keep equal to the first.
// - Percentile columns are not stored: `service_summary` derives p50/p95/p99 from the merged
//   buckets when read, with the exact bucket values TypeScript uses (`coral_bucket_values`, the
//   doubles' bit patterns), so it matches quantileFromBuckets to the bit.
//
// Crashes: a batch is several INSERTs (one per table, sent together; writer.ts says why), not one
// transaction. Each INSERT carries an `insert_deduplication_token` derived from the batch's
// content, and every MergeTree keeps a deduplication window, so a retried batch (an OTLP client
// retries what was not acknowledged) skips the INSERTs that already landed and adds the ones that
// did not: a kill between INSERTs loses nothing and doubles nothing *if the client retries*. If
// it never does, that one batch may be stored in part. docs/scale-out.md says the same.
//
// Internal tables (`*_parts`, `coral_bucket_values`, `coral_schema`) hold contributions and bookkeeping; raw SQL reads the views
// (`latency_exemplars` too: the candidates DuckDB would have kept). DuckDB's `rollup_pending` has no counterpart: nothing is merged later, so nothing is owed.
import { createHash } from "node:crypto";
import type { ClickHouseClient } from "@clickhouse/client";
import type { SpanRecord } from "../../ingest/records.js";
import { EXEMPLARS_PER_BUCKET } from "../exemplar-limits.js";
import { bucketValue } from "../sketch.js";
import { attributeRows } from "./rows.js";

/**
 * The schema version `schema_migrations` records; bump it with a step in `createTables`.
 * 1: the first tables (span_attributes and latency_exemplars were added later without a bump, so
 *    the steps look at which tables a database holds rather than at this number).
 * 2: exemplar candidates in `latency_exemplar_parts`, `latency_exemplars` the view of the kept
 *    ones; `span_attributes` filled for the spans stored before it existed. The version row is
 *    written after the fill, so below 2 the fill may be unfinished (fillSpanAttributes).
 * 3: `span_attributes` has the trace_id bloom filter `spans` has, built for the parts stored
 *    before it (addTraceIdIndex).
 */
export const SCHEMA_VERSION = 3;

/** A trace's rows are spread over services and times: a lookup by trace skips granules by this. */
const TRACE_ID_INDEX = "INDEX trace_id_bf trace_id TYPE bloom_filter GRANULARITY 4";

/** Buckets of durations from 1 ns (bucket −1) to the largest Int64 (2^63 ns lies in bucket 4031). */
export const BUCKET_RANGE = { first: -1, last: 63 * 64 - 1 } as const;

export interface DdlOptions {
  /** The database, already validated as a plain identifier (connection.ts). */
  database: string;
  /** `ON CLUSTER` name: Replicated*MergeTree local tables behind Distributed tables of the public names. */
  cluster?: string;
}

type Engine = "MergeTree" | "SummingMergeTree" | "AggregatingMergeTree" | "ReplacingMergeTree";

interface TableDef {
  name: string;
  columns: [name: string, type: string][];
  engine: Engine;
  /** Engine arguments (the summed columns, the version column). */
  engineArgs?: string;
  orderBy: string;
  partitionBy?: string;
  /** Distributed sharding key (cluster only); rows of one key go to one shard. */
  shardBy: string;
  /** Extra clauses inside the column list (skip indexes). */
  indexes?: string[];
  /**
   * One copy on every node instead of sharded (small, constant tables): its replication path
   * has no {shard}, and it is read locally, with no Distributed table.
   */
  everywhere?: boolean;
}

const TS = "DateTime64(6, 'UTC')";
const INT64_MAX = "9223372036854775807";

const TABLES: TableDef[] = [
  {
    name: "spans",
    columns: [
      ["trace_id", "String"],
      ["span_id", "String"],
      ["parent_span_id", "Nullable(String)"],
      ["service_name", "String"],
      ["name", "String"],
      ["kind", "String"],
      ["start_time", TS],
      ["duration_ns", "Int64"],
      ["status_code", "String"],
      ["http_status_code", "Nullable(Int32)"],
      /** JSON text of the span's attributes, as on DuckDB. */
      ["attributes", "String"],
    ],
    engine: "MergeTree",
    partitionBy: "toDate(start_time)",
    orderBy: "(service_name, start_time, trace_id)",
    // A trace's spans are spread over services: a trace lookup skips granules by this index.
    indexes: [TRACE_ID_INDEX],
    shardBy: "cityHash64(trace_id)",
  },
  {
    // One row per span and attribute (span or resource), as on DuckDB; written with its span.
    name: "span_attributes",
    columns: [
      ["service_name", "String"],
      ["start_time", TS],
      ["trace_id", "String"],
      ["span_id", "String"],
      ["kind", "String"],
      ["duration_ns", "Int64"],
      ["failed", "Bool"],
      ["key", "String"],
      ["value", "String"],
      ["resource", "Bool"],
    ],
    engine: "MergeTree",
    partitionBy: "toDate(start_time)",
    // Every read names the service, SERVER and a window, and attributeGroups one key.
    orderBy: "(service_name, kind, key, start_time)",
    // GetTrace's resource attributes name a trace, which the sort key cannot find (addTraceIdIndex).
    indexes: [TRACE_ID_INDEX],
    shardBy: "cityHash64(trace_id)",
  },
  {
    name: "service_latency_buckets",
    columns: [
      ["timestamp", TS],
      ["service_name", "String"],
      ["metric", "String"],
      ["bucket", "Int32"],
      ["count", "UInt64"],
    ],
    engine: "SummingMergeTree",
    engineArgs: "count",
    partitionBy: "toYYYYMM(timestamp)",
    orderBy: "(service_name, metric, timestamp, bucket)",
    shardBy: "cityHash64(service_name)",
  },
  {
    name: "service_summary_parts",
    columns: [
      ["timestamp", TS],
      ["service_name", "String"],
      ["metric", "String"],
      ["request_count", "SimpleAggregateFunction(sum, UInt64)"],
      ["error_count", "SimpleAggregateFunction(sum, UInt64)"],
      ["sum_duration_ns", "SimpleAggregateFunction(sum, Float64)"],
      ["min_duration_ns", "SimpleAggregateFunction(min, Int64)"],
      ["max_duration_ns", "SimpleAggregateFunction(max, Int64)"],
    ],
    engine: "AggregatingMergeTree",
    partitionBy: "toYYYYMM(timestamp)",
    orderBy: "(service_name, metric, timestamp)",
    shardBy: "cityHash64(service_name)",
  },
  {
    name: "trace_summary_parts",
    columns: [
      ["trace_id", "String"],
      ["service_name", "String"],
      // The local root as (start µs, −end ns, name): the least tuple is the earliest root, the
      // longest on a tie — the rule rollups.ts addTrace applies, as one mergeable minimum.
      ["root", "SimpleAggregateFunction(min, Tuple(Int64, Int64, String))"],
      ["start_time", `SimpleAggregateFunction(min, ${TS})`],
      /** The latest local-root end, ns since the epoch. */
      ["end_ns", "SimpleAggregateFunction(max, Int64)"],
      ["span_count", "SimpleAggregateFunction(sum, UInt64)"],
      ["error", "SimpleAggregateFunction(max, UInt8)"],
    ],
    engine: "AggregatingMergeTree",
    orderBy: "(trace_id, service_name)",
    shardBy: "cityHash64(trace_id)",
  },
  {
    // Candidates only: every batch inserts its EXEMPLARS_PER_BUCKET slowest per key, and the view
    // `latency_exemplars` keeps the slowest of all (LIMIT … BY the key), so colonies sharing the
    // table never rewrite a row and raw SQL sees the rows DuckDB keeps.
    name: "latency_exemplar_parts",
    columns: [
      ["timestamp", TS],
      ["service_name", "String"],
      ["metric", "String"],
      ["bucket", "Int32"],
      ["trace_id", "String"],
      ["span_id", "String"],
      ["start_time", TS],
      ["duration_ns", "Int64"],
    ],
    engine: "MergeTree",
    partitionBy: "toYYYYMM(timestamp)",
    orderBy: "(service_name, metric, timestamp, bucket)",
    shardBy: "cityHash64(service_name)",
  },
  {
    name: "host_samples",
    columns: [
      ["timestamp", TS],
      ["host_name", "String"],
      ["service_name", "String"],
      ["cpu_percent", "Nullable(Float64)"],
      ["memory_percent", "Nullable(Float64)"],
      ["memory_used_bytes", "Nullable(Int64)"],
      ["memory_total_bytes", "Nullable(Int64)"],
    ],
    engine: "MergeTree",
    partitionBy: "toDate(timestamp)",
    orderBy: "(service_name, host_name, timestamp)",
    shardBy: "cityHash64(host_name)",
  },
  {
    name: "services_parts",
    columns: [
      ["name", "String"],
      // (seen at, value) of reports that carried one; the newest wins. ('', epoch) when none did.
      ["namespace", `SimpleAggregateFunction(max, Tuple(${TS}, String))`],
      ["region", `SimpleAggregateFunction(max, Tuple(${TS}, String))`],
      ["first_seen", `SimpleAggregateFunction(min, ${TS})`],
      ["last_seen", `SimpleAggregateFunction(max, ${TS})`],
    ],
    engine: "AggregatingMergeTree",
    orderBy: "name",
    shardBy: "cityHash64(name)",
  },
  {
    name: "service_instances_parts",
    columns: [
      ["service_name", "String"],
      ["instance_id", "String"],
      ["last_seen", `SimpleAggregateFunction(max, ${TS})`],
    ],
    engine: "AggregatingMergeTree",
    orderBy: "(service_name, instance_id)",
    shardBy: "cityHash64(service_name)",
  },
  {
    // The last stored point of each cumulative histogram stream (colony/ingest/cumulative.ts).
    name: "histogram_streams",
    columns: [
      ["stream", "String"],
      ["start_ns", "String"],
      ["sum_ns", "Float64"],
      ["buckets", "String"],
      ["updated_at", TS],
    ],
    engine: "ReplacingMergeTree",
    engineArgs: "updated_at",
    orderBy: "stream",
    shardBy: "cityHash64(stream)",
  },
  {
    name: "schema_migrations",
    columns: [
      ["version", "Int32"],
      ["applied_at", TS],
    ],
    engine: "MergeTree",
    orderBy: "version",
    shardBy: "version",
  },
  {
    // Progress of upgrade steps longer than one statement (the span_attributes fill's cutoff):
    // one row per key, written once (a fixed deduplication token), read with min().
    name: "coral_schema",
    columns: [
      ["key", "String"],
      ["value", "String"],
    ],
    engine: "MergeTree",
    orderBy: "key",
    shardBy: "cityHash64(key)",
  },
  {
    // bucketValue(bucket) as the bits of the double TypeScript computes: no float parsing or libm
    // in between, so percentiles read in SQL equal quantileFromBuckets exactly.
    name: "coral_bucket_values",
    columns: [
      ["bucket", "Int32"],
      ["bits", "UInt64"],
    ],
    engine: "ReplacingMergeTree",
    orderBy: "bucket",
    shardBy: "bucket",
    everywhere: true,
  },
];

/** The columns of a table, in the order the writer's rows give values. */
export function columnsOf(name: string): string[] {
  const t = TABLES.find((x) => x.name === name);
  if (!t) throw new Error(`no table ${name}`);
  return t.columns.map(([n]) => n);
}

/**
 * quantileFromBuckets (sketch.ts) in ClickHouse SQL: `n` observations, `cum` the cumulative counts
 * and `vals` the bucket values, in bucket order. The same operations on the same doubles.
 */
function quantileSql(q: number): string {
  const rank = `(${q} * (n - 1))`;
  const at = (r: string) => `vals[arrayFirstIndex(c -> c > ${r}, cum)]`;
  return `if(n = 0, 0, ${at(`floor(${rank})`)} + (${at(`ceil(${rank})`)} - ${at(`floor(${rank})`)}) * (${rank} - floor(${rank})))`;
}

/** The views that give the internal tables DuckDB's table shapes. `t` names a table in the database. */
function views(t: (name: string) => string): { name: string; select: string }[] {
  const sat = (e: string) => `toInt64(least(${e}, ${INT64_MAX}))`;
  return [
    {
      name: "service_summary",
      select: `
SELECT s.timestamp AS timestamp, s.service_name AS service_name, s.metric AS metric,
       s.request_count AS request_count, s.error_count AS error_count, s.sum_duration_ns AS sum_duration_ns,
       s.min_duration_ns AS min_duration_ns, s.max_duration_ns AS max_duration_ns,
       ${quantileSql(0.5)} AS p50_duration_ns,
       ${quantileSql(0.95)} AS p95_duration_ns,
       ${quantileSql(0.99)} AS p99_duration_ns
FROM (
  SELECT timestamp, service_name, metric, ${sat("sum(request_count)")} AS request_count, ${sat("sum(error_count)")} AS error_count,
         sum(sum_duration_ns) AS sum_duration_ns, min(min_duration_ns) AS min_duration_ns, max(max_duration_ns) AS max_duration_ns
  FROM ${t("service_summary_parts")}
  GROUP BY timestamp, service_name, metric
) AS s
LEFT JOIN (
  SELECT timestamp, service_name, metric, arraySort(x -> x.1, groupArray((k.bucket, k.n, v.value))) AS pairs,
         arraySum(x -> x.2, pairs) AS n, arrayCumSum(arrayMap(x -> x.2, pairs)) AS cum, arrayMap(x -> x.3, pairs) AS vals
  FROM (
    SELECT timestamp, service_name, metric, bucket, sum(count) AS n
    FROM ${t("service_latency_buckets")}
    GROUP BY timestamp, service_name, metric, bucket
    HAVING n > 0
  ) AS k
  INNER JOIN (SELECT bucket, reinterpretAsFloat64(any(bits)) AS value FROM ${t("coral_bucket_values")} GROUP BY bucket) AS v ON k.bucket = v.bucket
  GROUP BY timestamp, service_name, metric
) AS b ON s.timestamp = b.timestamp AND s.service_name = b.service_name AND s.metric = b.metric`,
    },
    {
      // DuckDB keeps the first EXEMPLARS_PER_BUCKET by rank (exemplars.ts); the candidates ranked
      // after them are what a merge there would have deleted.
      name: "latency_exemplars",
      select: `
SELECT timestamp, service_name, metric, bucket, trace_id, span_id, start_time, duration_ns
FROM ${t("latency_exemplar_parts")}
ORDER BY duration_ns DESC, trace_id, span_id
LIMIT ${EXEMPLARS_PER_BUCKET} BY timestamp, service_name, metric, bucket`,
    },
    {
      name: "trace_summary",
      select: `
SELECT trace_id, service_name, min(root).3 AS root_name, min(start_time) AS timestamp,
       max(end_ns) - toUnixTimestamp64Micro(min(start_time)) * 1000 AS duration_ns,
       toInt32(least(sum(span_count), 2147483647)) AS span_count, max(error) = 1 AS error
FROM ${t("trace_summary_parts")}
GROUP BY trace_id, service_name`,
    },
    {
      // avg skips NULLs, so a metric a host did not report does not drag its minute towards 0.
      name: "system_metrics_rollup",
      select: `
SELECT minute AS timestamp, host_name, service_name,
       avg(cpu_percent) AS cpu_percent, avg(memory_percent) AS memory_percent,
       toInt64(avg(memory_used_bytes)) AS memory_used_bytes, max(memory_total_bytes) AS memory_total_bytes,
       toInt32(count()) AS sample_count
FROM (SELECT toDateTime64(toStartOfMinute(timestamp), 6, 'UTC') AS minute, * FROM ${t("host_samples")})
GROUP BY minute, host_name, service_name`,
    },
    {
      name: "service_instances",
      select: `
SELECT service_name, instance_id, max(last_seen) AS last_seen
FROM ${t("service_instances_parts")}
GROUP BY service_name, instance_id`,
    },
    {
      name: "services",
      select: `
SELECT s.name AS name, s.namespace AS namespace, s.region AS region, toInt32(ifNull(i.n, 0)) AS instance_count,
       s.first_seen AS first_seen, s.last_seen AS last_seen
FROM (
  SELECT name, max(namespace).2 AS namespace, max(region).2 AS region, min(first_seen) AS first_seen, max(last_seen) AS last_seen
  FROM ${t("services_parts")}
  GROUP BY name
) AS s
LEFT JOIN (
  SELECT service_name, toInt64(uniqExact(instance_id)) AS n FROM ${t("service_instances_parts")} GROUP BY service_name
) AS i ON s.name = i.service_name`,
    },
  ];
}

/** Backtick-quotes an identifier (the database and cluster names are validated before they get here). */
export function ident(name: string): string {
  return "`" + name.replace(/\\/g, "\\\\").replace(/`/g, "\\`") + "`";
}

/** Where each replicated table keeps its replication log in ZooKeeper/Keeper. */
function replicationArgs(o: Required<DdlOptions>, local: string, everywhere: boolean): string {
  const shard = everywhere ? "all" : "{shard}";
  return `'/clickhouse/tables/${shard}/${o.database}/${local}', '{replica}'`;
}

/**
 * The statements that create every table and view, in order; each is idempotent (IF NOT EXISTS).
 * With `cluster`, tables are `<name>_local` (Replicated*MergeTree) on every node, `<name>` a
 * Distributed table over them, and views read the Distributed tables.
 */
export function ddl(o: DdlOptions): string[] {
  const db = ident(o.database);
  const onCluster = o.cluster ? ` ON CLUSTER ${ident(o.cluster)}` : "";
  const out: string[] = [`CREATE DATABASE IF NOT EXISTS ${db}${onCluster}`];
  for (const t of TABLES) {
    const local = o.cluster && !t.everywhere ? `${t.name}_local` : t.name;
    const cols = [...t.columns.map(([n, type]) => `  ${ident(n)} ${type}`), ...(t.indexes ?? []).map((i) => `  ${i}`)].join(",\n");
    const args = [
      ...(o.cluster ? [replicationArgs({ database: o.database, cluster: o.cluster }, local, t.everywhere ?? false)] : []),
      ...(t.engineArgs ? [t.engineArgs] : []),
    ].join(", ");
    const engine = `${o.cluster ? "Replicated" : ""}${t.engine}${args || o.cluster ? `(${args})` : ""}`;
    out.push(
      [
        `CREATE TABLE IF NOT EXISTS ${db}.${ident(local)}${onCluster} (\n${cols}\n)`,
        `ENGINE = ${engine}`,
        ...(t.partitionBy ? [`PARTITION BY ${t.partitionBy}`] : []),
        `ORDER BY ${t.orderBy}`,
        // Retried INSERTs with the same insert_deduplication_token are skipped (replicated tables
        // keep such a window by default; plain MergeTree needs it set).
        ...(o.cluster ? [] : ["SETTINGS non_replicated_deduplication_window = 1000"]),
      ].join("\n"),
    );
    if (o.cluster && !t.everywhere) {
      out.push(
        `CREATE TABLE IF NOT EXISTS ${db}.${ident(t.name)}${onCluster} AS ${db}.${ident(local)}\n` +
          `ENGINE = Distributed(${ident(o.cluster)}, ${db}, ${ident(local)}, ${t.shardBy})`,
      );
    }
  }
  for (const v of views((name) => `${db}.${ident(name)}`)) {
    out.push(`CREATE VIEW IF NOT EXISTS ${db}.${ident(v.name)}${onCluster} AS${v.select}`);
  }
  return out;
}

/** The rows of `coral_bucket_values`: every bucket a stored duration can fall in. */
export function bucketValueRows(): { bucket: number; bits: string }[] {
  const view = new DataView(new ArrayBuffer(8));
  const rows: { bucket: number; bits: string }[] = [];
  for (let k = BUCKET_RANGE.first; k <= BUCKET_RANGE.last; k++) {
    view.setFloat64(0, bucketValue(k), true);
    rows.push({ bucket: k, bits: view.getBigUint64(0, true).toString() });
  }
  return rows;
}

/** The database's tables and views, by name, with their engines (`View`, `MergeTree`, `Distributed`, …). */
async function tablesIn(client: ClickHouseClient, database: string): Promise<Map<string, string>> {
  const r = await client.query({ query: "SELECT name, engine FROM system.tables WHERE database = {db:String}", query_params: { db: database }, format: "JSONEachRow" });
  return new Map(((await r.json()) as { name: string; engine: string }[]).map((t) => [t.name, t.engine]));
}

/**
 * Step to 2, before the DDL: a `latency_exemplars` *table* (the candidates, before the view) takes
 * the internal name, so the DDL creates the view in its place. RENAME is atomic; a colony starting
 * at the same moment that lost the race finds it done.
 */
async function moveExemplarCandidates(client: ClickHouseClient, o: DdlOptions, before: Map<string, string>): Promise<void> {
  const db = ident(o.database);
  const rename = async (query: string, done: string) => {
    try {
      await client.command({ query });
    } catch (err) {
      if (!(await tablesIn(client, o.database)).has(done)) throw err;
    }
  };
  if (!o.cluster) {
    const engine = before.get("latency_exemplars");
    if (engine && engine !== "View") await rename(`RENAME TABLE ${db}.${ident("latency_exemplars")} TO ${db}.${ident("latency_exemplar_parts")}`, "latency_exemplar_parts");
    return;
  }
  const onCluster = ` ON CLUSTER ${ident(o.cluster)}`;
  if (before.has("latency_exemplars_local")) {
    await rename(`RENAME TABLE ${db}.${ident("latency_exemplars_local")} TO ${db}.${ident("latency_exemplar_parts_local")}${onCluster}`, "latency_exemplar_parts_local");
  }
  // The Distributed table names the local table it reads: it goes, and the DDL creates the new one.
  if (before.get("latency_exemplars") === "Distributed") await client.command({ query: `DROP TABLE IF EXISTS ${db}.${ident("latency_exemplars")}${onCluster} SYNC` });
}

/**
 * Step to 3, after the DDL (which gives a span_attributes it creates the index): an older table
 * gets the index, and a mutation builds it for the parts already stored, in the background (parts
 * written after have it). A start killed midway leaves the version below 3, and the next start asks
 * again; so may several colonies starting at once: a second build only repeats the first.
 */
async function addTraceIdIndex(client: ClickHouseClient, o: DdlOptions, before: Map<string, string>): Promise<void> {
  const table = o.cluster ? "span_attributes_local" : "span_attributes";
  if (!before.has(table)) return;
  const target = `${ident(o.database)}.${ident(table)}${o.cluster ? ` ON CLUSTER ${ident(o.cluster)}` : ""}`;
  await client.command({ query: `ALTER TABLE ${target} ADD ${TRACE_ID_INDEX.replace(/^INDEX /, "INDEX IF NOT EXISTS ")}` });
  await client.command({ query: `ALTER TABLE ${target} MATERIALIZE INDEX trace_id_bf` });
}

/**
 * The span_attributes fill's chunks: at most this many spans, and this many bytes of attribute
 * JSON (a single larger span goes alone), are read and turned into rows at once.
 */
const FILL_CHUNK_SPANS = 20_000;
const FILL_CHUNK_BYTES = 8 * 1024 * 1024;
/** `coral_schema` key of the fill's cutoff, µs since the epoch. */
const FILL_CUTOFF = "span_attributes_fill_cutoff_us";

type SpanKey = { service_name: string; us: string; trace_id: string; span_id: string };
type StoredSpan = SpanKey & { kind: string; duration_ns: string; status_code: string; http_status_code: number | null; attributes: string };

/**
 * The fill's cutoff: the time the first start that began the fill recorded (one row, a fixed
 * token; min() if a colony starting in the same instant added a second). Spans that start at or
 * after it are the writer's: an upgraded colony writes their rows itself.
 */
async function fillCutoff(client: ClickHouseClient, table: string): Promise<string> {
  await client.insert({
    table,
    values: [[FILL_CUTOFF, String(Date.now() * 1000)]],
    columns: columnsOf("coral_schema") as [string, ...string[]],
    format: "JSONCompactEachRow",
    clickhouse_settings: { insert_deduplication_token: `coral_schema:${FILL_CUTOFF}` },
  });
  const r = await client.query({ query: `SELECT toString(min(toInt64(value))) AS us FROM ${table} WHERE key = {k:String}`, query_params: { k: FILL_CUTOFF }, format: "JSONEachRow" });
  return ((await r.json()) as { us: string }[])[0]!.us;
}

/**
 * Step to 2, after the DDL, for a database whose spans predate `span_attributes`: their rows, made
 * by the writer's own code from the stored JSON (such spans carry no resource attributes), so they
 * equal what ingestion writes today — ClickHouse's JSON functions print some numbers differently
 * from JavaScript. The step is done when the version row is written (after it), so a start killed
 * midway leaves the version below 2 and the next start runs it again, which adds only what is
 * missing:
 * - only spans that start before the cutoff (fillCutoff), day by day, in key order;
 * - each chunk leaves out the spans that have rows already (filled before a kill, by another
 *   colony filling at the same time, or written by an upgraded writer), and its deduplication
 *   token is the hash of the spans it fills, so two colonies filling one chunk at once store it
 *   once, whatever else arrived meanwhile;
 * - a day is one partition, so a chunk's INSERT is one part: it lands whole or not at all.
 */
async function fillSpanAttributes(client: ClickHouseClient, o: DdlOptions): Promise<void> {
  const t = (name: string) => `${ident(o.database)}.${ident(name)}`;
  const cutoff = await fillCutoff(client, t("coral_schema"));
  const at = (p: string) => `fromUnixTimestamp64Micro({${p}:Int64}, 'UTC')`;
  const order = "service_name, start_time, trace_id, span_id";
  const days = await client.query({
    query: `SELECT DISTINCT toString(toDate(start_time)) AS day FROM ${t("spans")} WHERE start_time < ${at("cutoff")} ORDER BY day`,
    query_params: { cutoff },
    format: "JSONEachRow",
  });
  for (const { day } of (await days.json()) as { day: string }[]) {
    let after: SpanKey | undefined;
    for (;;) {
      const inDay = `toDate(start_time) = {day:Date} AND start_time < ${at("cutoff")}${after ? ` AND (${order}) > ({s:String}, ${at("us")}, {tr:String}, {sp:String})` : ""}`;
      const params = { day, cutoff, ...(after ? { s: after.service_name, us: after.us, tr: after.trace_id, sp: after.span_id } : {}) };
      // The next keys and sizes first: the chunk ends where the spans or the bytes run out.
      const next = await client.query({
        query: `SELECT service_name, toString(toUnixTimestamp64Micro(start_time)) AS us, trace_id, span_id, length(attributes) AS bytes
                FROM ${t("spans")} WHERE ${inDay} ORDER BY ${order} LIMIT ${FILL_CHUNK_SPANS}`,
        query_params: params,
        format: "JSONEachRow",
      });
      const keys = (await next.json()) as (SpanKey & { bytes: number | string })[];
      if (keys.length === 0) break;
      let n = 0;
      for (let bytes = 0; n < keys.length && (n === 0 || bytes + Number(keys[n]!.bytes) <= FILL_CHUNK_BYTES); n++) bytes += Number(keys[n]!.bytes);
      const chunk = keys.slice(0, n);
      const last = chunk[n - 1]!;
      const starts = chunk.map((k) => BigInt(k.us));
      const r = await client.query({
        query: `SELECT trace_id, span_id, service_name, kind, toString(toUnixTimestamp64Micro(start_time)) AS us, toString(duration_ns) AS duration_ns, status_code, http_status_code, attributes
                FROM ${t("spans")}
                WHERE ${inDay} AND (${order}) <= ({ls:String}, ${at("lus")}, {ltr:String}, {lsp:String})
                  AND (trace_id, span_id) NOT IN (
                    SELECT trace_id, span_id FROM ${t("span_attributes")}
                    WHERE toDate(start_time) = {day:Date} AND service_name BETWEEN {fs:String} AND {ls:String} AND start_time BETWEEN ${at("lo")} AND ${at("hi")})
                ORDER BY ${order}`,
        query_params: {
          ...params,
          ls: last.service_name,
          lus: last.us,
          ltr: last.trace_id,
          lsp: last.span_id,
          fs: chunk[0]!.service_name,
          lo: starts.reduce((a, b) => (a < b ? a : b)).toString(),
          hi: starts.reduce((a, b) => (a > b ? a : b)).toString(),
        },
        format: "JSONEachRow",
      });
      const stored = (await r.json()) as StoredSpan[];
      const rows = attributeRows(stored.map(storedSpan));
      if (rows.length > 0) {
        const hash = createHash("sha256");
        for (const x of stored) hash.update(`${x.trace_id}\u0000${x.span_id}\u0001`);
        await client.insert({
          table: t("span_attributes"),
          values: rows,
          columns: columnsOf("span_attributes") as [string, ...string[]],
          format: "JSONCompactEachRow",
          clickhouse_settings: { insert_deduplication_token: `migrate-2:span_attributes:${hash.digest("hex")}` },
        });
      }
      after = last;
    }
  }
}

/** A stored span as the writer's attributeRows takes it (only the fields it reads are real). */
function storedSpan(x: StoredSpan): SpanRecord {
  return {
    traceId: x.trace_id,
    spanId: x.span_id,
    parentSpanId: null,
    serviceName: x.service_name,
    name: "",
    kind: x.kind as SpanRecord["kind"],
    startTimeMs: Number(x.us) / 1000,
    durationNs: Number(x.duration_ns),
    statusCode: x.status_code as SpanRecord["statusCode"],
    httpStatusCode: x.http_status_code,
    attributes: x.attributes,
  };
}

/**
 * Creates the database, tables and views that do not exist yet, brings an older database to this
 * shape (the steps above), fills the constant tables and records the schema version: safe to run
 * on every start, and by several colonies starting at once (the constant rows and the version row
 * carry deduplication tokens, and readers of both group by their key). `fresh`: the database held
 * no `spans` table before.
 */
export async function createTables(client: ClickHouseClient, o: DdlOptions): Promise<{ fresh: boolean }> {
  const before = await tablesIn(client, o.database);
  const fresh = !before.has("spans");
  await moveExemplarCandidates(client, o, before);
  for (const statement of ddl(o)) await client.command({ query: statement });
  // The version row is written only after the steps: below 2, a fill may have been cut short.
  const version = fresh ? SCHEMA_VERSION : await schemaVersion(client, o.database);
  if (version < 2) await fillSpanAttributes(client, o);
  if (version < 3) await addTraceIdIndex(client, o, before);
  const table = (name: string) => `${ident(o.database)}.${ident(name)}`;
  await client.insert({
    table: table("coral_bucket_values"),
    values: bucketValueRows(),
    format: "JSONEachRow",
    clickhouse_settings: { insert_deduplication_token: `coral_bucket_values:v1` },
  });
  await client.insert({
    table: table("schema_migrations"),
    values: [{ version: SCHEMA_VERSION, applied_at: Date.now() * 1000 }],
    format: "JSONEachRow",
    clickhouse_settings: { insert_deduplication_token: `schema_migrations:${SCHEMA_VERSION}` },
  });
  return { fresh };
}

/** The schema version the database holds (0: none recorded). */
export async function schemaVersion(client: ClickHouseClient, database: string): Promise<number> {
  const r = await client.query({ query: `SELECT max(version) AS v FROM ${ident(database)}.${ident("schema_migrations")}`, format: "JSONEachRow" });
  return Number(((await r.json()) as { v: number | string | null }[])[0]?.v ?? 0);
}
