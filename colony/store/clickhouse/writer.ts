// The write side on ClickHouse (WriteStore): raw rows and rollup contributions, insert-only.
//
// Several colony processes may write to one ClickHouse, so no write reads a stored row to change
// it: a batch's contributions (computed by colony/ingest/deltas.ts, as on DuckDB) are inserted as
// rows that the tables add up (schema.ts), and reads merge them. Nothing is merged later, so
// `settle`, `pendingMinutes` and `recover` have nothing to do.
//
// A batch is several INSERTs, spans first. Each carries an insert_deduplication_token derived
// from the batch's content (span ids, times, values), so when a client retries a batch that was
// not acknowledged — after a failed INSERT or a killed colony, on this process or another — the
// INSERTs that landed the first time are skipped and the rest are added: nothing counted twice,
// nothing lost. What is lost is the rollups of a batch a client never retries after a kill.
import { createHash } from "node:crypto";
import type { ClickHouseClient } from "@clickhouse/client";
import type { StreamPoint } from "../../ingest/cumulative.js";
import { isErrorSpan, latencyDeltas, spanDeltas } from "../../ingest/deltas.js";
import { storedAttributes, type HostSample, type LatencyRecord, type ResourceRecord, type SpanRecord } from "../../ingest/records.js";
import type { SummaryDelta, TraceDelta } from "../../ingest/rollups.js";
import type { PreparedBatch, WriteStore } from "../engine.js";
import { ident } from "./schema.js";

export interface ClickHouseWriterOptions {
  database: string;
  /** With `--cluster`: retention deletes run on the local tables of every node. */
  cluster?: string;
}

/** A row as JSONCompactEachRow sends it: values in the order of its table's COLUMNS entry. */
type Row = unknown[];

/** The columns each insert names, in the order its rows give values (arrays are half the bytes of objects to build and parse). */
const COLUMNS = {
  spans: ["trace_id", "span_id", "parent_span_id", "service_name", "name", "kind", "start_time", "duration_ns", "status_code", "http_status_code", "attributes"],
  span_attributes: ["service_name", "start_time", "trace_id", "span_id", "kind", "duration_ns", "failed", "key", "value", "resource"],
  latency_exemplars: ["timestamp", "service_name", "metric", "bucket", "trace_id", "span_id", "start_time", "duration_ns"],
  service_latency_buckets: ["timestamp", "service_name", "metric", "bucket", "count"],
  service_summary_parts: ["timestamp", "service_name", "metric", "request_count", "error_count", "sum_duration_ns", "min_duration_ns", "max_duration_ns"],
  trace_summary_parts: ["trace_id", "service_name", "root", "start_time", "end_ns", "span_count", "error"],
  host_samples: ["timestamp", "host_name", "service_name", "cpu_percent", "memory_percent", "memory_used_bytes", "memory_total_bytes"],
  histogram_streams: ["stream", "start_ns", "sum_ns", "buckets", "updated_at"],
  services_parts: ["name", "namespace", "region", "first_seen", "last_seen"],
  service_instances_parts: ["service_name", "instance_id", "last_seen"],
} as const;

interface PreparedClickHouse extends PreparedBatch {
  readonly spans: Row[];
  readonly attributes: Row[];
  readonly summaries: ReadonlyMap<string, SummaryDelta>;
  readonly traces: ReadonlyMap<string, TraceDelta>;
  /** Identifies the batch's content: the same spans give the same token, on any process. */
  readonly token: string;
}

const INT64_MAX = 2n ** 63n - 1n;

/** Int64 values as decimal text: JSON numbers lose digits beyond 2^53, and ClickHouse reads quoted integers. */
function int64(n: number | bigint): string {
  const v = typeof n === "bigint" ? n : BigInt(Math.round(n));
  return (v > INT64_MAX ? INT64_MAX : v < -INT64_MAX - 1n ? -INT64_MAX - 1n : v).toString();
}

/** UInt64 counts, saturated as DuckDB's are (a client may send counts up to 2^53 − 1 per point). */
function count(n: number): string {
  return n >= 2 ** 64 ? (2n ** 64n - 1n).toString() : BigInt(Math.max(0, Math.round(n))).toString();
}

const micros = (ms: number) => Math.round(ms * 1000);

