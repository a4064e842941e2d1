import type { ClickHouseClient } from "@clickhouse/client";
import { create } from "@bufbuild/protobuf";
import { Kysely, sql, type RawBuilder } from "kysely";
import {
  FindErrorTracesResponseSchema,
  FindSlowTracesResponseSchema,
  type Exemplar,
  type FindErrorTracesResponse,
  type FindSlowTracesResponse,
  type GetSystemMetricsResponse,
  type GetTraceResponse,
  type GroupByAttributeResponse,
  type Service,
} from "../../../gen/coral/colony/v1/query_pb.js";
import {
  exemplarOf,
  explainAnswer,
  groupByAttributeAnswer,
  knownServiceOf,
  serviceOf,
  systemMetricsOf,
  traceAnswer,
  traceOf,
  type ExplainMeasured,
  type ExplainValue,
  type StoredSpan,
  type TraceBounds,
} from "../answers.js";
import type { ExplainSelection, Explanation, KnownService, ReadStore } from "../engine.js";
import { EXEMPLARS_PER_BUCKET } from "../exemplar-limits.js";
import { EXPLAIN_EXEMPLARS, EXPLAIN_MATCH_CHARS, EXPLAIN_MAX_KEYS, EXPLAIN_MAX_VALUES } from "../explain-limits.js";
import { HTTP_SERVER_DURATION, type Database } from "../schema.js";
import { EDGE_MANTISSA, SCALE, quantileFromBuckets } from "../sketch.js";
import { ClickHouseDialect } from "./dialect.js";

// The ClickHouse side of queries.ts: the same reads, and the same answers (answers.ts makes both
// engines' messages). Rollup tables hold contributions that background merges add up whenever they
// run, so every read aggregates by the key itself (the views of schema.ts do that for the
// DuckDB-shaped names), and percentiles come from merged buckets through the same
// quantileFromBuckets as on DuckDB.

const MINUTE_MS = 60_000;

/** As queries.ts: a window takes every minute that starts in [floor(since), until). */
function minuteWindow(sinceMs: number, untilMs: number): [Date, Date] {
  return [new Date(Math.floor(sinceMs / MINUTE_MS) * MINUTE_MS), new Date(untilMs)];
}

/**
 * sketch.ts bucketIndex in ClickHouse SQL, the arithmetic of bucketIndexSql (DuckDB) on the same
 * doubles: the estimate ceil(log2(x)·64) − 1, checked against the exact edges when within 1e-9 of
 * one, so ClickHouse's log2 rounding cannot move a value to a neighbouring bucket.
 */
export function bucketIndexClickHouseSql(column: string): string {
  const per = 2 ** SCALE;
  const x = `greatest(toFloat64(${column}), 1.0)`;
  const t = `(log2(${x}) * ${per})`;
  const k = `(toInt64(ceil(${t})) - 1)`;
  const mantissas = `[${EDGE_MANTISSA.map((m) => `toUInt64(${m})`).join(", ")}]`;
  const lowestIn = (i: string) => `(toFloat64(arrayElement(${mantissas}, toUInt32((((${i}) % ${per}) + ${per}) % ${per} + 1))) * pow(2.0, floor((${i}) / ${per}) - 52))`;
  return `toInt32(if(abs(${t} - round(${t})) > 1e-9, ${k},
    ${k} + multiIf(${x} >= ${lowestIn(`${k} + 1`)}, 1, ${x} < ${lowestIn(k)}, -1, 0)))`;
}

/** A failed request, as GetErrorRate counts them (queries.ts FAILED). */
const FAILED = sql<boolean>`(status_code = 'ERROR' OR ifNull(http_status_code, 0) >= 500)`;
export class ClickHouseReads implements ReadStore {
  private readonly db: Kysely<Database>;

  constructor(
    client: ClickHouseClient,
    private readonly database: string,
  ) {
    this.db = new Kysely<Database>({ dialect: new ClickHouseDialect(client) }).withSchema(database);
  }

