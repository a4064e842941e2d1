// The write side on ClickHouse (WriteStore): raw rows and rollup contributions, insert-only.
//
// Several colony processes may write to one ClickHouse, so no write reads a stored row to change
// it: a batch's contributions (computed by colony/ingest/deltas.ts, as on DuckDB) are inserted as
// rows that the tables add up (schema.ts), and reads merge them. Nothing is merged later, so
// `settle`, `pendingMinutes` and `recover` have nothing to do.
//
// A batch is one INSERT per table it has rows for (spans, span_attributes, the three latency
// tables, trace contributions), all sent at once. Each carries an insert_deduplication_token
// derived from the batch's content (span ids, times, values) and the table, so when a client
// retries a batch that was not acknowledged — after a failed INSERT or a killed colony, on this
// process or another — the INSERTs that landed the first time are skipped and the rest are added:
// nothing counted twice, nothing lost. A batch a client never retries after a kill may be stored
// in part (any of its tables).
//
// Why this shape — measured on chdb 26.7 (2 shared cores, 512-span batches of bench/ingest.ts's
// synthetic spans, CPU of the whole process per batch, alternating runs in one process):
// - What a batch costs is mostly ClickHouse making one part per table: an INSERT into a MergeTree
//   costs 4–6 ms CPU more than the same INSERT into a Memory table, whatever its size, and the
//   merges of those parts later add about 30 %. The batch is the deduplication unit (a retried
//   request may come back grouped with other requests), and ClickHouse deduplicates whole parts,
//   so one part per table per batch is the floor; coalescing batches into bigger INSERTs would
//   count a retried request twice.
// - One INSERT into a Null-engine table fanned out by materialized views (with
//   deduplicate_blocks_in_dependent_materialized_views; retries deduplicate correctly) makes the
//   same parts and cost more: 77–101 ms CPU per batch against 68–82 ms for the direct INSERTs,
//   94–169 ms with parallel_view_processing.
// - async_insert, which would coalesce many batches into one part and still deduplicate each,
//   does not exist in chdb ("asynchronous insert queue … not initialized": inserts run
//   synchronously); on a server it is a setting of the colony's user (docs/scale-out.md).
// - Parallel INSERTs: what this writer does. chdb runs one session's queries one at a time (200
//   concurrent 3 ms queries take 2.5 s), yet one batch's INSERTs sent together went through at
//   3,600–5,500 spans/s against 1,900–3,400 one after another (it takes the next while one runs);
//   with 16 batches at once both come to 2,600–4,400. On a server they overlap, and a batch waits
//   one round trip instead of six.
import { createHash } from "node:crypto";
import type { ClickHouseClient } from "@clickhouse/client";
import { Slots } from "../../admission.js";
import type { StreamPoint } from "../../ingest/cumulative.js";
import { latencyDeltas, spanDeltas } from "../../ingest/deltas.js";
import { type HostSample, type LatencyRecord, type ResourceRecord, type SpanRecord } from "../../ingest/records.js";
import type { SummaryDelta, TraceDelta } from "../../ingest/rollups.js";
import type { PreparedBatch, WriteStore } from "../engine.js";
import { attributeRows, count, int64, micros, type Row } from "./rows.js";
import { columnsOf, ident } from "./schema.js";

export interface ClickHouseWriterOptions {
  database: string;
  /** With `--cluster`: retention deletes run on the local tables of every node. */
  cluster?: string;
}

/** The tables the writer fills; each INSERT names their columns (schema.ts), rows give values in that order (arrays are half the bytes of objects to build and parse). */
const WRITTEN = [
  "spans",
  "span_attributes",
  "service_latency_buckets",
  "service_summary_parts",
  "latency_exemplar_parts",
  "trace_summary_parts",
  "host_samples",
  "histogram_streams",
  "services_parts",
  "service_instances_parts",
] as const;
type Written = (typeof WRITTEN)[number];
const COLUMNS = Object.fromEntries(WRITTEN.map((t) => [t, columnsOf(t)])) as Record<Written, [string, ...string[]]>;

/** A write's rows, by table. */
type Rows = Partial<Record<Written, Row[]>>;

interface PreparedClickHouse extends PreparedBatch {
  /** Built as the request arrives, not in the commit loop. */
  readonly rows: Rows;
  /** Identifies the batch's content: the same spans give the same token, on any process. */
  readonly token: string;
}


