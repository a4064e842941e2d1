// Validation of OTLP data points, one by one, and of the rows a request hands to the pipeline.
//
// Everything a request carries is checked before it is queued, so a commit can fail only for
// reasons that have nothing to do with one client's data (the database, the disk): a bad point is
// rejected on its own (partial success), and a request no batch size or retry can fix gets 400,
// never a 503 that its exporter would retry forever — storing its good half on every attempt.

import type {
  ExponentialHistogramDataPoint,
  ExponentialHistogramDataPoint_Buckets,
  HistogramDataPoint,
  NumberDataPoint,
} from "../../../gen/opentelemetry/proto/metrics/v1/metrics_pb.js";
import type { HostSample, LatencyRecord, ResourceRecord, SpanRecord } from "../records.js";

/** 2200-01-01T00:00:00Z: past it, times no longer fit the store's arithmetic (as for spans, see traces.ts). */
export const LATEST_MS = Date.UTC(2200, 0, 1);
export const LATEST_NS = BigInt(LATEST_MS) * 1_000_000n;
/** Counts beyond 2^53 − 1 are not exact as JS numbers, and a few of them overflow the store's BIGINT sums. */
export const MAX_COUNT = Number.MAX_SAFE_INTEGER;
const MAX_COUNT_N = BigInt(MAX_COUNT);
/**
 * Largest duration a latency value may stand for, and largest byte count: both land in BIGINT
 * columns (2^63 − 1), and 2^62 (146 years in ns, 4 EiB) leaves room for min/max merges and sums.
 */
export const MAX_MAGNITUDE = 2 ** 62;
/** The exponential histogram scales OpenTelemetry defines (data model: −10 … 20). */
export const MIN_SCALE = -10;
export const MAX_SCALE = 20;
/** DataPointFlags.NO_RECORDED_VALUE: the point says it has no value (a stale series); nothing to store or refuse. */
export const NO_RECORDED_VALUE = 1;

/** Why points (or spans) were refused, counted per reason, for partial success's error_message. */
export class Rejections {
  readonly reasons = new Map<string, number>();
  count = 0;

  add(reason: string): void {
    this.count++;
    this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
  }

  /** "rejected 2 of 10 data points: reason (×1); other reason (×1)", the first few reasons only. */
  message(total: number, noun: string): string {
    const parts = [...this.reasons].slice(0, 5).map(([r, n]) => `${r} (×${n})`);
    const more = this.reasons.size > 5 ? `; and ${this.reasons.size - 5} other reasons` : "";
    return `rejected ${this.count} of ${total} ${noun}: ${parts.join("; ")}${more}`;
  }
}

function timeProblem(p: { timeUnixNano: bigint; startTimeUnixNano: bigint }): string | undefined {
  if (p.timeUnixNano === 0n) return "time_unix_nano is missing";
  if (p.timeUnixNano > LATEST_NS || p.startTimeUnixNano > LATEST_NS) return "timestamps must be before the year 2200";
  return undefined;
}

function countProblem(name: string, n: bigint): string | undefined {
  return n > MAX_COUNT_N ? `${name} exceeds 2^53 − 1` : undefined;
}

/** sum, min and max, when present, are finite and min ≤ max. */
function statsProblem(p: { sum?: number; min?: number; max?: number }): string | undefined {
  for (const k of ["sum", "min", "max"] as const) {
    const v = p[k];
    if (v !== undefined && !Number.isFinite(v)) return `${k} is ${v}, not a finite number`;
  }
  if (p.min !== undefined && p.max !== undefined && p.min > p.max) return "min is greater than max";
  return undefined;
}

/** Why a gauge/sum point cannot be stored, or undefined when it is fine. */
export function numberPointProblem(p: NumberDataPoint): string | undefined {
  const t = timeProblem(p);
  if (t) return t;
  if (p.value.case === undefined) return "the point has no value (as_double or as_int)";
  if (p.value.case === "asDouble" && !Number.isFinite(p.value.value)) return `value is ${p.value.value}, not a finite number`;
  return undefined;
}

