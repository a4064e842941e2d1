import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Store } from "../store/store.js";
import { bucketIndex } from "../store/sketch.js";
import { IngestPipeline } from "./otlp/pipeline.js";
import { Writer } from "./writer.js";
import type { LatencyRecord, SpanRecord } from "./records.js";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
let dir: string;
let store: Store;
let writer: Writer;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-writer-"));
  store = await Store.open(join(dir, "coral.duckdb"));
  writer = new Writer(store);
});

afterEach(async () => {
  await writer.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function span(p: Partial<SpanRecord> & Pick<SpanRecord, "traceId" | "spanId" | "serviceName">): SpanRecord {
  return {
    parentSpanId: null,
    name: "GET /",
    kind: "SERVER",
    startTimeMs: T0,
    durationNs: 1_000_000,
    statusCode: "OK",
    httpStatusCode: 200,
    attributes: {},
    ...p,
  };
}

describe("Writer", () => {
  it("stores raw spans with exact times, durations and JSON attributes", async () => {
    await writer.writeSpans([span({ traceId: "t", spanId: "a", serviceName: "svc", startTimeMs: T0 + 0.25, durationNs: 2 ** 40, attributes: { k: "v", n: 1, b: true } })]);
    const row = await store.db.selectFrom("spans").selectAll().executeTakeFirstOrThrow();
    expect(row.start_time).toEqual(new Date(T0));
    expect(row.duration_ns).toBe(2 ** 40);
    expect(typeof row.duration_ns).toBe("number");
    expect(JSON.parse(row.attributes)).toEqual({ k: "v", n: 1, b: true });
    const micros = await sql<{ us: number }>`SELECT epoch_us(start_time) AS us FROM spans`.execute(store.db);
    expect(micros.rows[0]!.us).toBe(T0 * 1000 + 250);
  });

  it("recomputes rollups per (service, minute) without double counting across batches", async () => {
    const minute = (i: number, ms: number, durationNs: number, extra: Partial<SpanRecord> = {}) =>
      span({ traceId: `t${i}`, spanId: `s${i}`, serviceName: "svc", startTimeMs: ms, durationNs, ...extra });
    await writer.writeSpans([minute(1, T0 + 1_000, 10e6), minute(2, T0 + 2_000, 20e6, { httpStatusCode: 503 })]);
    // A second batch landing in the same minute, plus the next minute and a non-SERVER span.
    await writer.writeSpans([
      minute(3, T0 + 59_000, 30e6, { statusCode: "ERROR", httpStatusCode: null }),
      minute(4, T0 + 61_000, 40e6),
      minute(5, T0 + 3_000, 999e6, { kind: "CLIENT" }),
    ]);
    await writer.settle();
    const summary = await store.db.selectFrom("service_summary").selectAll().orderBy("timestamp").execute();
    expect(summary.map((r) => [r.timestamp.getTime(), r.metric, r.request_count, r.error_count, r.min_duration_ns, r.max_duration_ns, r.sum_duration_ns])).toEqual([
      [T0, "http.server.duration", 3, 2, 10e6, 30e6, 60e6],
      [T0 + 60_000, "http.server.duration", 1, 0, 40e6, 40e6, 40e6],
    ]);
    // Percentile columns come from the minute's merged sketch: within 1% of the exact quantile.
    expect(Math.abs(summary[0]!.p50_duration_ns / 20e6 - 1)).toBeLessThan(0.01);

    const buckets = await store.db.selectFrom("service_latency_buckets").selectAll().orderBy("timestamp").orderBy("bucket").execute();
    expect(buckets.map((b) => [b.timestamp.getTime(), b.bucket, b.count])).toEqual([
      [T0, bucketIndex(10e6), 1],
      [T0, bucketIndex(20e6), 1],
      [T0, bucketIndex(30e6), 1],
      [T0 + 60_000, bucketIndex(40e6), 1],
    ]);
  });

  it("builds one trace_summary row per service from its local root, even when the parent arrives later", async () => {
    // The child service's spans arrive first; its parent (another service) arrives in a later batch.
    await writer.writeSpans([
      span({ traceId: "t", spanId: "pay", parentSpanId: "call", serviceName: "payments", name: "POST /charge", startTimeMs: T0 + 5, durationNs: 600e6 }),
      span({ traceId: "t", spanId: "db", parentSpanId: "pay", serviceName: "payments", name: "INSERT", kind: "INTERNAL", startTimeMs: T0 + 6, durationNs: 100e6, statusCode: "ERROR", httpStatusCode: null }),
    ]);
    await writer.writeSpans([
      span({ traceId: "t", spanId: "root", serviceName: "orders", name: "POST /orders", startTimeMs: T0, durationNs: 700e6 }),
      span({ traceId: "t", spanId: "call", parentSpanId: "root", serviceName: "orders", name: "POST /charge", kind: "CLIENT", startTimeMs: T0 + 4, durationNs: 610e6 }),
    ]);
    await writer.settle();
    const rows = await store.db.selectFrom("trace_summary").selectAll().orderBy("service_name").execute();
    expect(rows.map((r) => [r.service_name, r.root_name, r.timestamp.getTime(), r.duration_ns, r.span_count, r.error])).toEqual([
      ["orders", "POST /orders", T0, 700e6, 2, false],
      ["payments", "POST /charge", T0 + 5, 600e6, 2, true],
    ]);
  });

  it("rolls host samples up per host and minute, recomputing when more samples arrive", async () => {
    const sample = (ms: number, cpu: number) => ({
      timestampMs: ms,
      hostName: "h1",
      serviceName: "svc",
      cpuPercent: cpu,
      memoryPercent: 50,
      memoryUsedBytes: 1_000,
      memoryTotalBytes: 2_000,
    });
    await writer.writeHostSamples([sample(T0 + 1_000, 10)]);
    await writer.writeHostSamples([sample(T0 + 31_000, 30), sample(T0 + 61_000, 50)]);
    const rows = await store.db.selectFrom("system_metrics_rollup").selectAll().orderBy("timestamp").execute();
    expect(rows.map((r) => [r.timestamp.getTime(), r.cpu_percent, r.sample_count, r.memory_used_bytes])).toEqual([
      [T0, 20, 2, 1_000],
      [T0 + 60_000, 50, 1, 1_000],
    ]);
  });

  it("upserts services and counts distinct instances", async () => {
    await writer.writeResources([
      { serviceName: "svc", namespace: "ns", region: "eu", instanceId: "a", seenAtMs: T0 },
      { serviceName: "svc", namespace: "ns", region: "eu", instanceId: "a", seenAtMs: T0 + 5 },
    ]);
    await writer.writeResources([
      { serviceName: "svc", namespace: "ns", region: "us", instanceId: "b", seenAtMs: T0 + 10 },
      // An older report must not move the service back to its old region.
      { serviceName: "svc", namespace: "old", region: "old", instanceId: "c", seenAtMs: T0 - 10 },
    ]);
    const row = await store.db.selectFrom("services").selectAll().executeTakeFirstOrThrow();
    expect(row).toEqual({ name: "svc", namespace: "ns", region: "us", instance_count: 3, first_seen: new Date(T0 - 10), last_seen: new Date(T0 + 10) });
  });

  it("follows a service that moves at once, and keeps its placement when a report lacks it", async () => {
    // Through the OTLP pipeline, which skips re-announcing an unchanged instance for 30 s.
    const pipeline = new IngestPipeline(writer, { maxQueued: 100 });
    const placement = async () =>
      store.db.selectFrom("services").select(["namespace", "region"]).where("name", "=", "svc").executeTakeFirstOrThrow();
    const report = (namespace: string, region: string, at: number) =>
      pipeline.submit({ resources: [{ serviceName: "svc", namespace, region, instanceId: "a", seenAtMs: T0 + at }] });
    await report("A", "eu", 0);
    await report("B", "us", 1);
    expect(await placement()).toEqual({ namespace: "B", region: "us" });
    await report("A", "eu", 2);
    expect(await placement()).toEqual({ namespace: "A", region: "eu" });
    // A metrics exporter's resource often names the service only.
    await report("", "", 3);
    await writer.writeResources([{ serviceName: "svc", namespace: "", region: "", instanceId: "b", seenAtMs: T0 + 4 }]);
    expect(await placement()).toEqual({ namespace: "A", region: "eu" });
    // One batch: an older placement and a newer report without one — the stored placement is newer
    // than the only report that names one, so it stays.
    await writer.writeResources([
      { serviceName: "svc", namespace: "B", region: "us", instanceId: "c", seenAtMs: T0 + 1 },
      { serviceName: "svc", namespace: "", region: "", instanceId: "c", seenAtMs: T0 + 10 },
    ]);
    expect(await placement()).toEqual({ namespace: "A", region: "eu" });
    await pipeline.close();
  });

  it("binds Date parameters as instants and returns BIGINT/HUGEINT as numbers", async () => {
    const r = await sql<{ t: Date; big: number; huge: number; dec: number }>`
      SELECT ${new Date(T0)} AS t, 123::BIGINT AS big, sum(2::BIGINT) AS huge, 1.5::DECIMAL(4,2) AS dec`.execute(store.db);
    expect(r.rows[0]).toEqual({ t: new Date(T0), big: 123, huge: 2, dec: 1.5 });
  });

  it("retention deletes old spans and trace summaries but keeps the per-minute rollups", async () => {
    await writer.writeSpans([
      span({ traceId: "old", spanId: "a", serviceName: "svc", startTimeMs: T0 }),
      span({ traceId: "new", spanId: "b", serviceName: "svc", startTimeMs: T0 + 3_600_000 }),
    ]);
    expect(await writer.deleteTracesBefore(T0 + 60_000)).toBe(1);
    const spans = await store.db.selectFrom("spans").select("trace_id").execute();
    const traces = await store.db.selectFrom("trace_summary").select("trace_id").execute();
    expect(spans.map((r) => r.trace_id)).toEqual(["new"]);
    expect(traces.map((r) => r.trace_id)).toEqual(["new"]);
    const minutes = await store.db.selectFrom("service_summary").select("request_count").execute();
    expect(minutes.map((r) => r.request_count)).toEqual([1, 1]);
  });

  it("leaves nothing behind when a batch fails", async () => {
    await expect(writer.writeSpans([span({ traceId: "t", spanId: "a", serviceName: "svc", durationNs: Number.NaN })])).rejects.toThrow();
    expect(await store.db.selectFrom("spans").select((e) => e.fn.countAll<number>().as("n")).executeTakeFirstOrThrow()).toEqual({ n: 0 });
    await writer.writeSpans([span({ traceId: "t", spanId: "a", serviceName: "svc" })]);
    expect(await store.db.selectFrom("spans").select((e) => e.fn.countAll<number>().as("n")).executeTakeFirstOrThrow()).toEqual({ n: 1 });
  });
});

describe("span_attributes rows", () => {
  const rows = async () =>
    (await sql<{ span_id: string; key: string; value: string; resource: boolean; failed: boolean }>`SELECT span_id, key, value, resource, failed FROM span_attributes`.execute(store.db)).rows;

  it("stores every value as the appender would: NUL, lone surrogates (as U+FFFD), quotes, 1 MB; a span's own key hides its resource's", async () => {
    const huge = "é".repeat(1 << 20);
    const resourceRows = ["k8s.pod.name", "pod-\u0000-1", "shared", "resource says", "lone.res", "\udfff tail"];
    await writer.writeSpans([
      span({ traceId: "t", spanId: "a", serviceName: "svc", httpStatusCode: 503, resourceRows, attributes: { nul: "a\u0000b", lone: "x\ud800", q: `'"\\\n[]{},`, n: 1.5, b: false, nested: { a: [1, "x"] }, gone: null, shared: "span says", huge } }),
      // Attributes as JSON text (the OTLP decoder's form), where a lone surrogate arrives as an escape.
      span({ traceId: "t", spanId: "b", serviceName: "svc", attributes: '{"lone":"\\udc00","":"empty key"}' }),
      span({ traceId: "t", spanId: "c", serviceName: "svc" }),
    ]);
    // The megabyte compared apart, so a failure does not print it.
    const got = (await rows()).map((r) => (r.value === huge ? { ...r, value: "<huge>" } : r));
    expect(got.filter((r) => r.span_id === "a")).toEqual(
      [
        ["nul", "a\u0000b", false],
        ["lone", "x\ufffd", false],
        ["q", `'"\\\n[]{},`, false],
        ["n", "1.5", false],
        ["b", "false", false],
        ["nested", '{"a":[1,"x"]}', false],
        ["shared", "span says", false],
        ["huge", "<huge>", false],
        ["k8s.pod.name", "pod-\u0000-1", true],
        ["lone.res", "\ufffd tail", true],
      ].map(([key, value, resource]) => ({ span_id: "a", key, value, resource, failed: true })),
    );
    expect(got.filter((r) => r.span_id === "b")).toEqual([
      { span_id: "b", key: "lone", value: "\ufffd", resource: false, failed: false },
      { span_id: "b", key: "", value: "empty key", resource: false, failed: false },
    ]);
    expect(got.filter((r) => r.span_id === "c")).toEqual([]);
  });

  it("a batch that fails inside its transaction leaves no staged row for the next one", async () => {
    await sql`ALTER TABLE span_attributes RENAME TO span_attributes_away`.execute(store.db);
    await expect(writer.writeSpans([span({ traceId: "t", spanId: "lost", serviceName: "svc", attributes: { k: "v" } })])).rejects.toThrow(/span_attributes/);
    await sql`ALTER TABLE span_attributes_away RENAME TO span_attributes`.execute(store.db);
    await writer.writeSpans([span({ traceId: "t", spanId: "kept", serviceName: "svc", attributes: { k: "v" } })]);
    expect((await store.db.selectFrom("spans").select("span_id").execute()).map((r) => r.span_id)).toEqual(["kept"]);
    expect((await rows()).map((r) => r.span_id)).toEqual(["kept"]);
  });
});

describe("rollups merged after the spans' commit", () => {
  const rollups = async (s: Store) => ({
    summary: (await sql`SELECT timestamp, service_name, metric, request_count, error_count, sum_duration_ns, min_duration_ns, max_duration_ns FROM service_summary ORDER BY ALL`.execute(s.db)).rows,
    buckets: (await sql`SELECT * FROM service_latency_buckets ORDER BY ALL`.execute(s.db)).rows,
    traces: (await sql`SELECT * FROM trace_summary ORDER BY ALL`.execute(s.db)).rows,
  });
  const pending = async (s: Store) => (await sql<{ ms: number }>`SELECT epoch_ms(minute) AS ms FROM rollup_pending ORDER BY 1`.execute(s.db)).rows.map((r) => Number(r.ms));

  it("records the minutes a commit touched until settle merges them", async () => {
    const w = new Writer(store, { rollupDelayMs: Infinity });
    try {
      await w.writeSpans([span({ traceId: "t1", spanId: "a", serviceName: "svc", startTimeMs: T0 + 1_000 }), span({ traceId: "t2", spanId: "b", serviceName: "svc", startTimeMs: T0 + 61_000 })]);
      expect(await pending(store)).toEqual([T0, T0 + 60_000]);
      expect((await rollups(store)).summary).toEqual([]);
      await w.settle();
      expect(await pending(store)).toEqual([]);
      expect((await rollups(store)).summary.map((r: any) => Number(r.request_count))).toEqual([1, 1]);
      expect((await rollups(store)).traces).toHaveLength(2);
    } finally {
      await w.close();
    }
  });

  it("settle waits for a merge the retention sweep started (it took the waiting parts before settle looked)", async () => {
    const w = new Writer(store, { rollupDelayMs: Infinity });
    try {
      await w.writeSpans([span({ traceId: "t1", spanId: "a", serviceName: "svc", startTimeMs: T0 + 1_000 })]);
      // settle() asked the moment the sweep's merge has taken the parts, before it commits: the
      // colony's first request after start met exactly this (the sweep runs at start).
      const internals = w as unknown as { mergeWaiting(conn: unknown): Promise<void> };
      const merge = internals.mergeWaiting;
      let settled: Promise<void> | undefined;
      internals.mergeWaiting = function (this: unknown, conn: unknown) {
        const running = merge.call(this, conn);
        settled ??= w.settle();
        return running;
      };
      const sweep = w.deleteTracesBefore(T0 - 86_400_000);
      await vi.waitFor(() => expect(settled).toBeDefined());
      await settled;
      expect((await rollups(store)).summary.map((r: any) => Number(r.request_count))).toEqual([1]);
      expect(await pending(store)).toEqual([]);
      await sweep;
    } finally {
      await w.close();
    }
  });

  it("merges on its own after rollupDelayMs, or at once past rollupMaxSpans", async () => {
    const timed = new Writer(store, { rollupDelayMs: 20 });
    await timed.writeSpans([span({ traceId: "t1", spanId: "a", serviceName: "timed" })]);
    await vi.waitFor(async () => expect(await pending(store)).toEqual([]), { timeout: 10_000 });
    await timed.close();
    const full = new Writer(store, { rollupDelayMs: Infinity, rollupMaxSpans: 2 });
    await full.writeSpans([span({ traceId: "t2", spanId: "b", serviceName: "full" }), span({ traceId: "t3", spanId: "c", serviceName: "full" })]);
    await vi.waitFor(async () => expect(await pending(store)).toEqual([]), { timeout: 10_000 });
    await full.close();
    const summary = (await rollups(store)).summary.map((r: any) => [r.service_name, Number(r.request_count)]);
    expect(summary).toEqual([["full", 2], ["timed", 1]]);
  });

  it("after a crash with contributions still waiting, recover rebuilds exactly those minutes from the raw spans", async () => {
    const path = join(dir, "crashed.duckdb");
    const child = spawnSync(process.execPath, ["--import", "tsx", join(import.meta.dirname, "testdata", "crash-after-commit.ts"), path, String(T0)], { encoding: "utf8" });
    expect(child.signal, child.stderr).toBe("SIGKILL");
    const written = Number(child.stdout.trim());
    expect(written).toBeGreaterThan(1000);

    const crashed = await Store.open(path);
    try {
      expect((await sql<{ n: number }>`SELECT count(*) AS n FROM spans`.execute(crashed.db)).rows[0]!.n).toBe(written);
      expect(await pending(crashed)).not.toEqual([]);
      expect((await rollups(crashed)).traces).toEqual([]);
      const w = new Writer(crashed);
      try {
        // A writer that has not recovered yet leaves the dead process's minutes for `recover`.
        const left = await pending(crashed);
        await w.writeSpans([span({ traceId: "late", spanId: "l", serviceName: "svc", startTimeMs: T0 + 1_800_000 })]);
        await w.settle();
        expect(await pending(crashed)).toEqual(left);
        expect(await w.recover()).toBe(new Set(left).size);
        expect(await pending(crashed)).toEqual([]);
        const recovered = await rollups(crashed);
        expect(recovered.traces.length).toBeGreaterThan(0);
        // The truth: a rebuild of the whole window from the raw spans.
        await w.recompute(T0 - 3_600_000, T0 + 3_600_000);
        expect(await rollups(crashed)).toEqual(recovered);
        expect(await w.recover()).toBe(0);
      } finally {
        await w.close();
      }
    } finally {
      await crashed.close();
    }
  });
});

describe("cumulative histogram streams", () => {
  const point = (startNs: bigint, buckets: [number, number][], sumNs: number, timestampMs = T0): LatencyRecord => ({
    serviceName: "metered", metric: "http.server.request.duration", timestampMs, buckets: new Map(buckets),
    errorCount: 0, sumNs, minNs: 0, maxNs: 0, cumulative: { stream: '["metered"]', startNs, errors: false },
  });
  const stored = async () => {
    const r = await sql<{ n: number; s: number }>`SELECT sum(request_count) AS n, sum(sum_duration_ns) AS s FROM service_summary WHERE service_name = 'metered'`.execute(store.db);
    return [Number(r.rows[0]!.n), Number(r.rows[0]!.s)];
  };
  const start = 1_767_268_800_123_456_789n; // beyond 2^53: kept exactly

  it("stores increments; a repeated point adds nothing; a restart resumes from the stored point; a new start counts in full", async () => {
    const [b1, b2] = [bucketIndex(10e6), bucketIndex(20e6)];
    await writer.writeLatency([point(start, [[b1, 10]], 100e6)]);
    expect(await stored()).toEqual([10, 100e6]);
    await writer.writeLatency([point(start, [[b1, 10]], 100e6)]); // a client retrying a request that did commit
    expect(await stored()).toEqual([10, 100e6]);
    await writer.writeLatency([point(start, [[b1, 10], [b2, 5]], 200e6, T0 + 60_000)]);
    expect(await stored()).toEqual([15, 200e6]);

    const restarted = new Writer(store);
    try {
      await restarted.writeLatency([point(start, [[b1, 12], [b2, 5]], 220e6, T0 + 120_000)]);
      expect(await stored()).toEqual([17, 220e6]);
      await restarted.writeLatency([point(start + 1n, [[b1, 3]], 30e6, T0 + 180_000)]);
      expect(await stored()).toEqual([20, 250e6]);
    } finally {
      await restarted.close();
    }
  });
});

describe("recovery after a kill, on a file reopened from disk", () => {
  // What `kill -9` leaves: the database file and its WAL as of the last commit. Nothing checkpoints
  // during these small tests (the threshold is 64 MB), so copying both while the store is open
  // gives exactly that image, in process and in milliseconds.
  const crashImage = (from: string, to: string) => {
    copyFileSync(from, to);
    if (existsSync(`${from}.wal`)) copyFileSync(`${from}.wal`, `${to}.wal`);
  };
  const rollups = async (s: Store) => ({
    summary: (await sql`SELECT timestamp, service_name, metric, request_count, error_count, sum_duration_ns, min_duration_ns, max_duration_ns FROM service_summary ORDER BY ALL`.execute(s.db)).rows,
    buckets: (await sql`SELECT * FROM service_latency_buckets ORDER BY ALL`.execute(s.db)).rows,
    traces: (await sql`SELECT * FROM trace_summary ORDER BY ALL`.execute(s.db)).rows,
  });
  const pendingMinutes = async (s: Store) => Number((await sql<{ n: number }>`SELECT count(DISTINCT minute) AS n FROM rollup_pending`.execute(s.db)).rows[0]!.n);
  const histogram: LatencyRecord = {
    serviceName: "svc", metric: "http.server.request.duration", timestampMs: T0 + 5_000, buckets: new Map([[bucketIndex(7e6), 4]]),
    errorCount: 1, sumNs: 28e6, minNs: 7e6, maxNs: 7e6,
  };
  /** Spans of one trace across two services, plus a SERVER span that is a trace of its own. */
  const batch = (tag: string, ms: number, durationNs: number): SpanRecord[] => [
    span({ traceId: "shared", spanId: `${tag}-root`, serviceName: "svc", startTimeMs: ms, durationNs }),
    span({ traceId: "shared", spanId: `${tag}-call`, parentSpanId: `${tag}-root`, serviceName: "svc", kind: "CLIENT", startTimeMs: ms + 1, durationNs: durationNs / 2 }),
    span({ traceId: "shared", spanId: `${tag}-db`, parentSpanId: `${tag}-call`, serviceName: "db", startTimeMs: ms + 2, durationNs: durationNs / 4, statusCode: "ERROR" }),
    span({ traceId: tag, spanId: `${tag}-own`, serviceName: "svc", startTimeMs: ms + 3, durationNs: durationNs * 3, httpStatusCode: 503 }),
  ];

  it("rebuilds pending minutes that already have merged rows (was: Duplicate key … violates unique constraint)", async () => {
    const w = new Writer(store, { rollupDelayMs: Infinity });
    // Minute T0 merged; then more of T0 and all of T0+2m committed but not merged when the image is taken.
    await w.writeSpans([...batch("a", T0 + 1_000, 10e6), ...batch("b", T0 + 120_000, 30e6)]);
    await w.writeLatency([histogram]);
    await w.settle();
    await w.writeSpans([...batch("c", T0 + 2_000, 20e6), ...batch("d", T0 + 121_000, 40e6)]);
    const image = join(dir, "killed.duckdb");
    crashImage(join(dir, "coral.duckdb"), image);
    await w.settle();
    const truth = await rollups(store);
    await w.close();

    const killed = await Store.open(image);
    try {
      expect(await pendingMinutes(killed)).toBe(2);
      const r = new Writer(killed);
      try {
        expect(await r.recover()).toBe(2);
        expect(await pendingMinutes(killed)).toBe(0);
        expect(await rollups(killed)).toEqual(truth);
        // The histogram row (another metric, same service and minute) is not span-derived: untouched.
        const other = await sql<{ n: number }>`SELECT request_count AS n FROM service_summary WHERE metric = 'http.server.request.duration'`.execute(killed.db);
        expect(other.rows.map((x) => Number(x.n))).toEqual([4]);
        expect(await r.recover()).toBe(0);
        // A rebuild over rows loaded from disk is the same statement pattern: it must work and agree.
        await r.recompute(T0 - 3_600_000, T0 + 3_600_000);
        expect(await rollups(killed)).toEqual(truth);
      } finally {
        await r.close();
      }
    } finally {
      await killed.close();
    }
  });

  it("overwrites what a rebuild covers, drops only rows the raw spans no longer back, and can run again after a kill", async () => {
    const w = new Writer(store, { rollupDelayMs: Infinity });
    await w.writeSpans(batch("a", T0 + 1_000, 10e6));
    await w.writeLatency([histogram]);
    await w.settle();
    const truth = await rollups(store);
    await w.close();
    // Rows a rebuild of minute T0 must replace (not add to) or drop, and rows it must leave alone:
    // a minute with no pending spans and the histogram metric.
    await sql`UPDATE service_summary SET request_count = 99, min_duration_ns = 1 WHERE metric = 'http.server.duration'`.execute(store.db);
    await sql`INSERT INTO service_latency_buckets VALUES (${new Date(T0)}, 'svc', 'http.server.duration', 7, 5)`.execute(store.db);
    await sql`UPDATE trace_summary SET span_count = 99`.execute(store.db);
    await sql`INSERT INTO trace_summary VALUES ('shared', 'ghost', 'x', ${new Date(T0)}, 1, 1, false)`.execute(store.db);
    await sql`INSERT INTO service_summary VALUES (${new Date(T0 + 600_000)}, 'svc', 'http.server.duration', 5, 0, 5, 1, 1, 1, 1, 1)`.execute(store.db);
    await sql`INSERT INTO rollup_pending VALUES (${new Date(T0)}, 1)`.execute(store.db);
    const image = join(dir, "killed.duckdb");
    crashImage(join(dir, "coral.duckdb"), image);

    for (let run = 0; run < 2; run++) {
      const killed = await Store.open(image);
      const r = new Writer(killed);
      try {
        expect(await r.recover()).toBe(1);
        const after = await rollups(killed);
        expect(after.buckets).toEqual(truth.buckets);
        expect(after.traces).toEqual(truth.traces);
        expect(after.summary.map((x: any) => [x.timestamp.getTime(), x.service_name, x.metric, Number(x.request_count), Number(x.min_duration_ns)])).toEqual([
          [T0, "db", "http.server.duration", 1, 2.5e6],
          [T0, "svc", "http.server.duration", 2, 10e6],
          [T0, "svc", "http.server.request.duration", 4, 7e6],
          [T0 + 600_000, "svc", "http.server.duration", 5, 1],
        ]);
        // A kill during the next start's recovery leaves the minute pending again: the same rebuild repeats.
        await sql`INSERT INTO rollup_pending VALUES (${new Date(T0)}, 1)`.execute(killed.db);
      } finally {
        await r.close();
        await killed.close();
      }
    }
  });

  it("retention and later merges work on rollups reopened from disk", async () => {
    const w = new Writer(store, { rollupDelayMs: Infinity });
    await w.writeSpans(batch("a", T0 + 1_000, 10e6));
    await w.settle();
    await w.close();
    const image = join(dir, "reopened.duckdb");
    crashImage(join(dir, "coral.duckdb"), image);
    const reopened = await Store.open(image);
    const r = new Writer(reopened, { rollupDelayMs: Infinity });
    try {
      expect(await r.deleteTracesBefore(T0 + 60_000)).toBe(4);
      // A late span of a trace whose summary retention just deleted: the key comes back in a later transaction.
      await r.writeSpans([span({ traceId: "shared", spanId: "late", serviceName: "svc", startTimeMs: T0 + 90_000 })]);
      await r.settle();
      const traces = await sql<{ n: number }>`SELECT span_count AS n FROM trace_summary WHERE trace_id = 'shared'`.execute(reopened.db);
      expect(traces.rows.map((x) => Number(x.n))).toEqual([1]);
    } finally {
      await r.close();
      await reopened.close();
    }
  });

  it("saturates counts at the column's maximum instead of failing every later write of the minute", async () => {
    // Each point passes validation (counts up to 2^53 - 1); 2,000 of them in one service-minute
    // sum past 2^63. An overflow error would fail this batch and every later batch touching the
    // minute — one client poisoning it for all. Counts stop at the maximum instead.
    const huge = Number.MAX_SAFE_INTEGER;
    const point = (): LatencyRecord => ({
      serviceName: "svc",
      metric: "http.server.duration",
      timestampMs: T0,
      buckets: new Map([[bucketIndex(1_000_000), huge]]),
      errorCount: huge,
      sumNs: huge * 1e6,
      minNs: 1_000_000,
      maxNs: 1_000_000,
    });
    for (let i = 0; i < 2; i++) await writer.writeMetrics([], Array.from({ length: 1000 }, point));
    await writer.writeMetrics([], [{ ...point(), buckets: new Map([[bucketIndex(2_000_000), 5]]), errorCount: 0 }]);
    const max = 2n ** 63n - 1n;
    const row = await sql<{ n: bigint; e: bigint }>`SELECT request_count::VARCHAR AS n, error_count::VARCHAR AS e FROM service_summary WHERE service_name = 'svc'`.execute(store.db);
    expect(row.rows.map((r) => [BigInt(r.n), BigInt(r.e)])).toEqual([[max, max]]);
    const buckets = await sql<{ c: string }>`SELECT count::VARCHAR AS c FROM service_latency_buckets WHERE service_name = 'svc' ORDER BY bucket`.execute(store.db);
    expect(buckets.rows.map((r) => BigInt(r.c))).toEqual([max, 5n]);
  });
});
