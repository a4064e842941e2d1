import { timestampMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { groupByAttributeAnswer, traceAnswer, type StoredSpan } from "./answers.js";
import { bucketIndex, bucketValue } from "./sketch.js";

const span = (over: Partial<StoredSpan>): StoredSpan => ({
  span_id: "s1",
  parent_span_id: null,
  service_name: "api",
  name: "GET /",
  kind: "SERVER",
  start_us: 1_700_000_000_123_456,
  duration_ns: 5_000_000,
  status_code: "OK",
  http_status_code: 200,
  attributes: "{}",
  resource_attributes: "{}",
  ...over,
});

describe("traceAnswer", () => {
  it("an unknown trace is total_count 0 and no spans", () => {
    const t = traceAnswer("ab".repeat(16), [], undefined);
    expect([t.traceId, t.totalCount, t.spans, t.startTime]).toEqual(["ab".repeat(16), 0n, [], undefined]);
  });

  it("offsets from the trace's start in ns, times to the µs, failed by status or 5xx, cut when spans are missing", () => {
    const start = 1_700_000_000_123_456;
    const t = traceAnswer(
      "t",
      [span({ span_id: "a" }), span({ span_id: "b", parent_span_id: "a", start_us: start + 7, status_code: "UNSET", http_status_code: 503 }), span({ span_id: "c", status_code: "ERROR", http_status_code: null })],
      { total: 4, trace_start_us: start, trace_duration_ns: 5_000_007.4 },
    );
    expect(t.spans.map((s) => [s.spanId, s.parentSpanId, s.startOffsetNs, s.error, s.httpStatusCode])).toEqual([
      ["a", "", 0n, false, 200],
      ["b", "a", 7000n, true, 503],
      ["c", "", 0n, true, undefined],
    ]);
    expect(t.spans[1]!.startTime).toMatchObject({ seconds: 1_700_000_000n, nanos: 123_463_000 });
    expect(timestampMs(t.startTime!)).toBe(1_700_000_000_123);
    expect([t.durationNs, t.totalCount, t.truncated]).toEqual([5_000_007n, 4n, true]);
  });

  it("resource attributes: by key whatever the engine's order, the span's own key wins, unreadable text is none", () => {
    const t = traceAnswer(
      "t",
      [
        span({ attributes: '{"shared":"own","z":1}', resource_attributes: '{"zz":"1","shared":"res","a.b":"2","10":"x","2":"y"}' }),
        span({ span_id: "s2", attributes: "[1,2]", resource_attributes: "{not json" }),
      ],
      { total: 2, trace_start_us: 1_700_000_000_123_456, trace_duration_ns: 5e6 },
    );
    expect(Object.entries(t.spans[0]!.resourceAttributes!)).toEqual([["2", "y"], ["10", "x"], ["a.b", "2"], ["zz", "1"]]);
    expect(t.spans[0]!.attributes).toEqual({ shared: "own", z: 1 });
    expect([t.spans[1]!.attributes, t.spans[1]!.resourceAttributes]).toEqual([{}, {}]);
  });
});

describe("groupByAttributeAnswer", () => {
  const b = bucketIndex(1e6);
  it("most requests first, ties by value, absent after values, other last with its folded count", () => {
    const r = groupByAttributeAnswer(
      [
        { value: "b", other: false, bucket: b, n: 5, errors: 1 },
        { value: null, other: true, bucket: b, n: 50, errors: 0 },
        { value: null, other: false, bucket: b, n: 5, errors: 5 },
        { value: "a", other: false, bucket: b, n: 3, errors: 0 },
        { value: "a", other: false, bucket: b + 1, n: 2, errors: 0 },
        { value: "c", other: false, bucket: b, n: 9, errors: 0 },
      ],
      7,
    );
    expect(r.groups.map((g) => [g.value, g.other, g.requestCount, g.errorCount])).toEqual([
      ["c", false, 9n, 0n],
      ["a", false, 5n, 0n],
      ["b", false, 5n, 1n],
      [undefined, false, 5n, 5n],
      ["(3 other values)", true, 50n, 0n],
    ]);
    expect([r.requestCount, r.valueCount]).toEqual([74n, 7n]);
    expect(r.groups[2]!.errorRate).toBe(0.2);
    expect(r.groups[0]!.p99Ns).toBe(bucketValue(b));
  });

  it("one folded value is singular; no rows is no groups", () => {
    const r = groupByAttributeAnswer([{ value: "a", other: false, bucket: b, n: 1, errors: 0 }, { value: null, other: true, bucket: b, n: 1, errors: 0 }], 2);
    expect(r.groups[1]!.value).toBe("(1 other value)");
    expect(groupByAttributeAnswer([], 0)).toMatchObject({ groups: [], requestCount: 0n, valueCount: 0n });
  });
});
