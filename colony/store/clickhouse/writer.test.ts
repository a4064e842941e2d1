// The ClickHouse writer against the DuckDB one: the same records written through both must give
// the same rows in every table raw SQL sees; two writers sharing one ClickHouse must give the rows
// one writer gives; a batch retried after a partial write must be counted once.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { seedDemo } from "../../demo/demo.js";
import type { LatencyRecord, ResourceRecord, SpanRecord } from "../../ingest/records.js";
import { Writer } from "../../ingest/writer.js";
import { bucketIndex } from "../sketch.js";
import { Store } from "../store.js";
import { createTables, ident } from "./schema.js";
import { chdbClient } from "./testing.js";
import { ClickHouseWriter } from "./writer.js";

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
let dir: string;
let client: ClickHouseClient;
let n = 0;
/** Each test writes into a database of its own on the one chdb session this process may have. */
let database: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-ch-writer-"));
  ({ client } = await chdbClient(join(dir, "chdb")));
});
afterAll(async () => {
  await client?.close();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  database = `w${++n}`;
  await createTables(client, { database });
});

function span(p: Partial<SpanRecord> & Pick<SpanRecord, "traceId" | "spanId">): SpanRecord {
  return {
    parentSpanId: null,
    serviceName: "svc",
    name: "GET /",
    kind: "SERVER",
    startTimeMs: NOW,
    durationNs: 1_000_000,
    statusCode: "OK",
    httpStatusCode: 200,
    attributes: {},
    ...p,
  };
}

/** Spans of one service and minute, in traces whose local roots arrive before and after their children. */
function traffic(prefix: string): SpanRecord[] {
  const out: SpanRecord[] = [];
  for (let i = 0; i < 30; i++) {
    const traceId = `${prefix}-t${i % 10}`;
    out.push(
      span({ traceId, spanId: `${prefix}-${i}-root`, startTimeMs: NOW + i * 1000 + 0.5, durationNs: 1e6 * (1 + i), httpStatusCode: i % 7 === 0 ? 503 : 200, name: `root${i % 3}`, attributes: { shard: i % 4 } }),
      span({ traceId, spanId: `${prefix}-${i}-db`, parentSpanId: `${prefix}-${i}-root`, kind: "CLIENT", startTimeMs: NOW + i * 1000 + 1, durationNs: 5e5 + i, statusCode: i % 5 === 0 ? "ERROR" : "OK", name: "SELECT" }),
    );
  }
  return out;
}

const LATENCY: LatencyRecord[] = [
  { serviceName: "svc", metric: "rpc.duration", timestampMs: NOW + 5_000, buckets: new Map([[bucketIndex(2e6), 3], [bucketIndex(9e6), 1]]), errorCount: 1, sumNs: 15e6, minNs: 2e6, maxNs: 9e6 },
  ...[1, 2, 3].map((k): LatencyRecord => ({
    serviceName: "svc",
    metric: "cumulative.duration",
    timestampMs: NOW + k * 10_000,
    buckets: new Map([[bucketIndex(3e6), 2 * k], [bucketIndex(7e6), k]]),
    errorCount: 0,
    sumNs: 13e6 * k,
    minNs: 3e6,
    maxNs: 7e6,
    cumulative: { stream: "svc/cumulative.duration", startNs: BigInt(NOW) * 1_000_000n, errors: false },
  })),
];

const RESOURCES: ResourceRecord[] = [
  { serviceName: "svc", namespace: "shop", region: "", instanceId: "i-1", seenAtMs: NOW },
  { serviceName: "svc", namespace: "", region: "eu-west-1", instanceId: "i-2", seenAtMs: NOW + 1000 },
  { serviceName: "svc", namespace: "shop2", region: "", instanceId: "i-1", seenAtMs: NOW + 2000 },
];