  /** A table of the colony's database, for raw statements; otel/reads.ts puts subqueries over another table in their place. */
  protected t(name: string): RawBuilder<unknown> {
    return sql.table(`${this.database}.${name}`);
  }

  async listServices(f: { namespace?: string; region?: string }): Promise<Service[]> {
    let q = this.db.selectFrom("services").selectAll();
    if (f.namespace) q = q.where("namespace", "=", f.namespace);
    if (f.region) q = q.where("region", "=", f.region);
    return (await q.orderBy("name").execute()).map(serviceOf);
  }

  async getService(name: string): Promise<KnownService | undefined> {
    const row = await this.db.selectFrom("services").selectAll().where("name", "=", name).executeTakeFirst();
    return row && knownServiceOf(row);
  }

  async percentile(a: { service: string; metric: string; q: number; sinceMs: number; untilMs: number }): Promise<{ value: number; count: number }> {
    const [since, until] = minuteWindow(a.sinceMs, a.untilMs);
    const buckets = await this.db
      .selectFrom("service_latency_buckets")
      .select((eb) => ["bucket", eb.fn.sum<number>("count").as("count")])
      .where("service_name", "=", a.service)
      .where("metric", "=", a.metric)
      .where("timestamp", ">=", since)
      .where("timestamp", "<", until)
      .groupBy("bucket")
      .execute();
    const count = buckets.reduce((n, b) => n + b.count, 0);
    return { value: quantileFromBuckets(buckets, a.q), count };
  }

  /** From the summary contributions directly: the view's percentile columns are not needed here. */
  async counts(a: { service: string; sinceMs: number; untilMs: number }): Promise<{ total: number; errors: number }> {
    const [since, until] = minuteWindow(a.sinceMs, a.untilMs);
    const r = await sql<{ total: number; errors: number }>`
      SELECT sum(request_count) AS total, sum(error_count) AS errors
      FROM ${this.t("service_summary_parts")}
      WHERE service_name = ${a.service} AND metric = ${HTTP_SERVER_DURATION} AND timestamp >= ${since} AND timestamp < ${until}`.execute(this.db);
    const row = r.rows[0];
    return { total: row?.total ?? 0, errors: row?.errors ?? 0 };
  }

  async slowTraces(a: { service: string; minDurationNs: number; sinceMs: number; untilMs: number; limit: number }): Promise<FindSlowTracesResponse> {
    const base = this.db
      .selectFrom("trace_summary")
      .where("service_name", "=", a.service)
      .where("duration_ns", ">=", a.minDurationNs)
      .where("timestamp", ">=", new Date(a.sinceMs))
      .where("timestamp", "<", new Date(a.untilMs));
    const [rows, total] = await Promise.all([
      base.selectAll().orderBy("duration_ns", "desc").orderBy("trace_id").limit(a.limit).execute(),
      base.select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow(),
    ]);
    // `error` arrives as 0/1 (UInt8 where DuckDB has BOOLEAN): traceOf takes either.
    return create(FindSlowTracesResponseSchema, { traces: rows.map(traceOf), totalCount: BigInt(total.n) });
  }

  async errorTraces(a: { service: string; sinceMs: number; untilMs: number; limit: number }): Promise<FindErrorTracesResponse> {
    const base = this.db
      .selectFrom("trace_summary")
      .where("service_name", "=", a.service)
      .where("error", "=", true)
      .where("timestamp", ">=", new Date(a.sinceMs))
      .where("timestamp", "<", new Date(a.untilMs));
    const [rows, total] = await Promise.all([
      base.selectAll().orderBy("timestamp", "desc").orderBy("trace_id").limit(a.limit).execute(),
      base.select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow(),
    ]);
    return create(FindErrorTracesResponseSchema, { traces: rows.map(traceOf), totalCount: BigInt(total.n) });
  }

