// The store as the query handlers (colony/query/service.ts) see it, whatever engine holds the data.
// DuckDB implements it today (Queries in queries.ts, SqlRunner in readonly-sql.ts); a ClickHouse
// implementation is meant to sit beside them. Both keep the same rollup format (latency buckets on
// OpenTelemetry's exponential mapping at scale 6, sketch.ts) and turn merged buckets into
// percentiles with the same quantileFromBuckets, so equal data gives equal answers.
import type { HostSample, LatencyRecord, ResourceRecord, SpanRecord } from "../ingest/records.js";
import type { SqlBatch, SqlResult } from "./readonly-sql.js";

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

/** A stored span as traceSpans reads it: column names, times in microseconds. */
export interface TraceSpanRow {
  span_id: string;
  parent_span_id: string | null;
  service_name: string;
  name: string;
  kind: string;
  start_us: number;
  duration_ns: number;
  status_code: string;
  http_status_code: number | null;
  /** The attributes' JSON text, as stored. */
  attributes: string;
  /** The span's resource attributes as a JSON object of text values ("{}" when it has none). */
  resource_attributes: string;
}

export interface TraceSpans {
  spans: TraceSpanRow[];
  /** Spans the trace holds in all; 0 for an unknown trace. */
  total: number;
  /** Start of the earliest span, microseconds since the epoch. */
  startUs: number;
  /** From the earliest start to the latest end. */
  durationNs: number;
}

export interface AttributeGroupRow {
  /** The attribute's value as text; null for the spans without it (and on the "other" group). */
  value: string | null;
  other: boolean;
  count: number;
  errors: number;
  /** Percentiles of the group's durations, from the sketch's buckets. */
  p50: number;
  p95: number;
  p99: number;
}

export interface AttributeGroups {
  groups: AttributeGroupRow[];
  /** Distinct values among the window's spans (absence counts as one). */
  valueCount: number;
}

/** Which of a service's requests `explain` sets apart from the rest of the window. */
export type ExplainSelection = { slowNs: number } | { errors: true };

/** One attribute value, compared between the selected requests and the rest (the baseline). */
export interface ExplainRow {
  key: string;
  /** The value as text, cut to EXPLAIN_VALUE_CHARS (then `valueTruncated`). */
  value: string;
  valueTruncated: boolean;
  /** Selected and baseline requests that have this value. */
  selected: number;
  baseline: number;
  selectedShare: number;
  baselineShare: number;
  /** selectedShare − baselineShare: how much more common the value is among the selected requests. */
  score: number;
  /** p99 of the window's requests with and without the value (sketch buckets, as GetPercentile). */
  p99With: number;
  p99Without: number;
  errorRateWith: number;
  /** NaN never: 0 when every request of the window has the value. */
  errorRateWithout: number;
  /** Selected requests with this value: the slowest (slow) or latest (errors) trace ids. */
  exemplars: string[];
}

export interface Explanation {
  /** Requests (SERVER spans) in the window, and how many of them the selection holds. */
  total: number;
  selected: number;
  rows: ExplainRow[];
  /** Distinct attribute keys among the window's requests, and how many were compared. */
  keyCount: number;
  keysExamined: number;
}

/** A span kept as an exemplar of its latency bucket (latency_exemplars). */
export interface ExemplarRow {
  traceId: string;
  spanId: string;
  startTime: Date;
  durationNs: number;
  bucket: number;
}

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
  /**
   * The window's exemplars of `metric`, at most `limit`: those in `bucket` first, closest to
   * `valueNs` first, then those of the nearest buckets. Optional: an engine that keeps none lacks it.
   */
  exemplars?(a: { service: string; metric: string; bucket: number; valueNs: number; limit: number } & TimeWindow): Promise<ExemplarRow[]>;
  /** Whether the service has ever stored latency under `metric` (tells "unknown metric" from "no traffic"). */
  metricExists(service: string, metric: string): Promise<boolean>;
  traceSpans(a: { traceId: string; limit: number; maxTextBytes: number }): Promise<TraceSpans>;
  attributeGroups(a: { service: string; key: string; limit: number } & TimeWindow): Promise<AttributeGroups>;
  /**
   * Ranks the span attribute values that set the selected requests apart from the rest of the
   * window; the best `limit` with a positive score. Keys in `excludeKeys` are not compared.
   */
  explain(a: { service: string; selection: ExplainSelection; limit: number; excludeKeys: string[] } & TimeWindow): Promise<Explanation>;
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

/** Spans made ready to commit by one engine's `prepareSpans`; only that engine's `writePrepared` reads them. */
export interface PreparedBatch {
  readonly count: number;
}

/**
 * The write side, whatever engine holds the data: OTLP ingestion (IngestPipeline), the demo seed
 * and its live traffic, and the colony's start-up and retention use only this. DuckDB's Writer
 * (colony/ingest/writer.ts) and ClickHouse's (clickhouse/writer.ts) implement it.
 */
export interface WriteStore {
  /** Validates and lays out spans outside the serial commit; throws RangeError on values the store cannot hold. */
  prepareSpans(spans: readonly SpanRecord[]): PreparedBatch;
  /** Stores prepared batches; each is stored whole or not at all, and a retried one is not counted twice. */
  writePrepared(parts: readonly PreparedBatch[]): Promise<void>;
  writeSpans(spans: readonly SpanRecord[]): Promise<void>;
  /** Host samples and latency observations of one request: stored together or not at all. */
  writeMetrics(samples: readonly HostSample[], records: readonly LatencyRecord[]): Promise<void>;
  writeLatency(records: readonly LatencyRecord[]): Promise<void>;
  writeHostSamples(samples: readonly HostSample[]): Promise<void>;
  writeResources(resources: ResourceRecord[]): Promise<void>;
  /** Deletes raw spans and trace summaries that started before `cutoffMs`; resolves with the spans deleted. */
  deleteTracesBefore(cutoffMs: number): Promise<number>;
  /** Resolves once every span acknowledged so far is reflected in the rollups (readers call it first). */
  settle(): Promise<void>;
  /** Minutes whose rollups `recover` will rebuild (left by a process that did not stop cleanly). */
  pendingMinutes(): Promise<number>;
  /** Rebuilds what a crash left unmerged; call once at start, before serving reads. Resolves with the minutes rebuilt. */
  recover(): Promise<number>;
  /** Waits for what is in flight and releases the writer's connections; the store stays open. */
  close(): Promise<void>;
}
