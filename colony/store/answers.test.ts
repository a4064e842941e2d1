import { timestampMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { explainAnswer, groupByAttributeAnswer, traceAnswer, type ExplainValue, type StoredSpan } from "./answers.js";
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

describe("explainAnswer", () => {
  const fast = bucketIndex(1e7);
  const slow = bucketIndex(2e9);
  const value = (key: string, v: string, sel_n: number, base_n: number, bytes = v.length): ExplainValue => ({ key, value: v, bytes, sel_n, base_n });

  it("ranks by score, then selected count, key, value (in code units, where an emoji, a surrogate pair, comes before U+FFFF, unlike in UTF-8) and length; measures only the best", async () => {
    const asked: string[][] = [];
    const e = await explainAnswer(
      {
        total: 100,
        selected: 10,
        keyCount: 70,
        values: [
          value("pod", "p-1", 5, 0),
          value("pod", "p-2", 5, 0),
          value("zone", "a", 10, 10),
          value("ver", "\u{1F680}", 4, 0),
          value("ver", "\uFFFF", 4, 0),
          value("ver", "x".repeat(300), 4, 0, 9000),
          value("ver", "x".repeat(300), 4, 0, 8000),
          value("tier", "gold", 1, 90), // less common among the selected than the rest: no cause
        ],
      },
      6,
      async (ranked) => {
        asked.push(ranked.map((r) => `${r.key}=${r.value.slice(0, 3)}/${r.bytes}`));
        return { window: [[fast, 90, 0], [slow, 10, 5]], values: ranked.map(() => ({ buckets: [[slow, 10, 5]], exemplars: ["t1"] })) };
      },
    );
    expect(asked).toEqual([["zone=a/1", "pod=p-1/3", "pod=p-2/3", "ver=xxx/8000", "ver=xxx/9000", "ver=\u{1F680}/2"]]);
    expect(e.rows.map((r) => [r.key, r.valueTruncated, r.value.length])).toEqual([
      ["zone", false, 1],
      ["pod", false, 3],
      ["pod", false, 3],
      ["ver", true, 256],
      ["ver", true, 256],
      ["ver", false, 2],
    ]);
    expect([e.total, e.selected, e.keyCount, e.keysExamined]).toEqual([100, 10, 70, 64]);
    // Without the value: the window's buckets minus its own.
    expect(e.rows[1]).toMatchObject({ selected: 5n, baseline: 0n, selectedShare: 0.5, baselineShare: 0, score: 0.5, errorRateWith: 0.5, errorRateWithout: 0, exemplarTraceIds: ["t1"] });
    expect(e.rows[1]!.p99WithNs).toBe(bucketValue(slow));
    expect(e.rows[1]!.p99WithoutNs).toBe(bucketValue(fast));
  });

  it("nothing selected, everything selected, or no value more common among the selected: no causes, nothing measured", async () => {
    const never = async (): Promise<never> => {
      throw new Error("measured");
    };
    const values = [value("k", "v", 1, 1)];
    expect(await explainAnswer({ total: 10, selected: 0, keyCount: 1, values }, 5, never)).toEqual({ total: 10, selected: 0, keyCount: 1, keysExamined: 1, rows: [] });
    expect((await explainAnswer({ total: 10, selected: 10, keyCount: 1, values }, 5, never)).rows).toEqual([]);
    expect((await explainAnswer({ total: 10, selected: 2, keyCount: 1, values: [value("k", "v", 1, 4)] }, 5, never)).rows).toEqual([]);
  });
});
