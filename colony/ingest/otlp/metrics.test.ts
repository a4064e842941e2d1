import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ExportMetricsServiceRequestSchema } from "../../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { AggregationTemporality } from "../../../gen/opentelemetry/proto/metrics/v1/metrics_pb.js";
import { bucketIndex, bucketValue, RELATIVE_ERROR } from "../../store/sketch.js";
import { mapMetrics } from "./metrics.js";
import { rowsProblem } from "./validate.js";

const T = 1_767_225_600_000_000_000n; // 2026-01-01
const AFTER_2200 = BigInt(Date.UTC(2200, 0, 1)) * 1_000_000n + 1n;
const U64_MAX = 2n ** 64n - 1n;
const LATENCY = "http.server.request.duration";

type Point = Record<string, unknown>;
const good = { timeUnixNano: T, startTimeUnixNano: T - 60_000_000_000n, count: 3n, sum: 0.6, bucketCounts: [1n, 2n], explicitBounds: [0.2], min: 0.1, max: 0.3 };
const goodExp = { timeUnixNano: T, count: 3n, sum: 0.6, scale: 3, zeroCount: 0n, positive: { offset: -20, bucketCounts: [1n, 2n] } };

function request(metrics: { name: string; unit?: string; data: { case: string; value: unknown } }[], service = "svc") {
  return create(ExportMetricsServiceRequestSchema, {
    resourceMetrics: [{ resource: { attributes: [{ key: "service.name", value: { value: { case: "stringValue", value: service } } }] }, scopeMetrics: [{ metrics: metrics as never }] }],
  });
}
const histogram = (points: Point[], name = LATENCY) => ({ name, unit: "s", data: { case: "histogram", value: { dataPoints: points, aggregationTemporality: AggregationTemporality.DELTA } } });
const exponential = (points: Point[], name = LATENCY) => ({ name, unit: "s", data: { case: "exponentialHistogram", value: { dataPoints: points, aggregationTemporality: AggregationTemporality.DELTA } } });
const gauge = (name: string, points: Point[]) => ({ name, data: { case: "gauge", value: { dataPoints: points } } });
const num = (v: number, attrs: Record<string, string> = {}, time = T) => ({
  timeUnixNano: time,
  value: { case: "asDouble", value: v },
  attributes: Object.entries(attrs).map(([key, s]) => ({ key, value: { value: { case: "stringValue", value: s } } })),
});

