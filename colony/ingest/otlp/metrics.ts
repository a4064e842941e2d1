// OTLP metrics → host samples and latency rollups, from the generated messages (metrics are a few
// hundred points a minute per host, so reflection-based decoding costs nothing that matters; the
// receiver counts a request's messages on the wire before they are built, see limits.ts).
//
// Every data point is validated, whether Coral stores its metric or not (validate.ts), and then
// against what the store can hold; a point that fails is rejected on its own and counted for the
// response's partial success, the rest of the request is stored.

import type { AnyValue, KeyValue } from "../../../gen/opentelemetry/proto/common/v1/common_pb.js";
import type { ExportMetricsServiceRequest } from "../../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import {
  AggregationTemporality,
  type ExponentialHistogramDataPoint,
  type HistogramDataPoint,
  type Metric,
  type NumberDataPoint,
} from "../../../gen/opentelemetry/proto/metrics/v1/metrics_pb.js";
import { bucketIndex, bucketValue, downscaledIndex, SCALE } from "../../store/sketch.js";
import type { HostSample, LatencyRecord, ResourceRecord } from "../records.js";
import { resourceInfo } from "./traces.js";
import { exponentialProblem, histogramProblem, MAX_COUNT, MAX_MAGNITUDE, NO_RECORDED_VALUE, numberPointProblem, Rejections } from "./validate.js";

/** Both names (current and older semantic conventions) land in one metric, so an app sending both never counts twice. */
export const HTTP_SERVER_REQUEST_DURATION = "http.server.request.duration";
const LATENCY_METRICS = new Set([HTTP_SERVER_REQUEST_DURATION, "http.server.duration"]);
/**
 * Utilizations are fractions of 1 by the semantic conventions; scrapers that divide CPU time by
 * elapsed time can land a little above 1, so a small margin is kept rather than refusing real data.
 */
const MAX_UTILIZATION = 1.01;

export interface MappedMetrics {
  hostSamples: HostSample[];
  latency: LatencyRecord[];
  resources: ResourceRecord[];
  /** Data points in the request, of every kind, stored or not. */
  points: number;
  /** Points refused one by one; the rest of the request is kept (partial success). */
  rejected: number;
  /** Why, for the response's error_message; set when `rejected` > 0. */
  rejectReason?: string;
}

type Scalar = string | number | boolean | null;

export function anyValueJs(v: AnyValue | undefined): Scalar {
  switch (v?.value.case) {
    case "stringValue":
    case "boolValue":
    case "doubleValue":
      return v.value.value;
    case "intValue":
      return Number(v.value.value);
    case undefined:
      return null;
    default:
      return JSON.stringify(v!.value.value);
  }
}

function attrMap(attrs: KeyValue[]): Map<string, Scalar> {
  return new Map(attrs.map((kv) => [kv.key, anyValueJs(kv.value)]));
}

function nsToMs(ns: bigint): number {
  return Number(ns / 1000n) / 1000;
}

/** Seconds, milliseconds, ... → nanoseconds, by the metric's unit (UCUM), else by its conventional unit. */
function nsPerUnit(m: Metric): number {
  switch (m.unit) {
    case "s":
      return 1e9;
    case "ms":
      return 1e6;
    case "us":
    case "μs":
      return 1e3;
    case "ns":
      return 1;
    default:
      return m.name === HTTP_SERVER_REQUEST_DURATION ? 1e9 : 1e6;
  }
}

function isErrorPoint(attrs: Map<string, Scalar>): boolean {
  const status = Number(attrs.get("http.response.status_code") ?? attrs.get("http.status_code") ?? 0);
  return status >= 500 || (attrs.get("error.type") ?? null) !== null;
}

function addBucket(into: Map<number, number>, valueNs: number, n: number): void {
  if (n <= 0) return;
  const b = bucketIndex(valueNs);
  into.set(b, (into.get(b) ?? 0) + n);
}

const TOO_LONG = `a bucket holding observations lies beyond the longest duration the colony stores (2^62 ns, 146 years)`;

