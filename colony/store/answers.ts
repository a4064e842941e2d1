// Stored rows → the proto's messages (gen/coral/colony/v1/query_pb.ts), for every engine alike. The
// engines differ in SQL only: once each has read its rows into the shapes below, these functions
// make the answers, so DuckDB and ClickHouse cannot word, round, order or count them differently,
// and a message's shape is declared in one place, the proto. The handlers (colony/query/service.ts)
// pass these messages through.
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate, TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AttributeCauseSchema,
  AttributeGroupSchema,
  ExemplarSchema,
  GetSystemMetricsResponseSchema,
  GetTraceResponseSchema,
  GroupByAttributeResponseSchema,
  ServiceSchema,
  SpanSchema,
  TraceSchema,
  type Exemplar,
  type GetSystemMetricsResponse,
  type GetTraceResponse,
  type GroupByAttributeResponse,
  type Service,
  type Span,
  type Trace,
  type AttributeCause,
} from "../../gen/coral/colony/v1/query_pb.js";
import type { Explanation, KnownService } from "./engine.js";
import { EXPLAIN_MAX_KEYS, EXPLAIN_VALUE_CHARS } from "./explain-limits.js";
import type { ServicesTable, TraceSummaryTable } from "./schema.js";
import { quantileFromBuckets } from "./sketch.js";

export function serviceOf(r: ServicesTable): Service {
  return create(ServiceSchema, { name: r.name, namespace: r.namespace, region: r.region, instanceCount: r.instance_count });
}

export function knownServiceOf(r: ServicesTable): KnownService {
  return { service: serviceOf(r), firstSeen: timestampFromDate(r.first_seen), lastSeen: timestampFromDate(r.last_seen) };
}

/** `error` as a number too: ClickHouse has UInt8 where DuckDB has BOOLEAN. */
export function traceOf(r: Omit<TraceSummaryTable, "error"> & { error: boolean | number }): Trace {
  return create(TraceSchema, {
    traceId: r.trace_id,
    durationNs: BigInt(Math.round(r.duration_ns)),
    timestamp: timestampFromDate(r.timestamp),
    service: r.service_name,
    rootName: r.root_name,
    spanCount: r.span_count,
    error: Boolean(r.error),
  });
}

/** The window's host averages; a metric no host reported is null here and unset in the answer (no data, not a 0). */
export function systemMetricsOf(
  service: string,
  m: { cpuPercent: number | null; memoryPercent: number | null; memoryUsedBytes: number | null; memoryTotalBytes: number | null; hostCount: number; sampleCount: number },
): GetSystemMetricsResponse {
  return create(GetSystemMetricsResponseSchema, {
    service,
    cpuPercent: m.cpuPercent ?? undefined,
    memoryPercent: m.memoryPercent ?? undefined,
    memoryUsedBytes: m.memoryUsedBytes === null ? undefined : BigInt(Math.round(m.memoryUsedBytes)),
    memoryTotalBytes: m.memoryTotalBytes === null ? undefined : BigInt(Math.round(m.memoryTotalBytes)),
    hostCount: m.hostCount,
    sampleCount: BigInt(m.sampleCount),
  });
}

/** A latency_exemplars row; `bucket` is the bucket asked for, which offsets are measured from. */
export function exemplarOf(r: { trace_id: string; span_id: string; start_time: Date; duration_ns: number; bucket: number }, bucket: number): Exemplar {
  return create(ExemplarSchema, {
    traceId: r.trace_id,
    spanId: r.span_id,
    durationNs: BigInt(Math.round(r.duration_ns)),
    timestamp: timestampFromDate(r.start_time),
    bucketOffset: r.bucket - bucket,
  });
}

