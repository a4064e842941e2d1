// The OpenTelemetry Collector's ClickHouse exporter table (`otel_traces` by default) as Coral reads
// it with `--otel-schema`: checked once at start (exists, has the columns the exporter writes, of
// types we can read), then seen through subqueries shaped like the colony's own `spans` and
// `span_attributes` tables, so the ClickHouse reads that need raw spans (trace, group-by, explain)
// run on it unchanged.
//
// The exporter's columns (its DDL, internal/sqltemplates/traces_table.sql): Timestamp DateTime64(9)
// (the span's start), TraceId, SpanId, ParentSpanId ('' for a root), SpanName, SpanKind,
// ServiceName, ResourceAttributes and SpanAttributes as Map(LowCardinality(String), String),
// Duration in ns (UInt64 now, Int64 in older versions), StatusCode, StatusMessage, Events.*,
// Links.*. Kind and status were written as the proto's names (SPAN_KIND_SERVER, STATUS_CODE_ERROR)
// by older versions and as short names (Server, Error) by newer ones: both read the same here.
import type { ClickHouseClient } from "@clickhouse/client";
import { LATEST_NS } from "../../../ingest/otlp/validate.js";
import { ident } from "../schema.js";

export const DEFAULT_OTEL_TABLE = "otel_traces";

/** A plain identifier, as the exporter's `traces_table_name` is in practice; quoted anyway. */
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/** A problem with the table, worded for the user: one line. */
export class OtelTableError extends Error {
  override readonly name = "OtelTableError";
}

/** `--otel-table`'s value, or why it is not a table name. */
export function checkTableName(name: string): string {
  if (!TABLE_NAME.test(name)) {
    const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 77)}...` : name);
    throw new OtelTableError(`--otel-table: ${shown} is not a table name (letters, digits and _, not starting with a digit, at most 128 characters) — the exporter's traces_table_name, default ${DEFAULT_OTEL_TABLE}`);
  }
  return name;
}

/** What the reads need to know of the table. */
export interface OtelSource {
  database: string;
  table: string;
  /** Duration's integer type: UInt64 values past Int64's range are capped, Int64 ones below 0 raised to 0. */
  durationType: "UInt64" | "Int64";
}

const STRING = /^(LowCardinality\()?String\)?$/;
const ATTRIBUTE_MAP = /^Map\((LowCardinality\()?String\)?, String\)$/;

