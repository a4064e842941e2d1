import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { ExportMetricsServiceRequestSchema, ExportMetricsServiceResponseSchema } from "../../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { ExportTraceServiceRequestSchema, ExportTraceServiceResponseSchema } from "../../../gen/opentelemetry/proto/collector/trace/v1/trace_service_pb.js";
import { BackpressureError, InvalidDataError, UnavailableError, type IngestPart, type IngestPipeline } from "./pipeline.js";
import { listenOtlp, type OtlpReceiver } from "./receiver.js";

const T = 1_767_225_600_000_000_000n;

/** A pipeline that stores nothing: it records what it was given, or fails as told. */
function stubPipeline() {
  const parts: IngestPart[] = [];
  let failWith: Error | undefined;
  return {
    parts,
    failNext(err: Error) {
      failWith = err;
    },
    pipeline: {
      submit: async (p: IngestPart) => {
        const err = failWith;
        failWith = undefined;
        if (err) throw err;
        parts.push(p);
      },
    } as unknown as IngestPipeline,
  };
}

let receiver: OtlpReceiver | undefined;
afterEach(async () => {
  await receiver?.close();
  receiver = undefined;
});

async function start(stub: ReturnType<typeof stubPipeline>) {
  receiver = await listenOtlp({ host: "127.0.0.1", port: 0, pipeline: stub.pipeline, maxBodyBytes: 1 << 20, requestLimits: { maxSpans: 10, maxPoints: 10, maxMessages: 200, maxDepth: 12 } });
  return `http://127.0.0.1:${receiver.address.port}`;
}

async function post(url: string, body: Uint8Array | string, type = "application/x-protobuf", headers: Record<string, string> = {}) {
  const r = await fetch(url, { method: "POST", body: typeof body === "string" ? body : new Uint8Array(body), headers: { "content-type": type, ...headers } });
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()), headers: r.headers };
}

const span = (n: number, extra: Record<string, unknown> = {}) => ({ traceId: new Uint8Array(16).fill(n), spanId: new Uint8Array(8).fill(n), startTimeUnixNano: T, endTimeUnixNano: T + 5n, ...extra });
const traces = (spans: Record<string, unknown>[]) => toBinary(ExportTraceServiceRequestSchema, create(ExportTraceServiceRequestSchema, { resourceSpans: [{ scopeSpans: [{ spans: spans as never }] }] }));
const metrics = (points: Record<string, unknown>[]) =>
  toBinary(
    ExportMetricsServiceRequestSchema,
    create(ExportMetricsServiceRequestSchema, { resourceMetrics: [{ scopeMetrics: [{ metrics: [{ name: "system.cpu.utilization", data: { case: "gauge", value: { dataPoints: points as never } } }] }] }] }),
  );
const point = (v: number) => ({ timeUnixNano: T, value: { case: "asDouble", value: v } });

/** google.rpc.Status.message of an error body. */
function statusMessage(body: Buffer): string {
  let i = 0;
  while (i < body.length && body[i] !== 0x12) i++;
  let len = 0;
  let shift = 0;
  for (i++; ; i++) {
    len |= (body[i]! & 0x7f) << shift;
    shift += 7;
    if (body[i]! < 0x80) break;
  }
  return body.subarray(i + 1, i + 1 + len).toString("utf8");
}