/** Why an explicit-bounds histogram point is malformed, or undefined when it is fine. */
export function histogramProblem(p: HistogramDataPoint): string | undefined {
  const problem = timeProblem(p) ?? countProblem("count", p.count) ?? statsProblem(p);
  if (problem) return problem;
  const bounds = p.explicitBounds;
  for (let i = 0; i < bounds.length; i++) {
    if (!Number.isFinite(bounds[i]!)) return `explicit bound ${bounds[i]} is not a finite number`;
    if (i > 0 && !(bounds[i]! > bounds[i - 1]!)) return "explicit bounds must increase strictly";
  }
  // No bucket counts at all is allowed (a count and sum only); otherwise one more than the bounds.
  if (p.bucketCounts.length > 0 && p.bucketCounts.length !== bounds.length + 1) {
    return `${p.bucketCounts.length} bucket counts for ${bounds.length} explicit bounds (needs ${bounds.length + 1})`;
  }
  if (p.bucketCounts.length > 0) {
    let total = 0n;
    for (const c of p.bucketCounts) {
      const bad = countProblem("a bucket count", c);
      if (bad) return bad;
      total += c;
    }
    if (total !== p.count) return `bucket counts add up to ${total}, not to count ${p.count}`;
  }
  return undefined;
}

function bucketsTotal(b: ExponentialHistogramDataPoint_Buckets | undefined): bigint | string {
  let total = 0n;
  for (const c of b?.bucketCounts ?? []) {
    const bad = countProblem("a bucket count", c);
    if (bad) return bad;
    total += c;
  }
  return total;
}

/** Why an exponential histogram point is malformed, or undefined when it is fine. */
export function exponentialProblem(p: ExponentialHistogramDataPoint): string | undefined {
  const problem = timeProblem(p) ?? countProblem("count", p.count) ?? countProblem("zero_count", p.zeroCount) ?? statsProblem(p);
  if (problem) return problem;
  if (!Number.isInteger(p.scale) || p.scale < MIN_SCALE || p.scale > MAX_SCALE) return `scale ${p.scale} is outside ${MIN_SCALE}…${MAX_SCALE}`;
  if (!Number.isFinite(p.zeroThreshold) || p.zeroThreshold < 0) return `zero_threshold ${p.zeroThreshold} is not a non-negative finite number`;
  const pos = bucketsTotal(p.positive);
  if (typeof pos === "string") return pos;
  const neg = bucketsTotal(p.negative);
  if (typeof neg === "string") return neg;
  const total = p.zeroCount + pos + neg;
  if (total !== p.count) return `zero_count and bucket counts add up to ${total}, not to count ${p.count}`;
  return undefined;
}

// --- rows, just before they are queued ---------------------------------------------------------

function finite(v: number, min: number, max: number): boolean {
  return Number.isFinite(v) && v >= min && v <= max;
}

/**
 * The last word before a request's rows join a group commit: every value the Writer converts or
 * stores fits its column. The decoders already refuse what fails here, point by point; this
 * catches what they would miss, so one request can never fail a commit shared with others.
 */
export function rowsProblem(part: { spans?: readonly SpanRecord[]; hostSamples?: readonly HostSample[]; latency?: readonly LatencyRecord[]; resources?: readonly ResourceRecord[] }): string | undefined {
  for (const s of part.spans ?? []) {
    if (!finite(s.startTimeMs, 0, LATEST_MS)) return `span ${s.spanId}: start time out of range`;
    if (!finite(s.durationNs, 0, LATEST_MS * 1e6)) return `span ${s.spanId}: duration out of range`;
  }
  for (const h of part.hostSamples ?? []) {
    if (!finite(h.timestampMs, 0, LATEST_MS)) return "host sample: time out of range";
    for (const v of [h.cpuPercent, h.memoryPercent]) if (v !== null && !Number.isFinite(v)) return "host sample: a percentage is not a finite number";
    for (const v of [h.memoryUsedBytes, h.memoryTotalBytes]) if (v !== null && !finite(v, 0, MAX_MAGNITUDE)) return "host sample: a byte count is out of range";
  }
  for (const r of part.latency ?? []) {
    if (!finite(r.timestampMs, 0, LATEST_MS)) return "latency: time out of range";
    let total = 0;
    for (const [b, n] of r.buckets) {
      if (!Number.isInteger(b) || b < -(2 ** 31) || b >= 2 ** 31) return "latency: bucket index out of range";
      if (!Number.isSafeInteger(n) || n < 0) return "latency: bucket count out of range";
      total += n;
    }
    if (!Number.isSafeInteger(total)) return "latency: counts add up past 2^53 − 1";
    if (!Number.isSafeInteger(r.errorCount) || r.errorCount < 0) return "latency: error count out of range";
    if (!Number.isFinite(r.sumNs)) return "latency: sum is not a finite number";
    if (!finite(r.minNs, -MAX_MAGNITUDE, MAX_MAGNITUDE) || !finite(r.maxNs, -MAX_MAGNITUDE, MAX_MAGNITUDE)) return "latency: min or max out of range";
  }
  for (const r of part.resources ?? []) if (!Number.isFinite(r.seenAtMs)) return "resource: time out of range";
  return undefined;
}
