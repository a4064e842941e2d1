import { create } from "@bufbuild/protobuf";
import { ListValueSchema, ValueSchema, type ListValue, type Value } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  ColumnSchema,
  ExecuteQueryRequestSchema,
  ExecuteQueryResponseSchema,
  FindErrorTracesRequestSchema,
  FindSlowTracesRequestSchema,
  GetErrorRateRequestSchema,
  GetErrorRateResponseSchema,
  GetPercentileRequestSchema,
  GetPercentileResponseSchema,
  GetExemplarsRequestSchema,
  GetExemplarsResponseSchema,
  GetServiceRequestSchema,
  GetServiceResponseSchema,
  GetSystemMetricsRequestSchema,
  ListServicesRequestSchema,
  ListServicesResponseSchema,
  QueryService,
  StreamQueryRequestSchema,
  StreamQueryResponseSchema,
  GetTraceRequestSchema,
  GroupByAttributeRequestSchema,
  ExplainSpansRequestSchema,
  ExplainSpansResponseSchema,
} from "../../gen/coral/colony/v1/query_pb.js";
import { formatDurationNs } from "../../surface/units.js";
import type { KnownService, ReadStore, UserSql } from "../store/engine.js";
import type { ReadCost } from "../store/typed-reads.js";
import { SqlRejected, type SqlValue } from "../store/readonly-sql.js";
import { prepare } from "./defaults.js";
import { bucketIndex, SCALE } from "../store/sketch.js";

export interface QueryServiceDeps {
  /**
   * The store as one call's handler reads it, engine-neutral (colony/store/engine.ts): every read
   * runs under the colony's deadline for queries and stops when `signal` aborts (the caller went
   * away); `cost` picks its admission (ReadCost). A read a limit ends rejects with `rejected(e)`.
   * DuckDB: TypedReads.store (colony/store/typed-reads.ts).
   */
  reads(cost: ReadCost, signal: AbortSignal, rejected: (e: SqlRejected) => Error): ReadStore;
  sql: UserSql;
  /** Clock for the look-back windows; tests pin it. */
  now?: () => number;
}

/**
 * The QueryService handlers: defaults from the proto, argument checks with messages that say what
 * to do next, then one call into the store per RPC.
 */