/** One SELECT per table raw SQL sees, written for both engines, rows in a fixed order and plain JSON values. */
const SHAPES: Record<string, { duck: string; ch: string }> = {
  spans: {
    duck: "SELECT trace_id, span_id, parent_span_id, service_name, name, kind, epoch_us(start_time) AS start_us, duration_ns, status_code, http_status_code, attributes FROM spans ORDER BY span_id",
    ch: "SELECT trace_id, span_id, parent_span_id, service_name, name, kind, toUnixTimestamp64Micro(start_time) AS start_us, duration_ns, status_code, http_status_code, attributes FROM {db}.spans ORDER BY span_id",
  },
  span_attributes: {
    duck: "SELECT service_name, epoch_us(start_time) AS us, trace_id, span_id, kind, duration_ns, failed, key, value, resource FROM span_attributes ORDER BY ALL",
    ch: "SELECT service_name, toUnixTimestamp64Micro(start_time) AS us, trace_id, span_id, kind, duration_ns, failed, key, value, resource FROM {db}.span_attributes ORDER BY ALL",
  },
  latency_exemplars: {
    duck: "SELECT epoch_ms(timestamp) AS ms, service_name, metric, bucket, trace_id, span_id, epoch_us(start_time) AS us, duration_ns FROM latency_exemplars ORDER BY ALL",
    ch: "SELECT toUnixTimestamp64Milli(timestamp) AS ms, service_name, metric, bucket, trace_id, span_id, toUnixTimestamp64Micro(start_time) AS us, duration_ns FROM {db}.latency_exemplars ORDER BY ALL",
  },
  service_summary: {
    duck: "SELECT epoch_ms(timestamp) AS ms, service_name, metric, request_count, error_count, sum_duration_ns, min_duration_ns, max_duration_ns, p50_duration_ns, p95_duration_ns, p99_duration_ns FROM service_summary ORDER BY ALL",
    ch: "SELECT toUnixTimestamp64Milli(timestamp) AS ms, service_name, metric, request_count, error_count, sum_duration_ns, min_duration_ns, max_duration_ns, p50_duration_ns, p95_duration_ns, p99_duration_ns FROM {db}.service_summary ORDER BY ALL",
  },
  service_latency_buckets: {
    duck: "SELECT epoch_ms(timestamp) AS ms, service_name, metric, bucket, count FROM service_latency_buckets ORDER BY ALL",
    ch: "SELECT toUnixTimestamp64Milli(timestamp) AS ms, service_name, metric, bucket, sum(count) AS count FROM {db}.service_latency_buckets GROUP BY ALL ORDER BY ALL",
  },
  trace_summary: {
    duck: "SELECT trace_id, service_name, root_name, epoch_us(timestamp) AS us, duration_ns, span_count, error FROM trace_summary ORDER BY ALL",
    ch: "SELECT trace_id, service_name, root_name, toUnixTimestamp64Micro(timestamp) AS us, duration_ns, span_count, error FROM {db}.trace_summary ORDER BY ALL",
  },
  system_metrics_rollup: {
    duck: "SELECT epoch_ms(timestamp) AS ms, host_name, service_name, cpu_percent, memory_percent, memory_used_bytes, memory_total_bytes, sample_count FROM system_metrics_rollup ORDER BY ALL",
    ch: "SELECT toUnixTimestamp64Milli(timestamp) AS ms, host_name, service_name, cpu_percent, memory_percent, memory_used_bytes, memory_total_bytes, sample_count FROM {db}.system_metrics_rollup ORDER BY ALL",
  },
  services: {
    duck: "SELECT name, namespace, region, instance_count, epoch_ms(first_seen) AS f, epoch_ms(last_seen) AS l FROM services ORDER BY ALL",
    ch: "SELECT name, namespace, region, instance_count, toUnixTimestamp64Milli(first_seen) AS f, toUnixTimestamp64Milli(last_seen) AS l FROM {db}.services ORDER BY ALL",
  },
  service_instances: {
    duck: "SELECT service_name, instance_id, epoch_ms(last_seen) AS l FROM service_instances ORDER BY ALL",
    ch: "SELECT service_name, instance_id, toUnixTimestamp64Milli(last_seen) AS l FROM {db}.service_instances ORDER BY ALL",
  },
};

const plain = (v: unknown) => (typeof v === "bigint" ? Number(v) : typeof v === "boolean" ? Number(v) : v);

/** Numbers ClickHouse sends as text (64-bit integers) become numbers, as DuckDB's do here. */
function normal(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === "string" && /^-?\d+$/.test(v) && k !== "trace_id" && k !== "span_id" ? Number(v) : plain(v)])));
}

async function chTables(db = database): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const [table, q] of Object.entries(SHAPES)) {
    const r = await client.query({ query: q.ch.replace("{db}", ident(db)), format: "JSONEachRow" });
    out[table] = normal(await r.json());
  }
  return out;
}