/**
 * Explicit-bounds buckets → sketch buckets, each bucket's count placed at its midpoint (open ends
 * at min/max or the bound). A string says why the point cannot be stored.
 */
function explicitBuckets(p: HistogramDataPoint, scale: number): Map<number, number> | string {
  const out = new Map<number, number>();
  const bounds = p.explicitBounds;
  for (let i = 0; i < p.bucketCounts.length; i++) {
    const n = Number(p.bucketCounts[i]!);
    if (n === 0) continue;
    const lo = i === 0 ? (p.min ?? Math.min(0, bounds[0] ?? 0)) : bounds[i - 1]!;
    const hi = i < bounds.length ? bounds[i]! : (p.max ?? bounds[bounds.length - 1] ?? 0);
    const v = ((lo + hi) / 2) * scale;
    if (!(v <= MAX_MAGNITUDE)) return TOO_LONG;
    addBucket(out, Math.max(0, v), n);
  }
  return out;
}

/**
 * Exponential buckets (base 2^(2^-scale)) → stored buckets. The stored ones are this same mapping at
 * scale 6 in ns, so a point in ns of scale ≥ 6 merges exactly: each bucket nests in one stored
 * bucket (downscaledIndex). Any other point — another unit (1 s = 10^9 ns is no power of two, so the
 * edges do not line up), or a coarser scale — places each bucket's count at its geometric midpoint;
 * its observations can then be off by up to half that bucket's width (as a ratio) on top of the
 * store's 0.54 %. The midpoint is computed as one power of 2, not as a power of the base: at scale
 * −10 the base itself (2^1024) is no double. Negative buckets count at 0 ns, as negative values of
 * explicit buckets do.
 */
function exponentialBuckets(p: ExponentialHistogramDataPoint, nsPerUnit: number): Map<number, number> | string {
  const out = new Map<number, number>();
  let atZero = Number(p.zeroCount);
  for (const c of p.negative?.bucketCounts ?? []) atZero += Number(c);
  addBucket(out, 0, atZero);
  const exact = nsPerUnit === 1 && p.scale >= SCALE;
  const width = Math.pow(2, -p.scale);
  const offset = p.positive?.offset ?? 0;
  const counts = p.positive?.bucketCounts ?? [];
  for (let k = 0; k < counts.length; k++) {
    const n = Number(counts[k]!);
    if (n === 0) continue;
    if (exact) {
      const b = downscaledIndex(offset + k, p.scale);
      if (!(bucketValue(b) <= MAX_MAGNITUDE)) return TOO_LONG;
      out.set(b, (out.get(b) ?? 0) + n);
      continue;
    }
    const v = Math.pow(2, (offset + k + 0.5) * width) * nsPerUnit;
    if (!(v <= MAX_MAGNITUDE)) return TOO_LONG;
    addBucket(out, v, n);
  }
  return out;
}

interface Sample {
  cpu: number[];
  cpuByCpu: Map<string, number>;
  cpuStates: boolean;
  mem?: number;
  used?: number;
  total?: number;
  /** memory.usage points that went into used/total: refused together if their total cannot be stored. */
  memPoints: number;
}

type AnyPoint = NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint;

function pointsOf(m: Metric): readonly AnyPoint[] {
  return m.data.case === undefined ? [] : m.data.value.dataPoints;
}

/** Why a point of `m` is malformed, or undefined when it is fine (validate.ts, by the metric's kind). */
function problemOf(m: Metric, p: AnyPoint): string | undefined {
  switch (m.data.case) {
    case "gauge":
    case "sum":
      return numberPointProblem(p as NumberDataPoint);
    case "histogram":
      return histogramProblem(p as HistogramDataPoint);
    case "exponentialHistogram":
      return exponentialProblem(p as ExponentialHistogramDataPoint);
    default:
      return undefined;
  }
}

