import { sql, type Kysely, type Selectable } from "kysely";
import { HTTP_SERVER_DURATION, type Database, type ServicesTable, type TraceSummaryTable } from "./schema.js";
import { quantileFromBuckets } from "./sketch.js";
import type { Store } from "./store.js";

export interface ServiceRow {
  name: string;
  namespace: string;
  region: string;
  instanceCount: number;
  firstSeen: Date;
  lastSeen: Date;
}

export interface TraceRow {
  traceId: string;
  durationNs: number;
  timestamp: Date;
  service: string;
  rootName: string;
  spanCount: number;
  error: boolean;
}

/** A metric no host reported in the window is null: no data, not a measured 0. */
export interface SystemMetrics {
  cpuPercent: number | null;
  memoryPercent: number | null;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
  hostCount: number;
  sampleCount: number;
}

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

/** The read side behind QueryService's typed RPCs. Every answer comes from rollups, never from a scan of raw spans. */
export class Queries {
  private readonly db: Kysely<Database>;

  constructor(store: Store) {
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

  /** Merges the window's log buckets, so the answer is within 1% of the exact quantile at any q. */
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
}
