import { createHash, timingSafeEqual } from "node:crypto";
import * as http from "node:http";
import type * as net from "node:net";
import { promisify } from "node:util";
import * as zlib from "node:zlib";
import { create, toBinary, toJson } from "@bufbuild/protobuf";
import { ExportMetricsServiceResponseSchema } from "../../../gen/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js";
import { ExportTraceServiceResponseSchema } from "../../../gen/opentelemetry/proto/collector/trace/v1/trace_service_pb.js";
import { ByteBudget, Slots, withDefaults, type Lease } from "../../admission.js";
import { dropBody } from "../../server/drop-body.js";
import { createHttp1Server, DEFAULT_LIMITS, listeningSocket, type ConnectionLimits, type ListeningSocket } from "../../server/listen.js";
import { decodeRequest, type DecodedRequest } from "./decode.js";
import { offThreadDecoder } from "./decoder.js";
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
  /**
   * Bytes of request bodies held at once, over all connections, from the first byte read until
   * the answer (429 beyond); default DEFAULT_OTLP_MAX_INFLIGHT_BYTES.
   */
  maxInflightBytes?: number;
  /** Requests inflated and decoded at once in each lane (small bodies, large bodies); default 2. */
  maxDecodes?: number;
  /**
   * Threads decoding large bodies off the event loop (default 1; 0 decodes them inline, paced).
   * One is enough on small machines: the large lane still admits `maxDecodes` bodies, and a second
   * thread would only compete with DuckDB for the cores.
   */
  decodeThreads?: number;
  /** A socket already listening on host:port, received from another process, to accept from instead of binding one. */
  socket?: ListeningSocket;
}

/**
 * 256 MiB: sixteen 16 MiB requests at once, or 256 exporters' batches of 1 MiB. On top of it come
 * the decodes (one at a time, since decoding holds the event loop, each up to ~225 MiB at the item
 * limits) and the garbage they leave: under 40 clients sending 15 MiB of metrics near the item
 * limits at once, the colony peaked at ~860 MiB (~690 MiB with 128 MiB, ~520 MiB with 64 MiB),
 * where without a budget it reached 1.6 GB — and more with more clients.
 */
export const DEFAULT_OTLP_MAX_INFLIGHT_BYTES = 256 * 2 ** 20;

/**
 * Bodies up to this size on the wire decode in a lane of their own. A large body decodes on a
 * thread (decoder.ts); inline it would hold the event loop for seconds (~2 s for 15 MiB of
 * metrics), and in one queue an exporter's small batch would wait behind every large body read.
 */
const SMALL_BODY_BYTES = 1 << 20;

/**
 * After decoding a large body, the next large decode waits this fraction of the time it took.
 * Large decodes hold the event loop for seconds each; back to back, every other request — a small
 * export's group commit, a query on the other port — would get only the instants between them
 * (a small export took 30–36 s under 40 large requests). With the pause they get at least a fifth
 * of it (the same export: 4–10 s), for a fifth less throughput of large bodies while they queue.
 */
const LARGE_DECODE_PAUSE = 0.25;

/** What a client waiting for the budget is told to wait; exporters back off further on their own. */
const BUDGET_RETRY_AFTER_S = "1";

/**
 * The query port's limits (see DEFAULT_LIMITS), but 60 s for a request: bodies here are up to
 * 16 MiB of telemetry from collectors on any link, not a few hundred bytes of query. The 30 s idle
 * timeout outlasts exporters' usual 5 s batch interval, so they keep their connection.
 */
export const DEFAULT_OTLP_LIMITS: Readonly<ConnectionLimits> = { ...DEFAULT_LIMITS, requestTimeoutMs: 60_000 };

/**
 * A request that took longer than its timeout. Not Node's 408: OTLP exporters retry only 429, 502,
 * 503 and 504, so a 408 drops the batch of an exporter that was merely slow (a congested link, a
 * colony too busy to read it); a slowloris is cut all the same.
 */
const TIMEOUT_RESPONSE = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

export interface OtlpReceiver {
  address: { host: string; port: number };
  /** The listening socket (see OtlpReceiverOptions.socket). */
  socket: ListeningSocket;
  /** Bytes of requests held now (see maxInflightBytes). */
  readonly inflightBytes: number;
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
  const requestLimits = withDefaults<RequestLimits>(DEFAULT_REQUEST_LIMITS, o.requestLimits);

