// The store as the query handlers (colony/query/service.ts) see it, whatever engine holds the data.
// DuckDB implements it today (Queries in queries.ts, SqlRunner in readonly-sql.ts); a ClickHouse
// implementation is meant to sit beside them. Both keep the same rollup format (latency buckets on
// OpenTelemetry's exponential mapping at scale 6, sketch.ts) and turn merged buckets into
// percentiles with the same quantileFromBuckets, so equal data gives equal answers.
import type { AttributeGroups, ServiceRow, SystemMetrics, TraceRow, TraceSpans } from "./queries.js";
import type { SqlBatch, SqlResult } from "./readonly-sql.js";

/** [sinceMs, untilMs): rollup reads take every minute that starts in [floor(since), until). */
export interface TimeWindow {
  sinceMs: number;
  untilMs: number;
}

/** The reads behind QueryService's typed RPCs. */
export interface ReadStore {
  listServices(f: { namespace?: string; region?: string }): Promise<ServiceRow[]>;
  getService(name: string): Promise<ServiceRow | undefined>;
  /** The q-quantile of the window's merged latency buckets; count 0 (value 0) when it has none. */
  percentile(a: { service: string; metric: string; q: number } & TimeWindow): Promise<{ value: number; count: number }>;
  /** `http.server.duration` requests and errors in the window. */
  counts(a: { service: string } & TimeWindow): Promise<{ total: number; errors: number }>;
  slowTraces(a: { service: string; minDurationNs: number; limit: number } & TimeWindow): Promise<{ traces: TraceRow[]; total: number }>;
  errorTraces(a: { service: string; limit: number } & TimeWindow): Promise<{ traces: TraceRow[]; total: number }>;
  systemMetrics(a: { service: string } & TimeWindow): Promise<SystemMetrics>;
  /** Whether the service has ever stored latency under `metric` (tells "unknown metric" from "no traffic"). */
  metricExists(service: string, metric: string): Promise<boolean>;
  traceSpans(a: { traceId: string; limit: number; maxTextBytes: number }): Promise<TraceSpans>;
  attributeGroups(a: { service: string; key: string; limit: number } & TimeWindow): Promise<AttributeGroups>;
}

/**
 * Users' read-only SQL over the colony's tables. An implementation refuses what is not a read of
 * those tables and enforces its limits, failing with SqlRejected (readonly-sql.ts) and its codes.
 */
export interface UserSql {
  /** `signal`: the caller went away; the engine stops the query. */
  run(sql: string, signal?: AbortSignal): Promise<SqlResult>;
  /** Column-major batches; columns on the first, `truncated` on the last. */
  stream(sql: string, o?: { maxRows?: number; batchRows?: number; batchBytes?: number; signal?: AbortSignal }): AsyncGenerator<SqlBatch>;
}