export function mapMetrics(req: ExportMetricsServiceRequest, receivedAtMs: number): MappedMetrics {
  const out: MappedMetrics = { hostSamples: [], latency: [], resources: [], points: 0, rejected: 0 };
  const rejections = new Rejections();
  // Per service and minute, the observations this request adds: bounded so the request alone can
  // never overflow the store's BIGINT counts.
  const perMinute = new Map<string, number>();
  for (const rm of req.resourceMetrics) {
    const info = resourceInfo(attrMap(rm.resource?.attributes ?? []));
    const [pointsBefore, rejectedBefore] = [out.points, rejections.count];
    // Host metrics arrive as separate metrics with per-state/per-cpu points; gather them per instant.
    const samples = new Map<number, Sample>();
    const at = (ms: number) => {
      let s = samples.get(ms);
      if (!s) samples.set(ms, (s = { cpu: [], cpuByCpu: new Map(), cpuStates: false, memPoints: 0 }));
      return s;
    };
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        const reject = (why: string) => rejections.add(`${m.name || "(unnamed metric)"}: ${why}`);
        const valid: AnyPoint[] = [];
        for (const p of pointsOf(m)) {
          out.points++;
          // A point flagged as having no value (a series gone stale) carries nothing to store.
          if (p.flags & NO_RECORDED_VALUE) continue;
          const problem = problemOf(m, p);
          if (problem) reject(problem);
          else valid.push(p);
        }
        const numbers = m.data.case === "gauge" || m.data.case === "sum" ? (valid as NumberDataPoint[]) : [];
        const value = (p: NumberDataPoint) => (p.value.case === "asDouble" ? p.value.value : Number(p.value.value));
        switch (m.name) {
          case "system.cpu.utilization":
          case "process.cpu.utilization":
            for (const p of numbers) {
              const v = value(p);
              if (!(v >= 0 && v <= MAX_UTILIZATION)) {
                reject(`a utilization is between 0 and 1, not ${v}`);
                continue;
              }
              const a = attrMap(p.attributes);
              const s = at(Math.round(nsToMs(p.timeUnixNano)));
              const st = a.get("state") ?? a.get("system.cpu.state") ?? a.get("process.cpu.state") ?? a.get("cpu.mode");
              if (st !== undefined && st !== null) {
                s.cpuStates = true;
                if (st === "idle") continue;
                const cpu = String(a.get("cpu") ?? a.get("system.cpu.logical_number") ?? "all");
                s.cpuByCpu.set(cpu, (s.cpuByCpu.get(cpu) ?? 0) + v);
              } else s.cpu.push(v);
            }
            break;
          case "system.memory.utilization":
          case "process.memory.utilization":
            for (const p of numbers) {
              const v = value(p);
              if (!(v >= 0 && v <= MAX_UTILIZATION)) {
                reject(`a utilization is between 0 and 1, not ${v}`);
                continue;
              }
              const a = attrMap(p.attributes);
              const st = a.get("state") ?? a.get("system.memory.state");
              if (st !== undefined && st !== null && st !== "used") continue;
              at(Math.round(nsToMs(p.timeUnixNano))).mem = v;
            }
            break;
          case "system.memory.usage":
          case "process.memory.usage":
            for (const p of numbers) {
              const v = value(p);
              if (!(v >= 0 && v <= MAX_MAGNITUDE)) {
                reject(`a memory usage is between 0 and 2^62 bytes, not ${v}`);
                continue;
              }
              const a = attrMap(p.attributes);
              const s = at(Math.round(nsToMs(p.timeUnixNano)));
              s.memPoints++;
              const st = a.get("state") ?? a.get("system.memory.state");
              if (st === undefined || st === null) s.used = v;
              else {
                s.total = (s.total ?? 0) + v;
                if (st === "used") s.used = v;
              }
            }
            break;
          default:
            if (LATENCY_METRICS.has(m.name)) latency(m, valid as (HistogramDataPoint | ExponentialHistogramDataPoint)[], info.serviceName, out, reject, perMinute);
        }
      }
    }
    for (const [ms, s] of samples) {
      if (s.total !== undefined && s.total > MAX_MAGNITUDE) {
        for (let i = 0; i < s.memPoints; i++) rejections.add("system.memory.usage: the states of one instant add up past 2^62 bytes");
        s.used = s.total = undefined;
      }
      let cpu: number | null = null;
      if (s.cpuByCpu.size > 0) cpu = ([...s.cpuByCpu.values()].reduce((a, b) => a + b, 0) / s.cpuByCpu.size) * 100;
      else if (s.cpu.length > 0) cpu = (s.cpu.reduce((a, b) => a + b, 0) / s.cpu.length) * 100;
      else if (s.cpuStates) cpu = 0;
      let memPct = s.mem !== undefined ? s.mem * 100 : null;
      if (memPct === null && s.used !== undefined && s.total) memPct = (s.used / s.total) * 100;
      if (cpu === null && memPct === null && s.used === undefined && s.total === undefined) continue;
      out.hostSamples.push({
        timestampMs: ms,
        hostName: info.hostName,
        serviceName: info.serviceName,
        cpuPercent: cpu,
        memoryPercent: memPct,
        memoryUsedBytes: s.used ?? null,
        memoryTotalBytes: s.total ?? null,
      });
    }
    // A resource whose every point was refused is not announced: a refused point stores nothing.
    const points = out.points - pointsBefore;
    if (points === 0 || rejections.count - rejectedBefore < points) {
      out.resources.push({ serviceName: info.serviceName, namespace: info.namespace, region: info.region, instanceId: info.instanceId, seenAtMs: receivedAtMs });
    }
  }
  out.rejected = rejections.count;
  if (rejections.count > 0) out.rejectReason = rejections.message(out.points, "data points");
  return out;
}