  const limits = withDefaults<ConnectionLimits>(DEFAULT_OTLP_LIMITS, o.limits);
  const budget = new ByteBudget(o.maxInflightBytes ?? DEFAULT_OTLP_MAX_INFLIGHT_BYTES);
  const lanes = { small: new Slots(o.maxDecodes ?? 2), large: new Slots(o.maxDecodes ?? 2) };
  const offThread = offThreadDecoder(o.decodeThreads ?? 1);
  const overBudget = () =>
    new HttpError(429, `the colony is holding ${budget.used} bytes of requests already (limit ${budget.maxBytes}): retry after the delay`, { "retry-after": BUDGET_RETRY_AFTER_S });
  let nextLargeDecodeAt = 0;
  // Decoding is synchronous, so the timer of a second waiter only fires once the first has set
  // the next turn: two waiters never decode back to back.
  const largeDecodeTurn = async () => {
    for (let wait = nextLargeDecodeAt - performance.now(); wait > 0; wait = nextLargeDecodeAt - performance.now()) await new Promise((r) => setTimeout(r, wait));
  };

  // Headers and request timeouts also close a connection that never sends a byte: Node counts
  // them from the moment a connection is accepted.
  const server = createHttp1Server(
    limits,
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        if (err instanceof ClientGone) return;
        const e = err instanceof HttpError ? err : new HttpError(500, `internal error: ${(err as Error).message}`);
        const format = mediaFormat(req.headers["content-type"]) ?? fallbackFormat(req);
        reply(req, res, e.status, format, statusBody(e, format), e.headers);
      });
    },
    TIMEOUT_RESPONSE,
  );
  // Node closes sockets beyond this as it accepts them; exporters already connected are unaffected.
  if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const signal = path === "/v1/traces" ? "traces" : path === "/v1/metrics" ? "metrics" : undefined;
    const format = mediaFormat(req.headers["content-type"]);
    const fail = (e: HttpError) => {
      drainAndClose(req, res);
      reply(req, res, e.status, format ?? fallbackFormat(req), statusBody(e, format ?? fallbackFormat(req)), e.headers);
    };
    const refuse = () => {
      discard(req, o.maxBodyBytes);
      const e = overBudget();
      reply(req, res, e.status, format ?? fallbackFormat(req), statusBody(e, format ?? fallbackFormat(req)), e.headers);
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
    const declared = req.headers["content-length"] === undefined ? undefined : Number(req.headers["content-length"]);
    if (declared !== undefined && declared > o.maxBodyBytes) return fail(tooLarge(o.maxBodyBytes));

    // Held from the first byte until the answer: the body, then what it decodes to, waiting for
    // its commit. A declared length is taken before anything is read, so a refusal costs nothing.
    const lease = budget.lease();

    try {
      if (declared !== undefined && !lease.take(declared)) return refuse();
      // The client went away (or its connection timed out): nothing it sent is worth decoding now,
      // and storing it would store it twice when the exporter retries.
      const gone = new AbortController();
      res.once("close", () => gone.abort(new ClientGone()));

      const read = await readBody(req, o.maxBodyBytes, declared, lease);
      if (read === "too large") return fail(tooLarge(o.maxBodyBytes));
      if (read === "over budget") return refuse();
      let body = read;
      const large = body.length > SMALL_BODY_BYTES;
      const free = await (large ? lanes.large : lanes.small).acquire(gone.signal);
      let decoded: DecodedRequest;
      try {
        if (gone.signal.aborted) return;
        if (encoding === "gzip") {
          try {
            body = await gunzip(body, { maxOutputLength: o.maxBodyBytes });
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") return fail(tooLarge(o.maxBodyBytes));
            throw new HttpError(400, `gzip body is corrupt: ${(err as Error).message}`);
          }
          // Counted even past the budget: the bytes exist already, and the lanes bound how many
          // inflated bodies do (2 × 2 × maxBodyBytes at most).
          lease.add(body.length);
          if (gone.signal.aborted) return;
        }
        const started = performance.now();
        try {
          // A large body decodes on a thread of its own (decoder.ts): the event loop only takes
          // its records back. Without threads (offThread: 0) large decodes are paced instead.
          if (large && offThread) decoded = await offThread.decode(signal, format, body, Date.now(), requestLimits);
          else {
            if (large) await largeDecodeTurn();
            decoded = decodeRequest(signal, format, body, Date.now(), requestLimits);
          }
        } catch (err) {
          if (err instanceof HttpError) throw err;
          if (err instanceof LimitError) throw new HttpError(err.status, err.message);
          throw new HttpError(400, `malformed ${format === "json" ? "OTLP JSON" : "OTLP protobuf"} ${signal} request: ${(err as Error).message}`);
        } finally {
          if (large && !offThread) nextLargeDecodeAt = performance.now() + (performance.now() - started) * LARGE_DECODE_PAUSE;
        }
      } finally {
        free();
      }
      if (gone.signal.aborted) return;
      await answer(req, res, signal, format, decoded);
    } finally {
      lease.release();
    }
  }

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, signal: "traces" | "metrics", format: Format, decoded: DecodedRequest): Promise<void> {
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
    if (o.socket) server.listen(o.socket, () => resolve());
    else server.listen({ host: o.host, port: o.port }, () => resolve());
  });
  server.on("error", () => {});
  const bound = server.address() as net.AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    address: { host: o.host, port: bound.port },
    socket: listeningSocket(server),
    get inflightBytes() {
      return budget.used;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => void (offThread?.close() ?? Promise.resolve()).then(() => resolve()));
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

