import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ExportTraceServiceRequestSchema } from "../../../gen/opentelemetry/proto/collector/trace/v1/trace_service_pb.js";
import { AnyValueSchema, KeyValueSchema } from "../../../gen/opentelemetry/proto/common/v1/common_pb.js";
import { Span_SpanKind, SpanSchema } from "../../../gen/opentelemetry/proto/trace/v1/trace_pb.js";
import { DemoTraffic } from "../../demo/demo.js";
import { encodeTraces } from "../../demo/load.js";
import { Store } from "../../store/store.js";
import { Writer, type WriterOptions } from "../writer.js";
import type { SpanRecord } from "../records.js";
import { BackpressureError, IngestPipeline, UnavailableError } from "./pipeline.js";
import { tracesJsonToBinary } from "./receiver.js";
import { decodeTraces, OtlpDecodeError } from "./traces.js";

const NOW_NS = 1_767_225_600_123_456_789n;
const kv = (key: string, value: any) => ({ key, value: { value } });

function request() {
  return create(ExportTraceServiceRequestSchema, {
    resourceSpans: [
      {
        // Spans before the resource on the wire: the decoder must still name their service.
        scopeSpans: [
          {
            scope: { name: "lib", version: "1" },
            spans: [
              {
                traceId: new Uint8Array(16).fill(0xab),
                spanId: new Uint8Array(8).fill(0x01),
                parentSpanId: new Uint8Array(8).fill(0x02),
                traceState: "k=v",
                flags: 0x301,
                name: "GET /ü",
                kind: 2,
                startTimeUnixNano: NOW_NS,
                endTimeUnixNano: NOW_NS + 1_234_567_891n,
                attributes: [
                  kv("s", { case: "stringValue", value: "x\"y" }),
                  kv("b", { case: "boolValue", value: true }),
                  kv("neg", { case: "intValue", value: -42n }),
                  kv("big", { case: "intValue", value: 2n ** 40n }),
                  kv("d", { case: "doubleValue", value: 0.5 }),
                  kv("arr", { case: "arrayValue", value: { values: [{ value: { case: "intValue", value: 1n } }, { value: { case: "stringValue", value: "two" } }] } }),
                  kv("kv", { case: "kvlistValue", value: { values: [kv("inner", { case: "boolValue", value: false })] } }),
                  kv("bytes", { case: "bytesValue", value: new Uint8Array([1, 2, 3]) }),
                  kv("http.response.status_code", { case: "intValue", value: 503n }),
                ],
                droppedAttributesCount: 3,
                status: { code: 2, message: "boom" },
              },
              { traceId: new Uint8Array(16).fill(0xab), spanId: new Uint8Array(8).fill(0x02), name: "root", kind: 3, startTimeUnixNano: NOW_NS, endTimeUnixNano: NOW_NS - 5n },
              // Refused: a span id of the wrong length.
              { traceId: new Uint8Array(16).fill(0xab), spanId: new Uint8Array(4).fill(0x03), name: "bad" },
            ],
          },
        ],
        resource: { attributes: [kv("service.name", { case: "stringValue", value: "svc" }), kv("cloud.region", { case: "stringValue", value: "eu" })] },
      },
      { scopeSpans: [{ spans: [{ traceId: new Uint8Array(16).fill(1), spanId: new Uint8Array(8).fill(1), name: "anon" }] }] },
    ],
  });
}

