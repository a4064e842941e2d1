import { create, toBinary, toJson, type JsonValue } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ExportMetricsServiceRequestSchema } from "../../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { ExportTraceServiceRequestSchema } from "../../../gen/opentelemetry/proto/collector/trace/v1/trace_service_pb.js";
import { decodeRequest } from "./decode.js";
import { countJson, DEFAULT_REQUEST_LIMITS, LimitError, OtlpDecodeError, scanJsonText, scanProtobuf, Tally, type RequestLimits } from "./limits.js";
import { decodeTraces } from "./traces.js";

const limits = (o: Partial<RequestLimits> = {}): RequestLimits => ({ ...DEFAULT_REQUEST_LIMITS, ...o });
const str = (v: string) => ({ value: { case: "stringValue" as const, value: v } });
const ids = (n: number) => ({ traceId: new Uint8Array(16).fill(n), spanId: new Uint8Array(8).fill(n) });

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
/** A length-delimited field. */
const ld = (field: number, payload: Buffer) => Buffer.concat([Buffer.from([...varint((field << 3) | 2), ...varint(payload.length)]), payload]);

/** 19 messages, 3 of them spans, 8 levels deep at the deepest (span → attribute → array → value). */
function traces() {
  return create(ExportTraceServiceRequestSchema, {
    resourceSpans: [
      {
        resource: { attributes: [{ key: "service.name", value: str("svc") }] },
        scopeSpans: [
          {
            scope: { name: "lib" },
            spans: [
              {
                ...ids(1),
                attributes: [
                  { key: "a", value: str("x") },
                  { key: "arr", value: { value: { case: "arrayValue", value: { values: [str("1"), str("2")] } } } },
                ],
              },
              { ...ids(2), attributes: [{ key: "k", value: str("v") }], status: { code: 2 } },
              ids(3),
            ],
          },
        ],
      },
    ],
  });
}

/** 3 data points (a gauge point, a histogram point, an exponential one) with 5 bucket counts + 1 bound + 2 exponential counts. */
function metrics() {
  return create(ExportMetricsServiceRequestSchema, {
    resourceMetrics: [
      {
        scopeMetrics: [
          {
            metrics: [
              { name: "g", data: { case: "gauge", value: { dataPoints: [{ timeUnixNano: 1n, value: { case: "asDouble", value: 1 } }] } } },
              { name: "h", data: { case: "histogram", value: { dataPoints: [{ count: 3n, bucketCounts: [1n, 2n], explicitBounds: [5] }] } } },
              { name: "e", data: { case: "exponentialHistogram", value: { dataPoints: [{ count: 3n, positive: { offset: 1, bucketCounts: [1n, 2n] } }] } } },
            ],
          },
        ],
      },
    ],
  });
}

