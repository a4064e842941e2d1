import { createHash, timingSafeEqual } from "node:crypto";
import * as http from "node:http";
import type * as net from "node:net";
import { promisify } from "node:util";
import * as zlib from "node:zlib";
import { create, toBinary, toJson } from "@bufbuild/protobuf";
import { ExportMetricsServiceResponseSchema } from "../../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { ExportTraceServiceResponseSchema } from "../../../gen/opentelemetry/proto/collector/trace/v1/trace_service_pb.js";
import { createHttp1Server, DEFAULT_LIMITS, type ConnectionLimits } from "../../server/listen.js";
import { decodeRequest, type DecodedRequest } from "./decode.js";
import { DEFAULT_REQUEST_LIMITS, LimitError, type RequestLimits } from "./limits.js";
import { BackpressureError, InvalidDataError, UnavailableError, type IngestPipeline } from "./pipeline.js";

export { tracesJsonToBinary } from "./decode.js";

const gunzip = promisify(zlib.gunzip);

export interface OtlpReceiverOptions {
  host: string;
  port: number;
  token?: string;
  pipeline: IngestPipeline;
  /** Largest request body accepted, after decompression (413 beyond). */
  maxBodyBytes: number;
  /** Overrides of DEFAULT_REQUEST_LIMITS: spans, points and messages per request, nesting depth. */
  requestLimits?: Partial<RequestLimits>;
  /** Overrides of DEFAULT_OTLP_LIMITS (firstBytesTimeoutMs does not apply: there is no sniffing here). */
  limits?: Partial<ConnectionLimits>;
}

/**
 * The query port's limits (see DEFAULT_LIMITS), but 60 s for a request: bodies here are up to
 * 16 MiB of telemetry from collectors on any link, not a few hundred bytes of query. The 30 s idle
 * timeout outlasts exporters' usual 5 s batch interval, so they keep their connection.
 */
export const DEFAULT_OTLP_LIMITS: Readonly<ConnectionLimits> = { ...DEFAULT_LIMITS, requestTimeoutMs: 60_000 };

export interface OtlpReceiver {
  address: { host: string; port: number };
  close(): Promise<void>;
}

type Format = "protobuf" | "json";

/** An HTTP status with a message, answered as OTLP's google.rpc.Status body. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** gRPC code carried in the Status body, as the OTLP/HTTP spec asks. */
const GRPC_CODE: Record<number, number> = { 400: 3, 401: 16, 404: 12, 405: 12, 413: 8, 415: 3, 429: 8, 503: 14 };

/**
 * OTLP/HTTP: `POST /v1/traces` and `/v1/metrics`, protobuf or JSON, optionally gzip-compressed.
 * 200 only once the data is committed; partial success reports spans refused one by one.
 */