describe("decodeTraces (the wire decoder)", () => {
  it("rejects a span whose times do not fit the store, and ignores an HTTP status that is no status", () => {
    const now = 1_780_000_000_000_000_000n;
    const span = (id: string, start: bigint, end: bigint, status: number) =>
      create(SpanSchema, {
        traceId: new Uint8Array(16).fill(1),
        spanId: new Uint8Array(8).fill(Number(id)),
        name: "GET /",
        kind: Span_SpanKind.SERVER,
        startTimeUnixNano: start,
        endTimeUnixNano: end,
        attributes: [create(KeyValueSchema, { key: "http.status_code", value: create(AnyValueSchema, { value: { case: "intValue", value: BigInt(status) } }) })],
      });
    const request = create(ExportTraceServiceRequestSchema, {
      resourceSpans: [{ scopeSpans: [{ spans: [
        span("1", now, now + 1_000_000n, 200),
        span("2", 2n ** 63n - 1n, 2n ** 63n - 1n, 200), // would overflow every later rollup merge
        span("3", now, 2n ** 64n - 1n, 200),
        span("4", now, now + 1n, 2 ** 40),
      ] }] }],
    });
    const out = decodeTraces(Buffer.from(toBinary(ExportTraceServiceRequestSchema, request)), 1000);
    expect(out.rejected).toBe(2);
    expect(out.rejectReason).toBe("span start and end times must be before the year 2200");
    expect(out.spans.map((s) => [s.spanId.slice(0, 2), s.httpStatusCode])).toEqual([["01", 200], ["04", null]]);
  });

  it("reads what the generated encoder writes", () => {
    const bytes = Buffer.from(toBinary(ExportTraceServiceRequestSchema, request()));
    const out = decodeTraces(bytes, 1000);
    expect(out.rejected).toBe(1);
    expect(out.spans.map((s) => ({ ...s, attributes: JSON.parse(s.attributes as string) }))).toEqual([
      {
        traceId: "ab".repeat(16),
        spanId: "01".repeat(8),
        parentSpanId: "02".repeat(8),
        serviceName: "svc",
        name: "GET /ü",
        kind: "SERVER",
        startTimeMs: Number(NOW_NS) / 1e6,
        durationNs: 1_234_567_891,
        statusCode: "ERROR",
        httpStatusCode: 503,
        attributes: { s: 'x"y', b: true, neg: -42, big: 2 ** 40, d: 0.5, arr: [1, "two"], kv: { inner: false }, bytes: "AQID", "http.response.status_code": 503 },
        // As span_attributes stores them: strings as they are, everything else as JSON.
        attributeRows: ["s", 'x"y', "b", "true", "neg", "-42", "big", "1099511627776", "d", "0.5", "arr", '[1,"two"]', "kv", '{"inner":false}', "bytes", "AQID", "http.response.status_code", "503"],
        // The resource's attributes but service.name, shared by its spans.
        resourceRows: ["cloud.region", "eu"],
      },
      expect.objectContaining({ spanId: "02".repeat(8), parentSpanId: null, kind: "CLIENT", durationNs: 0, statusCode: "UNSET", httpStatusCode: null, attributes: {}, attributeRows: [], resourceRows: ["cloud.region", "eu"] }),
      expect.objectContaining({ serviceName: "unknown_service", name: "anon", kind: "INTERNAL" }),
    ]);
    expect(out.spans[2]!.resourceRows).toBeUndefined();
    expect(out.spans[0]!.resourceRows).toBe(out.spans[1]!.resourceRows);
    expect(out.spans[0]!.startTimeMs * 1e6).toBeCloseTo(Number(NOW_NS), -3);
    expect(out.resources).toEqual([
      { serviceName: "svc", namespace: "", region: "eu", instanceId: "svc", seenAtMs: 1000 },
      { serviceName: "unknown_service", namespace: "", region: "", instanceId: "unknown_service", seenAtMs: 1000 },
    ]);
  });

  it("throws on every truncation of a valid request instead of reading junk", () => {
    const bytes = Buffer.from(toBinary(ExportTraceServiceRequestSchema, request()));
    let refused = 0;
    for (let n = 1; n < bytes.length; n++) {
      try {
        decodeTraces(bytes.subarray(0, n), 0);
      } catch (err) {
        expect(err).toBeInstanceOf(OtlpDecodeError);
        refused++;
      }
    }
    // A cut can land exactly between two top-level messages; everything else must be refused.
    expect(refused).toBeGreaterThan(bytes.length - 3);
  });

  it("refuses malformed wire data with an OtlpDecodeError that says what is wrong", () => {
    const cases: [string, number[], RegExp][] = [
      ["wire type 7", [0x0f], /illegal tag|wire type/],
      ["field number 0", [0x02, 0x00], /illegal tag/],
      ["a varint longer than 10 bytes", [0x10, ...new Array(11).fill(0xff)], /varint|premature EOF/],
      ["a length past the end", [0x0a, 0x05, 0x00], /length exceeds message/],
      // ResourceSpans of 3 bytes holding ScopeSpans of 2 that start at its 3rd byte: they cross its end.
      ["a field crossing its message's end", [0x0a, 0x03, 0x12, 0x02, 0x08, 0x01], /crosses the end/],
      ["resource_spans as a varint", [0x08, 0x01], /field 1 has wire type 0, expected 2/],
    ];
    for (const [what, bytes, message] of cases) {
      let err: unknown;
      try {
        decodeTraces(Buffer.from(bytes), 0);
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(OtlpDecodeError);
      expect((err as Error).message, what).toMatch(message);
    }
  });

  it("reads OTLP JSON (hex ids, lowerCamelCase, int64 as strings) to the same spans", () => {
    const json = JSON.stringify({
      resourceSpans: [
        {
          resource: { attributes: [{ key: "service.name", value: { stringValue: "svc" } }] },
          scopeSpans: [
            {
              spans: [
                {
                  traceId: "ab".repeat(16),
                  spanId: "01".repeat(8),
                  name: "GET /",
                  kind: 2,
                  startTimeUnixNano: String(NOW_NS),
                  endTimeUnixNano: String(NOW_NS + 10n),
                  attributes: [{ key: "n", value: { intValue: "7" } }],
                  status: { code: 1 },
                  someFutureField: { ignored: true },
                },
              ],
            },
          ],
        },
      ],
    });
    const [s] = decodeTraces(tracesJsonToBinary(Buffer.from(json)), 0).spans;
    expect(s).toMatchObject({ traceId: "ab".repeat(16), spanId: "01".repeat(8), serviceName: "svc", kind: "SERVER", durationNs: 10, statusCode: "OK", attributes: '{"n":7}' });
  });
});

describe("encodeTraces (coral demo load's encoder)", () => {
  it("writes requests the generated schema and the decoder both read back exactly", () => {
    const spans = new DemoTraffic(3).trace(Date.UTC(2026, 0, 1));
    const bytes = encodeTraces([{ resource: { serviceName: "frontend", namespace: "web", region: "r", instanceId: "frontend-0" }, spans }]);
    const msg = fromBinary(ExportTraceServiceRequestSchema, bytes);
    expect(msg.resourceSpans[0]!.scopeSpans[0]!.spans).toHaveLength(spans.length);
    const back = decodeTraces(bytes, 0).spans;
    const norm = ({ attributeRows: _rows, resourceRows: _resource, ...s }: SpanRecord) => {
      const attrs = typeof s.attributes === "string" ? JSON.parse(s.attributes) : { ...s.attributes };
      delete attrs["service.instance.id"];
      // The encoder carries every span's HTTP status as an attribute (the demo's CLIENT spans keep it in a field).
      if (s.httpStatusCode !== null) attrs["http.status_code"] = s.httpStatusCode;
      return { ...s, serviceName: "frontend", startTimeMs: Math.round(s.startTimeMs * 1000), attributes: attrs };
    };
    expect(back.map(norm)).toEqual(spans.map(norm));
  });
});

describe("IngestPipeline", () => {
  function stubWriter() {
    const calls: number[] = [];
    // Each commit waits for one permit, whether it arrives before or after the commit starts.
    let permits = 0;
    const waiting: (() => void)[] = [];
    const writer = {
      writeResources: async () => {},
      writeHostSamples: async () => {},
      writeLatency: async () => {},
      prepareSpans: (spans: SpanRecord[]) => ({ count: spans.length }),
      writePrepared: async (parts: { count: number }[]) => {
        calls.push(parts.reduce((n, p) => n + p.count, 0));
        if (permits > 0) permits--;
        else await new Promise<void>((r) => waiting.push(r));
      },
    };
    return {
      writer: writer as unknown as Writer,
      calls,
      open() {
        const next = waiting.shift();
        if (next) next();
        else permits++;
      },
    };
  }
  const spans = (n: number) =>
    Array.from({ length: n }, (_, i): SpanRecord => ({
      traceId: "ab".repeat(16), spanId: i.toString(16).padStart(16, "0"), parentSpanId: null, serviceName: "svc", name: "op",
      kind: "SERVER", startTimeMs: Date.UTC(2026, 0, 1), durationNs: 1e6, statusCode: "OK", httpStatusCode: null, attributes: "{}",
    }));

  it("commits what queued during a commit as one batch, and refuses beyond the bound", async () => {
    const w = stubWriter();
    const p = new IngestPipeline(w.writer, { maxQueued: 1000, maxBatch: 10_000 });
    const first = p.submit({ spans: spans(100) });
    await Promise.resolve();
    const more = [p.submit({ spans: spans(300) }), p.submit({ spans: spans(300) })];
    await expect(p.submit({ spans: spans(400) })).rejects.toBeInstanceOf(BackpressureError);
    w.open();
    await first;
    w.open();
    await Promise.all(more);
    expect(w.calls).toEqual([100, 600]);
    const closing = p.close();
    await expect(p.submit({ spans: spans(1) })).rejects.toBeInstanceOf(UnavailableError);
    await closing;
  });
});

describe("Writer: incremental rollups equal a recompute from raw spans", () => {
  // The pipeline prepares each request on arrival and commits several in one transaction; a part's
  // contributions must merge with the others' exactly as separate commits would.
  it.each([
    ["one batch per commit", async (writer: Writer, batches: SpanRecord[][]) => {
      for (const b of batches) await writer.writeSpans(b);
    }],
    ["prepared batches, three per commit", async (writer: Writer, batches: SpanRecord[][]) => {
      const parts = batches.map((b) => writer.prepareSpans(b));
      for (let i = 0; i < parts.length; i += 3) await writer.writePrepared(parts.slice(i, i + 3));
    }],
    // Commits queued all at once while merges of ~2 commits each run beside them on the other lane.
    ["commits racing merges", async (writer: Writer, batches: SpanRecord[][]) => {
      await Promise.all(batches.map((b) => writer.writeSpans(b)));
    }, { rollupMaxSpans: 1000, rollupDelayMs: 0 }],
  ] as [string, (w: Writer, b: SpanRecord[][]) => Promise<void>, WriterOptions?][])("%s: gives the same rows either way, and recomputing twice changes nothing", async (_name, write, options) => {
    const dir = mkdtempSync(join(tmpdir(), "coral-otlp-"));
    const store = await Store.open(join(dir, "coral.duckdb"));
    const writer = new Writer(store, options);
    try {
      const traffic = new DemoTraffic(11);
      const t0 = Date.UTC(2026, 0, 1, 12);
      const all: SpanRecord[] = [];
      for (let i = 0; i < 600; i++) all.push(...traffic.trace(t0 + i * 400));
      // Out of order and split across batches: children before parents, minutes revisited.
      all.reverse();
      const batches: SpanRecord[][] = [];
      for (let i = 0; i < all.length; i += 777) batches.push(all.slice(i, i + 777));
      await write(writer, batches);
      const snapshot = async () => {
        const c = await store.connect();
        try {
          const q = async (text: string) => (await c.runAndReadAll(text)).getRowsJS();
          return {
            summary: await q("SELECT timestamp, service_name, metric, request_count, error_count, sum_duration_ns, min_duration_ns, max_duration_ns FROM service_summary ORDER BY ALL"),
            buckets: await q("SELECT * FROM service_latency_buckets ORDER BY ALL"),
            traces: await q("SELECT * FROM trace_summary ORDER BY ALL"),
            pending: await q("SELECT count(*) FROM rollup_pending"),
          };
        } finally {
          c.closeSync();
        }
      };
      await writer.settle();
      const incremental = await snapshot();
      expect(incremental.pending).toEqual([[0n]]);
      expect(incremental.traces.length).toBeGreaterThan(600);
      await writer.recompute(t0 - 60_000, t0 + 600 * 400 + 60_000);
      expect(await snapshot()).toEqual(incremental);
      await writer.recompute(t0 - 60_000, t0 + 600 * 400 + 60_000);
      expect(await snapshot()).toEqual(incremental);
    } finally {
      await writer.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("Writer: parent links that form a cycle", () => {
  it("store the batch, with the service's earliest span as its root, as a recompute has it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "coral-cycle-"));
    const store = await Store.open(join(dir, "coral.duckdb"));
    const writer = new Writer(store);
    try {
      const t0 = Date.UTC(2026, 0, 1, 12);
      const span = (id: string, parent: string, offsetMs: number, durationNs: number): SpanRecord => ({
        traceId: "c".repeat(32), spanId: id.repeat(16), parentSpanId: parent.repeat(16), serviceName: "loop", name: `op-${id}`,
        kind: "INTERNAL", startTimeMs: t0 + offsetMs, durationNs, statusCode: "UNSET", httpStatusCode: null, attributes: {},
      });
      // a → b → a: no span of the service lacks a parent of the same service.
      await writer.writeSpans([span("b", "a", 5, 50e6), span("a", "b", 2, 10e6)]);
      const row = async () => {
        const c = await store.connect();
        try {
          return (await c.runAndReadAll("SELECT root_name, epoch_us(timestamp), duration_ns, span_count FROM trace_summary")).getRowsJS();
        } finally {
          c.closeSync();
        }
      };
      await writer.settle();
      const incremental = await row();
      expect(incremental).toEqual([["op-a", BigInt((t0 + 2) * 1000), 53_000_000n, 2]]);
      await writer.recompute(t0 - 60_000, t0 + 60_000);
      expect(await row()).toEqual(incremental);
    } finally {
      await writer.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