describe("scanProtobuf / countJson: what a request would build, counted before it is built", () => {
  it("count every message, span, point and repeated number, in protobuf and in JSON alike", () => {
    const t = new Tally(limits());
    scanProtobuf(toBinary(ExportTraceServiceRequestSchema, traces()), ExportTraceServiceRequestSchema, t);
    expect({ messages: t.messages, spans: t.spans, points: t.points, values: t.values }).toEqual({ messages: 19, spans: 3, points: 0, values: 0 });
    const j = new Tally(limits());
    countJson(toJson(ExportTraceServiceRequestSchema, traces()), ExportTraceServiceRequestSchema, j);
    expect({ messages: j.messages, spans: j.spans }).toEqual({ messages: 19, spans: 3 });

    // ResourceMetrics, ScopeMetrics, 3 Metric, Gauge, Histogram, ExponentialHistogram, 3 points, Buckets.
    const m = new Tally(limits());
    scanProtobuf(toBinary(ExportMetricsServiceRequestSchema, metrics()), ExportMetricsServiceRequestSchema, m);
    expect({ messages: m.messages, points: m.points, values: m.values }).toEqual({ messages: 12, points: 3, values: 5 });
    const mj = new Tally(limits());
    countJson(toJson(ExportMetricsServiceRequestSchema, metrics()), ExportMetricsServiceRequestSchema, mj);
    expect({ messages: mj.messages, points: mj.points, values: mj.values }).toEqual({ messages: 12, points: 3, values: 5 });
  });

  it("refuse past each limit: 413 for counts (smaller batches pass), 400 for depth (no batch size helps)", () => {
    const cases: [Partial<RequestLimits>, number, RegExp][] = [
      [{ maxSpans: 2 }, 413, /more than 2 spans: send smaller batches/],
      [{ maxMessages: 18 }, 413, /more than 18 messages/],
      [{ maxDepth: 6 }, 400, /more than 6 levels deep/],
    ];
    for (const [l, status, message] of cases) {
      let err: unknown;
      try {
        scanProtobuf(toBinary(ExportTraceServiceRequestSchema, traces()), ExportTraceServiceRequestSchema, new Tally(limits(l)));
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(l)).toBeInstanceOf(LimitError);
      expect((err as LimitError).status).toBe(status);
      expect((err as Error).message).toMatch(message);
    }
    // The same request passes at exactly its own size and depth (8: request, ResourceSpans, ScopeSpans, Span, KeyValue, AnyValue, ArrayValue, AnyValue).
    scanProtobuf(toBinary(ExportTraceServiceRequestSchema, traces()), ExportTraceServiceRequestSchema, new Tally(limits({ maxSpans: 3, maxMessages: 19, maxDepth: 8 })));
    expect(() => scanProtobuf(toBinary(ExportMetricsServiceRequestSchema, metrics()), ExportMetricsServiceRequestSchema, new Tally(limits({ maxPoints: 2 })))).toThrow(/more than 2 data points/);
    expect(() => scanProtobuf(toBinary(ExportMetricsServiceRequestSchema, metrics()), ExportMetricsServiceRequestSchema, new Tally(limits({ maxValues: 4 })))).toThrow(/more than 4 repeated numbers/);
  });

  it("count packed varints one per value, however they are encoded, and refuse 16 MiB of 1-byte bucket counts at the limit", () => {
    // ExponentialHistogram point whose positive bucket counts are 16 MiB of packed 1-byte varints (16M BigInts if decoded).
    const counts = Buffer.alloc(16 * 1024 * 1024, 1);
    const body = ld(1, ld(2, ld(2, Buffer.concat([ld(1, Buffer.from("x")), ld(10, ld(1, ld(8, ld(2, counts))))]))));
    const tally = new Tally(limits());
    expect(() => scanProtobuf(body, ExportMetricsServiceRequestSchema, tally)).toThrow(/more than 2000000 repeated numbers/);
    // Counted as one packed run, byte by byte, before any of it would be decoded.
    expect(tally.values).toBe(counts.length);
    // Multi-byte varints count once each: 300 = [0xac, 0x02].
    const t = new Tally(limits());
    scanProtobuf(ld(1, ld(2, ld(2, ld(10, ld(1, ld(8, ld(2, Buffer.from([0xac, 0x02, 0x01, 0xac, 0x02])))))))), ExportMetricsServiceRequestSchema, t);
    expect(t.values).toBe(3);
  });

  it("refuse 16 MiB of 2-byte empty spans at the 100,001st, without decoding any", () => {
    const body = ld(1, ld(2, Buffer.alloc(16 * 1024 * 1024 - 16, Buffer.from([0x12, 0x00]))));
    const tally = new Tally(limits());
    expect(() => scanProtobuf(body, ExportTraceServiceRequestSchema, tally)).toThrow(/more than 100000 spans/);
    // Stopped at the limit, not at the end of the ~8 M spans the body holds (how fast: bench/, not here).
    expect(tally.spans).toBe(100_001);
    expect(() => decodeTraces(body, 0)).toThrow(/more than 100000 spans/);
  });

  it("refuse what is not protobuf with OtlpDecodeError, as the decoder would", () => {
    for (const bytes of [[0x0a, 0x05, 0x00], [0x0f], [0x02, 0x00], [0x0a, 0x80], [0x1b, 0x08, 0x01]]) {
      expect(() => scanProtobuf(Buffer.from(bytes), ExportTraceServiceRequestSchema, new Tally(limits())), JSON.stringify(bytes)).toThrow(OtlpDecodeError);
    }
  });
});

