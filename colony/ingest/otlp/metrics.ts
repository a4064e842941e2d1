// OTLP metrics → host samples and latency rollups, from the generated messages (metrics are a few
// hundred points a minute per host, so reflection-based decoding costs nothing that matters).

import type { AnyValue, KeyValue } from "../../../gen/opentelemetry/proto/common/v1/common_pb.js";
import type { ExportMetricsServiceRequest } from "../../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import {
  AggregationTemporality,
  type ExponentialHistogramDataPoint,
  type HistogramDataPoint,
  type Metric,
  type NumberDataPoint,
} from "../../../gen/opentelemetry/proto/metrics/v1/metrics_pb.js";
import { bucketIndex, bucketValue } from "../../store/sketch.js";
import type { HostSample, LatencyRecord, ResourceRecord } from "../writer.js";
import { resourceInfo } from "./traces.js";

/** Both names (current and older semantic conventions) land in one metric, so an app sending both never counts twice. */
export const HTTP_SERVER_REQUEST_DURATION = "http.server.request.duration";
const LATENCY_METRICS = new Set([HTTP_SERVER_REQUEST_DURATION, "http.server.duration"]);

export interface MappedMetrics {
  hostSamples: HostSample[];
  latency: LatencyRecord[];
  resources: ResourceRecord[];
  rejected: number;
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

/** Explicit-bounds buckets → sketch buckets, each bucket's count placed at its midpoint (open ends at min/max or the bound). */
function explicitBuckets(p: HistogramDataPoint, scale: number): Map<number, number> {
  const out = new Map<number, number>();
  const bounds = p.explicitBounds;
  p.bucketCounts.forEach((c, i) => {
    const n = Number(c);
    const lo = i === 0 ? (p.min ?? Math.min(0, bounds[0] ?? 0)) : bounds[i - 1]!;
    const hi = i < bounds.length ? bounds[i]! : (p.max ?? bounds[bounds.length - 1] ?? 0);
    addBucket(out, Math.max(0, ((lo + hi) / 2) * scale), n);
  });
  return out;
}

/** Exponential buckets (base 2^(2^-scale)) → sketch buckets, each at its geometric midpoint. */
function exponentialBuckets(p: ExponentialHistogramDataPoint, scale: number): Map<number, number> {
  const out = new Map<number, number>();
  addBucket(out, 0, Number(p.zeroCount));
  const base = Math.pow(2, Math.pow(2, -p.scale));
  const offset = p.positive?.offset ?? 0;
  p.positive?.bucketCounts.forEach((c, k) => addBucket(out, Math.pow(base, offset + k + 0.5) * scale, Number(c)));
  return out;
}

export function mapMetrics(req: ExportMetricsServiceRequest, receivedAtMs: number): MappedMetrics {
  const out: MappedMetrics = { hostSamples: [], latency: [], resources: [], rejected: 0 };
  for (const rm of req.resourceMetrics) {
    const info = resourceInfo(attrMap(rm.resource?.attributes ?? []));
    out.resources.push({ serviceName: info.serviceName, namespace: info.namespace, region: info.region, instanceId: info.instanceId, seenAtMs: receivedAtMs });
    // Host metrics arrive as separate metrics with per-state/per-cpu points; gather them per instant.
    const samples = new Map<number, { cpu: number[]; cpuByCpu: Map<string, number>; cpuStates: boolean; mem?: number; used?: number; total?: number; hasMemStates: boolean }>();
    const at = (ms: number) => {
      let s = samples.get(ms);
      if (!s) samples.set(ms, (s = { cpu: [], cpuByCpu: new Map(), cpuStates: false, hasMemStates: false }));
      return s;
    };
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        const points: NumberDataPoint[] = m.data.case === "gauge" || m.data.case === "sum" ? m.data.value.dataPoints : [];
        const value = (p: NumberDataPoint) => (p.value.case === "asDouble" ? p.value.value : p.value.case === "asInt" ? Number(p.value.value) : NaN);
        switch (m.name) {
          case "system.cpu.utilization":
          case "process.cpu.utilization":
            for (const p of points) {
              const a = attrMap(p.attributes);
              const v = value(p);
              if (!Number.isFinite(v)) continue;
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
            for (const p of points) {
              const a = attrMap(p.attributes);
              const st = a.get("state") ?? a.get("system.memory.state");
              if (st !== undefined && st !== null && st !== "used") continue;
              at(Math.round(nsToMs(p.timeUnixNano))).mem = value(p);
            }
            break;
          case "system.memory.usage":
          case "process.memory.usage":
            for (const p of points) {
              const a = attrMap(p.attributes);
              const s = at(Math.round(nsToMs(p.timeUnixNano)));
              const st = a.get("state") ?? a.get("system.memory.state");
              const v = value(p);
              if (st === undefined || st === null) s.used = v;
              else {
                s.hasMemStates = true;
                s.total = (s.total ?? 0) + v;
                if (st === "used") s.used = v;
              }
            }
            break;
          default:
            if (LATENCY_METRICS.has(m.name)) latency(m, info.serviceName, out);
        }
      }
    }
    for (const [ms, s] of samples) {
      let cpu: number | null = null;
      if (s.cpuByCpu.size > 0) cpu = ([...s.cpuByCpu.values()].reduce((a, b) => a + b, 0) / s.cpuByCpu.size) * 100;
      else if (s.cpu.length > 0) cpu = (s.cpu.reduce((a, b) => a + b, 0) / s.cpu.length) * 100;
      else if (s.cpuStates) cpu = 0;
      let memPct = s.mem !== undefined ? s.mem * 100 : null;
      if (memPct === null && s.used !== undefined && s.total) memPct = (s.used / s.total) * 100;
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
  }
  return out;
}

function latency(m: Metric, serviceName: string, out: MappedMetrics): void {
  if (m.data.case !== "histogram" && m.data.case !== "exponentialHistogram") return;
  const scale = nsPerUnit(m);
  const cumulative = m.data.value.aggregationTemporality === AggregationTemporality.CUMULATIVE;
  for (const p of m.data.value.dataPoints) {
    const attrs = attrMap(p.attributes);
    const buckets = m.data.case === "histogram" ? explicitBuckets(p as HistogramDataPoint, scale) : exponentialBuckets(p as ExponentialHistogramDataPoint, scale);
    if (buckets.size === 0) continue;
    const observed = [...buckets.keys()];
    const errors = isErrorPoint(attrs);
    out.latency.push({
      serviceName,
      metric: HTTP_SERVER_REQUEST_DURATION,
      timestampMs: nsToMs(p.timeUnixNano),
      buckets,
      errorCount: errors ? Number(p.count) : 0,
      sumNs: (p.sum ?? 0) * scale,
      minNs: p.min !== undefined ? p.min * scale : bucketValue(Math.min(...observed)),
      maxNs: p.max !== undefined ? p.max * scale : bucketValue(Math.max(...observed)),
      // Totals since the stream's start: the Writer stores their increment over its last stored point.
      ...(cumulative ? { cumulative: { stream: JSON.stringify([serviceName, m.name, [...attrs].sort()]), startNs: p.startTimeUnixNano, errors } } : {}),
    });
  }
}
