// The typed reads over an OpenTelemetry Collector traces table (`--otel-schema`), read-only. Where
// the colony's own ClickHouse store keeps rollups, this computes them from the raw spans at query
// time, by the same rules the colony's ingest applies (colony/ingest/deltas.ts): latency buckets of
// the SERVER spans on the same scale-6 mapping (sketch.ts, in ClickHouse SQL) merged by the same
// quantileFromBuckets, trace summaries from each service's local roots, exemplars as the slowest
// spans per minute and bucket. The reads that already scan raw spans (trace, group-by, explain) are
// ClickHouseReads' own, run on subqueries shaped like its `spans` and `span_attributes`.
import type { ClickHouseClient } from "@clickhouse/client";
import { create } from "@bufbuild/protobuf";
import { Kysely, sql, type RawBuilder } from "kysely";
import {
  FindErrorTracesResponseSchema,
  FindSlowTracesResponseSchema,
  type FindErrorTracesResponse,
  type FindSlowTracesResponse,
  type GetSystemMetricsResponse,
  type GroupByAttributeResponse,
  type Service,
} from "../../../../gen/coral/colony/v1/query_pb.js";
import { groupByAttributeAnswer, knownServiceOf, serviceOf, systemMetricsOf, traceOf } from "../../answers.js";
import type { KnownService } from "../../engine.js";
import { HTTP_SERVER_DURATION, type Database, type ServicesTable, type TraceSummaryTable } from "../../schema.js";
import { quantileFromBuckets } from "../../sketch.js";
import { ClickHouseDialect } from "../dialect.js";
import { bucketIndexClickHouseSql, ClickHouseReads } from "../reads.js";
import { durationNs, FAILED_OF, HTTP_STATUS, KIND, spanAttributesSubquery, spansSubquery, STATUS, tableRef, type OtelSource } from "./source.js";

const MINUTE_MS = 60_000;

/**
 * A trace's spans are looked for this far around a window: a service's local root may start before
 * the window while its children start in it, and children may start after the window ends.
 */
export const TRACE_MARGIN_MS = 3_600_000;

/**
 * The spans a rollup minute in [floor(since), until) holds: those starting in
 * [floor(since), the first minute at or after until).
 */
function minuteSpan(sinceMs: number, untilMs: number): [Date, Date] {
  return [new Date(Math.floor(sinceMs / MINUTE_MS) * MINUTE_MS), new Date(Math.ceil(untilMs / MINUTE_MS) * MINUTE_MS)];
}

export class OtelReads extends ClickHouseReads {
  private readonly q: Kysely<Database>;
  private readonly spans: string;

  constructor(
    client: ClickHouseClient,
    private readonly source: OtelSource,
  ) {
    super(client, source.database);
    this.q = new Kysely<Database>({ dialect: new ClickHouseDialect(client) });
    this.spans = spansSubquery(source);
  }

  /**
   * ClickHouseReads' raw statements read these names: the spans and their attributes, and (for
   * counts and exemplars) one row per SERVER span, keyed as the rollups key their rows.
   */
  protected override t(name: string): RawBuilder<unknown> {
    switch (name) {
      case "spans":
        return sql.raw(this.spans);
      case "span_attributes":
        return sql.raw(spanAttributesSubquery(this.source));
      case "latency_exemplar_parts":
        return sql.raw(`(SELECT * FROM ${this.requests()})`);
      case "service_summary_parts":
        return sql.raw(`(SELECT timestamp, service_name, metric, 1 AS request_count, toUInt64(failed) AS error_count FROM ${this.requests()})`);
      default:
        throw new Error(`no ${name} in an OpenTelemetry Collector table`);
    }
  }

  /** SERVER spans as latency observations: the minute, the metric, the scale-6 bucket. */
  private requests(): string {
    return `(SELECT toStartOfMinute(start_time) AS timestamp, service_name, '${HTTP_SERVER_DURATION}' AS metric,
      ${bucketIndexClickHouseSql("duration_ns")} AS bucket, trace_id, span_id, start_time, duration_ns,
      ${FAILED_OF("status_code", "http_status_code")} AS failed
    FROM ${this.spans} WHERE kind = 'SERVER')`;
  }

  /** Each service once, from its spans: names, the latest namespace and region, instances as OTLP ingest names them. */
  private services(name?: string): RawBuilder<ServicesTable> {
    const attr = (k: string) => `ResourceAttributes['${k}']`;
    return sql<ServicesTable>`
      SELECT ServiceName AS name,
             argMax(${sql.raw(attr("service.namespace"))}, Timestamp) AS namespace,
             argMax(${sql.raw(attr("cloud.region"))}, Timestamp) AS region,
             toInt32(uniqExact(multiIf(${sql.raw(attr("service.instance.id"))} != '', ${sql.raw(attr("service.instance.id"))},
               ${sql.raw(attr("host.name"))} != '', ${sql.raw(attr("host.name"))}, ServiceName))) AS instance_count,
             min(toTimeZone(Timestamp, 'UTC')) AS first_seen, max(toTimeZone(Timestamp, 'UTC')) AS last_seen
      FROM ${sql.raw(tableRef(this.source))}
      ${name === undefined ? sql`` : sql`WHERE ServiceName = ${name}`}
      GROUP BY ServiceName`;
  }