  /**
   * As queries.ts: per host sample, minutes weighted by their samples, over the minutes that reported
   * the metric. On one thread: these are sums of floats, whose last digits depend on the order they
   * are added in — spread over threads, two calls on the same data answered 42.34624074074073 and
   * …74 (and not what DuckDB answers).
   */
  async systemMetrics(a: { service: string; sinceMs: number; untilMs: number }): Promise<GetSystemMetricsResponse> {
    const [since, until] = minuteWindow(a.sinceMs, a.untilMs);
    const weighted = (column: string) => sql.raw(`sum(${column} * sample_count) / nullIf(sumIf(sample_count, ${column} IS NOT NULL), 0)`);
    const r = await sql<Parameters<typeof systemMetricsOf>[1]>`
      SELECT ${weighted("cpu_percent")} AS cpuPercent, ${weighted("memory_percent")} AS memoryPercent,
             ${weighted("memory_used_bytes")} AS memoryUsedBytes, ${weighted("memory_total_bytes")} AS memoryTotalBytes,
             uniqExact(host_name) AS hostCount, sum(sample_count) AS sampleCount
      FROM ${this.t("system_metrics_rollup")}
      WHERE service_name = ${a.service} AND timestamp >= ${since} AND timestamp < ${until}
      SETTINGS max_threads = 1`.execute(this.db);
    return systemMetricsOf(a.service, r.rows[0]!);
  }

  /**
   * As queries.ts exemplars. The parts hold every batch's candidates (writer.ts), so the key's
   * EXEMPLARS_PER_BUCKET slowest are picked here, by the rank DuckDB keeps them by: the view
   * `latency_exemplars` does the same, but over every key before this read's filter.
   */
  async exemplars(a: { service: string; metric: string; bucket: number; valueNs: number; limit: number; sinceMs: number; untilMs: number }): Promise<Exemplar[]> {
    const [since, until] = minuteWindow(a.sinceMs, a.untilMs);
    const r = await sql<{ trace_id: string; span_id: string; start_time: Date; duration_ns: number; bucket: number }>`
      SELECT trace_id, span_id, start_time, duration_ns, bucket FROM (
        SELECT * FROM (
          SELECT timestamp, service_name, metric, bucket, trace_id, span_id, start_time, duration_ns
          FROM ${this.t("latency_exemplar_parts")}
          WHERE service_name = ${a.service} AND metric = ${a.metric} AND timestamp >= ${since} AND timestamp < ${until}
          ORDER BY duration_ns DESC, trace_id, span_id
          LIMIT ${EXEMPLARS_PER_BUCKET} BY timestamp, service_name, metric, bucket
        )
        -- A span stored twice (a client's retry) is one request.
        ORDER BY trace_id, span_id, timestamp
        LIMIT 1 BY trace_id, span_id
      )
      ORDER BY abs(bucket - ${a.bucket}), abs(duration_ns - ${a.valueNs}), start_time DESC, trace_id, span_id
      LIMIT ${a.limit}`.execute(this.db);
    return r.rows.map((x) => exemplarOf(x, a.bucket));
  }

