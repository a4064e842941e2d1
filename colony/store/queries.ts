import { sql, type Kysely, type Selectable } from "kysely";
import { HTTP_SERVER_DURATION, type Database, type ServicesTable, type TraceSummaryTable } from "./schema.js";
import { bucketIndexSql, quantileFromBuckets } from "./sketch.js";
import type { AttributeGroupRow, AttributeGroups, ExemplarRow, ExplainRow, ExplainSelection, Explanation, ReadStore, ServiceRow, SystemMetrics, TraceRow, TraceSpanRow, TraceSpans } from "./engine.js";
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

function toServiceRow(r: Selectable<ServicesTable>): ServiceRow {
  return {
    name: r.name,
    namespace: r.namespace,
    region: r.region,
    instanceCount: r.instance_count,
    firstSeen: r.first_seen,
    lastSeen: r.last_seen,
  };
}

function toTraceRow(r: Selectable<TraceSummaryTable>): TraceRow {
  return {
    traceId: r.trace_id,
    durationNs: r.duration_ns,
    timestamp: r.timestamp,
    service: r.service_name,
    rootName: r.root_name,
    spanCount: r.span_count,
    error: r.error,
  };
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

  async listServices(f: { namespace?: string; region?: string }): Promise<ServiceRow[]> {
    let q = this.db.selectFrom("services").selectAll();
    if (f.namespace) q = q.where("namespace", "=", f.namespace);
    if (f.region) q = q.where("region", "=", f.region);
    return (await q.orderBy("name").execute()).map(toServiceRow);
  }

  async getService(name: string): Promise<ServiceRow | undefined> {
    const row = await this.db.selectFrom("services").selectAll().where("name", "=", name).executeTakeFirst();
    return row && toServiceRow(row);
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

  async slowTraces(a: { service: string; minDurationNs: number; sinceMs: number; untilMs: number; limit: number }): Promise<{ traces: TraceRow[]; total: number }> {
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
    return { traces: rows.map(toTraceRow), total: total.n };
  }

  async errorTraces(a: { service: string; sinceMs: number; untilMs: number; limit: number }): Promise<{ traces: TraceRow[]; total: number }> {
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
    return { traces: rows.map(toTraceRow), total: total.n };
  }

  /**
   * Averages per host sample over the window (minutes weighted by how many samples they hold), so a
   * host that reported more often is not under-represented; null for a metric with no samples.
   */
  async systemMetrics(a: { service: string; sinceMs: number; untilMs: number }): Promise<SystemMetrics> {
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
    return row;
  }

  async exemplars(a: { service: string; metric: string; bucket: number; valueNs: number; limit: number; sinceMs: number; untilMs: number }): Promise<ExemplarRow[]> {
    const [since, until] = minuteWindow(a.sinceMs, a.untilMs);
    const r = await sql<{ trace_id: string; span_id: string; start_time: Date; duration_ns: number; bucket: number }>`
      SELECT trace_id, span_id, start_time, duration_ns, bucket FROM latency_exemplars
      WHERE service_name = ${a.service} AND metric = ${a.metric} AND timestamp >= ${since} AND timestamp < ${until}
      -- A span stored twice (a client's retry) is one request.
      QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY timestamp) = 1
      ORDER BY abs(bucket - ${a.bucket}), abs(duration_ns - ${a.valueNs}), start_time DESC, trace_id, span_id
      LIMIT ${a.limit}`.execute(this.db);
    return r.rows.map((x) => ({ traceId: x.trace_id, spanId: x.span_id, startTime: x.start_time, durationNs: x.duration_ns, bucket: x.bucket }));
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
  async traceSpans(a: { traceId: string; limit: number; maxTextBytes: number }): Promise<TraceSpans> {
    const r = await sql<TraceSpanRow & { total: number; trace_start_us: number; trace_duration_ns: number }>`
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
    const first = r.rows[0];
    if (!first) return { spans: [], total: 0, startUs: 0, durationNs: 0 };
    return {
      spans: r.rows.map(({ total: _t, trace_start_us: _s, trace_duration_ns: _d, ...span }) => span),
      total: first.total,
      startUs: first.trace_start_us,
      durationNs: first.trace_duration_ns,
    };
  }

  /**
   * A service's SERVER spans in the window, grouped by the value of one attribute (span or
   * resource): the `limit` values with the most requests, and one "other" group for the rest. Per
   * group, the counts and the sketch buckets of the durations (the same buckets as the rollups), so
   * percentiles cost a few hundred rows per group whatever the number of spans. Values come from
   * `span_attributes` (only the key's rows are read); the spans without the key are the window's
   * spans minus those, bucket by bucket, so nothing joins back to `spans`.
   */
  async attributeGroups(a: { service: string; key: string; limit: number; sinceMs: number; untilMs: number }): Promise<AttributeGroups> {
    const since = new Date(a.sinceMs);
    const until = new Date(a.untilMs);
    const bucket = sql.raw(bucketIndexSql("duration_ns"));
    const r = await sql<{ value: string | null; other: boolean; bucket: number; n: number; errors: number; value_count: number }>`
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
    const groups = new Map<string, Omit<AttributeGroupRow, "p50" | "p95" | "p99"> & { buckets: { bucket: number; count: number }[] }>();
    for (const row of r.rows) {
      const key = row.other ? "other" : row.value === null ? "absent" : `=${row.value}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { value: row.value, other: row.other, count: 0, errors: 0, buckets: [] }));
      g.count += row.n;
      g.errors += row.errors;
      g.buckets.push({ bucket: row.bucket, count: row.n });
    }
    // Most requests first, as `top` chose them; "other" last whatever its size.
    const ordered = [...groups.values()].sort(
      (x, y) => Number(x.other) - Number(y.other) || y.count - x.count || (x.value === null ? 1 : y.value === null ? -1 : x.value < y.value ? -1 : x.value > y.value ? 1 : 0),
    );
    return {
      groups: ordered.map(({ buckets, ...g }) => ({
        ...g,
        p50: quantileFromBuckets(buckets, 0.5),
        p95: quantileFromBuckets(buckets, 0.95),
        p99: quantileFromBuckets(buckets, 0.99),
      })),
      valueCount: r.rows[0]?.value_count ?? 0,
    };
  }

  /**
   * Compares the selected requests of a service with the rest of the window, value by value of
   * every attribute (span and resource), reading `span_attributes`. The first statement works
   * from the selection outwards, so its cost follows the selected requests, not the window: it
   * counts keys over the window (the EXPLAIN_MAX_KEYS most frequent are compared), counts the
   * values of the selected requests only, keeps per key the EXPLAIN_MAX_VALUES values most frequent
   * among them (ties in value order; so 10,000 distinct values of one key cost one group each, and
   * only 20 travel), and counts the baseline of just those. The second measures the `limit` best
   * values (p99 and error rate with and without them, exemplar traces). Keys and values travel as
   * bound parameters; values are compared by their first EXPLAIN_MATCH_CHARS characters and their
   * length, so a huge value is never copied whole.
   */
  async explain(a: { service: string; selection: ExplainSelection; limit: number; excludeKeys: string[]; sinceMs: number; untilMs: number }): Promise<Explanation> {
    const selected = "slowNs" in a.selection ? sql<boolean>`duration_ns >= ${a.selection.slowNs}` : sql<boolean>`failed`;
    const MATCH = sql.lit(EXPLAIN_MATCH_CHARS);
    const since = new Date(a.sinceMs);
    const until = new Date(a.untilMs);
    const excluded = a.excludeKeys.length ? sql`AND key NOT IN (${sql.join(a.excludeKeys)})` : sql``;
    /** The window's attribute rows of the service's requests, one scan each use (filters pushed into it). */
    const attrs = (columns: ReturnType<typeof sql>, where: ReturnType<typeof sql> = sql``) => sql`
      SELECT ${columns} FROM span_attributes
      WHERE service_name = ${a.service} AND kind = 'SERVER' AND start_time >= ${since} AND start_time < ${until} ${excluded} ${where}`;
    const window = sql`
      SELECT duration_ns, ${FAILED} AS failed FROM spans
      WHERE service_name = ${a.service} AND kind = 'SERVER' AND start_time >= ${since} AND start_time < ${until}`;
    const counted = await sql<{ n: number; n_sel: number; key: string | null; value: string | null; bytes: number; sel_n: number; base_n: number; key_count: number }>`
      WITH s AS (SELECT *, ${selected} AS sel FROM (${window})),
      totals AS (SELECT count(*) AS n, count(*) FILTER (WHERE sel) AS n_sel FROM s),
      keys AS (SELECT key, count(*) AS n FROM (${attrs(sql`key`)}) GROUP BY key),
      top_keys AS (SELECT key FROM keys ORDER BY n DESC, key LIMIT ${EXPLAIN_MAX_KEYS}),
      picked AS (
        SELECT key, value, bytes, sel_n FROM (
          SELECT key, left(value, ${MATCH}) AS value, strlen(value) AS bytes, count(*) AS sel_n,
                 row_number() OVER (PARTITION BY key ORDER BY count(*) DESC, left(value, ${MATCH}), strlen(value)) AS rank
          FROM (${attrs(sql`key, value`, sql`AND ${selected}`)}) SEMI JOIN top_keys USING (key)
          GROUP BY key, left(value, ${MATCH}), strlen(value)
        ) WHERE rank <= ${EXPLAIN_MAX_VALUES}
      ),
      base AS (
        SELECT b.key, left(b.value, ${MATCH}) AS value, strlen(b.value) AS bytes, count(*) AS base_n
        FROM (${attrs(sql`key, value`, sql`AND NOT (${selected}) AND key IN (SELECT key FROM picked)`)}) b
        SEMI JOIN picked p ON p.key = b.key AND p.bytes = strlen(b.value) AND p.value = left(b.value, ${MATCH})
        GROUP BY ALL
      ),
      vals AS (SELECT p.key, p.value, p.bytes, p.sel_n, coalesce(b.base_n, 0) AS base_n FROM picked p LEFT JOIN base b USING (key, value, bytes))
      SELECT totals.n, totals.n_sel, vals.key, vals.value, vals.bytes, vals.sel_n, vals.base_n, (SELECT count(*) FROM keys) AS key_count
      FROM totals LEFT JOIN vals ON true`.execute(this.db);
    const first = counted.rows[0];
    const total = first?.n ?? 0;
    const nSel = first?.n_sel ?? 0;
    const nBase = total - nSel;
    const keyCount = first?.key_count ?? 0;
    const keysExamined = Math.min(keyCount, EXPLAIN_MAX_KEYS);
    if (nSel === 0 || nBase === 0) return { total, selected: nSel, rows: [], keyCount, keysExamined };

    const candidates = counted.rows
      .filter((r): r is typeof r & { key: string; value: string } => r.key !== null && r.value !== null)
      .map((r) => ({ ...r, selectedShare: r.sel_n / nSel, baselineShare: r.base_n / nBase }))
      .map((r) => ({ ...r, score: r.selectedShare - r.baselineShare }))
      .filter((r) => r.score > 0)
      .sort((x, y) => y.score - x.score || y.sel_n - x.sel_n || cmp(x.key, y.key) || cmp(x.value, y.value) || x.bytes - y.bytes)
      .slice(0, a.limit);
    if (candidates.length === 0) return { total, selected: nSel, rows: [], keyCount, keysExamined };

    const c = sql.join(candidates.map((r, i) => sql`(${i}, ${r.key}, ${r.value}, ${r.bytes})`));
    const candidateKeys = sql`AND key IN (${sql.join([...new Set(candidates.map((r) => r.key))])})`;
    const newest = "slowNs" in a.selection ? sql`duration_ns` : sql`epoch_us(start_time)`;
    const measured = await sql<{ i: number; bucket: number; n: number; errors: number; exemplars: string[] | null }>`
      WITH c(i, key, value, bytes) AS (VALUES ${c}),
      hits AS (
        SELECT c.i, h.trace_id, h.start_time, h.duration_ns, h.failed, ${selected} AS sel
        FROM (${attrs(sql`key, value, trace_id, start_time, duration_ns, failed`, candidateKeys)}) h
        JOIN c ON h.key = c.key AND strlen(h.value) = c.bytes AND left(h.value, ${MATCH}) = c.value
      ),
      ex AS (SELECT i, max_by(trace_id, ${newest}, ${EXPLAIN_EXEMPLARS}) FILTER (WHERE sel) AS exemplars FROM hits GROUP BY i),
      b AS (
        SELECT i, ${sql.raw(bucketIndexSql("duration_ns"))} AS bucket, count(*) AS n, count(*) FILTER (WHERE failed) AS errors FROM hits GROUP BY ALL
        UNION ALL
        SELECT -1 AS i, ${sql.raw(bucketIndexSql("duration_ns"))} AS bucket, count(*) AS n, count(*) FILTER (WHERE failed) AS errors FROM (${window}) GROUP BY ALL
      )
      SELECT b.i, b.bucket, b.n, b.errors, ex.exemplars FROM b LEFT JOIN ex USING (i)`.execute(this.db);

    const all = new Map<number, number>();
    let allErrors = 0;
    const per = candidates.map(() => ({ buckets: new Map<number, number>(), n: 0, errors: 0, exemplars: [] as string[] }));
    for (const row of measured.rows) {
      if (row.i < 0) {
        all.set(row.bucket, (all.get(row.bucket) ?? 0) + row.n);
        allErrors += row.errors;
        continue;
      }
      const g = per[row.i]!;
      g.buckets.set(row.bucket, (g.buckets.get(row.bucket) ?? 0) + row.n);
      g.n += row.n;
      g.errors += row.errors;
      if (row.exemplars) g.exemplars = row.exemplars;
    }
    const toList = (m: Map<number, number>) => [...m].filter(([, n]) => n > 0).map(([bucket, count]) => ({ bucket, count }));
    const rows: ExplainRow[] = candidates.map((r, i) => {
      const g = per[i]!;
      const without = new Map(all);
      for (const [bucket, n] of g.buckets) without.set(bucket, (without.get(bucket) ?? 0) - n);
      const restN = total - g.n;
      return {
        key: r.key,
        value: r.value.length > EXPLAIN_VALUE_CHARS ? r.value.slice(0, EXPLAIN_VALUE_CHARS) : r.value,
        valueTruncated: r.value.length > EXPLAIN_VALUE_CHARS,
        selected: r.sel_n,
        baseline: r.base_n,
        selectedShare: r.selectedShare,
        baselineShare: r.baselineShare,
        score: r.score,
        p99With: quantileFromBuckets(toList(g.buckets), 0.99),
        p99Without: restN > 0 ? quantileFromBuckets(toList(without), 0.99) : 0,
        errorRateWith: g.n > 0 ? g.errors / g.n : 0,
        errorRateWithout: restN > 0 ? (allErrors - g.errors) / restN : 0,
        exemplars: g.exemplars,
      };
    });
    return { total, selected: nSel, rows, keyCount, keysExamined };
  }
}

/** A failed request, as GetErrorRate counts them. */
const FAILED = sql<boolean>`(status_code = 'ERROR' OR coalesce(http_status_code, 0) >= 500)`;

/** Attribute keys compared per explain (the most frequent), and values per key (the most frequent among the selected requests). */
export const EXPLAIN_MAX_KEYS = 64;
export const EXPLAIN_MAX_VALUES = 20;
/** Values are matched on this many leading characters plus their length. */
const EXPLAIN_MATCH_CHARS = 4096;
/** Values are returned cut to this many characters. */
export const EXPLAIN_VALUE_CHARS = 256;
const EXPLAIN_EXEMPLARS = 3;

function cmp(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}