export class ClickHouseWriter implements WriteStore {
  private readonly table: (name: string) => string;
  /** Stream points' `updated_at` strictly increases within this process, so the newest is one row. */
  private lastUpdatedUs = 0;

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
    return { count: spans.length, spans: rows, attributes: attributeRows(spans), summaries, traces, token: `spans:${hash.digest("hex")}` };
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
   * Each batch on its own, with tokens of its own: batches are what clients retry, and a retried
   * request may come back grouped with different ones (so one INSERT per group would be counted
   * twice when part of it landed). The batches go concurrently; within one, spans go first.
   */
  async writePrepared(parts: readonly PreparedBatch[]): Promise<void> {
    const results = await Promise.allSettled(
      (parts as readonly PreparedClickHouse[]).map(async (part) => {
        if (part.count === 0) return;
        await this.insert("spans", part.spans, `${part.token}:spans`);
        await this.insert("span_attributes", part.attributes, `${part.token}:attributes`);
        await this.insertSummaries([...part.summaries.values()], part.token);
        await this.insert("trace_summary_parts", [...part.traces.values()].map(traceRow), `${part.token}:traces`);
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
   * Host samples, then latency contributions, then the cumulative streams' new last points. The
   * points go last: a retry after a kill before them computes the same increments (the same rows,
   * the same token: skipped) and then stores them. The last points are read from ClickHouse on
   * every batch rather than cached, so a stream whose points reach different colonies still gets
   * increments against the newest stored point (two colonies taking points of one stream in the
   * same instant can still both count one increment: docs/scale-out.md).
   */
  async writeMetrics(samples: readonly HostSample[], records: readonly LatencyRecord[]): Promise<void> {
    if (samples.length === 0 && records.length === 0) return;
    const token = metricsToken(samples, records);
    await this.insert("host_samples", samples.map(hostRow), `${token}:hosts`);
    const streams = [...new Set(records.flatMap((r) => (r.cumulative ? [r.cumulative.stream] : [])))];
    const stored = streams.length > 0 ? await this.loadStreams(streams) : new Map<string, StreamPoint>();
    const changed = new Map<string, StreamPoint>();
    const summaries = latencyDeltas(records, (s) => stored.get(s), changed);
    await this.insertSummaries([...summaries.values()], token);
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

  private async insertSummaries(deltas: SummaryDelta[], token: string): Promise<void> {
    if (deltas.length === 0) return;
    await this.insert(
      "service_latency_buckets",
      deltas.flatMap((d) => [...d.buckets].map(([bucket, n]) => [d.minuteMs * 1000, d.serviceName, d.metric, bucket, count(n)])),
      `${token}:buckets`,
    );
    await this.insert(
      "service_summary_parts",
      deltas.map((d) => [d.minuteMs * 1000, d.serviceName, d.metric, count(d.count), count(d.errors), d.sum, int64(d.min), int64(d.max)]),
      `${token}:summaries`,
    );
    await this.insert(
      "latency_exemplars",
      deltas.flatMap((d) =>
        [...(d.exemplars ?? [])].flatMap(([bucket, list]) =>
          list.map((e) => [d.minuteMs * 1000, d.serviceName, d.metric, bucket, e.traceId, e.spanId, micros(e.startTimeMs), int64(e.durationNs)]),
        ),
      ),
      `${token}:exemplars`,
    );
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
      // Attribute rows and exemplars point at spans: they go with them (by the span's start, as on DuckDB).
      for (const table of ["spans", "span_attributes", "latency_exemplars"]) {
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
   * Every INSERT names its deduplication token, an empty one too: chdb keeps a query's settings
   * for the queries after it in the session, so a token left unset could be an earlier one.
   */
  private async insert(table: keyof typeof COLUMNS, values: Row[], token: string): Promise<void> {
    if (values.length === 0) return;
    await this.client.insert({
      table: this.table(table),
      values,
      columns: [...COLUMNS[table]] as [string, ...string[]],
      format: "JSONCompactEachRow",
      clickhouse_settings: { insert_deduplication_token: token },
    });
  }
}

/** The `span_attributes` rows of spans (which attributes: storedAttributes). */
function attributeRows(spans: readonly SpanRecord[]): Row[] {
  const rows: Row[] = [];
  for (const s of spans) {
    const { own, resource: res } = storedAttributes(s);
    if (own.length === 0 && res.length === 0) continue;
    const at = micros(s.startTimeMs);
    const ns = int64(s.durationNs);
    const failed = isErrorSpan(s);
    for (let i = 0; i < own.length; i += 2) rows.push([s.serviceName, at, s.traceId, s.spanId, s.kind, ns, failed, own[i]!, own[i + 1]!, false]);
    for (let i = 0; i < res.length; i += 2) rows.push([s.serviceName, at, s.traceId, s.spanId, s.kind, ns, failed, res[i]!, res[i + 1]!, true]);
  }
  return rows;
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