/** The columns Coral reads, and the types it reads them as. Others (Events, Links, Scope*) are left alone. */
const REQUIRED: Record<string, { test: RegExp; want: string }> = {
  Timestamp: { test: /^DateTime64\(\d(, '[^']*')?\)$/, want: "DateTime64(9)" },
  TraceId: { test: STRING, want: "String" },
  SpanId: { test: STRING, want: "String" },
  ParentSpanId: { test: STRING, want: "String" },
  SpanName: { test: STRING, want: "LowCardinality(String)" },
  SpanKind: { test: STRING, want: "LowCardinality(String)" },
  ServiceName: { test: STRING, want: "LowCardinality(String)" },
  ResourceAttributes: { test: ATTRIBUTE_MAP, want: "Map(LowCardinality(String), String)" },
  SpanAttributes: { test: ATTRIBUTE_MAP, want: "Map(LowCardinality(String), String)" },
  Duration: { test: /^U?Int64$/, want: "UInt64 or Int64" },
  StatusCode: { test: STRING, want: "LowCardinality(String)" },
};

/**
 * Checks that `database.table` is an exporter traces table, reading only the catalog: the colony
 * never writes to that database. Throws OtelTableError naming what is missing or wrong.
 */
export async function inspectOtelTable(client: ClickHouseClient, database: string, table: string): Promise<OtelSource> {
  const rs = await client.query({
    query: "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
    query_params: { db: database, t: table },
    format: "JSONEachRow",
  });
  const columns = new Map(((await rs.json()) as { name: string; type: string }[]).map((c) => [c.name, c.type]));
  const where = `${database}.${table}`;
  if (columns.size === 0) {
    throw new OtelTableError(
      `--otel-schema: table ${where} does not exist (or the user may not read it) — point --store at the exporter's database and --otel-table at its traces_table_name (default ${DEFAULT_OTEL_TABLE})`,
    );
  }
  const missing = Object.keys(REQUIRED).filter((c) => !columns.has(c));
  if (missing.length > 0) {
    throw new OtelTableError(`--otel-schema: table ${where} is not an OpenTelemetry Collector traces table: it has no column${missing.length > 1 ? "s" : ""} ${missing.join(", ")}`);
  }
  const wrong = Object.entries(REQUIRED)
    .filter(([c, r]) => !r.test.test(columns.get(c)!))
    .map(([c, r]) => `${c} is ${columns.get(c)}, expected ${r.want}`);
  if (wrong.length > 0) throw new OtelTableError(`--otel-schema: table ${where} has columns of other types than the exporter writes: ${wrong.join("; ")}`);
  return { database, table, durationType: columns.get("Duration") === "UInt64" ? "UInt64" : "Int64" };
}

/** The table, quoted. */
export function tableRef(s: OtelSource): string {
  return `${ident(s.database)}.${ident(s.table)}`;
}

/** Coral's kind names (SERVER, CLIENT, …) from either spelling; unspecified reads as INTERNAL, as OTLP ingest stores it. */
export const KIND = `multiIf(upper(replaceRegexpOne(SpanKind, '^SPAN_KIND_', '')) AS coral_kind IN ('SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'), coral_kind, 'INTERNAL')`;
/** Coral's status names (UNSET, OK, ERROR) from either spelling. */
export const STATUS = `multiIf(upper(replaceRegexpOne(StatusCode, '^STATUS_CODE_', '')) AS coral_status IN ('OK', 'ERROR'), coral_status, 'UNSET')`;

/**
 * The HTTP status as OTLP ingest takes it: http.response.status_code, else the older
 * http.status_code, when it is an integer in 100..999; NULL otherwise.
 */
export const HTTP_STATUS = `if(match(if(mapContains(SpanAttributes, 'http.response.status_code'), SpanAttributes['http.response.status_code'], SpanAttributes['http.status_code']) AS coral_http_text, '^[0-9]{3}$'),
  toInt32OrNull(coral_http_text), NULL)`;

/**
 * Duration in ns as Int64, within what OTLP ingest accepts (0 up to the ns to 2200-01-01,
 * validate.ts): the answers' arithmetic (a trace's end, offsets) stays inside Int64.
 */
export function durationNs(s: OtelSource): string {
  const most = `toUInt64(${LATEST_NS})`;
  return s.durationType === "UInt64" ? `toInt64(least(Duration, ${most}))` : `toInt64(least(greatest(Duration, 0), ${most}))`;
}

/** A failed request, as Coral counts them (deltas.ts isErrorSpan). */
export const FAILED_OF = (status: string, http: string) => `(${status} = 'ERROR' OR ifNull(${http}, 0) >= 500)`;

/**
 * The table as the colony's `spans`: the columns the reads use. `attributes` is the span's map as a
 * JSON object of text values (the exporter keeps every value as text).
 */
export function spansSubquery(s: OtelSource): string {
  return `(SELECT ServiceName AS service_name, toTimeZone(Timestamp, 'UTC') AS start_time, TraceId AS trace_id, SpanId AS span_id,
    nullIf(ParentSpanId, '') AS parent_span_id, SpanName AS name, ${KIND} AS kind, ${durationNs(s)} AS duration_ns,
    ${STATUS} AS status_code, ${HTTP_STATUS} AS http_status_code, toJSONString(SpanAttributes) AS attributes
  FROM ${tableRef(s)})`;
}

/**
 * The table as the colony's `span_attributes`: one row per span and attribute, the span's own and
 * then its resource's, a resource attribute hidden by a span attribute of the same key and
 * service.name left out (records.ts storedAttributes: what Coral stores for an OTLP span).
 */
export function spanAttributesSubquery(s: OtelSource): string {
  const http = "http_status_code";
  return `(SELECT service_name, start_time, trace_id, span_id, kind, duration_ns, ${FAILED_OF("status_code", http)} AS failed,
    kv.1 AS key, kv.2 AS value, kv.3 AS resource
  FROM (
    SELECT ServiceName AS service_name, toTimeZone(Timestamp, 'UTC') AS start_time, TraceId AS trace_id, SpanId AS span_id,
      ${KIND} AS kind, ${durationNs(s)} AS duration_ns, ${STATUS} AS status_code, ${HTTP_STATUS} AS ${http},
      -- The keys both maps have, found without a lambda: a lambda that reads a column copies it
      -- once per array element (5,000 resource keys beside 5,000 span keys took 26 s per span).
      arrayIntersect(mapKeys(SpanAttributes), mapKeys(ResourceAttributes)) AS hidden,
      arrayConcat(
        arrayMap((k, v) -> (toString(k), v, false), mapKeys(SpanAttributes), mapValues(SpanAttributes)),
        arrayFilter(x -> x.1 != 'service.name' AND NOT has(hidden, x.1),
          arrayMap((k, v) -> (toString(k), v, true), mapKeys(ResourceAttributes), mapValues(ResourceAttributes)))
      ) AS kvs
    FROM ${tableRef(s)}
  ) ARRAY JOIN kvs AS kv)`;
}
