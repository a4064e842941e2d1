import { BIGINT, BOOLEAN, INTEGER, TIMESTAMPTZ, VARCHAR, DOUBLE, type DuckDBConnection, type DuckDBDataChunk, type DuckDBPreparedStatement, type DuckDBValue } from "@duckdb/node-api";
import { Kysely, sql } from "kysely";
import { DuckDBDialect } from "../store/dialect.js";
import type { Database } from "../store/schema.js";
import type { WriteStore } from "../store/engine.js";
import type { Store } from "../store/store.js";
import { appendChunks, appendPrepared, buildChunks, inTransaction, tsLiteral, tstz } from "./appender.js";
import { loadStreams, saveStreams, type StreamPoint } from "./cumulative.js";
import { isErrorSpan, latencyDeltas, spanDeltas } from "./deltas.js";
import { EXEMPLAR_STAGING } from "./exemplars.js";
import { storedAttributes, type HostSample, type LatencyRecord, type ResourceRecord, type SpanRecord } from "./records.js";
import {
  MINUTE_MS,
  TRACE_HORIZON_MS,
  addSummary,
  addTrace,
  floorMinute,
  mergeSummaries,
  mergeTraces,
  rollupServices,
  rollupTraces,
  type SummaryDelta,
  type TraceDelta,
} from "./rollups.js";

/** The most minutes `recover` rebuilds in one transaction. */
const RECOVER_WINDOW_MS = 60 * MINUTE_MS;

/** A `spans` row, then what its `span_attributes` rows are made of: failed, own pairs, all pairs as JSON. */
const SPAN_BATCH_TYPES = [VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, TIMESTAMPTZ, BIGINT, VARCHAR, INTEGER, VARCHAR, BOOLEAN, INTEGER, VARCHAR];
const HOST_TYPES = [TIMESTAMPTZ, VARCHAR, VARCHAR, DOUBLE, DOUBLE, BIGINT, BIGINT];

/**
 * A span batch is appended here, one row per span, and SQL copies it into `spans` and
 * `span_attributes` in the same transaction. The appender sets strings one native call at a time
 * (~1 µs each) and a span has ~8 attribute rows of 6 strings: appending those rows was most of the
 * demo seed's CPU, and one JSON text per span instead halved it. Emptied before the commit; a
 * rolled-back batch's rows go with the rollback.
 */
const SPAN_BATCH_STAGING = `CREATE TEMP TABLE IF NOT EXISTS span_batch AS
  SELECT *, false AS attr_failed, 0::INTEGER AS attr_own_pairs, ''::VARCHAR AS attr_pairs FROM spans LIMIT 0`;
const SPAN_BATCH_COLUMNS = ["attr_failed", "attr_own_pairs", "attr_pairs"];
const COPY_SPAN_BATCH = [
  `INSERT INTO spans SELECT * EXCLUDE (${SPAN_BATCH_COLUMNS.join(", ")}) FROM temp.span_batch`,
  `INSERT INTO span_attributes (service_name, start_time, trace_id, span_id, kind, duration_ns, failed, key, value, resource)
   SELECT service_name, start_time, trace_id, span_id, kind, duration_ns, attr_failed,
          unnest(list_transform(range(1, len(p), 2), i -> p[i])),
          unnest(list_transform(range(2, len(p) + 1, 2), i -> p[i])),
          unnest(list_transform(range(0, len(p) // 2), i -> i >= attr_own_pairs))
   FROM (SELECT *, from_json(attr_pairs, '["VARCHAR"]') AS p FROM temp.span_batch WHERE attr_pairs IS NOT NULL)`,
  "DELETE FROM temp.span_batch",
];

/**
 * Prepared once per connection: parsing and planning them anew took ~2 ms of a commit's CPU, which
 * counts at OTLP's small batches. Prepared on first use rather than when the lane opens, so a
 * failure (a table gone) fails that commit only, and the next one prepares again.
 */
const spanBatchCopies = new WeakMap<DuckDBConnection, Promise<DuckDBPreparedStatement[]>>();