async function duckTables(store: Store): Promise<Record<string, unknown[]>> {
  const conn = await store.connect();
  try {
    const out: Record<string, unknown[]> = {};
    for (const [table, q] of Object.entries(SHAPES)) {
      const r = await conn.runAndReadAll(q.duck);
      const names = r.columnNames();
      out[table] = normal(r.getRowsJS().map((row) => Object.fromEntries(row.map((v, i) => [names[i]!, v]))));
    }
    return out;
  } finally {
    conn.closeSync();
  }
}

/** Writes the same records through `write` as the tests below do through both engines. */
async function writeAll(w: { writeSpans(s: SpanRecord[]): Promise<void>; writeMetrics: Writer["writeMetrics"]; writeResources(r: ResourceRecord[]): Promise<void> }, spans: SpanRecord[]): Promise<void> {
  await w.writeResources(RESOURCES);
  for (let i = 0; i < spans.length; i += 7) await w.writeSpans(spans.slice(i, i + 7));
  for (const r of LATENCY) await w.writeMetrics([], [r]);
  await w.writeMetrics(
    [
      { timestampMs: NOW + 1000, hostName: "h1", serviceName: "svc", cpuPercent: 10, memoryPercent: null, memoryUsedBytes: null, memoryTotalBytes: null },
      { timestampMs: NOW + 2000, hostName: "h1", serviceName: "svc", cpuPercent: null, memoryPercent: 50, memoryUsedBytes: 2 ** 40, memoryTotalBytes: 2 ** 41 },
    ],
    [],
  );
}

/**
 * Runs `write` on a fresh DuckDB Writer, then on a ClickHouseWriter into this test's database, and
 * returns every table raw SQL sees on each: DuckDB's (what is wanted) first.
 */
async function throughBoth(write: (w: Writer | ClickHouseWriter) => Promise<void>): Promise<[Record<string, unknown[]>, Record<string, unknown[]>]> {
  const duckDir = mkdtempSync(join(tmpdir(), "coral-ch-writer-duck-"));
  const store = await Store.open(join(duckDir, "coral.duckdb"));
  try {
    const duck = new Writer(store);
    const ch = new ClickHouseWriter(client, { database });
    for (const w of [duck, ch]) await write(w);
    await duck.close();
    return [await duckTables(store), await chTables()];
  } finally {
    await store.close();
    rmSync(duckDir, { recursive: true, force: true });
  }
}

