// One OTLP/HTTP request body → the rows to store, counted against the request limits before any
// message is built (limits.ts) and validated item by item (traces.ts, metrics.ts).

import { fromBinary, fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { ExportMetricsServiceRequestSchema } from "../../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { ExportTraceServiceRequestSchema } from "../../../gen/opentelemetry/proto/collector/trace/v1/trace_service_pb.js";
import { countJson, DEFAULT_REQUEST_LIMITS, OtlpDecodeError, scanJsonText, scanProtobuf, Tally, type RequestLimits } from "./limits.js";
import { mapMetrics } from "./metrics.js";
import type { IngestPart } from "./pipeline.js";
import { decodeTraces } from "./traces.js";

export type Signal = "traces" | "metrics";
export type Format = "protobuf" | "json";

export interface DecodedRequest {
  part: IngestPart;
  /** Spans or data points the request carried, refused ones included. */
  items: number;
  /** Of those, refused one by one. */
  rejected: number;
  /** Why they were refused (for partial success's error_message), when any were. */
  rejectMessage?: string;
}

/**
 * Throws LimitError beyond a request limit and OtlpDecodeError on a body that is not the signal's
 * request in that format; a request whose items are all refused comes back with
 * `rejected === items` for the caller to answer 400.
 */
export function decodeRequest(signal: Signal, format: Format, body: Buffer, receivedAtMs: number, limits: Readonly<RequestLimits> = DEFAULT_REQUEST_LIMITS): DecodedRequest {
  if (signal === "traces") {
    const t = decodeTraces(format === "json" ? tracesJsonToBinary(body, limits) : body, receivedAtMs, limits);
    const items = t.spans.length + t.rejected;
    return {
      part: { spans: t.spans, resources: t.resources },
      items,
      rejected: t.rejected,
      ...(t.rejected > 0 ? { rejectMessage: `rejected ${t.rejected} of ${items} spans: ${t.rejectReason ?? ""}` } : {}),
    };
  }
  let msg;
  if (format === "json") {
    const root = parseJson(body, limits);
    countJson(root, ExportMetricsServiceRequestSchema, new Tally(limits));
    msg = fromJson(ExportMetricsServiceRequestSchema, root, { ignoreUnknownFields: true });
  } else {
    scanProtobuf(body, ExportMetricsServiceRequestSchema, new Tally(limits));
    msg = fromBinary(ExportMetricsServiceRequestSchema, body, { readUnknownFields: false });
  }
  const m = mapMetrics(msg, receivedAtMs);
  return {
    part: { hostSamples: m.hostSamples, latency: m.latency, resources: m.resources },
    items: m.points,
    rejected: m.rejected,
    ...(m.rejectReason !== undefined ? { rejectMessage: m.rejectReason } : {}),
  };
}

/** JSON text, refused by depth and size before it is parsed (see scanJsonText). */
function parseJson(body: Buffer, limits: Readonly<RequestLimits>): JsonValue {
  scanJsonText(body, limits);
  try {
    return JSON.parse(body.toString("utf8")) as JsonValue;
  } catch (err) {
    throw new OtlpDecodeError(`malformed JSON: ${(err as Error).message}`);
  }
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/**
 * OTLP JSON differs from protobuf's canonical JSON in one place that matters: trace and span ids are
 * hex, not base64. Rewrite them, let the generated schema parse the rest (lowerCamelCase names,
 * int64 as strings or numbers, enums as integers), and hand the bytes to the one span decoder.
 */
export function tracesJsonToBinary(body: Buffer, limits: Readonly<RequestLimits> = DEFAULT_REQUEST_LIMITS): Buffer {
  const root = parseJson(body, limits);
  if (root === null || typeof root !== "object" || Array.isArray(root)) throw new OtlpDecodeError("expected a JSON object");
  countJson(root, ExportTraceServiceRequestSchema, new Tally(limits));
  const list = (o: unknown, ...keys: string[]): Record<string, JsonValue>[] => {
    if (o === null || typeof o !== "object") return [];
    for (const k of keys) {
      const v = (o as Record<string, unknown>)[k];
      if (Array.isArray(v)) return v.filter((x) => x !== null && typeof x === "object") as Record<string, JsonValue>[];
    }
    return [];
  };
  for (const rs of list(root, "resourceSpans", "resource_spans")) {
    for (const ss of list(rs, "scopeSpans", "scope_spans")) {
      for (const span of list(ss, "spans")) {
        for (const [camel, snake] of [["traceId", "trace_id"], ["spanId", "span_id"], ["parentSpanId", "parent_span_id"]] as const) {
          for (const k of [camel, snake]) {
            const v = span[k];
            if (v === undefined || v === null) continue;
            if (typeof v !== "string" || !HEX.test(v)) throw new OtlpDecodeError(`${k} must be a hex string`);
            span[k] = Buffer.from(v, "hex").toString("base64");
          }
        }
      }
    }
  }
  const msg = fromJson(ExportTraceServiceRequestSchema, root, { ignoreUnknownFields: true });
  return Buffer.from(toBinary(ExportTraceServiceRequestSchema, msg));
}