describe("OTLP receiver: status codes follow the OTLP/HTTP spec", () => {
  it("200 with partial success when some items are refused, listing why; the rest goes to the pipeline", async () => {
    const stub = stubPipeline();
    const url = await start(stub);
    const r = await post(`${url}/v1/metrics`, metrics([point(0.5), point(NaN), point(0.25)]));
    expect(r.status).toBe(200);
    const res = fromBinary(ExportMetricsServiceResponseSchema, r.body);
    expect(res.partialSuccess).toMatchObject({ rejectedDataPoints: 1n, errorMessage: "rejected 1 of 3 data points: system.cpu.utilization: value is NaN, not a finite number (×1)" });
    expect(stub.parts[0]!.hostSamples).toHaveLength(1);

    const t = await post(`${url}/v1/traces`, traces([span(1), span(2, { spanId: new Uint8Array(3) })]));
    expect(t.status).toBe(200);
    expect(fromBinary(ExportTraceServiceResponseSchema, t.body).partialSuccess).toMatchObject({ rejectedSpans: 1n, errorMessage: expect.stringMatching(/^rejected 1 of 2 spans: /) });
    // Full success leaves partial_success unset.
    const ok = await post(`${url}/v1/traces`, traces([span(1)]));
    expect(fromBinary(ExportTraceServiceResponseSchema, ok.body).partialSuccess).toBeUndefined();
  });

  it("400 when nothing valid is left (bad data the client must not retry), and nothing reaches the pipeline", async () => {
    const stub = stubPipeline();
    const url = await start(stub);
    const m = await post(`${url}/v1/metrics`, metrics([point(NaN), point(-Infinity)]));
    expect(m.status).toBe(400);
    expect(statusMessage(m.body)).toMatch(/^rejected 2 of 2 data points: system\.cpu\.utilization: value is NaN/);
    const t = await post(`${url}/v1/traces`, JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: "00".repeat(16), spanId: "01".repeat(8) }] }] }] }), "application/json");
    expect(t.status).toBe(400);
    expect(JSON.parse(t.body.toString())).toMatchObject({ code: 3, message: expect.stringMatching(/^rejected 1 of 1 spans/) });
    // An empty request is a success, as the spec asks.
    expect((await post(`${url}/v1/metrics`, new Uint8Array())).status).toBe(200);
    expect(stub.parts.map((p) => p.hostSamples?.length ?? 0)).toEqual([0]);
  });

  it("413 past a count limit, with what to do; 400 past the depth limit — in every encoding", async () => {
    const stub = stubPipeline();
    const url = await start(stub);
    const many = traces(Array.from({ length: 11 }, (_, i) => span(i + 1)));
    for (const [body, headers] of [[many, {}], [gzipSync(many), { "content-encoding": "gzip" }]] as const) {
      const r = await post(`${url}/v1/traces`, body, "application/x-protobuf", headers);
      expect(r.status).toBe(413);
      expect(statusMessage(r.body)).toMatch(/more than 10 spans: send smaller batches/);
    }
    const json = JSON.stringify({ resourceMetrics: [{ scopeMetrics: [{ metrics: [{ name: "x", gauge: { dataPoints: Array.from({ length: 11 }, () => ({ timeUnixNano: "1", asDouble: 1 })) } }] }] }] });
    expect((await post(`${url}/v1/metrics`, json, "application/json")).status).toBe(413);
    let value: unknown = { stringValue: "x" };
    for (let i = 0; i < 10; i++) value = { arrayValue: { values: [value] } };
    const deep = JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: "ab".repeat(16), spanId: "01".repeat(8), attributes: [{ key: "k", value }] }] }] }] });
    const d = await post(`${url}/v1/traces`, deep, "application/json");
    expect(d.status).toBe(400);
    expect(JSON.parse(d.body.toString()).message).toMatch(/levels deep/);
    expect(stub.parts).toEqual([]);
  });

  it("503 and 429 only for the colony's own trouble; data the store refuses is 400", async () => {
    const stub = stubPipeline();
    const url = await start(stub);
    for (const [err, status, retryAfter] of [
      [new UnavailableError("the colony is shutting down"), 503, "5"],
      [new BackpressureError("ingest queue full"), 429, "1"],
      [new InvalidDataError("the colony cannot store this request"), 400, null],
    ] as const) {
      stub.failNext(err);
      const r = await post(`${url}/v1/traces`, traces([span(1)]));
      expect(r.status).toBe(status);
      expect(r.headers.get("retry-after")).toBe(retryAfter);
    }
  });
});