describe("ClickHouseWriter", () => {
  it("stores what DuckDB's Writer stores: every table raw SQL sees has the same rows", async () => {
    const [want, got] = await throughBoth(async (w) => {
      await seedDemo(w, { nowMs: NOW - 3_600_000, seed: 3, hours: 0.25 });
      await writeAll(w, traffic("a"));
    });
    for (const table of Object.keys(SHAPES)) expect(got[table], table).toEqual(want[table]);
    expect(want.spans!.length).toBeGreaterThan(1000);
  });

  it("gives the rows of one writer when two writers interleave the same service and minute", async () => {
    const one = new ClickHouseWriter(client, { database });
    const a = traffic("a");
    const b = traffic("b");
    await writeAll(one, [...a, ...b]);
    const alone = await chTables();

    database = `w${++n}`;
    await createTables(client, { database });
    // Two colonies on one ClickHouse: batches of both land in the same minutes, concurrently.
    const [w1, w2] = [new ClickHouseWriter(client, { database }), new ClickHouseWriter(client, { database })];
    await w1.writeResources(RESOURCES.slice(0, 2));
    await w2.writeResources(RESOURCES.slice(2));
    const batches = (s: SpanRecord[]) => Array.from({ length: Math.ceil(s.length / 5) }, (_, i) => s.slice(i * 5, i * 5 + 5));
    const [ba, bb] = [batches(a), batches(b)];
    for (let i = 0; i < Math.max(ba.length, bb.length); i++) {
      await Promise.all([ba[i] && w1.writeSpans(ba[i]!), bb[i] && w2.writeSpans(bb[i]!)]);
    }
    // A cumulative stream whose points reach different colonies: increments still add up to the totals.
    await w1.writeMetrics([], [LATENCY[0]!, LATENCY[1]!]);
    await w2.writeMetrics([], [LATENCY[2]!]);
    await w1.writeMetrics([], [LATENCY[3]!]);
    await w2.writeMetrics([{ timestampMs: NOW + 1000, hostName: "h1", serviceName: "svc", cpuPercent: 10, memoryPercent: null, memoryUsedBytes: null, memoryTotalBytes: null }], []);
    await w1.writeMetrics([{ timestampMs: NOW + 2000, hostName: "h1", serviceName: "svc", cpuPercent: null, memoryPercent: 50, memoryUsedBytes: 2 ** 40, memoryTotalBytes: 2 ** 41 }], []);
    expect(await chTables()).toEqual(alone);
  });

  it("counts a batch once when it is retried after only some of its inserts landed", async () => {
    const batch = traffic("r");
    const whole = new ClickHouseWriter(client, { database });
    await whole.writeSpans(batch);
    const once = await chTables();

    database = `w${++n}`;
    await createTables(client, { database });
    // A colony killed after its first insert: the spans are stored, the rollups are not.
    let inserts = 0;
    const dying = new Proxy(client, {
      get: (target, prop, receiver) =>
        prop === "insert"
          ? (...args: Parameters<ClickHouseClient["insert"]>) => (++inserts > 1 ? Promise.reject(new Error("killed")) : target.insert(...args))
          : Reflect.get(target, prop, receiver),
    });
    await expect(new ClickHouseWriter(dying, { database }).writeSpans(batch)).rejects.toThrow("killed");
    // The client retries the unacknowledged batch, here on another colony, and then once more.
    const other = new ClickHouseWriter(client, { database });
    await other.writeSpans(batch);
    await other.writeSpans(batch);
    expect(await chTables()).toEqual(once);
  });

  it("keeps the exemplars DuckDB keeps when retention cuts through a minute", async () => {
    // Twelve requests of one bucket and minute, batches of three (each stores its own candidates):
    // the first-ranked (smallest trace ids) started before the cutoff, so retention empties their
    // places; on DuckDB nothing ranked after them takes those places, so here nothing may either.
    const spans = Array.from({ length: 12 }, (_, i) =>
      span({ traceId: `x${String(i).padStart(2, "0")}`, spanId: `x${i}`, startTimeMs: NOW + (i < 6 ? i : 40 + i) * 1000, durationNs: 7_000_000 }),
    );
    const [want, got] = await throughBoth(async (w) => {
      for (let i = 0; i < spans.length; i += 3) await w.writeSpans(spans.slice(i, i + 3));
      await w.settle();
      await w.deleteTracesBefore(NOW + 3_000);
    });
    expect(got.latency_exemplars).toEqual(want.latency_exemplars);
    expect(want.latency_exemplars!.length).toBe(1);
  });

  it("deletes raw spans and whole trace summaries before the cutoff, and keeps the rollups", async () => {
    const w = new ClickHouseWriter(client, { database });
    await w.writeSpans(traffic("d"));
    const before = await chTables();
    // Cuts through the middle of the minute: traces d-t0..d-t4 started before it.
    const deleted = await w.deleteTracesBefore(NOW + 5_000);
    const after = await chTables();
    expect(deleted).toBe(before.spans!.length - after.spans!.length);
    expect(after.spans!.every((s) => (s as { start_us: number }).start_us >= (NOW + 5_000) * 1000)).toBe(true);
    expect((after.trace_summary as { us: number }[]).every((t) => t.us >= (NOW + 5_000) * 1000)).toBe(true);
    expect(after.trace_summary!.length).toBeGreaterThan(0);
    // Exemplars point at spans: those of deleted spans go with them.
    expect(before.latency_exemplars!.length).toBeGreaterThan(after.latency_exemplars!.length);
    expect((after.latency_exemplars as { us: number }[]).every((e) => e.us >= (NOW + 5_000) * 1000)).toBe(true);
    expect(after.latency_exemplars!.length).toBeGreaterThan(0);
    expect(before.span_attributes!.length).toBeGreaterThan(after.span_attributes!.length);
    expect((after.span_attributes as { us: number }[]).every((e) => e.us >= (NOW + 5_000) * 1000)).toBe(true);
    expect(after.service_summary).toEqual(before.service_summary);
    expect(await w.deleteTracesBefore(NOW + 5_000)).toBe(0);
  });
});
