import { create } from "@bufbuild/protobuf";
import { sql, type Kysely } from "kysely";
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
} from "../../gen/coral/colony/v1/query_pb.js";
import {
  exemplarOf,
  explainAnswer,
  groupByAttributeAnswer,
  knownServiceOf,
  serviceOf,
  systemMetricsOf,
  traceAnswer,
  traceOf,
  type BucketCounts,
  type ExplainValue,
  type GroupBucket,
  type StoredSpan,
  type TraceBounds,
} from "./answers.js";
import { EXPLAIN_EXEMPLARS, EXPLAIN_MATCH_CHARS, EXPLAIN_MAX_KEYS, EXPLAIN_MAX_VALUES } from "./explain-limits.js";
import { HTTP_SERVER_DURATION, type Database } from "./schema.js";
import { bucketIndexSql, quantileFromBuckets } from "./sketch.js";
import type { ExplainSelection, Explanation, KnownService, ReadStore } from "./engine.js";
import type { Store } from "./store.js";


const MINUTE_MS = 60_000;

/**
 * Rollup rows are keyed by the minute they start. A window [since, until) takes every minute that
 * starts in [floor(since), until): the minute containing `since` is included whole, so a short window
 * is never empty just because it is not minute-aligned.
 */
function minuteWindow(sinceMs: number, untilMs: number): [Date, Date] {
  return [new Date(Math.floor(sinceMs / MINUTE_MS) * MINUTE_MS), new Date(untilMs)];
}

/**
 * The read side behind QueryService's typed RPCs. Every answer comes from rollups, never from a scan
 * of raw spans, except a trace's spans and attribute groups: the rollups keep no attributes.
 */
export class Queries implements ReadStore {
  private readonly db: Kysely<Database>;