async function copySpanBatch(conn: DuckDBConnection): Promise<void> {
  let statements = spanBatchCopies.get(conn);
  if (!statements) {
    statements = Promise.all(COPY_SPAN_BATCH.map((q) => conn.prepare(q)));
    spanBatchCopies.set(conn, statements);
    statements.catch(() => spanBatchCopies.delete(conn));
  }
  for (const statement of await statements) await statement.run();
}

/**
 * Spans made ready to commit, outside the writer's serial section: validated, their rollup
 * contributions computed and their rows laid out in DuckDB data chunks. The ingest pipeline
 * prepares each request as it arrives, while the previous commit is still running.
 */
export interface PreparedSpans {
  readonly count: number;
  /** Start of every minute a span of the batch starts in. */
  readonly minutes: readonly number[];
  /** Rows of the `span_batch` staging table: spans and their attributes. */
  readonly chunks: readonly DuckDBDataChunk[];
  readonly summaries: ReadonlyMap<string, SummaryDelta>;
  readonly traces: ReadonlyMap<string, TraceDelta>;
}


/** Span rollup contributions committed (as raw spans) but not merged into the rollup tables yet. */
type RollupDeltas = Pick<PreparedSpans, "count" | "summaries" | "traces"> & { seq: number };

type LaneContext = { conn: DuckDBConnection; db: Kysely<Database> };

/**
 * One connection and the jobs that run on it, one at a time. DuckDB runs transactions of different
 * connections concurrently, so the writer's two lanes overlap: span commits do not wait for merges.
 */
class Lane {
  private ready: Promise<LaneContext> | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: Store,
    /** Staging tables are per connection (TEMP): each lane creates the ones its jobs use. */
    private readonly staging: readonly string[],
  ) {}

  run<T>(job: (ctx: LaneContext) => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => job(await this.open()));
    this.queue = run.catch(() => undefined);
    return run;
  }

  get opened(): boolean {
    return this.ready !== undefined;
  }

  private open(): Promise<LaneContext> {
    this.ready ??= (async () => {
      const conn = await this.store.connect();
      const db = new Kysely<Database>({ dialect: new DuckDBDialect(conn) });
      for (const ddl of this.staging) await sql.raw(ddl).execute(db);
      return { conn, db };
    })();
    return this.ready;
  }

  async close(): Promise<void> {
    if (!this.ready) return;
    await this.queue;
    const { db } = await this.ready;
    this.ready = undefined;
    await db.destroy();
  }
}

const INGEST_STAGING = [SPAN_BATCH_STAGING];
const ROLLUP_STAGING = [
  "CREATE TEMP TABLE IF NOT EXISTS host_batch AS SELECT * FROM host_samples LIMIT 0",
  EXEMPLAR_STAGING,
  `CREATE TEMP TABLE IF NOT EXISTS summary_delta AS
   SELECT timestamp, service_name, metric, request_count, error_count, sum_duration_ns, min_duration_ns, max_duration_ns
   FROM service_summary LIMIT 0`,
  "CREATE TEMP TABLE IF NOT EXISTS bucket_delta AS SELECT * FROM service_latency_buckets LIMIT 0",
  `CREATE TEMP TABLE IF NOT EXISTS summary_pct AS
   SELECT timestamp, service_name, metric, p50_duration_ns, p95_duration_ns, p99_duration_ns FROM service_summary LIMIT 0`,
  "CREATE TEMP TABLE IF NOT EXISTS trace_delta AS SELECT * FROM trace_summary LIMIT 0",
];

export interface WriterOptions {
  /** How long committed spans' rollup contributions may wait before they are merged (default 1 s). */
  rollupDelayMs?: number;
  /** Merge at once when this many spans' contributions are waiting (default 131,072). */
  rollupMaxSpans?: number;
}

function combine(parts: readonly RollupDeltas[]): Pick<RollupDeltas, "summaries" | "traces"> {
  if (parts.length === 1) return parts[0]!;
  const summaries = new Map<string, SummaryDelta>();
  const traces = new Map<string, TraceDelta>();
  for (const p of parts) {
    for (const [k, d] of p.summaries) addSummary(summaries, k, d);
    for (const [k, d] of p.traces) addTrace(traces, k, d);
  }
  return { summaries, traces };
}