describe("scanJsonText: depth and brackets before JSON.parse", () => {
  it("skips strings (brackets and escaped quotes inside them count for nothing)", () => {
    const text = JSON.stringify({ a: '[[[{{{"\\\\"', b: ["\\", '"', "]]]"], c: [[[1]]] });
    expect(() => scanJsonText(Buffer.from(text), limits({ maxDepth: 2 }))).not.toThrow(); // depth 4, 2 × 2 allowed
    expect(() => scanJsonText(Buffer.from(text), limits({ maxDepth: 1 }))).toThrow(/JSON nested more than 2 levels/);
    expect(() => scanJsonText(Buffer.from(text), limits({ maxMessages: 2 }))).toThrow(/more than 4 JSON objects and arrays/);
    expect(() => scanJsonText(Buffer.from(text), limits({ maxMessages: 3 }))).not.toThrow(); // 5 containers, 6 allowed
  });

  it("refuses 16 MiB of [[[[…]]]] and of {},{},… before parsing them", () => {
    const deep = Buffer.concat([Buffer.alloc(8 * 1024 * 1024, "["), Buffer.alloc(8 * 1024 * 1024, "]")]);
    expect(() => scanJsonText(deep, limits())).toThrow(expect.objectContaining({ status: 400 }));
    const wide = Buffer.from('{"resourceSpans":[{"scopeSpans":[{"spans":[' + "{},".repeat(5_500_000) + "{}]}]}]}");
    // A throw at the 2 × maxMessages + 1st container: the scan stops there, the other millions unread.
    expect(() => scanJsonText(wide, limits())).toThrow(expect.objectContaining({ status: 413, message: expect.stringMatching(/more than \d+ JSON objects/) }));
  });
});

describe("decodeRequest: limits apply to every path (protobuf and JSON, traces and metrics)", () => {
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  it("counts JSON before building messages", () => {
    const spans = Array.from({ length: 5 }, (_, i) => ({ traceId: "ab".repeat(16), spanId: (i + 1).toString(16).padStart(16, "0") }));
    const body = json({ resourceSpans: [{ scopeSpans: [{ spans }] }] });
    expect(decodeRequest("traces", "json", body, 0, limits({ maxSpans: 5 })).part.spans).toHaveLength(5);
    expect(() => decodeRequest("traces", "json", body, 0, limits({ maxSpans: 4 }))).toThrow(/more than 4 spans/);
    const points = Array.from({ length: 5 }, () => ({ timeUnixNano: "1", asDouble: 1 }));
    const mbody = json({ resourceMetrics: [{ scopeMetrics: [{ metrics: [{ name: "x", gauge: { dataPoints: points } }] }] }] });
    expect(decodeRequest("metrics", "json", mbody, 0, limits({ maxPoints: 5 })).items).toBe(5);
    expect(() => decodeRequest("metrics", "json", mbody, 0, limits({ maxPoints: 4 }))).toThrow(/more than 4 data points/);
    expect(() => decodeRequest("metrics", "protobuf", Buffer.from(toBinary(ExportMetricsServiceRequestSchema, metrics())), 0, limits({ maxPoints: 2 }))).toThrow(/more than 2 data points/);
  });

  it("refuses attribute values nested past the depth limit, in the span decoder too (no stack overflow)", () => {
    let value: JsonValue = { stringValue: "leaf" };
    for (let i = 0; i < 40; i++) value = { arrayValue: { values: [value] } };
    const span = { traceId: "ab".repeat(16), spanId: "01".repeat(8), attributes: [{ key: "deep", value }] };
    const body = json({ resourceSpans: [{ scopeSpans: [{ spans: [span] }] }] });
    expect(() => decodeRequest("traces", "json", body, 0)).toThrow(expect.objectContaining({ status: 400, message: expect.stringMatching(/levels deep/) }));
    // The wire decoder counts the same levels: 2 000 levels deep, far past any stack's patience.
    let v = Buffer.from([0x0a, 0x01, 0x78]); // AnyValue{string_value: "x"}
    for (let i = 0; i < 2_000; i++) v = ld(5, ld(1, v));
    const spanBytes = Buffer.concat([ld(1, Buffer.alloc(16, 1)), ld(2, Buffer.alloc(8, 1)), ld(9, Buffer.concat([ld(1, Buffer.from("k")), ld(2, v)]))]);
    expect(() => decodeTraces(ld(1, ld(2, ld(2, spanBytes))), 0)).toThrow(expect.objectContaining({ status: 400 }));
  });
});