/**
 * INSERTs sent at once. A few in flight let chdb take the next while one runs (one batch's six at
 * once: 3,600–5,500 spans/s against 1,900–3,400 one after another); a hundred (a group of 16
 * batches) did worse than 16, and a server's connection pool is 10 (connection.ts).
 */
const MAX_INSERTS_IN_FLIGHT = 8;

export class ClickHouseWriter implements WriteStore {
  private readonly table: (name: string) => string;
  /** Stream points' `updated_at` strictly increases within this process, so the newest is one row. */
  private lastUpdatedUs = 0;
  private readonly inserts = new Slots(MAX_INSERTS_IN_FLIGHT);

  constructor(
    private readonly client: ClickHouseClient,
    private readonly o: ClickHouseWriterOptions,
  ) {
    this.table = (name) => `${ident(o.database)}.${ident(name)}`;
  }

  settle(): Promise<void> {
    return Promise.resolve();
  }

  pendingMinutes(): Promise<number> {
    return Promise.resolve(0);
  }

  recover(): Promise<number> {
    return Promise.resolve(0);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  prepareSpans(spans: readonly SpanRecord[]): PreparedClickHouse {
    const { summaries, traces } = spanDeltas(spans);
    const hash = createHash("sha256");
    const rows = spans.map((s): Row => {
      const start = micros(s.startTimeMs);
      const duration = int64(s.durationNs);
      hash.update(`${s.traceId}\u0000${s.spanId}\u0000${s.serviceName}\u0000${start}\u0000${duration}\u0001`);
      const attributes = typeof s.attributes === "string" ? s.attributes : JSON.stringify(s.attributes);
      return [s.traceId, s.spanId, s.parentSpanId, s.serviceName, s.name, s.kind, start, duration, s.statusCode, s.httpStatusCode, attributes];
    });
    const all: Rows = { spans: rows, span_attributes: attributeRows(spans), ...summaryRows([...summaries.values()]), trace_summary_parts: [...traces.values()].map(traceRow) };
    return { count: spans.length, rows: all, token: `spans:${hash.digest("hex")}` };
  }

  writeSpans(spans: readonly SpanRecord[]): Promise<void> {
    if (spans.length === 0) return Promise.resolve();
    try {
      return this.writePrepared([this.prepareSpans(spans)]);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Each batch on its own, with a token of its own: batches are what clients retry, and a retried
   * request may come back grouped with different ones (so one INSERT per group would be counted
   * twice when part of it landed). The batches go concurrently (a server takes them in parallel;
   * chdb runs one session's queries one at a time).
   */
  async writePrepared(parts: readonly PreparedBatch[]): Promise<void> {
    const results = await Promise.allSettled(
      (parts as readonly PreparedClickHouse[]).map(async (part) => {
        if (part.count > 0) await this.insertAll(part.rows, part.token);
      }),
    );
    // Every batch has run to its end before the caller hears of a failure and retries them.
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  writeLatency(records: readonly LatencyRecord[]): Promise<void> {
    return this.writeMetrics([], records);
  }

  writeHostSamples(samples: readonly HostSample[]): Promise<void> {
    return this.writeMetrics(samples, []);
  }

  /**
   * Host samples and latency contributions (sent together), then the cumulative streams' new last
   * points. The points go last: a retry after a kill before them computes the same increments (the
   * same rows, the same tokens: skipped) and then stores them. The last points are read from ClickHouse on
   * every batch rather than cached, so a stream whose points reach different colonies still gets
   * increments against the newest stored point (two colonies taking points of one stream in the
   * same instant can still both count one increment: docs/scale-out.md).
   */
  async writeMetrics(samples: readonly HostSample[], records: readonly LatencyRecord[]): Promise<void> {
    if (samples.length === 0 && records.length === 0) return;
    const token = metricsToken(samples, records);
    const streams = [...new Set(records.flatMap((r) => (r.cumulative ? [r.cumulative.stream] : [])))];
    const stored = streams.length > 0 ? await this.loadStreams(streams) : new Map<string, StreamPoint>();
    const changed = new Map<string, StreamPoint>();
    const summaries = latencyDeltas(records, (s) => stored.get(s), changed);
    await this.insertAll({ host_samples: samples.map(hostRow), ...summaryRows([...summaries.values()]) }, token);
    if (changed.size > 0) {
      const rows = [...changed].map(([stream, p]) => [stream, p.startNs.toString(), p.sumNs, JSON.stringify([...p.buckets]), this.nextUpdatedUs()]);
      await this.insert("histogram_streams", rows, `${token}:streams`);
    }
  }

  private nextUpdatedUs(): number {
    this.lastUpdatedUs = Math.max(Date.now() * 1000, this.lastUpdatedUs + 1);
    return this.lastUpdatedUs;
  }

  private async loadStreams(streams: string[]): Promise<Map<string, StreamPoint>> {
    const r = await this.client.query({
      query: `SELECT stream, argMax(start_ns, updated_at) AS start_ns, argMax(sum_ns, updated_at) AS sum_ns, argMax(buckets, updated_at) AS buckets
              FROM ${this.table("histogram_streams")} WHERE stream IN {streams:Array(String)} GROUP BY stream`,
      query_params: { streams },
      format: "JSONEachRow",
    });
    const rows = await r.json<{ stream: string; start_ns: string; sum_ns: number; buckets: string }>();
    return new Map(rows.map((row) => [row.stream, { startNs: BigInt(row.start_ns), sumNs: Number(row.sum_ns), buckets: new Map(JSON.parse(row.buckets) as [number, number][]) }]));
  }

  /**
   * Services and instances are minimums and maximums (and distinct instance ids): storing a report
   * twice changes nothing, so these rows need no token.
   */
  async writeResources(resources: ResourceRecord[]): Promise<void> {
    if (resources.length === 0) return;
    const instances = new Map<string, [service: string, instance: string, lastSeen: number]>();
    const services = new Map<string, { name: string; namespace: [number, string]; region: [number, string]; first_seen: number; last_seen: number }>();
    for (const r of resources) {
      const at = micros(r.seenAtMs);
      const key = JSON.stringify([r.serviceName, r.instanceId]);
      const i = instances.get(key);
      if (!i || i[2] < at) instances.set(key, [r.serviceName, r.instanceId, at]);
      let s = services.get(r.serviceName);
      if (!s) services.set(r.serviceName, (s = { name: r.serviceName, namespace: [0, ""], region: [0, ""], first_seen: at, last_seen: at }));
      s.first_seen = Math.min(s.first_seen, at);
      s.last_seen = Math.max(s.last_seen, at);
      // The newest report that names a namespace (region) wins; one without it does not blank it.
      if (r.namespace && at >= s.namespace[0]) s.namespace = [at, r.namespace];
      if (r.region && at >= s.region[0]) s.region = [at, r.region];
    }
    await this.insert("service_instances_parts", [...instances.values()], "");
    await this.insert("services_parts", [...services.values()].map((v) => [v.name, v.namespace, v.region, v.first_seen, v.last_seen]), "");
  }

  /**
   * Deletes raw spans, and the trace summaries of traces that started, before `cutoffMs`
   * (lightweight DELETE; only when there is something to delete, since each one is a mutation).
   */
  async deleteTracesBefore(cutoffMs: number): Promise<number> {
    const params = { cutoff: micros(cutoffMs) };
    const cutoff = "fromUnixTimestamp64Micro({cutoff:Int64}, 'UTC')";
    const r = await this.client.query({ query: `SELECT count() AS n FROM ${this.table("spans")} WHERE start_time < ${cutoff}`, query_params: params, format: "JSONEachRow" });
    const n = Number((await r.json<{ n: string | number }>())[0]?.n ?? 0);
    const local = (name: string) => (this.o.cluster ? `${this.table(`${name}_local`)} ON CLUSTER ${ident(this.o.cluster)}` : this.table(name));
    if (n > 0) {
      // DuckDB keeps only the exemplars that ranked first when they were merged, and deleting some
      // leaves their places empty; here the candidates ranked after them would move up. So in the
      // one minute the cutoff cuts through, the candidates outside the kept ones go first.
      const minute = "toStartOfMinute(fromUnixTimestamp64Micro({cutoff:Int64}, 'UTC'))";
      await this.client.command({
        query: `DELETE FROM ${local("latency_exemplar_parts")} WHERE timestamp = ${minute} AND (service_name, metric, bucket, trace_id, span_id) NOT IN
                  (SELECT service_name, metric, bucket, trace_id, span_id FROM ${this.table("latency_exemplars")} WHERE timestamp = ${minute})`,
        query_params: params,
      });
      // Attribute rows and exemplars point at spans: they go with them (by the span's start, as on DuckDB).
      for (const table of ["spans", "span_attributes", "latency_exemplar_parts"]) {
        await this.client.command({ query: `DELETE FROM ${local(table)} WHERE start_time < ${cutoff}`, query_params: params });
      }
    }
    const t = await this.client.query({ query: `SELECT count() AS n FROM ${this.table("trace_summary_parts")} WHERE start_time < ${cutoff}`, query_params: params, format: "JSONEachRow" });
    if (Number((await t.json<{ n: string | number }>())[0]?.n ?? 0) > 0) {
      // Every part of such a trace goes, not only the parts that started early: the trace's summary
      // starts at its earliest part, so it is entirely past the cutoff.
      await this.client.command({
        query: `DELETE FROM ${local("trace_summary_parts")} WHERE (trace_id, service_name) IN
                  (SELECT trace_id, service_name FROM ${this.table("trace_summary_parts")} WHERE start_time < ${cutoff})`,
        query_params: params,
      });
    }
    return n;
  }

  /**
   * Every table's rows at once, each INSERT with a token of its own (the batch's and the table's):
   * a retry skips the tables the first attempt filled and fills the others, whatever the order.
   */
  private async insertAll(rows: Rows, token: string): Promise<void> {
    const results = await Promise.allSettled(Object.entries(rows).map(([table, values]) => this.insert(table as Written, values, `${token}:${table}`)));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  /**
   * Every INSERT names its deduplication token, an empty one too: chdb keeps a query's settings
   * for the queries after it in the session, so a token left unset could be an earlier one.
   */
  private async insert(table: Written, values: Row[], token: string): Promise<void> {
    if (values.length === 0) return;
    const free = await this.inserts.acquire();
    try {
      await this.send(table, values, token);
    } finally {
      free();
    }
  }

  private async send(table: Written, values: Row[], token: string): Promise<void> {
    await this.client.insert({
      table: this.table(table),
      values,
      columns: COLUMNS[table],
      format: "JSONCompactEachRow",
      clickhouse_settings: { insert_deduplication_token: token },
    });
  }
}

/** The rows of latency contributions: bucket counts, summaries and exemplar candidates. */
function summaryRows(deltas: readonly SummaryDelta[]): Rows {
  return {
    service_latency_buckets: deltas.flatMap((d) => [...d.buckets].map(([bucket, n]) => [d.minuteMs * 1000, d.serviceName, d.metric, bucket, count(n)])),
    service_summary_parts: deltas.map((d) => [d.minuteMs * 1000, d.serviceName, d.metric, count(d.count), count(d.errors), d.sum, int64(d.min), int64(d.max)]),
    latency_exemplar_parts: deltas.flatMap((d) =>
      [...(d.exemplars ?? [])].flatMap(([bucket, list]) => list.map((e) => [d.minuteMs * 1000, d.serviceName, d.metric, bucket, e.traceId, e.spanId, micros(e.startTimeMs), int64(e.durationNs)])),
    ),
  };
}

function traceRow(t: TraceDelta): Row {
  const endNs = BigInt(t.baseUs) * 1000n + BigInt(t.rootEndNs);
  return [t.traceId, t.serviceName, [t.rootStartUs, (-endNs).toString(), t.rootName], t.rootStartUs, endNs.toString(), count(t.spanCount), t.error ? 1 : 0];
}

function hostRow(s: HostSample): Row {
  const big = (v: number | null) => (v === null ? null : int64(v));
  return [micros(s.timestampMs), s.hostName, s.serviceName, s.cpuPercent, s.memoryPercent, big(s.memoryUsedBytes), big(s.memoryTotalBytes)];
}

/** The content of a metrics request, hashed: what identifies it when a client sends it again. */
function metricsToken(samples: readonly HostSample[], records: readonly LatencyRecord[]): string {
  const hash = createHash("sha256");
  for (const s of samples) hash.update(JSON.stringify([s.timestampMs, s.hostName, s.serviceName, s.cpuPercent, s.memoryPercent, s.memoryUsedBytes, s.memoryTotalBytes]));
  hash.update("\u0001");
  for (const r of records) {
    hash.update(
      JSON.stringify([r.serviceName, r.metric, r.timestampMs, [...r.buckets], r.errorCount, r.sumNs, r.minNs, r.maxNs, r.cumulative && [r.cumulative.stream, String(r.cumulative.startNs), r.cumulative.errors]]),
    );
  }
  return `metrics:${hash.digest("hex")}`;
}