export function queryServiceImpl(deps: QueryServiceDeps): ServiceImpl<typeof QueryService> {
  const { sql } = deps;
  const now = deps.now ?? Date.now;
  /** `narrow`: what the caller can change so the read fits the deadline, said when it does not. */
  const reads = (ctx: HandlerContext, cost: ReadCost, narrow: string) => deps.reads(cost, ctx.signal, (e) => readRefused(e, narrow));

  const window = (timeRangeMs: bigint) => {
    const untilMs = now();
    // A window reaching before 1970 covers everything; a Date that far back would be invalid.
    return { sinceMs: Math.max(0, untilMs - toNumber(timeRangeMs)), untilMs };
  };

  /** The service's name as stored (the one every read below is given), or NotFound. */
  const knownService = async (queries: ReadStore, name: string): Promise<KnownService> => {
    const known = await queries.getService(name);
    if (!known) {
      throw new ConnectError(`service ${quoted(name)} not found — list services with: coral query services`, Code.NotFound);
    }
    return known;
  };

  /**
   * A latency percentile of the window. The hot path is one query: samples prove the service and
   * metric exist; only an empty answer pays for telling "unknown service/metric" from "no traffic".
   */
  const percentileOf = async (queries: ReadStore, service: string, metric: string, q: number, w: { sinceMs: number; untilMs: number }) => {
    const r = await queries.percentile({ service, metric, q, ...w });
    if (r.count > 0) return r;
    const { name } = (await knownService(queries, service)).service;
    if (!(await queries.metricExists(name, metric))) {
      throw new ConnectError(`metric ${quoted(metric)} not found for service "${name}" — latency of served requests is "http.server.duration"`, Code.NotFound);
    }
    return r;
  };

  return {
    async listServices(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "lookup", RETRY);
      const req = prepare(ListServicesRequestSchema, raw);
      const services = await queries.listServices({
        namespace: req.namespace || undefined,
        region: req.region || undefined,
      });
      return create(ListServicesResponseSchema, { services });
    },

    async getService(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "lookup", WINDOW);
      const req = prepare(GetServiceRequestSchema, raw);
      const w = window(req.timeRangeMs);
      const known = await knownService(queries, req.service);
      const counts = await queries.counts({ service: known.service.name, ...w });
      return create(GetServiceResponseSchema, { ...known, requestCount: BigInt(counts.total), errorCount: BigInt(counts.errors) });
    },

    async getPercentile(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "lookup", WINDOW);
      // `optional` in the proto: an explicit 0 arrives as 0 and is refused; only absence defaults.
      const req = prepare(GetPercentileRequestSchema, raw);
      const w = window(req.timeRangeMs);
      const r = await percentileOf(queries, req.service, req.metric, req.percentile!, w);
      // No samples in the window: no value (unset), rather than a 0 that reads as a measurement.
      return create(GetPercentileResponseSchema, { value: r.count > 0 ? r.value : undefined, unit: "nanoseconds", sampleCount: BigInt(r.count) });
    },

    async getExemplars(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "lookup", WINDOW);
      const req = prepare(GetExemplarsRequestSchema, raw);
      if (!queries.exemplars) throw new ConnectError("this colony's store keeps no exemplars (a DuckDB colony does)", Code.Unimplemented);
      const w = window(req.timeRangeMs);
      const r = await percentileOf(queries, req.service, req.metric, req.percentile!, w);
      if (r.count === 0) return create(GetExemplarsResponseSchema, { sampleCount: 0n });
      const bucket = bucketIndex(r.value);
      const exemplars = await queries.exemplars({ service: req.service, metric: req.metric, bucket, valueNs: r.value, limit: req.exemplars, ...w });
      const [low, high] = bucketBounds(bucket);
      return create(GetExemplarsResponseSchema, { value: r.value, sampleCount: BigInt(r.count), bucketLowNs: low, bucketHighNs: high, exemplars });
    },

    async getErrorRate(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "lookup", WINDOW);
      const req = prepare(GetErrorRateRequestSchema, raw);
      const w = window(req.timeRangeMs);
      const { name } = (await knownService(queries, req.service)).service;
      const c = await queries.counts({ service: name, ...w });
      return create(GetErrorRateResponseSchema, {
        rate: c.total > 0 ? c.errors / c.total : undefined,
        errorCount: BigInt(c.errors),
        totalCount: BigInt(c.total),
      });
    },

    async findSlowTraces(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "scan", "a shorter --window, or a higher --threshold");
      const req = prepare(FindSlowTracesRequestSchema, raw);
      const minDurationNs = req.minDurationNs!; // prepare fills an absent threshold
      const limit = req.limit;
      const w = window(req.timeRangeMs);
      const { name } = (await knownService(queries, req.service)).service;
      return queries.slowTraces({ service: name, minDurationNs: toNumber(minDurationNs), limit, ...w });
    },

    async findErrorTraces(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "scan", WINDOW);
      const req = prepare(FindErrorTracesRequestSchema, raw);
      const limit = req.limit;
      const w = window(req.timeRangeMs);
      const { name } = (await knownService(queries, req.service)).service;
      return queries.errorTraces({ service: name, limit, ...w });
    },

    async getSystemMetrics(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "lookup", WINDOW);
      const req = prepare(GetSystemMetricsRequestSchema, raw);
      const w = window(req.timeRangeMs);
      const { name } = (await knownService(queries, req.service)).service;
      return queries.systemMetrics({ service: name, ...w });
    },

    async executeQuery(raw, ctx: HandlerContext) {
      const req = prepare(ExecuteQueryRequestSchema, raw);
      const r = await sqlErrors(() => sql.run(req.sql, ctx.signal));
      return create(ExecuteQueryResponseSchema, {
        columns: r.columns.map((c) => create(ColumnSchema, c)),
        rows: r.rows.map(toListValue),
        truncated: r.truncated,
      });
    },

    async *streamQuery(raw, ctx: HandlerContext) {
      const req = prepare(StreamQueryRequestSchema, raw);
      const batches = sql.stream(req.sql, { maxRows: toNumber(req.maxRows), signal: ctx.signal });
      let first = true;
      try {
        while (true) {
          const next = await sqlErrors(() => batches.next());
          if (next.done) break;
          const b = next.value;
          // One JSON text per batch (ENCODING_JSON_COLUMNS): the column arrays SqlRunner already
          // holds, serialised natively, instead of a google.protobuf.Value message per cell.
          yield create(StreamQueryResponseSchema, {
            columns: first ? b.columns.map((c) => create(ColumnSchema, c)) : [],
            rowCount: b.rowCount,
            valuesJson: JSON.stringify(b.values),
            truncated: b.truncated,
          });
          first = false;
          // A client that went away must not keep DuckDB producing batches nobody reads.
          if (ctx.signal.aborted) break;
        }
      } finally {
        await batches.return(undefined);
      }
    },

    async getTrace(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "scan", RETRY);
      const req = prepare(GetTraceRequestSchema, raw);
      const traceId = traceIdOf(req.traceId);
      const t = await queries.traceSpans({ traceId, limit: req.limit, maxTextBytes: TRACE_TEXT_BYTES });
      if (t.totalCount === 0n) {
        throw new ConnectError(
          `trace ${traceId} not found — it may be older than the colony's retention; find traces with: coral query traces SERVICE --slow`,
          Code.NotFound,
        );
      }
      return t;
    },

    async groupByAttribute(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "scan", WINDOW);
      const req = prepare(GroupByAttributeRequestSchema, raw);
      if (req.by.length > MAX_ATTRIBUTE_KEY) {
        throw new ConnectError(`by must be an attribute key of at most ${MAX_ATTRIBUTE_KEY} characters; got ${req.by.length}`, Code.InvalidArgument);
      }
      const w = window(req.timeRangeMs);
      const { name } = (await knownService(queries, req.service)).service;
      return queries.attributeGroups({ service: name, key: req.by, limit: req.limit, ...w });
    },

    async explainSpans(raw, ctx: HandlerContext) {
      const queries = reads(ctx, "scan", "a shorter --window (explain compares every attribute of every request in it)");
      const req = prepare(ExplainSpansRequestSchema, raw);
      if ((req.slowThresholdNs === undefined) === !req.errors) {
        throw new ConnectError(
          req.errors
            ? "give either slow_threshold_ns (--slow THRESHOLD) or errors (--errors), not both"
            : "say which requests to explain: slow_threshold_ns (--slow THRESHOLD, e.g. --slow 1s) or errors (--errors)",
          Code.InvalidArgument,
        );
      }
      const slowNs = req.slowThresholdNs === undefined ? undefined : toNumber(req.slowThresholdNs);
      const selection = slowNs === undefined ? "failed" : `duration >= ${formatDurationNs(slowNs)}`;
      const w = window(req.timeRangeMs);
      const { name } = (await knownService(queries, req.service)).service;
      const r = await queries.explain({
        service: name,
        selection: slowNs === undefined ? { errors: true } : { slowNs },
        excludeKeys: slowNs === undefined ? STATUS_KEYS : [],
        limit: req.limit,
        ...w,
      });
      const span = windowText(w.untilMs - w.sinceMs);
      // Nothing to compare is the caller's next decision, not an empty table to puzzle over.
      if (r.total === 0) {
        throw new ConnectError(`${name} served no requests in the last ${span}: nothing to explain — widen --window`, Code.FailedPrecondition);
      }
      if (r.selected === 0) {
        throw new ConnectError(
          slowNs === undefined
            ? `none of the ${r.total} requests ${name} served in the last ${span} failed: nothing to explain — try --slow THRESHOLD`
            : `none of the ${r.total} requests ${name} served in the last ${span} took ${formatDurationNs(slowNs)} or more: nothing to explain — lower --slow (see coral query metrics ${name} --percentile 99)`,
          Code.FailedPrecondition,
        );
      }
      if (r.selected === r.total) {
        throw new ConnectError(
          `all ${r.total} requests ${name} served in the last ${span} were ${slowNs === undefined ? "failed" : `${formatDurationNs(slowNs)} or slower`}: nothing to compare them with${slowNs === undefined ? "" : " — raise --slow"}`,
          Code.FailedPrecondition,
        );
      }
      return create(ExplainSpansResponseSchema, {
        causes: r.rows,
        requestCount: BigInt(r.total),
        selectedCount: BigInt(r.selected),
        selection,
        keyCount: BigInt(r.keyCount),
        keysExamined: BigInt(r.keysExamined),
      });
    },
  };
}

