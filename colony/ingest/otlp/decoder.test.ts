// The decode thread runs the bundle's entry (dist/cli/otlp-decode-worker.mjs, built by the test
// setup): what it hands back must be what decodeRequest gives inline, errors included.
import { create, toBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { ExportMetricsServiceRequestSchema } from "../../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { decodeRequest } from "./decode.js";
import { OffThreadDecoder } from "./decoder.js";
import { DEFAULT_REQUEST_LIMITS, LimitError, OtlpDecodeError } from "./limits.js";

const script = new URL("../../../dist/cli/otlp-decode-worker.mjs", import.meta.url);
let decoder: OffThreadDecoder | undefined;
afterEach(async () => {
  await decoder?.close();
});

function metricsBody(points: number): Buffer {
  const now = BigInt(Date.now()) * 1_000_000n;
  const dataPoints = Array.from({ length: points }, (_, i) => ({
    attributes: [{ key: "http.route", value: { value: { case: "stringValue" as const, value: `/r${i % 7}` } } }],
    startTimeUnixNano: now - 60_000_000_000n,
    timeUnixNano: now,
    count: 10n,
    sum: 1000,
    bucketCounts: [1n, 2n, 3n, 4n],
    explicitBounds: [10, 100, 1000],
  }));
  const req = create(ExportMetricsServiceRequestSchema, {
    resourceMetrics: [
      {
        resource: { attributes: [{ key: "service.name", value: { value: { case: "stringValue", value: "svc" } } }] },
        scopeMetrics: [{ metrics: [{ name: "http.server.request.duration", unit: "ms", data: { case: "histogram", value: { aggregationTemporality: 2, dataPoints } } }] }],
      },
    ],
  });
  return Buffer.from(toBinary(ExportMetricsServiceRequestSchema, req));
}

describe("OffThreadDecoder", () => {
  it("hands back what decodeRequest gives inline (Map buckets and bigint stream starts included)", async () => {
    decoder = new OffThreadDecoder(script, 1);
    const body = metricsBody(500);
    const at = Date.now();
    const inline = decodeRequest("metrics", "protobuf", Buffer.from(body), at);
    const threaded = await decoder.decode("metrics", "protobuf", Buffer.from(body), at, DEFAULT_REQUEST_LIMITS);
    expect(threaded).toEqual(inline);
    expect(threaded.items).toBe(500);
    const latency = (threaded.part as { latency: { buckets: unknown; cumulative?: { startNs: unknown } }[] }).latency;
    expect(latency[0]!.buckets).toBeInstanceOf(Map);
    expect(typeof latency[0]!.cumulative!.startNs).toBe("bigint");
  });

  it("rebuilds the errors the receiver tells apart: a limit (with its status) and a malformed body", async () => {
    decoder = new OffThreadDecoder(script, 1);
    const over = decoder.decode("metrics", "protobuf", metricsBody(20), Date.now(), { ...DEFAULT_REQUEST_LIMITS, maxPoints: 10 });
    await expect(over).rejects.toBeInstanceOf(LimitError);
    await expect(over).rejects.toMatchObject({ status: 413 });
    await expect(decoder.decode("metrics", "protobuf", Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f]), Date.now(), DEFAULT_REQUEST_LIMITS)).rejects.toBeInstanceOf(OtlpDecodeError);
  });

  it("a thread that dies fails its own job, and the next decode gets a new thread", async () => {
    decoder = new OffThreadDecoder(script, 1);
    await decoder.decode("metrics", "protobuf", metricsBody(1), Date.now(), DEFAULT_REQUEST_LIMITS);
    const thread = (decoder as unknown as { threads: { terminate(): Promise<number> }[] }).threads[0]!;
    const job = decoder.decode("metrics", "protobuf", metricsBody(2_000), Date.now(), DEFAULT_REQUEST_LIMITS);
    await thread.terminate();
    await expect(job).rejects.toThrow(/decode thread exited/);
    expect((await decoder.decode("metrics", "protobuf", metricsBody(3), Date.now(), DEFAULT_REQUEST_LIMITS)).items).toBe(3);
  });
});