/** The client closed its connection before its answer; nobody is left to tell. */
class ClientGone extends Error {}

function tooLarge(max: number): HttpError {
  return new HttpError(413, `request body exceeds ${max} bytes: send smaller batches`);
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/**
 * The encoding of an error answer to a request that is not OTLP (no OTLP content type: a browser, a
 * bare curl, a wrong path): JSON, which a person can read, unless it asked for protobuf.
 */
function fallbackFormat(req: http.IncomingMessage): Format {
  return /application\/x-protobuf/i.test(String(req.headers.accept ?? "")) ? "protobuf" : "json";
}

function mediaFormat(contentType: string | undefined): Format | undefined {
  const media = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (media === "application/x-protobuf" || media === "application/protobuf") return "protobuf";
  if (media === "application/json") return "json";
  return undefined;
}

/**
 * The body, or why reading stopped: it passed `max` bytes, or `lease` could not take the next
 * chunk (the rest is not buffered). A declared length was taken from the lease already, and the
 * body is read straight into one buffer of that size; otherwise each chunk is taken as it arrives.
 */
function readBody(req: http.IncomingMessage, max: number, declared: number | undefined, lease: Lease): Promise<Buffer | "too large" | "over budget"> {
  return new Promise((resolve, reject) => {
    const whole = declared !== undefined ? Buffer.allocUnsafe(declared) : undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (why: "too large" | "over budget") => {
      req.removeAllListeners("data");
      req.pause();
      resolve(why);
    };
    req.on("data", (c: Buffer) => {
      if (size + c.length > max) return stop("too large");
      if (whole) {
        // Node's parser never delivers more than Content-Length; this is for a parser that would.
        if (size + c.length > whole.length) return stop("too large");
        c.copy(whole, size);
      } else {
        if (!lease.take(c.length)) return stop("over budget");
        chunks.push(c);
      }
      size += c.length;
    });
    req.on("end", () => resolve(whole ? whole.subarray(0, size) : Buffer.concat(chunks, size)));
    req.on("error", reject);
    req.on("aborted", () => reject(new HttpError(400, "request aborted")));
    // A connection closed mid-body (client gone, request timeout) must settle this too, or the
    // request's share of the budget would never come back.
    req.on("close", () => {
      if (!req.complete) reject(new HttpError(400, "request aborted"));
    });
  });
}

/**
 * After a 429 for the budget: the body is dropped as it arrives, never held, up to `max` bytes (a
 * body that may be sent at all), and the connection kept. Closing it under a client still sending
 * would hand the client EPIPE instead of the 429 (measured: 11 of 40 fetch() clients sending
 * 15 MiB), and an exporter is then less sure to retry; dropping costs bandwidth, not memory, and
 * the request timeout bounds how long.
 */
function discard(req: http.IncomingMessage, max: number): void {
  if (req.complete) return;
  req.removeAllListeners("data");
  dropBody(req, max);
  req.resume();
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