  /** `store`: the Store (its shared connection), or a connection of one guarded read's own (typed-reads.ts). */
  constructor(store: Pick<Store, "db">) {
    this.db = store.db;
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

  /** Merges the window's latency buckets, so the answer is within 0.54 % of the exact quantile at any q (sketch.ts). */
  async percentile(a: { service: string; metric: string; q: number; sinceMs: number; untilMs: number }): Promise<{ value: number; count: number }> {
    const [since, until] = minuteWindow(a.sinceMs, a.untilMs);
    const buckets = await this.db
      .selectFrom("service_latency_buckets")
      // As DOUBLE, the number it is used as: a HUGEINT sum would arrive as a bigint, converted row by row.
      .select(["bucket", sql<number>`CAST(sum(count) AS DOUBLE)`.as("count")])
      .where("service_name", "=", a.service)
      .where("metric", "=", a.metric)
      .where("timestamp", ">=", since)
      .where("timestamp", "<", until)
      .groupBy("bucket")
      .execute();
    const count = buckets.reduce((n, b) => n + b.count, 0);
    return { value: quantileFromBuckets(buckets, a.q), count };
  }

  async counts(a: { service: string; sinceMs: number; untilMs: number }): Promise<{ total: number; errors: number }> {
    const [since, until] = minuteWindow(a.sinceMs, a.untilMs);
    const row = await this.db
      .selectFrom("service_summary")
      .select((eb) => [
        eb.fn.coalesce(eb.fn.sum<number>("request_count"), sql<number>`0`).as("total"),
        eb.fn.coalesce(eb.fn.sum<number>("error_count"), sql<number>`0`).as("errors"),
      ])
      .where("service_name", "=", a.service)
      .where("metric", "=", HTTP_SERVER_DURATION)
      .where("timestamp", ">=", since)
      .where("timestamp", "<", until)
      .executeTakeFirstOrThrow();
    return { total: row.total, errors: row.errors };
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
   * Averages per host sample over the window (minutes weighted by how many samples they hold), so a
   * host that reported more often is not under-represented; null for a metric with no samples.
   */
  async systemMetrics(a: { service: string; sinceMs: number; untilMs: number }): Promise<GetSystemMetricsResponse> {
    const [since, until] = minuteWindow(a.sinceMs, a.untilMs);
    const weighted = (column: "cpu_percent" | "memory_percent" | "memory_used_bytes" | "memory_total_bytes") =>
      // Weighted over the minutes that reported the metric: a host sending only CPU does not dilute memory.
      sql<number | null>`sum(${sql.ref(column)} * sample_count) / nullif(sum(sample_count) FILTER (WHERE ${sql.ref(column)} IS NOT NULL), 0)`;
    const row = await this.db
      .selectFrom("system_metrics_rollup")
      .select((eb) => [
        weighted("cpu_percent").as("cpuPercent"),
        weighted("memory_percent").as("memoryPercent"),
        weighted("memory_used_bytes").as("memoryUsedBytes"),
        weighted("memory_total_bytes").as("memoryTotalBytes"),
        eb.fn.count<number>("host_name").distinct().as("hostCount"),
        eb.fn.coalesce(eb.fn.sum<number>("sample_count"), sql<number>`0`).as("sampleCount"),
      ])
      .where("service_name", "=", a.service)
      .where("timestamp", ">=", since)
      .where("timestamp", "<", until)
      .executeTakeFirstOrThrow();
    return systemMetricsOf(a.service, row);
  }

  async exemplars(a: { service: string; metric: string; bucket: number; valueNs: number; limit: number; sinceMs: number; untilMs: number }): Promise<Exemplar[]> {
    const [since, until] = minuteWindow(a.sinceMs, a.untilMs);
    const r = await sql<{ trace_id: string; span_id: string; start_time: Date; duration_ns: number; bucket: number }>`
      SELECT trace_id, span_id, start_time, duration_ns, bucket FROM latency_exemplars
      WHERE service_name = ${a.service} AND metric = ${a.metric} AND timestamp >= ${since} AND timestamp < ${until}
      -- A span stored twice (a client's retry) is one request.
      QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY timestamp) = 1
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
   * The spans of one trace, by start time, at most `limit` of them and about `maxTextBytes` of names
   * and attributes: when the trace is larger, its longest spans (a parent lasts as long as its
   * children, so they are the top of the tree). `total` counts every span of the trace; 0 means the
   * trace is unknown. Times are microseconds (DuckDB's precision), offsets from the earliest span.
   * Resource attributes come from `span_attributes` and count towards `maxTextBytes` too.
   */
  async traceSpans(a: { traceId: string; limit: number; maxTextBytes: number }): Promise<GetTraceResponse> {
    const r = await sql<StoredSpan & TraceBounds>`
      WITH own AS (
        SELECT span_id, parent_span_id, service_name, name, kind, start_time, duration_ns, status_code, http_status_code, attributes
        FROM spans WHERE trace_id = ${a.traceId}
      ),
      -- A span's rows share its span id and start time; joining on the start time too lets the
      -- trace's time span bound the scan of span_attributes. DISTINCT: a span stored twice (a
      -- client's retry) has its rows twice.
      res AS (
        SELECT span_id, start_time, json_group_object(key, value) AS resource_attributes,
               sum(strlen(key) + strlen(value)) AS resource_bytes
        FROM (
          SELECT DISTINCT a.span_id, a.start_time, a.key, a.value
          FROM span_attributes a JOIN (SELECT DISTINCT span_id, start_time FROM own) k
            ON a.span_id = k.span_id AND a.start_time = k.start_time
          WHERE a.trace_id = ${a.traceId} AND a.resource
        )
        GROUP BY span_id, start_time
      ),
      t AS (
        SELECT own.span_id, parent_span_id, service_name, name, kind, epoch_us(own.start_time) AS start_us, duration_ns,
               status_code, http_status_code, attributes,
               coalesce(res.resource_attributes::VARCHAR, '{}') AS resource_attributes, coalesce(res.resource_bytes, 0) AS resource_bytes
        FROM own LEFT JOIN res ON own.span_id = res.span_id AND own.start_time = res.start_time
      ),
      first AS (SELECT count(*) AS total, min(start_us) AS trace_start_us FROM t),
      -- Ends relative to the start: absolute ones in ns are beyond a DOUBLE's integer precision.
      bounds AS (
        SELECT total, trace_start_us, max(CAST(start_us - trace_start_us AS DOUBLE) * 1000 + duration_ns) AS trace_duration_ns
        FROM t, first GROUP BY total, trace_start_us
      ),
      ranked AS (
        SELECT *,
               row_number() OVER longest AS rank,
               sum(strlen(attributes) + strlen(name) + resource_bytes) OVER (longest ROWS UNBOUNDED PRECEDING) AS text_bytes
        FROM t
        WINDOW longest AS (ORDER BY duration_ns DESC, start_us, span_id)
      )
      SELECT span_id, parent_span_id, service_name, name, kind, start_us, duration_ns, status_code,
             http_status_code, attributes, resource_attributes, total, trace_start_us, trace_duration_ns
      FROM ranked, bounds
      WHERE rank <= ${a.limit} AND (rank = 1 OR text_bytes <= ${a.maxTextBytes})
      ORDER BY start_us, span_id`.execute(this.db);
    return traceAnswer(a.traceId, r.rows, r.rows[0]);
  }

  /**
   * A service's SERVER spans in the window, grouped by the value of one attribute (span or
   * resource): the `limit` values with the most requests, and one "other" group for the rest. Per
   * group, the counts and the sketch buckets of the durations (the same buckets as the rollups), so
   * percentiles cost a few hundred rows per group whatever the number of spans. Values come from
   * `span_attributes` (only the key's rows are read); the spans without the key are the window's
   * spans minus those, bucket by bucket, so nothing joins back to `spans`.
   */
  async attributeGroups(a: { service: string; key: string; limit: number; sinceMs: number; untilMs: number }): Promise<GroupByAttributeResponse> {
    const since = new Date(a.sinceMs);
    const until = new Date(a.untilMs);
    const bucket = sql.raw(bucketIndexSql("duration_ns"));
    const r = await sql<GroupBucket & { value_count: number }>`
      WITH present AS (
        SELECT value AS v, ${bucket} AS bucket, count(*) AS n, count(*) FILTER (WHERE failed) AS errors
        FROM span_attributes
        WHERE service_name = ${a.service} AND kind = 'SERVER' AND start_time >= ${since} AND start_time < ${until} AND key = ${a.key}
        GROUP BY ALL
      ),
      everything AS (
        SELECT ${bucket} AS bucket, count(*) AS n, count(*) FILTER (WHERE ${FAILED}) AS errors
        FROM spans
        WHERE service_name = ${a.service} AND kind = 'SERVER' AND start_time >= ${since} AND start_time < ${until}
        GROUP BY ALL
      ),
      absent AS (
        SELECT NULL::VARCHAR AS v, e.bucket, e.n - coalesce(p.n, 0) AS n, e.errors - coalesce(p.errors, 0) AS errors
        FROM everything e LEFT JOIN (SELECT bucket, sum(n) AS n, sum(errors) AS errors FROM present GROUP BY bucket) p USING (bucket)
        WHERE e.n > coalesce(p.n, 0)
      ),
      s AS (SELECT * FROM present UNION ALL SELECT * FROM absent),
      per_value AS (SELECT v, sum(n) AS n FROM s GROUP BY v),
      top AS (SELECT v, true AS keep FROM per_value ORDER BY n DESC, v NULLS LAST LIMIT ${a.limit}),
      tagged AS (
        SELECT CASE WHEN top.keep THEN s.v END AS value, top.keep IS NULL AS other, s.bucket, s.n, s.errors
        FROM s LEFT JOIN top ON s.v IS NOT DISTINCT FROM top.v
      )
      SELECT value, other, bucket, CAST(sum(n) AS BIGINT) AS n, CAST(sum(errors) AS BIGINT) AS errors, (SELECT count(*) FROM per_value) AS value_count
      FROM tagged
      GROUP BY ALL`.execute(this.db);
    return groupByAttributeAnswer(r.rows, r.rows[0]?.value_count ?? 0);
  }

  /**
   * Compares the selected requests of a service with the rest of the window, value by value of
   * every attribute (span and resource), reading `span_attributes` in one statement of two scans:
   *
   * 1. The selected requests' rows (a few per cent of the window) are grouped by value, and per key
   *    the EXPLAIN_MAX_VALUES values most frequent among them are picked (ties in value order), so
   *    10,000 distinct values of one key cost one group each and only 20 travel on.
   * 2. Every row of the window is matched to the picked values on a 64-bit hash of (key, value,
   *    length), an integer join instead of one on text, and counted per key (the EXPLAIN_MAX_KEYS
   *    most frequent keys are compared) and per picked value and latency bucket, which gives both
   *    the baseline counts and the p99 and error rate with and without each value.
   *
   * One pass, not a ranking pass and then one over the best values' rows (as on ClickHouse): the
   * second read of the window's rows costs more than the latency buckets of the values that are not
   * kept (1M requests × 10 attributes: 2.9–3.3 s of CPU against 1.9–2.2 s).
   *
   * A hash-matched row whose text differs (a collision) is counted as not matching; should one
   * occur, the statement is run again matching on the text itself, so a collision never changes
   * the answer. Values are compared by their first EXPLAIN_MATCH_CHARS characters and their length,
   * so a huge value is never copied whole; keys and values travel as bound parameters.
   *
   * Latency buckets leave DuckDB as JSON text, one string per value, and only the `limit` values
   * ranked are parsed: read as nested lists (~18,000 [bucket, n, errors] triples for 1M requests ×
   * 10 attributes), the driver built a vector and an array per triple — 20–60 ms of the colony's
   * one JavaScript thread per answer, 100–300 ms in a process whose code was not yet optimised.
   */
  async explain(a: { service: string; selection: ExplainSelection; limit: number; excludeKeys: string[]; sinceMs: number; untilMs: number }): Promise<Explanation> {
    const first = await this.explainCounts(a, "hash");
    const counted = first.mismatched > 0 ? await this.explainCounts(a, "text") : first;
    // The one statement measured every picked value already.
    return explainAnswer(counted, a.limit, async (ranked) => ({
      window: bucketsOf(counted.window),
      values: ranked.map((v) => ({ buckets: bucketsOf(v.buckets), exemplars: v.exemplars ?? [] })),
    }));
  }

  /**
   * explain's statement: the window's totals and latency buckets, and per picked value of the
   * compared keys its counts, buckets and exemplars. `match`: how window rows find their picked
   * value, by hash (fast) or by text (after a collision). `mismatched` counts the hash matches
   * whose text differed.
   */
  private async explainCounts(
    a: { service: string; selection: ExplainSelection; excludeKeys: string[]; sinceMs: number; untilMs: number },
    match: "hash" | "text",
  ): Promise<{ total: number; selected: number; keyCount: number; window: BucketsJson; values: ExplainCounted[]; mismatched: number }> {
    const selected = "slowNs" in a.selection ? sql<boolean>`duration_ns >= ${a.selection.slowNs}` : sql<boolean>`failed`;
    const since = new Date(a.sinceMs);
    const until = new Date(a.untilMs);
    const excluded = a.excludeKeys.length ? sql`AND key NOT IN (${sql.join(a.excludeKeys)})` : sql``;
    const where = sql`service_name = ${a.service} AND kind = 'SERVER' AND start_time >= ${since} AND start_time < ${until}`;
    const bucket = sql.raw(bucketIndexSql("duration_ns"));
    // left() walks the characters; a value of at most MATCH bytes has at most MATCH characters.
    const matched = (v: string) => sql.raw(`CASE WHEN strlen(${v}) <= ${EXPLAIN_MATCH_CHARS} THEN ${v} ELSE left(${v}, ${EXPLAIN_MATCH_CHARS}) END`);
    const newest = "slowNs" in a.selection ? sql`duration_ns` : sql`epoch_us(start_time)`;
    const join =
      match === "hash" ? sql`p.h = w.h` : sql`p.key = w.key AND p.value = ${matched("w.value")} AND p.bytes = strlen(w.value)`;
    const r = await sql<{
      n: number | null; n_sel: number | null; key_count: number | null; window_buckets: BucketsJson | null; mismatched: number | null;
      key: string | null; value: string | null; bytes: number; sel_n: number; base_n: number; buckets: BucketsJson | null; exemplars: string[] | null;
    }>`
      WITH chosen AS MATERIALIZED (
        SELECT key, ${matched("value")} AS value, strlen(value) AS bytes, trace_id, ${newest} AS newest
        FROM span_attributes WHERE ${where} ${excluded} AND ${selected}
      ),
      picked AS (
        SELECT row_number() OVER (ORDER BY key, value, bytes) AS id, key, value, bytes, hash(key, value, bytes) AS h FROM (
          SELECT key, value, bytes, row_number() OVER (PARTITION BY key ORDER BY count(*) DESC, value, bytes) AS rank
          FROM chosen GROUP BY key, value, bytes
        ) WHERE rank <= ${EXPLAIN_MAX_VALUES}
      ),
      -- Every row of the window once, with the picked value it holds (NULL: none).
      joined AS (
        SELECT w.key, w.duration_ns, w.failed, w.sel, p.id IS NOT NULL AS hit,
               CASE WHEN p.id IS NULL THEN false ELSE p.key = w.key AND p.value = ${matched("w.value")} AND p.bytes = strlen(w.value) END AS same,
               CASE WHEN same THEN p.id END AS pid
        FROM (
          SELECT key, value, duration_ns, failed, ${selected} AS sel${match === "hash" ? sql`, hash(key, ${matched("value")}, strlen(value)) AS h` : sql``}
          FROM span_attributes WHERE ${where} ${excluded}
        ) w LEFT JOIN picked p ON ${join}
      ),
      per AS (
        SELECT key, pid, CASE WHEN pid IS NOT NULL THEN ${bucket} END AS bucket,
               count(*) AS n, count(*) FILTER (WHERE sel) AS sel_n, count(*) FILTER (WHERE failed) AS errors,
               count(*) FILTER (WHERE hit AND NOT same) AS mismatched
        FROM joined GROUP BY ALL
      ),
      keys AS (SELECT key, sum(n) AS n FROM per GROUP BY key),
      top_keys AS (SELECT key FROM keys ORDER BY n DESC, key LIMIT ${EXPLAIN_MAX_KEYS}),
      vals AS (
        SELECT pid, CAST(sum(sel_n) AS BIGINT) AS sel_n, CAST(sum(n) - sum(sel_n) AS BIGINT) AS base_n,
               ${BUCKETS_JSON} AS buckets
        FROM per WHERE pid IS NOT NULL AND key IN (SELECT key FROM top_keys)
        GROUP BY pid
      ),
      -- The slowest (or newest) selected requests holding each value compared.
      ex AS (
        SELECT p.id AS pid, max_by(c.trace_id, c.newest, ${EXPLAIN_EXEMPLARS}) AS exemplars
        FROM chosen c JOIN picked p ON p.key = c.key AND p.value = c.value AND p.bytes = c.bytes
        WHERE p.id IN (SELECT pid FROM vals)
        GROUP BY p.id
      ),
      s AS (
        SELECT ${bucket} AS bucket, count(*) AS n, count(*) FILTER (WHERE sel) AS n_sel, count(*) FILTER (WHERE failed) AS errors
        FROM (SELECT duration_ns, failed, ${selected} AS sel FROM (SELECT duration_ns, ${FAILED} AS failed FROM spans WHERE ${where}))
        GROUP BY ALL
      )
      SELECT CAST(sum(n) AS BIGINT) AS n, CAST(sum(n_sel) AS BIGINT) AS n_sel, (SELECT count(*) FROM keys) AS key_count,
             ${BUCKETS_JSON} AS window_buckets, (SELECT CAST(sum(mismatched) AS BIGINT) FROM per) AS mismatched,
             NULL AS key, NULL AS value, 0 AS bytes, 0 AS sel_n, 0 AS base_n, NULL AS buckets, NULL AS exemplars
      FROM s
      UNION ALL
      SELECT NULL, NULL, NULL, NULL, NULL, p.key, p.value, p.bytes, vals.sel_n, vals.base_n, vals.buckets, ex.exemplars
      FROM vals JOIN picked p ON p.id = vals.pid LEFT JOIN ex USING (pid)`.execute(this.db);
    const head = r.rows.find((x) => x.key === null);
    return {
      total: head?.n ?? 0,
      selected: head?.n_sel ?? 0,
      keyCount: head?.key_count ?? 0,
      window: head?.window_buckets ?? "[]",
      values: r.rows.filter((x): x is typeof x & { key: string; value: string } => x.key !== null && x.value !== null).map((x) => ({
        key: x.key, value: x.value, bytes: x.bytes, sel_n: x.sel_n, base_n: x.base_n, buckets: x.buckets ?? "[]", exemplars: x.exemplars,
      })),
      mismatched: head?.mismatched ?? 0,
    };
  }
}

/** A picked value as explain's statement counts it, its buckets and exemplars beside it. */
interface ExplainCounted extends ExplainValue {
  buckets: BucketsJson;
  exemplars: string[] | null;
}

/** A failed request, as GetErrorRate counts them. */
const FAILED = sql<boolean>`(status_code = 'ERROR' OR coalesce(http_status_code, 0) >= 500)`;

/** BucketCounts as JSON text (`[[bucket, n, errors], …]`): explain's statement returns them so (see Queries.explain). */
type BucketsJson = string;

/** A (bucket, n, errors) aggregate's rows as BucketsJson; integers stay exact in JSON up to 2^53. */
const BUCKETS_JSON = sql`CAST(to_json(list([bucket, CAST(n AS BIGINT), CAST(errors AS BIGINT)])) AS VARCHAR)`;

function bucketsOf(json: BucketsJson): BucketCounts {
  return JSON.parse(json) as BucketCounts;
}