describe("mapMetrics: a bad data point is rejected on its own, the rest is stored", () => {
  // Each bad point rides with a good one; the good one must come out, the bad one be counted and named.
  const histogramCases: [string, Point, RegExp][] = [
    ["min NaN", { ...good, min: NaN }, /min is NaN, not a finite number/],
    ["max +Infinity", { ...good, max: Infinity }, /max is Infinity/],
    ["sum NaN", { ...good, sum: NaN }, /sum is NaN/],
    ["min above max", { ...good, min: 0.5, max: 0.1 }, /min is greater than max/],
    ["+Infinity bound", { ...good, explicitBounds: [Infinity] }, /explicit bound Infinity is not a finite number/],
    ["-Infinity bound", { ...good, explicitBounds: [-Infinity] }, /explicit bound -Infinity/],
    ["bounds that do not increase", { ...good, bucketCounts: [1n, 1n, 1n], explicitBounds: [0.5, 0.2] }, /explicit bounds must increase strictly/],
    ["more bucket counts than bounds allow", { ...good, bucketCounts: [1n, 1n, 1n] }, /3 bucket counts for 1 explicit bounds \(needs 2\)/],
    ["fewer bucket counts than bounds need", { ...good, count: 1n, bucketCounts: [1n] }, /1 bucket counts for 1 explicit bounds/],
    ["count of 2^64 − 1", { ...good, count: U64_MAX, bucketCounts: [U64_MAX, 0n] }, /count exceeds 2\^53 − 1/],
    ["a bucket count of 2^64 − 1", { ...good, count: 3n, bucketCounts: [U64_MAX, 3n] }, /a bucket count exceeds 2\^53 − 1/],
    ["bucket counts that do not add up to count", { ...good, count: 4n }, /bucket counts add up to 3, not to count 4/],
    ["time past 2200", { ...good, timeUnixNano: AFTER_2200 }, /before the year 2200/],
    ["start time past 2200", { ...good, startTimeUnixNano: AFTER_2200 }, /before the year 2200/],
    ["no time", { ...good, timeUnixNano: 0n }, /time_unix_nano is missing/],
    ["a bound far past any duration the store holds", { ...good, explicitBounds: [1e300] }, /longest duration the colony stores/],
    ["min beyond what the store holds", { ...good, min: -1e12 }, /beyond what the colony stores/],
  ];
  it.each(histogramCases)("histogram: %s", (_name, bad, reason) => {
    const out = mapMetrics(request([histogram([good, bad])]), 0);
    expect(out).toMatchObject({ points: 2, rejected: 1 });
    expect(out.rejectReason).toMatch(/^rejected 1 of 2 data points: http\.server\.request\.duration: /);
    expect(out.rejectReason).toMatch(reason);
    expect(out.latency).toHaveLength(1);
    expect([...out.latency[0]!.buckets.values()].reduce((a, b) => a + b)).toBe(3);
    expect(rowsProblem(out)).toBeUndefined();
  });

  const exponentialCases: [string, Point, RegExp][] = [
    ["scale −11 (below the spec's −10)", { ...goodExp, scale: -11 }, /scale -11 is outside -10…20/],
    ["scale 21 (above the spec's 20)", { ...goodExp, scale: 21 }, /scale 21 is outside/],
    // At scale −10, bucket 0 spans 1 … 2^1024: its midpoint (2^512) is no duration. (Its base, 2^1024, is not even a double.)
    ["scale −10 with observations in bucket 0", { ...goodExp, scale: -10, positive: { offset: 0, bucketCounts: [3n] } }, /longest duration the colony stores/],
    ["a huge offset", { ...goodExp, positive: { offset: 2_000_000_000, bucketCounts: [3n] } }, /longest duration/],
    ["counts that do not add up", { ...goodExp, count: 5n }, /zero_count and bucket counts add up to 3, not to count 5/],
    ["count of 2^64 − 1", { ...goodExp, count: U64_MAX }, /count exceeds 2\^53 − 1/],
    ["zero_count of 2^64 − 1", { ...goodExp, zeroCount: U64_MAX }, /zero_count exceeds/],
    ["a negative bucket count of 2^64 − 1", { ...goodExp, negative: { offset: 0, bucketCounts: [U64_MAX] } }, /a bucket count exceeds/],
    ["negative zero_threshold", { ...goodExp, zeroThreshold: -1 }, /zero_threshold -1 is not a non-negative finite number/],
    ["NaN zero_threshold", { ...goodExp, zeroThreshold: NaN }, /zero_threshold NaN/],
    ["max −Infinity", { ...goodExp, max: -Infinity }, /max is -Infinity/],
    ["time past 2200", { ...goodExp, timeUnixNano: AFTER_2200 }, /before the year 2200/],
  ];
  it.each(exponentialCases)("exponential histogram: %s", (_name, bad, reason) => {
    const out = mapMetrics(request([exponential([goodExp, bad])]), 0);
    expect(out).toMatchObject({ points: 2, rejected: 1 });
    expect(out.rejectReason).toMatch(reason);
    expect(out.latency).toHaveLength(1);
    expect(rowsProblem(out)).toBeUndefined();
  });

  it("exponential histogram: scale −10 is within the spec, and its bucket −1 (below 1 ns) is stored", () => {
    const out = mapMetrics(request([exponential([{ ...goodExp, scale: -10, positive: { offset: -1, bucketCounts: [3n] } }])]), 0);
    expect(out.rejected).toBe(0);
    expect([...out.latency[0]!.buckets.values()]).toEqual([3]);
  });

  it("exponential histogram: negative buckets count at 0 ns, so the stored count is the point's count", () => {
    const out = mapMetrics(request([exponential([{ ...goodExp, count: 5n, negative: { offset: 0, bucketCounts: [2n] } }])]), 0);
    expect(out.rejected).toBe(0);
    expect([...out.latency[0]!.buckets.values()].reduce((a, b) => a + b)).toBe(5);
  });

  /** Values far from any bucket edge of `scale` (a naive log2 then indexes them right), and their OpenTelemetry point. */
  function otelPoint(values: number[], scale: number) {
    const index = (v: number) => Math.ceil(Math.log2(v) * 2 ** scale) - 1;
    const counts = new Map<number, number>();
    for (const v of values) counts.set(index(v), (counts.get(index(v)) ?? 0) + 1);
    const offset = Math.min(...counts.keys());
    const bucketCounts = Array.from({ length: Math.max(...counts.keys()) - offset + 1 }, (_, k) => BigInt(counts.get(offset + k) ?? 0));
    return { timeUnixNano: T, count: BigInt(values.length), scale, zeroCount: 0n, positive: { offset, bucketCounts } };
  }
  const spread = (n: number, lo: number, hi: number, scale: number) =>
    Array.from({ length: n }, (_, i) => lo * (hi / lo) ** ((i + 0.37) / n)).filter((v) => {
      const t = Math.log2(v) * 2 ** scale;
      return Math.abs(t - Math.round(t)) > 1e-6;
    });

  it.each([6, 7, 10, 20])("exponential histogram in ns at scale %i: lands in exactly the buckets of the raw values", (scale) => {
    // At most ~100k buckets of the source scale: 25 doublings at scale 6, a tenth of one at 20.
    const values = spread(5000, 1e6, 1e6 * 2 ** Math.min(25, 2 ** 17 / 2 ** scale), scale);
    const out = mapMetrics(request([{ ...exponential([otelPoint(values, scale)]), unit: "ns" }]), 0);
    expect(out.rejected).toBe(0);
    const raw = new Map<number, number>();
    for (const v of values) raw.set(bucketIndex(v), (raw.get(bucketIndex(v)) ?? 0) + 1);
    expect(new Map([...out.latency[0]!.buckets].sort((a, b) => a[0] - b[0]))).toEqual(new Map([...raw].sort((a, b) => a[0] - b[0])));
  });

  it("exponential histogram in seconds (no power-of-two ratio to ns): each value within 0.54 % plus half its bucket", () => {
    const scale = 8;
    const values = spread(2000, 1e-4, 20, scale);
    const out = mapMetrics(request([exponential([otelPoint(values, scale)])]), 0);
    const stored = [...out.latency[0]!.buckets].sort((a, b) => a[0] - b[0]).flatMap(([b, n]) => Array<number>(n).fill(bucketValue(b)));
    const bound = (1 + RELATIVE_ERROR) * 2 ** (2 ** -scale / 2) - 1;
    values.forEach((v, i) => expect(Math.abs(stored[i]! / (v * 1e9) - 1)).toBeLessThanOrEqual(bound));
  });

  it("refuses the points of one service and minute past 2^53 − 1 observations (sums would overflow the store)", () => {
    const big = 2n ** 52n;
    const p = { ...good, count: big, bucketCounts: [big, 0n], min: undefined, max: undefined };
    const out = mapMetrics(request([histogram([p, p, p])]), 0);
    expect(out.rejected).toBe(2);
    expect(out.rejectReason).toMatch(/counts of one service and minute add up past 2\^53 − 1/);
    expect(out.latency).toHaveLength(1);
  });

  const hostCases: [string, ReturnType<typeof gauge>, RegExp][] = [
    ["NaN cpu utilization", gauge("system.cpu.utilization", [num(NaN, { state: "user" })]), /value is NaN, not a finite number/],
    ["Infinity memory utilization", gauge("system.memory.utilization", [num(Infinity)]), /value is Infinity/],
    ["cpu utilization of 5", gauge("system.cpu.utilization", [num(5)]), /a utilization is between 0 and 1, not 5/],
    ["negative memory utilization", gauge("process.memory.utilization", [num(-0.5)]), /a utilization is between 0 and 1, not -0.5/],
    ["negative memory usage", gauge("system.memory.usage", [num(-1, { state: "free" })]), /a memory usage is between 0 and 2\^62 bytes, not -1/],
    ["memory usage of 2^64 bytes", gauge("system.memory.usage", [num(2 ** 64, { state: "free" })]), /a memory usage is between 0 and 2\^62 bytes/],
    ["a point without a value", gauge("system.cpu.utilization", [{ timeUnixNano: T }]), /the point has no value/],
    ["a point past 2200", gauge("system.cpu.utilization", [num(0.5, {}, AFTER_2200)]), /before the year 2200/],
    // Not a metric Coral stores, but data that no one could store: the client hears about it.
    ["a NaN gauge of a metric Coral does not store", gauge("queue.depth", [num(NaN)]), /queue\.depth: value is NaN/],
  ];
  it.each(hostCases)("host metrics: %s", (_name, bad, reason) => {
    const ok = [gauge("system.cpu.utilization", [num(0.25)]), gauge("system.memory.usage", [num(3 * 2 ** 30, { state: "used" }), num(2 ** 30, { state: "free" })])];
    const out = mapMetrics(request([...ok, bad]), 0);
    expect(out).toMatchObject({ points: 4, rejected: 1 });
    expect(out.rejectReason).toMatch(reason);
    expect(out.hostSamples).toEqual([
      { timestampMs: Number(T / 1_000_000n), hostName: "svc", serviceName: "svc", cpuPercent: 25, memoryPercent: 75, memoryUsedBytes: 3 * 2 ** 30, memoryTotalBytes: 4 * 2 ** 30 },
    ]);
    expect(rowsProblem(out)).toBeUndefined();
  });

  it("host metrics: memory states whose total overflows the store are refused together", () => {
    const out = mapMetrics(request([gauge("system.memory.usage", [num(2 ** 61.5, { state: "used" }), num(2 ** 61.5, { state: "free" })]), gauge("system.cpu.utilization", [num(0.5)])]), 0);
    expect(out.rejected).toBe(2);
    expect(out.rejectReason).toMatch(/add up past 2\^62 bytes/);
    expect(out.hostSamples).toMatchObject([{ cpuPercent: 50, memoryUsedBytes: null, memoryTotalBytes: null, memoryPercent: null }]);
  });

  it("a point flagged NO_RECORDED_VALUE is neither stored nor rejected", () => {
    const out = mapMetrics(request([gauge("system.cpu.utilization", [{ timeUnixNano: T, flags: 1 }]), histogram([{ ...good, flags: 1, min: NaN }])]), 0);
    expect(out).toMatchObject({ points: 2, rejected: 0, hostSamples: [], latency: [] });
  });

  it("announces a resource with its valid points, not one whose every point was refused", () => {
    const req = create(ExportMetricsServiceRequestSchema, {
      resourceMetrics: [
        ...request([histogram([{ ...good, min: NaN }])], "all-bad").resourceMetrics,
        ...request([histogram([good])], "fine").resourceMetrics,
        ...request([], "no-points").resourceMetrics,
      ],
    });
    const out = mapMetrics(req, 0);
    expect(out.resources.map((r) => r.serviceName)).toEqual(["fine", "no-points"]);
    expect(out).toMatchObject({ points: 2, rejected: 1 });
  });

  it("lists at most five reasons, each with its count", () => {
    const bad = [{ ...good, min: NaN }, { ...good, min: NaN }, { ...good, sum: NaN }, { ...good, count: 9n }, { ...good, timeUnixNano: 0n }, { ...good, explicitBounds: [NaN] }, { ...good, max: NaN }];
    const out = mapMetrics(request([histogram(bad)]), 0);
    expect(out.rejectReason).toMatch(/^rejected 7 of 7 data points: .*min is NaN, not a finite number \(×2\);.*; and 1 other reasons$/);
  });
});