/**
 * The one write path into the store, shared by OTLP ingestion and the demo generator.
 *
 * Raw rows go through the DuckDB appender (spans by way of a staging table, which SQL copies into
 * `spans` and `span_attributes`), one transaction per batch.
 * A span batch's contribution to the span rollups (service_summary, service_latency_buckets,
 * trace_summary) is computed in JS in one pass, and merged with the stored rollup rows it touches
 * later, together with the batches that followed it: a merge costs ~20 ms however few spans it
 * carries, so merging per ingestion commit halved throughput. Each span commit also records the
 * minutes it touched in `rollup_pending`, and each merge clears them in its own transaction, so a
 * crash in between loses nothing: `recover` rebuilds those minutes from the raw spans at start.
 *
 * Readers call `settle` first (the query service does, for every request): it merges whatever is
 * waiting, so a query sees every span acknowledged before it — the rollups always equal what
 * `recompute` derives from the raw spans, which it can do at any time, for any window, without
 * double counting. Nothing in a batch's cost depends on how much raw data is stored.
 *
 * Two connections ("lanes"), each running its jobs one at a time: raw rows (spans, host samples,
 * resources) on one, rollup merges (and everything else that writes rollups) on the other, so a
 * merge never holds up the commit an OTLP client is waiting for. They never write the same rows:
 * a merge deletes only the `rollup_pending` rows of commits it has merged (by sequence number).
 */
export class Writer implements WriteStore {
  private readonly ingest: Lane;
  private readonly rollups: Lane;
  /**
   * Numbers span commits, so a merge clears exactly the `rollup_pending` rows it merged. Starts
   * past any row an earlier process left, so those wait for `recover` rather than being cleared.
   */
  private seq: number | undefined;
  private waiting: RollupDeltas[] = [];
  /** The last stored point of every cumulative histogram stream, loaded once (rollup lane). */
  private streams: Map<string, StreamPoint> | undefined;
  private waitingSpans = 0;
  /** Merges queued or running: a reader must wait for those too. */
  private merges = 0;
  private mergeTimer: NodeJS.Timeout | undefined;
  private readonly rollupDelayMs: number;
  private readonly rollupMaxSpans: number;

  constructor(store: Store, o: WriterOptions = {}) {
    this.rollupDelayMs = o.rollupDelayMs ?? 1000;
    this.rollupMaxSpans = o.rollupMaxSpans ?? 131_072;
    this.ingest = new Lane(store, INGEST_STAGING);
    this.rollups = new Lane(store, ROLLUP_STAGING);
  }

  /** Resolves once every span committed so far is reflected in the rollup tables. */
  settle(): Promise<void> {
    if (this.waiting.length === 0 && this.merges === 0) return Promise.resolve();
    return this.queueMerge();
  }

  private queueMerge(): Promise<void> {
    if (this.mergeTimer) clearTimeout(this.mergeTimer);
    this.mergeTimer = undefined;
    this.merges++;
    return this.rollups.run(({ conn }) => this.mergeWaiting(conn)).finally(() => this.merges--);
  }

  private async mergeWaiting(conn: DuckDBConnection): Promise<void> {
    if (this.waiting.length === 0) return;
    // Counted here, not only in queueMerge: the retention sweep and recovery merge too, and a
    // settle() that found `waiting` emptied by them with no merge counted answered before their
    // commit (the colony's first request after a --demo start read rollups a batch short).
    this.merges++;
    try {
      await this.mergeParts(conn);
    } finally {
      this.merges--;
    }
  }