  override async listServices(f: { namespace?: string; region?: string }): Promise<Service[]> {
    const r = await sql<ServicesTable>`
      SELECT * FROM (${this.services()})
      WHERE (${f.namespace ?? ""} = '' OR namespace = ${f.namespace ?? ""}) AND (${f.region ?? ""} = '' OR region = ${f.region ?? ""})
      ORDER BY name`.execute(this.q);
    return r.rows.map(serviceOf);
  }

  override async getService(name: string): Promise<KnownService | undefined> {
    const row = (await this.services(name).execute(this.q)).rows[0];
    return row && knownServiceOf(row);
  }

  override async percentile(a: { service: string; metric: string; q: number; sinceMs: number; untilMs: number }): Promise<{ value: number; count: number }> {
    if (a.metric !== HTTP_SERVER_DURATION) return { value: 0, count: 0 };
    const [since, until] = minuteSpan(a.sinceMs, a.untilMs);
    const r = await sql<{ bucket: number; count: number }>`
      SELECT ${sql.raw(bucketIndexClickHouseSql("duration_ns"))} AS bucket, toFloat64(count()) AS count
      FROM ${sql.raw(this.spans)}
      WHERE service_name = ${a.service} AND kind = 'SERVER' AND start_time >= ${since} AND start_time < ${until}
      GROUP BY bucket`.execute(this.q);
    const count = r.rows.reduce((n, b) => n + b.count, 0);
    return { value: quantileFromBuckets(r.rows, a.q), count };
  }

  override async metricExists(service: string, metric: string): Promise<boolean> {
    if (metric !== HTTP_SERVER_DURATION) return false;
    const r = await sql<{ one: number }>`
      SELECT 1 AS one FROM ${sql.raw(this.spans)} WHERE service_name = ${service} AND kind = 'SERVER' LIMIT 1`.execute(this.q);
    return r.rows.length > 0;
  }

  /** No host metrics in a traces table: the answer for a service no host reported for (no values, 0 hosts). */
  override async systemMetrics(a: { service: string }): Promise<GetSystemMetricsResponse> {
    return systemMetricsOf(a.service, { cpuPercent: null, memoryPercent: null, memoryUsedBytes: null, memoryTotalBytes: null, hostCount: 0, sampleCount: 0 });
  }

  override async slowTraces(a: { service: string; minDurationNs: number; sinceMs: number; untilMs: number; limit: number }): Promise<FindSlowTracesResponse> {
    const { rows, total } = await this.traces(a, sql`duration_ns >= ${a.minDurationNs}`, sql`duration_ns DESC, trace_id`, a.limit);
    return create(FindSlowTracesResponseSchema, { traces: rows.map(traceOf), totalCount: BigInt(total) });
  }

  override async errorTraces(a: { service: string; sinceMs: number; untilMs: number; limit: number }): Promise<FindErrorTracesResponse> {
    const { rows, total } = await this.traces(a, sql`error = 1`, sql`timestamp DESC, trace_id`, a.limit);
    return create(FindErrorTracesResponseSchema, { traces: rows.map(traceOf), totalCount: BigInt(total) });
  }

