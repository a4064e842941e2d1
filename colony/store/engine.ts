// The store as the query handlers (colony/query/service.ts) see it, whatever engine holds the data.
// DuckDB (Queries in queries.ts, SqlRunner in readonly-sql.ts) and ClickHouse (clickhouse/reads.ts,
// clickhouse/user-sql.ts) implement it. Both keep the same rollup format (latency buckets on
// OpenTelemetry's exponential mapping at scale 6, sketch.ts) and turn merged buckets into
// percentiles with the same quantileFromBuckets, so equal data gives equal answers.
import type {
  AttributeCause,
  Exemplar,
  FindErrorTracesResponse,
  FindSlowTracesResponse,
  GetServiceResponse,
  GetSystemMetricsResponse,
  GetTraceResponse,
  GroupByAttributeResponse,
  Service,
} from "../../gen/coral/colony/v1/query_pb.js";
import type { HostSample, LatencyRecord, ResourceRecord, SpanRecord } from "../ingest/records.js";
import type { SqlBatch, SqlResult } from "./readonly-sql.js";

// Reads answer in the proto's messages (query.proto), made from rows by answers.ts, so each shape
// is declared once. The types below are what no message holds: a read's inputs and the counts a
// handler turns into its own answer or refusal.

/** A service as GetService describes it; its counts are a read of their own (counts), made by GetService only. */
export type KnownService = Required<Pick<GetServiceResponse, "service" | "firstSeen" | "lastSeen">>;

/** Which of a service's requests `explain` sets apart from the rest of the window. */
export type ExplainSelection = { slowNs: number } | { errors: true };

/**
 * The counts ExplainSpans' refusals are worded from (no requests, none selected, all selected), and
 * the causes. Not ExplainSpansResponse: its `selection` is the handler's wording of the request.
 */
export interface Explanation {
  /** Requests (SERVER spans) in the window, and how many of them the selection holds. */
  total: number;
  selected: number;
  /** Values cut to EXPLAIN_VALUE_CHARS characters (then `valueTruncated`). */
  rows: AttributeCause[];
  /** Distinct attribute keys among the window's requests, and how many were compared. */
  keyCount: number;
  keysExamined: number;
}

/** [sinceMs, untilMs): rollup reads take every minute that starts in [floor(since), until). */
export interface TimeWindow {
  sinceMs: number;
  untilMs: number;
}

/** The reads behind QueryService's typed RPCs. */
export interface ReadStore {
  listServices(f: { namespace?: string; region?: string }): Promise<Service[]>;
  getService(name: string): Promise<KnownService | undefined>;
  /** The q-quantile of the window's merged latency buckets; count 0 (value 0) when it has none. */
  percentile(a: { service: string; metric: string; q: number } & TimeWindow): Promise<{ value: number; count: number }>;
  /** `http.server.duration` requests and errors in the window. */
  counts(a: { service: string } & TimeWindow): Promise<{ total: number; errors: number }>;
  slowTraces(a: { service: string; minDurationNs: number; limit: number } & TimeWindow): Promise<FindSlowTracesResponse>;
  errorTraces(a: { service: string; limit: number } & TimeWindow): Promise<FindErrorTracesResponse>;
  systemMetrics(a: { service: string } & TimeWindow): Promise<GetSystemMetricsResponse>;
  /**
   * The window's exemplars of `metric`, at most `limit`: those in `bucket` first, closest to
   * `valueNs` first, then those of the nearest buckets (`bucketOffset` from `bucket`). Optional: an
   * engine that keeps none lacks it.
   */
  exemplars?(a: { service: string; metric: string; bucket: number; valueNs: number; limit: number } & TimeWindow): Promise<Exemplar[]>;
  /** Whether the service has ever stored latency under `metric` (tells "unknown metric" from "no traffic"). */
  metricExists(service: string, metric: string): Promise<boolean>;
  /** GetTrace's answer; `totalCount` 0 for an unknown trace. */
  traceSpans(a: { traceId: string; limit: number; maxTextBytes: number }): Promise<GetTraceResponse>;
  attributeGroups(a: { service: string; key: string; limit: number } & TimeWindow): Promise<GroupByAttributeResponse>;
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