const WINDOW = "a shorter --window";
/** Reads whose cost does not grow with a window: past the deadline, the colony is overloaded. */
const RETRY = "the colony is overloaded; retry shortly";

/** A typed read a limit ended, as the caller's error: the limit, then what to change. */
function readRefused(e: SqlRejected, narrow: string): ConnectError {
  const code = sqlCodes[e.code] ?? Code.Internal;
  return new ConnectError(code === Code.DeadlineExceeded ? `${e.message} — ${narrow}` : e.message, code);
}

/** The durations bucket `k` holds: above the first bound, up to the second (colony/store/sketch.ts). */
function bucketBounds(k: number): [number, number] {
  return k < 0 ? [0, 1] : [2 ** (k / 2 ** SCALE), 2 ** ((k + 1) / 2 ** SCALE)];
}

/** "15m", "3h", "90s": the window as it was most likely asked for. */
function windowText(ms: number): string {
  if (ms > 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  return formatDurationNs(ms * 1e6);
}

/** Status codes restate an error selection: that failed requests carry 5xx explains nothing. */
const STATUS_KEYS = ["http.status_code", "http.response.status_code"];

/** A trace's spans travel whole up to this many bytes of names and attributes; a larger trace is cut. */
const TRACE_TEXT_BYTES = 16 * 2 ** 20;

/** Attribute keys are short names ("http.route"); a longer one is a mistake, not a key. */
const MAX_ATTRIBUTE_KEY = 256;

/** A trace id as stored (lowercase hex), or invalid_argument naming the field and what it must be. */
function traceIdOf(text: string): string {
  if (/^[0-9a-fA-F]{32}$/.test(text)) return text.toLowerCase();
  const what = text.length === 32 ? "has a character that is not a hex digit" : `is ${text.length} characters long`;
  throw new ConnectError(`trace_id must be 32 hex digits (as coral query traces lists them); ${quoted(text)} ${what}`, Code.InvalidArgument);
}

/**
 * A caller's text as an error message quotes it: JSON-escaped (no control characters reach a
 * terminal) and cut at 40 characters. A 3 MB service name came back whole in the message, and in
 * gRPC's grpc-message trailer, over what clients accept in headers.
 */
function quoted(text: string): string {
  return text.length > 40 ? `${JSON.stringify(text.slice(0, 40)).slice(0, -1)}…"` : JSON.stringify(text);
}

/** Windows and thresholds beyond 2^53 are meaningless here; clamping beats a RangeError downstream. */
function toNumber(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

const sqlCodes: Record<SqlRejected["code"], Code> = {
  invalid_argument: Code.InvalidArgument,
  deadline_exceeded: Code.DeadlineExceeded,
  resource_exhausted: Code.ResourceExhausted,
  cancelled: Code.Canceled,
};

async function sqlErrors<R>(f: () => Promise<R>): Promise<R> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof SqlRejected) throw new ConnectError(capped(err.message), sqlCodes[err.code] ?? Code.InvalidArgument);
    // Anything else is a fault of the colony, not of the SQL: internal.
    const e = ConnectError.from(err, Code.Internal);
    throw new ConnectError(capped(e.rawMessage), e.code, e.metadata);
  }
}