export async function listenOtlp(o: OtlpReceiverOptions): Promise<OtlpReceiver> {
  const expected = o.token ? digest(o.token) : undefined;
  const requestLimits: RequestLimits = { ...DEFAULT_REQUEST_LIMITS };
  for (const [k, v] of Object.entries(o.requestLimits ?? {})) if (v !== undefined) requestLimits[k as keyof RequestLimits] = v;

  const limits: ConnectionLimits = { ...DEFAULT_OTLP_LIMITS };
  for (const [k, v] of Object.entries(o.limits ?? {})) if (v !== undefined) limits[k as keyof ConnectionLimits] = v;
  // Headers and request timeouts also close a connection that never sends a byte: Node counts
  // them from the moment a connection is accepted.
  const server = createHttp1Server(limits, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      const e = err instanceof HttpError ? err : new HttpError(500, `internal error: ${(err as Error).message}`);
      const format = mediaFormat(req.headers["content-type"]) ?? "protobuf";
      reply(req, res, e.status, format, statusBody(e, format), e.headers);
    });
  });
  // Node closes sockets beyond this as it accepts them; exporters already connected are unaffected.
  if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const signal = path === "/v1/traces" ? "traces" : path === "/v1/metrics" ? "metrics" : undefined;
    const format = mediaFormat(req.headers["content-type"]);
    const fail = (e: HttpError) => {
      drainAndClose(req, res);
      reply(req, res, e.status, format ?? "protobuf", statusBody(e, format ?? "protobuf"), e.headers);
    };
    if (!signal) return fail(new HttpError(404, `no such path ${path}: OTLP/HTTP uses /v1/traces and /v1/metrics`));
    if (req.method !== "POST") return fail(new HttpError(405, `use POST for ${path}`, { allow: "POST" }));
    if (expected) {
      const presented = /^Bearer[ \t]+(.+)$/i.exec(req.headers.authorization ?? "")?.[1]?.trim();
      if (presented === undefined || !timingSafeEqual(digest(presented), expected)) {
        return fail(new HttpError(401, "missing or wrong bearer token", { "www-authenticate": "Bearer" }));
      }
    }
    if (!format) return fail(new HttpError(415, `unsupported content type "${req.headers["content-type"] ?? ""}": use application/x-protobuf or application/json`));
    const encoding = (req.headers["content-encoding"] ?? "identity").trim().toLowerCase();
    if (encoding !== "identity" && encoding !== "gzip" && encoding !== "") {
      return fail(new HttpError(415, `unsupported content encoding "${encoding}": use gzip or none`));
    }
    const declared = Number(req.headers["content-length"] ?? NaN);
    if (declared > o.maxBodyBytes) return fail(tooLarge(o.maxBodyBytes));

    let body = await readBody(req, o.maxBodyBytes);
    if (body === undefined) return fail(tooLarge(o.maxBodyBytes));
    if (encoding === "gzip") {
      try {
        body = await gunzip(body, { maxOutputLength: o.maxBodyBytes });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") return fail(tooLarge(o.maxBodyBytes));
        throw new HttpError(400, `gzip body is corrupt: ${(err as Error).message}`);
      }
    }

    let decoded: DecodedRequest;
    try {
      decoded = decodeRequest(signal, format, body, Date.now(), requestLimits);
    } catch (err) {
      if (err instanceof HttpError) throw err;
      if (err instanceof LimitError) throw new HttpError(err.status, err.message);
      throw new HttpError(400, `malformed ${format === "json" ? "OTLP JSON" : "OTLP protobuf"} ${signal} request: ${(err as Error).message}`);
    }
    const { part, items, rejected, rejectMessage: rejectReason } = decoded;
    // Nothing left to store: the OTLP spec's "bad data", which the client must not retry.
    if (rejected > 0 && rejected === items) throw new HttpError(400, rejectReason ?? "every item of the request was rejected");

    try {
      await o.pipeline.submit(part);
    } catch (err) {
      if (err instanceof BackpressureError) throw new HttpError(429, err.message, { "retry-after": "1" });
      if (err instanceof UnavailableError) throw new HttpError(503, err.message, { "retry-after": "5" });
      if (err instanceof InvalidDataError) throw new HttpError(400, err.message);
      throw err;
    }

    const partial = rejected > 0 ? { partialSuccess: signal === "traces" ? { rejectedSpans: BigInt(rejected), errorMessage: rejectReason ?? "" } : { rejectedDataPoints: BigInt(rejected), errorMessage: rejectReason ?? "" } } : {};
    let out: Buffer;
    if (signal === "traces") {
      const msg = create(ExportTraceServiceResponseSchema, partial);
      out = format === "json" ? Buffer.from(JSON.stringify(toJson(ExportTraceServiceResponseSchema, msg))) : Buffer.from(toBinary(ExportTraceServiceResponseSchema, msg));
    } else {
      const msg = create(ExportMetricsServiceResponseSchema, partial);
      out = format === "json" ? Buffer.from(JSON.stringify(toJson(ExportMetricsServiceResponseSchema, msg))) : Buffer.from(toBinary(ExportMetricsServiceResponseSchema, msg));
    }
    reply(req, res, 200, format, out);
  }

  const sockets = new Set<net.Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: o.host, port: o.port }, () => resolve());
  });
  server.on("error", () => {});
  const bound = server.address() as net.AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    address: { host: o.host, port: bound.port },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // Requests in flight finish (their data is committed by the pipeline's close); idle sockets go now.
        setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 2_000).unref();
      });
      return closing;
    },
  };
}

function tooLarge(max: number): HttpError {
  return new HttpError(413, `request body exceeds ${max} bytes: send smaller batches`);
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

function mediaFormat(contentType: string | undefined): Format | undefined {
  const media = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (media === "application/x-protobuf" || media === "application/protobuf") return "protobuf";
  if (media === "application/json") return "json";
  return undefined;
}

/** The body, or undefined as soon as it exceeds `max` bytes (the rest is not buffered). */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.removeAllListeners("data");
        resolve(undefined);
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks, size)));
    req.on("error", reject);
    req.on("aborted", () => reject(new HttpError(400, "request aborted")));
  });
}

/** After answering early, stop reading this request and end the connection (its body may be huge). */
function drainAndClose(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (!req.complete) {
    res.setHeader("connection", "close");
    res.once("finish", () => req.socket.destroySoon());
  }
}

function reply(req: http.IncomingMessage, res: http.ServerResponse, status: number, format: Format, body: Buffer, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, {
    "content-type": format === "json" ? "application/json" : "application/x-protobuf",
    "content-length": body.length,
    ...headers,
  });
  res.end(body);
  void req;
}

/** google.rpc.Status { int32 code = 1; string message = 2; } — the error body OTLP/HTTP specifies. */
function statusBody(e: HttpError, format: Format = "protobuf"): Buffer {
  const code = GRPC_CODE[e.status] ?? 13;
  if (format === "json") return Buffer.from(JSON.stringify({ code, message: e.message }));
  const msg = Buffer.from(e.message, "utf8");
  return Buffer.concat([Buffer.from([0x08]), varint(code), Buffer.from([0x12]), varint(msg.length), msg]);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