  async metricExists(service: string, metric: string): Promise<boolean> {
    const row = await this.db
      .selectFrom("service_latency_buckets")
      .select(sql<number>`1`.as("one"))
      .where("service_name", "=", service)
      .where("metric", "=", metric)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * As queries.ts traceSpans: the longest spans within `limit` and about `maxTextBytes` (resource
   * attributes counted), by start time. Resource attributes come from span_attributes, whose sort key
   * does not start with the trace: the scan is bounded by the trace's services and time span
   * (scalar and IN subqueries ClickHouse evaluates before it prunes partitions and granules).
   */
  async traceSpans(a: { traceId: string; limit: number; maxTextBytes: number }): Promise<GetTraceResponse> {
    const r = await sql<StoredSpan & TraceBounds>`
      WITH own AS (
        SELECT span_id, parent_span_id, service_name, name, kind, start_time, duration_ns, status_code, http_status_code, attributes
        FROM ${this.t("spans")} WHERE trace_id = ${a.traceId}
      ),
      -- DISTINCT: a span stored twice (a client's retry) has its rows twice.
      res AS (
        SELECT span_id, start_time, toJSONString(mapFromArrays(groupArray(key), groupArray(value))) AS resource_attributes,
               sum(length(key) + length(value)) AS resource_bytes
        FROM (
          SELECT DISTINCT span_id, start_time, key, value FROM ${this.t("span_attributes")}
          WHERE trace_id = ${a.traceId} AND resource
            AND service_name IN (SELECT service_name FROM own)
            AND start_time >= (SELECT min(start_time) FROM own) AND start_time <= (SELECT max(start_time) FROM own)
            AND (span_id, start_time) IN (SELECT span_id, start_time FROM own)
        )
        GROUP BY span_id, start_time
      ),
      t AS (
        SELECT own.span_id AS span_id, parent_span_id, service_name, name, kind, toUnixTimestamp64Micro(own.start_time) AS start_us, duration_ns,
               status_code, http_status_code, attributes,
               -- No match is the join's defaults: '' and 0.
               if(empty(res.resource_attributes), '{}', res.resource_attributes) AS resource_attributes, res.resource_bytes AS resource_bytes
        FROM own LEFT JOIN res ON own.span_id = res.span_id AND own.start_time = res.start_time
      ),
      head AS (SELECT count() AS total, min(start_us) AS trace_start_us FROM t),
      -- Ends relative to the start: absolute ones in ns are beyond a double's integer precision.
      bounds AS (
        SELECT total, trace_start_us, max(toFloat64(start_us - trace_start_us) * 1000 + duration_ns) AS trace_duration_ns
        FROM t CROSS JOIN head GROUP BY total, trace_start_us
      ),
      ranked AS (
        SELECT *,
               row_number() OVER (ORDER BY duration_ns DESC, start_us, span_id) AS span_rank,
               sum(length(attributes) + length(name) + resource_bytes) OVER (ORDER BY duration_ns DESC, start_us, span_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS text_bytes
        FROM t
      )
      SELECT span_id, parent_span_id, service_name, name, kind, start_us, duration_ns, status_code,
             http_status_code, attributes, resource_attributes, total, trace_start_us, trace_duration_ns
      FROM ranked CROSS JOIN bounds
      WHERE span_rank <= ${a.limit} AND (span_rank = 1 OR text_bytes <= ${a.maxTextBytes})
      ORDER BY start_us, span_id`.execute(this.db);
    return traceAnswer(a.traceId, r.rows, r.rows[0]);
  }

  /**
   * As queries.ts attributeGroups: the key's values from `span_attributes`, the spans without it as
   * the window's spans minus those, bucket by bucket. A value is compared with its NULL-ness beside
   * it, (isNull(v), ifNull(v, '')), because ClickHouse's IN never matches NULL: spans without the
   * attribute are a group like any other.
   */
  async attributeGroups(a: { service: string; key: string; limit: number; sinceMs: number; untilMs: number }): Promise<GroupByAttributeResponse> {
    const bucket = sql.raw(bucketIndexClickHouseSql("duration_ns"));
    const window = sql`service_name = ${a.service} AND kind = 'SERVER' AND start_time >= ${new Date(a.sinceMs)} AND start_time < ${new Date(a.untilMs)}`;
    const r = await sql<{ value: string | null; other: number; bucket: number; n: number; errors: number; value_count: number }>`
      WITH present AS (
        SELECT toNullable(value) AS v, ${bucket} AS bucket, toInt64(count()) AS n, toInt64(countIf(failed)) AS errors
        FROM ${this.t("span_attributes")}
        WHERE ${window} AND key = ${a.key}
        GROUP BY v, bucket
      ),
      everything AS (
        SELECT ${bucket} AS bucket, toInt64(count()) AS n, toInt64(countIf(${FAILED})) AS errors
        FROM ${this.t("spans")} WHERE ${window}
        GROUP BY bucket
      ),
      absent AS (
        SELECT CAST(NULL AS Nullable(String)) AS v, e.bucket AS bucket, e.n - p.n AS n, e.errors - p.errors AS errors
        FROM everything AS e LEFT JOIN (SELECT bucket, sum(n) AS n, sum(errors) AS errors FROM present GROUP BY bucket) AS p ON e.bucket = p.bucket
        WHERE e.n > p.n
      ),
      s AS (SELECT v, (isNull(v), ifNull(v, '')) AS vk, bucket, n, errors FROM (SELECT * FROM present UNION ALL SELECT * FROM absent)),
      per_value AS (SELECT vk, sum(n) AS total FROM s GROUP BY vk),
      top AS (SELECT vk FROM per_value ORDER BY total DESC, vk.1, vk.2 LIMIT ${a.limit})
      SELECT if(kept, v, NULL) AS value, NOT kept AS other, bucket, sum(n) AS n, sum(errors) AS errors, (SELECT count() FROM per_value) AS value_count
      FROM (SELECT *, vk IN (SELECT vk FROM top) AS kept FROM s)
      GROUP BY value, other, bucket`.execute(this.db);
    // `other` arrives as 0/1.
    return groupByAttributeAnswer(
      r.rows.map((row) => ({ ...row, other: Boolean(row.other) })),
      r.rows[0]?.value_count ?? 0,
    );
  }

  /**
   * As queries.ts explain, in ClickHouse SQL and two statements: the values counted, then (once
   * answers.ts has ranked them, the same ranking and tie rule as on DuckDB) the best ones measured.
   */
  async explain(a: { service: string; selection: ExplainSelection; limit: number; excludeKeys: string[]; sinceMs: number; untilMs: number }): Promise<Explanation> {
    const selected = "slowNs" in a.selection ? sql<boolean>`duration_ns >= ${a.selection.slowNs}` : FAILED;
    const selectedAttr = "slowNs" in a.selection ? selected : sql<boolean>`failed`;
    const window = sql`
      SELECT trace_id, start_time, duration_ns, ${FAILED} AS failed, ${selected} AS sel
      FROM ${this.t("spans")}
      WHERE service_name = ${a.service} AND kind = 'SERVER'
        AND start_time >= ${new Date(a.sinceMs)} AND start_time < ${new Date(a.untilMs)}`;
    /** The window's attribute rows (span and resource) of the service's requests. */
    const pairs = (keys: RawBuilder<unknown>) => sql`
      SELECT key, leftUTF8(value, ${EXPLAIN_MATCH_CHARS}) AS value, length(value) AS bytes, trace_id, start_time, duration_ns, failed, ${selectedAttr} AS sel
      FROM ${this.t("span_attributes")}
      WHERE service_name = ${a.service} AND kind = 'SERVER'
        AND start_time >= ${new Date(a.sinceMs)} AND start_time < ${new Date(a.untilMs)} ${keys}`;
    const excluded = a.excludeKeys.length ? sql`AND key NOT IN (${sql.join(a.excludeKeys)})` : sql``;
    const counted = await sql<{ n: number; n_sel: number; key: string | null; value: string | null; bytes: number; sel_n: number; base_n: number; key_count: number }>`
      WITH s AS (${window}),
      p AS (${pairs(excluded)}),
      top_keys AS (SELECT key FROM p GROUP BY key ORDER BY count() DESC, key LIMIT ${EXPLAIN_MAX_KEYS}),
      vals AS (
        SELECT key, value, bytes, sel_n, base_n,
               row_number() OVER (PARTITION BY key ORDER BY sel_n DESC, value, bytes) AS rank
        FROM (
          SELECT key, value, bytes, countIf(sel) AS sel_n, countIf(NOT sel) AS base_n
          FROM p WHERE key IN (SELECT key FROM top_keys)
          GROUP BY key, value, bytes
          HAVING sel_n > 0
        )
      )
      -- One row of totals (key NULL), then the values: a window without attributes still has its totals.
      SELECT t.n AS n, t.n_sel AS n_sel, k.key_count AS key_count, NULL AS key, NULL AS value, 0 AS bytes, 0 AS sel_n, 0 AS base_n
      FROM (SELECT count() AS n, countIf(sel) AS n_sel FROM s) AS t CROSS JOIN (SELECT uniqExact(key) AS key_count FROM p) AS k
      UNION ALL
      SELECT 0, 0, 0, key, value, bytes, sel_n, base_n FROM vals WHERE rank <= ${EXPLAIN_MAX_VALUES}`.execute(this.db);
    const totals = counted.rows.find((r) => r.key === null);
    const values = counted.rows.filter((r): r is typeof r & { key: string; value: string } => r.key !== null && r.value !== null);
    return explainAnswer(
      { total: totals?.n ?? 0, selected: totals?.n_sel ?? 0, keyCount: totals?.key_count ?? 0, values },
      a.limit,
      (ranked) => this.explainMeasure(a, window, pairs, ranked),
    );
  }

  /**
   * explain's second statement, for the values answers.ts ranked best: their rows' latency buckets,
   * failures and exemplars, and the window's buckets.
   */
  private async explainMeasure(
    a: { selection: ExplainSelection },
    window: RawBuilder<unknown>,
    pairs: (keys: RawBuilder<unknown>) => RawBuilder<unknown>,
    ranked: readonly ExplainValue[],
  ): Promise<ExplainMeasured> {
    // The values travel as three parallel arrays: the index of a (key, value, bytes) is its position.
    const keys = ranked.map((r) => r.key);
    const values = ranked.map((r) => r.value);
    const bytes = ranked.map((r) => r.bytes);
    const rankedKeys = sql`AND key IN (${sql.join([...new Set(keys)])})`;
    const newest = "slowNs" in a.selection ? sql`toFloat64(duration_ns)` : sql`toFloat64(toUnixTimestamp64Micro(start_time))`;
    const measured = await sql<{ i: number; bucket: number; n: number; errors: number; exemplars: string[] }>`
      WITH s AS (${window}),
      hits AS (
        SELECT indexOf(arrayMap((ck, cv, cb) -> (ck, cv, cb), ${keys}, ${values}, ${bytes}), (key, value, toInt64(bytes))) - 1 AS i,
               trace_id, start_time, duration_ns, failed, sel
        FROM (${pairs(rankedKeys)})
        WHERE i >= 0
      ),
      ex AS (
        SELECT i, arraySlice(arrayMap(x -> x.2, arraySort(x -> (-x.1, x.2), groupArrayIf((${newest}, trace_id), sel))), 1, ${EXPLAIN_EXEMPLARS}) AS exemplars
        FROM hits GROUP BY i
      ),
      b AS (
        SELECT i, ${sql.raw(bucketIndexClickHouseSql("duration_ns"))} AS bucket, count() AS n, countIf(failed) AS errors FROM hits GROUP BY i, bucket
        UNION ALL
        SELECT -1 AS i, ${sql.raw(bucketIndexClickHouseSql("duration_ns"))} AS bucket, count() AS n, countIf(failed) AS errors FROM s GROUP BY i, bucket
      )
      SELECT b.i AS i, b.bucket AS bucket, b.n AS n, b.errors AS errors, ex.exemplars AS exemplars FROM b LEFT JOIN ex ON b.i = ex.i`.execute(this.db);

    const whole: [number, number, number][] = [];
    const per = ranked.map(() => ({ buckets: [] as [number, number, number][], exemplars: [] as string[] }));
    for (const row of measured.rows) {
      const entry: [number, number, number] = [row.bucket, row.n, row.errors];
      if (row.i < 0) {
        whole.push(entry);
        continue;
      }
      const g = per[row.i]!;
      g.buckets.push(entry);
      if (row.exemplars.length > 0) g.exemplars = row.exemplars;
    }
    return { window: whole, values: per };
  }
}