/** A stored span as traceSpans reads it: column names, times in microseconds. */
export interface StoredSpan {
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

/** The trace as a whole, read beside its spans: every span counted, start in µs, end relative to it. */
export interface TraceBounds {
  total: number;
  trace_start_us: number;
  trace_duration_ns: number;
}

/**
 * GetTrace's answer from the spans an engine kept and the trace's bounds (undefined: no span, an
 * unknown trace, answered with total_count 0). Offsets from the trace's start are made here, not in
 * the handler: the engine measured the start in the same statement as the spans, in the spans' own
 * microseconds, so the offset is exact; a handler would have to be handed the start to redo it.
 */
export function traceAnswer(traceId: string, spans: readonly StoredSpan[], bounds: TraceBounds | undefined): GetTraceResponse {
  if (!bounds) return create(GetTraceResponseSchema, { traceId, totalCount: 0n });
  return create(GetTraceResponseSchema, {
    traceId,
    startTime: timestampFromUs(bounds.trace_start_us),
    durationNs: BigInt(Math.round(bounds.trace_duration_ns)),
    spans: spans.map((s) => spanOf(s, bounds.trace_start_us)),
    totalCount: BigInt(bounds.total),
    truncated: spans.length < bounds.total,
  });
}

function spanOf(s: StoredSpan, traceStartUs: number): Span {
  const attributes = attributesOf(s.attributes);
  return create(SpanSchema, {
    spanId: s.span_id,
    parentSpanId: s.parent_span_id ?? "",
    service: s.service_name,
    name: s.name,
    kind: s.kind,
    startTime: timestampFromUs(s.start_us),
    startOffsetNs: BigInt((s.start_us - traceStartUs) * 1000),
    durationNs: BigInt(Math.round(s.duration_ns)),
    status: s.status_code,
    httpStatusCode: s.http_status_code ?? undefined,
    error: s.status_code === "ERROR" || (s.http_status_code ?? 0) >= 500,
    attributes,
    resourceAttributes: resourceAttributesOf(attributesOf(s.resource_attributes), attributes),
  });
}

function timestampFromUs(us: number): Timestamp {
  const seconds = Math.floor(us / 1e6);
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos: (us - seconds * 1e6) * 1000 });
}

/** Stored attributes are JSON objects; anything else (a store written by hand) shows as none. */
function attributesOf(text: string): JsonObject {
  try {
    const v: unknown = JSON.parse(text);
    if (v !== null && typeof v === "object" && !Array.isArray(v)) return v as JsonObject;
  } catch {
    // fall through
  }
  return {};
}

/**
 * By key, so every engine lists them alike (span_attributes keeps no order: ClickHouse sorts its
 * rows by key, DuckDB aggregates them in any order). The span's own attributes win: ingest already
 * leaves such resource keys out; older rows may not.
 */