function latency(
  m: Metric,
  points: readonly (HistogramDataPoint | ExponentialHistogramDataPoint)[],
  serviceName: string,
  out: MappedMetrics,
  reject: (why: string) => void,
  perMinute: Map<string, number>,
): void {
  if (m.data.case !== "histogram" && m.data.case !== "exponentialHistogram") return;
  const scale = nsPerUnit(m);
  const cumulative = m.data.value.aggregationTemporality === AggregationTemporality.CUMULATIVE;
  for (const p of points) {
    const buckets = m.data.case === "histogram" ? explicitBuckets(p as HistogramDataPoint, scale) : exponentialBuckets(p as ExponentialHistogramDataPoint, scale);
    if (typeof buckets === "string") {
      reject(buckets);
      continue;
    }
    if (buckets.size === 0) continue;
    const sumNs = (p.sum ?? 0) * scale;
    const [minNs, maxNs] = [p.min, p.max].map((v) => (v === undefined ? undefined : v * scale));
    if (!Number.isFinite(sumNs) || [minNs, maxNs].some((v) => v !== undefined && !(Math.abs(v) <= MAX_MAGNITUDE))) {
      reject("sum, min or max lies beyond what the colony stores (2^62 ns)");
      continue;
    }
    const timestampMs = nsToMs(p.timeUnixNano);
    const key = `${serviceName}\u0000${Math.floor(timestampMs / 60_000)}`;
    const count = Number(p.count);
    const minute = (perMinute.get(key) ?? 0) + count;
    if (minute > MAX_COUNT) {
      reject("the counts of one service and minute add up past 2^53 − 1");
      continue;
    }
    perMinute.set(key, minute);
    const attrs = attrMap(p.attributes);
    const observed = [...buckets.keys()];
    const errors = isErrorPoint(attrs);
    out.latency.push({
      serviceName,
      metric: HTTP_SERVER_REQUEST_DURATION,
      timestampMs,
      buckets,
      errorCount: errors ? count : 0,
      sumNs,
      minNs: minNs ?? bucketValue(Math.min(...observed)),
      maxNs: maxNs ?? bucketValue(Math.max(...observed)),
      // Totals since the stream's start: the Writer stores their increment over its last stored point.
      ...(cumulative ? { cumulative: { stream: JSON.stringify([serviceName, m.name, [...attrs].sort()]), startNs: p.startTimeUnixNano, errors } } : {}),
    });
  }
}