/** Longest error message sent, in characters; a few lines of DuckDB's message with its context. */
const MAX_MESSAGE = 1_000;

/**
 * DuckDB's messages quote the SQL they fail on (an unknown column, a literal that does not cast),
 * so a 3 MB statement came back as a 3 MB message: gRPC carries it in the grpc-message trailer,
 * over what HTTP/2 clients accept, and the caller saw a broken stream instead of the error.
 */
function capped(message: string): string {
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}… (${message.length - MAX_MESSAGE} more characters)` : message;
}

function toListValue(row: SqlValue[]): ListValue {
  return create(ListValueSchema, { values: row.map(toValue) });
}

function toValue(v: SqlValue): Value {
  if (v === null) return create(ValueSchema, { kind: { case: "nullValue", value: 0 } });
  switch (typeof v) {
    case "boolean":
      return create(ValueSchema, { kind: { case: "boolValue", value: v } });
    case "number":
      // google.protobuf.Value's JSON form has no NaN or Infinity; a Connect+JSON client would fail
      // on the whole response, so they travel as the strings DuckDB itself prints.
      return Number.isFinite(v)
        ? create(ValueSchema, { kind: { case: "numberValue", value: v } })
        : create(ValueSchema, { kind: { case: "stringValue", value: Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf" } });
    default:
      return create(ValueSchema, { kind: { case: "stringValue", value: String(v) } });
  }
}