  /**
   * As ClickHouseReads attributeGroups, with each request's value looked up in its maps (the span's
   * own, else its resource's; service.name is no attribute here, as at ingest) instead of found
   * among every attribute row (1M requests in the window, chdb on 2 busy cores: 0.7 s instead of
   * 5.9 s). A request without the key is the NULL group, as the everything-minus-present groups are there.
   */
  override async attributeGroups(a: { service: string; key: string; limit: number; sinceMs: number; untilMs: number }): Promise<GroupByAttributeResponse> {
    const value = sql`if(mapContains(SpanAttributes, ${a.key}), toNullable(SpanAttributes[${a.key}]),
      if(${a.key} != 'service.name' AND mapContains(ResourceAttributes, ${a.key}), toNullable(ResourceAttributes[${a.key}]), CAST(NULL AS Nullable(String))))`;
    const r = await sql<{ value: string | null; other: number; bucket: number; n: number; errors: number; value_count: number }>`
      WITH s AS (
        SELECT v, (isNull(v), ifNull(v, '')) AS vk, bucket, n, errors FROM (
          SELECT ${value} AS v, ${sql.raw(bucketIndexClickHouseSql(durationNs(this.source)))} AS bucket,
                 toInt64(count()) AS n, toInt64(countIf(${sql.raw(FAILED_OF(STATUS, HTTP_STATUS))})) AS errors
          FROM ${sql.raw(tableRef(this.source))}
          WHERE ServiceName = ${a.service} AND ${sql.raw(KIND)} = 'SERVER'
            AND toTimeZone(Timestamp, 'UTC') >= ${new Date(a.sinceMs)} AND toTimeZone(Timestamp, 'UTC') < ${new Date(a.untilMs)}
          GROUP BY v, bucket
        )
      ),
      per_value AS (SELECT vk, sum(n) AS total FROM s GROUP BY vk),
      top AS (SELECT vk FROM per_value ORDER BY total DESC, vk.1, vk.2 LIMIT ${a.limit})
      SELECT if(kept, v, NULL) AS value, NOT kept AS other, bucket, sum(n) AS n, sum(errors) AS errors, (SELECT count() FROM per_value) AS value_count
      FROM (SELECT *, vk IN (SELECT vk FROM top) AS kept FROM s)
      GROUP BY value, other, bucket`.execute(this.q);
    return groupByAttributeAnswer(
      r.rows.map((row) => ({ ...row, other: Boolean(row.other) })),
      r.rows[0]?.value_count ?? 0,
    );
  }

  /**
   * The service's trace summaries whose root starts in the window, as ingest makes them: per trace,
   * the service's local roots (spans whose parent is none of the service's spans of that trace) give
   * the start (the earliest), the name (the earliest, then the longest) and the end (the latest);
   * with no root (parent links in a cycle) every span stands in. A span is counted, and fails the
   * trace, whatever it is. Roots are found by a join, not by arrays per trace: a lambda that looks
   * in the trace's own array copies it per span (quadratic in a trace's spans).
   */
  private async traces(
    a: { service: string; sinceMs: number; untilMs: number },
    filter: RawBuilder<unknown>,
    order: RawBuilder<unknown>,
    limit: number,
  ): Promise<{ rows: (TraceSummaryTable & { total: number })[]; total: number }> {
    const r = await sql<TraceSummaryTable & { total: number }>`
      WITH w AS (
        SELECT trace_id, span_id, ifNull(parent_span_id, '') AS parent, name, toUnixTimestamp64Micro(start_time) AS start_us,
               toInt128(start_us) * 1000 + duration_ns AS end_ns, ${sql.raw(FAILED_OF("status_code", "http_status_code"))} AS failed
        FROM ${sql.raw(this.spans)}
        WHERE service_name = ${a.service} AND trace_id != ''
          AND start_time >= ${new Date(a.sinceMs - TRACE_MARGIN_MS)} AND start_time < ${new Date(a.untilMs + TRACE_MARGIN_MS)}
      ),
      roots AS (
        SELECT trace_id, min(start_us) AS r_start, max(end_ns) AS r_end, argMin(name, (start_us, -end_ns)) AS r_name, 1 AS rooted
        FROM (SELECT * FROM w AS c LEFT ANTI JOIN (SELECT trace_id, span_id FROM w) AS p ON c.trace_id = p.trace_id AND c.parent = p.span_id)
        GROUP BY trace_id
      ),
      every AS (
        SELECT trace_id, min(start_us) AS a_start, max(end_ns) AS a_end, argMin(name, start_us) AS a_name,
               toInt32(least(count(), 2147483647)) AS span_count, max(failed) AS error
        FROM w GROUP BY trace_id
      ),
      summary AS (
        SELECT e.trace_id AS trace_id, ${a.service} AS service_name,
               if(r.rooted = 1, r.r_name, e.a_name) AS root_name,
               if(r.rooted = 1, r.r_start, e.a_start) AS start_us,
               fromUnixTimestamp64Micro(start_us, 'UTC') AS timestamp,
               toInt64(if(r.rooted = 1, r.r_end, e.a_end) - toInt128(start_us) * 1000) AS duration_ns,
               e.span_count AS span_count, e.error AS error
        FROM every AS e LEFT JOIN roots AS r ON e.trace_id = r.trace_id
      )
      SELECT trace_id, service_name, root_name, timestamp, duration_ns, span_count, error, count() OVER () AS total FROM summary
      WHERE timestamp >= ${new Date(a.sinceMs)} AND timestamp < ${new Date(a.untilMs)} AND ${filter}
      ORDER BY ${order}
      LIMIT ${limit}`.execute(this.q);
    // The count of rows the filter keeps rides on each row; none kept, none counted.
    return { rows: r.rows, total: r.rows[0]?.total ?? 0 };
  }
}