  private async mergeParts(conn: DuckDBConnection): Promise<void> {
    const parts = this.waiting;
    this.waiting = [];
    this.waitingSpans = 0;
    const { summaries, traces } = combine(parts);
    // Commits are numbered in the order they complete, and each adds its part here right after
    // its commit: so `parts` holds exactly the commits numbered from its first to its last.
    const [from, upTo] = [parts[0]!.seq, parts[parts.length - 1]!.seq];
    try {
      await inTransaction(conn, async () => {
        const summaryTail = await mergeSummaries(conn, [...summaries.values()]);
        const traceScript = await mergeTraces(conn, [...traces.values()]);
        return `${summaryTail}${traceScript}\nDELETE FROM rollup_pending WHERE seq BETWEEN ${from} AND ${upTo};`;
      });
    } catch (err) {
      // Still owed: the next merge (or `recover`, after a crash) takes them.
      this.waiting = parts.concat(this.waiting);
      for (const p of parts) this.waitingSpans += p.count;
      throw err;
    }
  }

  /** Minutes whose rollups `recover` will rebuild: a crash left their spans committed but not merged. */
  pendingMinutes(): Promise<number> {
    return this.rollups.run(async ({ db }) => {
      const r = await db.selectFrom("rollup_pending").select(sql<number>`count(DISTINCT minute)`.as("n")).executeTakeFirst();
      return Number(r?.n ?? 0);
    });
  }

  /**
   * Rebuilds the span rollups of minutes whose spans were committed but not merged when the
   * process last stopped (a crash, `kill -9`). Call once at start, before serving reads.
   *
   * Safe to kill at any point and run again: each window of minutes is rebuilt, and its
   * `rollup_pending` rows cleared, in a transaction of its own, and a rebuild overwrites rows rather
   * than adding to them, so a window redone on the next start gives the same rows. Windows already
   * committed are not redone, so a start killed again and again still gets through the backlog.
   */
  recover(): Promise<number> {
    return this.exclusive(async ({ conn, db }) => {
      // A rebuild reads every committed span, so a contribution still waiting would count twice.
      // What is left pending afterwards belongs to the process that died.
      await this.mergeWaiting(conn);
      const rows = await db.selectFrom("rollup_pending").select(sql<number>`epoch_ms(minute)`.as("ms")).distinct().orderBy("ms").execute();
      // Contiguous minutes become one window, so a long outage is a few large rebuilds, not
      // thousands; capped, so each start commits progress however long the backlog.
      const windows: [number, number][] = [];
      for (const { ms } of rows) {
        const m = Number(ms);
        const last = windows[windows.length - 1];
        if (last && last[1] === m && m - last[0] < RECOVER_WINDOW_MS) last[1] = m + MINUTE_MS;
        else windows.push([m, m + MINUTE_MS]);
      }
      for (const [fromMs, toMs] of windows) {
        const [from, to] = [new Date(fromMs), new Date(toMs)];
        await db.transaction().execute(async (trx) => {
          await rollupServices(trx, from, to);
          await rollupTraces(trx, from, to, new Date(fromMs - TRACE_HORIZON_MS), new Date(toMs + TRACE_HORIZON_MS));
          await trx.deleteFrom("rollup_pending").where("minute", ">=", from).where("minute", "<", to).execute();
        });
      }
      return rows.length;
    });
  }