function resourceAttributesOf(resource: JsonObject, own: JsonObject): JsonObject {
  return Object.fromEntries(
    Object.entries(resource)
      .filter(([k]) => !Object.hasOwn(own, k))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

/** One (group, bucket) of attributeGroups' statement; `value` null: the spans without the attribute, or the "other" group. */
export interface GroupBucket {
  value: string | null;
  other: boolean;
  bucket: number;
  n: number;
  errors: number;
}

/**
 * GroupByAttribute's answer from the per-bucket counts of each group: most requests first, ties by
 * value, the spans without the attribute after the values, "other" last whatever its size.
 * `valueCount`: distinct values in the window (absence counts as one). The "(N other values)" label
 * is made here: the proto defines it as the other group's value, and N comes from `valueCount`,
 * which only the engine's statement counts.
 */
export function groupByAttributeAnswer(rows: readonly GroupBucket[], valueCount: number): GroupByAttributeResponse {
  const groups = new Map<string, { value: string | null; other: boolean; count: number; errors: number; buckets: { bucket: number; count: number }[] }>();
  for (const row of rows) {
    const key = row.other ? "other" : row.value === null ? "absent" : `=${row.value}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { value: row.value, other: row.other, count: 0, errors: 0, buckets: [] }));
    g.count += row.n;
    g.errors += row.errors;
    g.buckets.push({ bucket: row.bucket, count: row.n });
  }
  const ordered = [...groups.values()].sort(
    (x, y) => Number(x.other) - Number(y.other) || y.count - x.count || (x.value === null ? 1 : y.value === null ? -1 : x.value < y.value ? -1 : x.value > y.value ? 1 : 0),
  );
  const folded = valueCount - ordered.filter((g) => !g.other).length;
  return create(GroupByAttributeResponseSchema, {
    groups: ordered.map((g) =>
      create(AttributeGroupSchema, {
        value: g.other ? `(${folded} other value${folded === 1 ? "" : "s"})` : (g.value ?? undefined),
        other: g.other,
        requestCount: BigInt(g.count),
        errorCount: BigInt(g.errors),
        errorRate: g.count > 0 ? g.errors / g.count : 0,
        p50Ns: quantileFromBuckets(g.buckets, 0.5),
        p95Ns: quantileFromBuckets(g.buckets, 0.95),
        p99Ns: quantileFromBuckets(g.buckets, 0.99),
      }),
    ),
    requestCount: BigInt(ordered.reduce((n, g) => n + g.count, 0)),
    valueCount: BigInt(valueCount),
  });
}

/** A value of a compared key (its first EXPLAIN_MATCH_CHARS characters and its length in bytes), counted among the selected requests and the rest. */
export interface ExplainValue {
  key: string;
  value: string;
  bytes: number;
  sel_n: number;
  base_n: number;
}

/** Latency buckets as the engines list them: [bucket, requests, failed requests]. */
export type BucketCounts = readonly (readonly [number, number, number])[];

/** What an engine measured for the ranked values: the window's buckets, and per value (in the order asked) its buckets and exemplar traces. */
export interface ExplainMeasured {
  window: BucketCounts;
  values: { buckets: BucketCounts; exemplars: string[] }[];
}

/**
 * ExplainSpans' answer, for every engine alike. The engine counts the window (`counted`); the values
 * are ranked here (share among the selected requests minus share among the rest, ties by more
 * selected requests, then key, value and length in code-unit order), and only the `limit` best are
 * handed to `measure` for their latency buckets, failures and exemplars: those cost a pass over
 * their rows, the ranking does not need them.
 *
 * The p99 and error rate without a value are the window's minus the value's, both from `measure`'s
 * one statement, so they agree with each other even while spans arrive.
 */
export async function explainAnswer<V extends ExplainValue>(
  counted: { total: number; selected: number; keyCount: number; values: readonly V[] },
  limit: number,
  measure: (ranked: readonly V[]) => Promise<ExplainMeasured>,
): Promise<Explanation> {
  const { total, selected, keyCount } = counted;
  const baseline = total - selected;
  const head = { total, selected, keyCount, keysExamined: Math.min(keyCount, EXPLAIN_MAX_KEYS) };
  if (selected === 0 || baseline === 0) return { ...head, rows: [] };
  const ranked = counted.values
    .map((r) => ({ r, selectedShare: r.sel_n / selected, baselineShare: r.base_n / baseline }))
    .map((x) => ({ ...x, score: x.selectedShare - x.baselineShare }))
    .filter((x) => x.score > 0)
    .sort((x, y) => y.score - x.score || y.r.sel_n - x.r.sel_n || cmp(x.r.key, y.r.key) || cmp(x.r.value, y.r.value) || x.r.bytes - y.r.bytes)
    .slice(0, limit);
  if (ranked.length === 0) return { ...head, rows: [] };

  const measured = await measure(ranked.map((x) => x.r));
  const all = histogram(measured.window);
  const rows: AttributeCause[] = ranked.map(({ r, selectedShare, baselineShare, score }, i) => {
    const mine = histogram(measured.values[i]?.buckets ?? []);
    const without = new Map(all.counts);
    for (const [bucket, n] of mine.counts) without.set(bucket, (without.get(bucket) ?? 0) - n);
    const restN = all.n - mine.n;
    return create(AttributeCauseSchema, {
      key: r.key,
      value: r.value.length > EXPLAIN_VALUE_CHARS ? r.value.slice(0, EXPLAIN_VALUE_CHARS) : r.value,
      valueTruncated: r.value.length > EXPLAIN_VALUE_CHARS,
      selected: BigInt(r.sel_n),
      baseline: BigInt(r.base_n),
      selectedShare,
      baselineShare,
      score,
      p99WithNs: quantileFromBuckets(bucketList(mine.counts), 0.99),
      p99WithoutNs: restN > 0 ? quantileFromBuckets(bucketList(without), 0.99) : 0,
      errorRateWith: mine.n > 0 ? mine.errors / mine.n : 0,
      errorRateWithout: restN > 0 ? (all.errors - mine.errors) / restN : 0,
      exemplarTraceIds: measured.values[i]?.exemplars ?? [],
    });
  });
  return { ...head, rows };
}

/** Code-unit order (JavaScript's own), the same whichever engine counted the values. */
function cmp(x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

function histogram(rows: BucketCounts): { counts: Map<number, number>; n: number; errors: number } {
  const counts = new Map<number, number>();
  let n = 0;
  let errors = 0;
  for (const [bucket, count, failed] of rows) {
    counts.set(bucket, (counts.get(bucket) ?? 0) + count);
    n += count;
    errors += failed;
  }
  return { counts, n, errors };
}

const bucketList = (m: Map<number, number>) => [...m].filter(([, n]) => n > 0).map(([bucket, count]) => ({ bucket, count }));