  writeSpans(spans: readonly SpanRecord[]): Promise<void> {
    if (spans.length === 0) return Promise.resolve();
    try {
      return this.writePrepared([this.prepareSpans(spans)]);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Throws (RangeError) on values the store cannot hold, so bad input fails before any transaction. */
  prepareSpans(spans: readonly SpanRecord[]): PreparedSpans {
    const { minutes, summaries, traces } = spanDeltas(spans);
    const chunks = buildChunks(SPAN_BATCH_TYPES, spans, (part) => [
      part.map((s) => s.traceId),
      part.map((s) => s.spanId),
      part.map((s) => s.parentSpanId),
      part.map((s) => s.serviceName),
      part.map((s) => s.name),
      part.map((s) => s.kind),
      part.map((s) => tstz(s.startTimeMs)),
      part.map((s) => BigInt(Math.round(s.durationNs))),
      part.map((s) => s.statusCode),
      part.map((s) => s.httpStatusCode),
      part.map((s) => (typeof s.attributes === "string" ? s.attributes : JSON.stringify(s.attributes))),
      ...attributeColumns(part),
    ]);
    return { count: spans.length, minutes, chunks, summaries, traces };
  }

  /** Commits prepared batches in one transaction; their rollup contributions follow in a later merge. */
  writePrepared(parts: readonly PreparedSpans[]): Promise<void> {
    if (parts.every((p) => p.count === 0)) return Promise.resolve();
    const minutes = new Set(parts.flatMap((p) => p.minutes));
    return this.ingest.run(async ({ conn }) => {
      this.seq ??= Number((await conn.runAndReadAll("SELECT coalesce(max(seq), 0) FROM rollup_pending")).getRowsJS()[0]![0]);
      const seq = ++this.seq;
      await inTransaction(conn, async () => {
        await appendPrepared(conn, "span_batch", "temp", parts.flatMap((p) => p.chunks));
        await copySpanBatch(conn);
        return `INSERT INTO rollup_pending VALUES ${[...minutes].map((m) => `(${tsLiteral(m)}, ${seq})`).join(", ")};`;
      });
      for (const p of parts) {
        this.waiting.push({ count: p.count, summaries: p.summaries, traces: p.traces, seq });
        this.waitingSpans += p.count;
      }
      if (this.waitingSpans >= this.rollupMaxSpans) {
        void this.queueMerge().catch(() => {}); // what failed stays waiting; `settle` reports it
      } else if (Number.isFinite(this.rollupDelayMs)) {
        this.mergeTimer ??= setTimeout(() => {
          this.mergeTimer = undefined;
          void this.queueMerge().catch(() => {});
        }, this.rollupDelayMs).unref();
      }
    });
  }

  /** Merges pre-aggregated latency observations (OTLP histograms) into the latency rollups. */
  writeLatency(records: readonly LatencyRecord[]): Promise<void> {
    return this.writeMetrics([], records);
  }

  writeHostSamples(samples: readonly HostSample[]): Promise<void> {
    return this.writeMetrics(samples, []);
  }

  /**
   * Host samples and latency observations in one transaction, so an OTLP metrics batch is stored
   * whole or not at all: the ingest pipeline retries the requests of a failed batch one by one,
   * which must not store anything of them twice. On the rollup lane, which owns the latency
   * rollups and the cumulative streams' cache.
   */
  writeMetrics(samples: readonly HostSample[], records: readonly LatencyRecord[]): Promise<void> {
    if (samples.length === 0 && records.length === 0) return Promise.resolve();
    return this.rollups.run(async ({ conn, db }) => {
      const changed = new Map<string, StreamPoint>();
      if (records.length > 0) this.streams ??= await loadStreams(db);
      const summaries = latencyDeltas(records, (stream) => this.streams!.get(stream), changed);
      await inTransaction(conn, async () => {
        await insertHostSamples(conn, db, samples);
        await saveStreams(db, changed, Date.now());
        return mergeSummaries(conn, [...summaries.values()]);
      });
      // Only now: a transaction that failed leaves the streams where the stored increments left them.
      for (const [stream, point] of changed) this.streams!.set(stream, point);
    });
  }

  /**
   * Rebuilds the span-derived rollups (service_summary / service_latency_buckets for
   * `http.server.duration`, and trace_summary) of every minute in [fromMs, toMs) from raw spans.
   * Idempotent: running it any number of times, or after incremental writes, gives the same rows.
   */
  recompute(fromMs: number, toMs: number): Promise<void> {
    return this.exclusive(async ({ conn, db }) => {
      // Merged first: contributions merged after a rebuild would be counted twice.
      await this.mergeWaiting(conn);
      await db.transaction().execute(async (trx) => {
        const from = floorMinute(fromMs);
        const to = new Date(Math.ceil(toMs / MINUTE_MS) * MINUTE_MS);
        await rollupServices(trx, from, to);
        await rollupTraces(trx, from, to, new Date(from.getTime() - TRACE_HORIZON_MS), new Date(to.getTime() + TRACE_HORIZON_MS));
      });
    });
  }

  /**
   * Deletes raw spans and trace summaries that started before `cutoffMs`. Per-minute rollups stay:
   * they are small and what long windows are answered from. Trace summaries go with their spans —
   * the traces they point at are gone — which also bounds the index that merges them.
   */
  deleteTracesBefore(cutoffMs: number): Promise<number> {
    return this.rollups.run(async ({ conn, db }) => {
      // Merged first, or a waiting contribution would bring back a summary of a deleted trace.
      await this.mergeWaiting(conn);
      return db.transaction().execute(async (tx) => {
        const cutoff = new Date(cutoffMs);
        const r = await tx.deleteFrom("spans").where("start_time", "<", cutoff).executeTakeFirst();
        await tx.deleteFrom("span_attributes").where("start_time", "<", cutoff).execute();
        await tx.deleteFrom("trace_summary").where("timestamp", "<", cutoff).execute();
        // Exemplars point at spans: they go with them, rollup or not.
        await tx.deleteFrom("latency_exemplars").where("start_time", "<", cutoff).execute();
        return Number(r.numDeletedRows);
      });
    });
  }

  writeResources(resources: ResourceRecord[]): Promise<void> {
    if (resources.length === 0) return Promise.resolve();
    // One row per key: an upsert touching the same key twice in one statement is an error in DuckDB.
    const instances = new Map<string, ResourceRecord>();
    // Per service: the newest namespace and region among the reports that carry one, with when.
    type Placement = { value: string; atMs: number };
    const services = new Map<string, { latest: ResourceRecord; firstMs: number; namespace?: Placement; region?: Placement }>();
    for (const r of [...resources].sort((a, b) => a.seenAtMs - b.seenAtMs)) {
      instances.set(JSON.stringify([r.serviceName, r.instanceId]), r);
      let svc = services.get(r.serviceName);
      if (!svc) services.set(r.serviceName, (svc = { latest: r, firstMs: r.seenAtMs }));
      svc.latest = r;
      if (r.namespace) svc.namespace = { value: r.namespace, atMs: r.seenAtMs };
      if (r.region) svc.region = { value: r.region, atMs: r.seenAtMs };
    }
    return this.ingest.run(async ({ db }) => {
      await db.transaction().execute(async (trx) => {
        await trx
          .insertInto("service_instances")
          .values([...instances.values()].map((r) => ({ service_name: r.serviceName, instance_id: r.instanceId, last_seen: new Date(r.seenAtMs) })))
          .onConflict((oc) =>
            oc.columns(["service_name", "instance_id"]).doUpdateSet({
              last_seen: sql`greatest(service_instances.last_seen, excluded.last_seen)`,
            }),
          )
          .execute();
        // The newest report that names a namespace (region) wins: one older than what the table
        // has already seen must not move a service back, and one without the attribute must not
        // blank it. Compared before the upsert below moves last_seen.
        for (const { latest, namespace, region } of services.values()) {
          for (const [column, p] of [["namespace", namespace], ["region", region]] as const) {
            if (!p) continue;
            await trx
              .updateTable("services")
              .set({ [column]: p.value })
              .where("name", "=", latest.serviceName)
              .where("last_seen", "<=", new Date(p.atMs))
              .execute();
          }
        }
        await trx
          .insertInto("services")
          .values(
            [...services.values()].map(({ latest, firstMs, namespace, region }) => ({
              name: latest.serviceName,
              namespace: namespace?.value ?? "",
              region: region?.value ?? "",
              instance_count: 0,
              first_seen: new Date(firstMs),
              last_seen: new Date(latest.seenAtMs),
            })),
          )
          .onConflict((oc) =>
            oc.column("name").doUpdateSet({
              first_seen: sql`least(services.first_seen, excluded.first_seen)`,
              last_seen: sql`greatest(services.last_seen, excluded.last_seen)`,
            }),
          )
          .execute();
        await trx
          .updateTable("services")
          .set({
            instance_count: (eb) =>
              eb.selectFrom("service_instances").select((e) => e.fn.countAll<number>().as("n")).whereRef("service_instances.service_name", "=", "services.name"),
          })
          .where("name", "in", [...services.keys()])
          .execute();
      });
    });
  }

  /**
   * Runs `job` on the rollup lane while no span commit runs: for rebuilds from raw spans, which
   * would count a commit twice if it landed between their merge of what waits and their snapshot.
   */
  private exclusive<T>(job: (ctx: LaneContext) => Promise<T>): Promise<T> {
    return this.ingest.run(() => this.rollups.run(job));
  }

  /** Releases the writer's connections; the store stays open. */
  async close(): Promise<void> {
    if (!this.ingest.opened && !this.rollups.opened) return;
    await this.ingest.close();
    // A merge that fails here is not lost: its minutes stay in rollup_pending for `recover`.
    await this.settle().catch(() => {});
    clearTimeout(this.mergeTimer);
    await this.rollups.close();
  }
}


/**
 * What `span_attributes` rows a span gets (which attributes: storedAttributes), as the last three
 * columns of `span_batch`: failed, how many pairs are its own (the rest are its resource's), and
 * every pair as a JSON array `[key, value, …]` (null: no rows).
 */
function attributeColumns(spans: readonly SpanRecord[]): DuckDBValue[][] {
  const failed: boolean[] = [];
  const ownPairs: number[] = [];
  const pairs: (string | null)[] = [];
  for (const s of spans) {
    const { own, resource } = storedAttributes(s);
    failed.push(isErrorSpan(s));
    ownPairs.push(own.length / 2);
    pairs.push(own.length + resource.length === 0 ? null : JSON.stringify(wellFormed(own, resource)));
  }
  return [failed, ownPairs, pairs];
}

/**
 * The appender stores a lone surrogate as U+FFFD (V8's UTF-8 conversion); JSON.stringify escapes
 * it instead, which DuckDB's JSON reader refuses, so it is replaced here as the appender would.
 */
function wellFormed(own: readonly string[], resource: readonly string[]): readonly string[] {
  const all = resource.length === 0 ? own : own.length === 0 ? resource : own.concat(resource);
  if (all.every((v) => (v as unknown as WellFormedString).isWellFormed())) return all;
  return all.map((v) => (v as unknown as WellFormedString).toWellFormed());
}

/** ES2024 string methods (Node 20 has them; the project's TypeScript lib is ES2022). */
interface WellFormedString {
  isWellFormed(): boolean;
  toWellFormed(): string;
}

/** Appends host samples and recomputes the system_metrics_rollup minutes they touch (inside the caller's transaction). */
async function insertHostSamples(conn: DuckDBConnection, db: Kysely<Database>, samples: readonly HostSample[]): Promise<void> {
  if (samples.length === 0) return;
  const big = (v: number | null) => (v === null ? null : BigInt(Math.round(v)));
  await appendChunks(conn, "host_batch", "temp", HOST_TYPES, samples, (part) => [
    part.map((s) => tstz(s.timestampMs)),
    part.map((s) => s.hostName),
    part.map((s) => s.serviceName),
    part.map((s) => s.cpuPercent),
    part.map((s) => s.memoryPercent),
    part.map((s) => big(s.memoryUsedBytes)),
    part.map((s) => big(s.memoryTotalBytes)),
  ]);
  await sql`INSERT INTO host_samples SELECT * FROM temp.host_batch`.execute(db);
  await sql`
    CREATE OR REPLACE TEMP TABLE host_keys AS
    SELECT DISTINCT host_name, service_name, date_trunc('minute', timestamp) AS minute FROM temp.host_batch`.execute(db);
  await sql`
    DELETE FROM system_metrics_rollup r USING temp.host_keys k
    WHERE r.host_name = k.host_name AND r.service_name = k.service_name AND r.timestamp = k.minute`.execute(db);
  // avg() skips NULLs, so a metric a host did not report does not drag its minute towards 0.
  await sql`
    INSERT INTO system_metrics_rollup
    SELECT k.minute, k.host_name, k.service_name, avg(h.cpu_percent), avg(h.memory_percent),
           CAST(avg(h.memory_used_bytes) AS BIGINT), CAST(max(h.memory_total_bytes) AS BIGINT), count(*)
    FROM host_samples h
    JOIN temp.host_keys k
      ON h.host_name = k.host_name AND h.service_name = k.service_name AND date_trunc('minute', h.timestamp) = k.minute
    GROUP BY ALL`.execute(db);
  await sql`DELETE FROM temp.host_batch`.execute(db);
}

