import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../demo/demo.js";
import { Writer } from "../ingest/writer.js";
import { Queries } from "./queries.js";
import { HTTP_SERVER_DURATION } from "./schema.js";
import { RELATIVE_ERROR } from "./sketch.js";
import { Store } from "./store.js";

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const HOUR = 3_600_000;
let dir: string;
let store: Store;
let queries: Queries;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-queries-"));
  store = await Store.open(join(dir, "coral.duckdb"));
  const writer = new Writer(store);
  await seedDemo(writer, { nowMs: NOW, seed: 7 });
  await writer.close();
  queries = new Queries(store);
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Ground truth straight from raw spans, with DuckDB's exact quantile. */
async function exact(service: string, q: number, sinceMs: number, untilMs: number): Promise<{ value: number; count: number }> {
  const conn = await store.connect();
  try {
    const r = await conn.runAndReadAll(
      `SELECT quantile_cont(duration_ns, ${q}) AS v, count(*) AS n FROM spans
       WHERE service_name = $1 AND kind = 'SERVER' AND start_time >= make_timestamptz($2 * 1000) AND start_time < make_timestamptz($3 * 1000)`,
      [service, sinceMs, untilMs],
    );
    const [v, n] = r.getRowsJS()[0]!;
    return { value: Number(v ?? 0), count: Number(n) };
  } finally {
    conn.closeSync();
  }
}

describe("Queries on demo data", () => {
  it("has a realistic volume of spans", async () => {
    const conn = await store.connect();
    const n = Number((await conn.runAndReadAll("SELECT count(*) FROM spans")).getRowsJS()[0]![0]);
    conn.closeSync();
    expect(n).toBeGreaterThan(100_000);
  });

  it.each(["payments", "orders", "inventory", "legacy-api", "frontend"])(
    "percentile for %s is within RELATIVE_ERROR (0.54 %) of quantile_cont over the same SERVER spans",
    async (service) => {
      for (const q of [0.5, 0.9, 0.99, 0.999]) {
        const truth = await exact(service, q, NOW - 3 * HOUR, NOW);
        const got = await queries.percentile({ service, metric: HTTP_SERVER_DURATION, q, sinceMs: NOW - 3 * HOUR, untilMs: NOW });
        expect(got.count).toBe(truth.count);
        expect(Math.abs(got.value - truth.value) / truth.value).toBeLessThanOrEqual(RELATIVE_ERROR);
      }
    },
  );

  it("percentile over a minute-aligned sub-window matches the raw spans of that window", async () => {
    const since = NOW - HOUR;
    const truth = await exact("payments", 0.99, since, NOW);
    const got = await queries.percentile({ service: "payments", metric: HTTP_SERVER_DURATION, q: 0.99, sinceMs: since, untilMs: NOW });
    expect(got.count).toBe(truth.count);
    expect(Math.abs(got.value - truth.value) / truth.value).toBeLessThanOrEqual(RELATIVE_ERROR);
  });

  it("percentile is 0 with count 0 when there is no data", async () => {
    expect(await queries.percentile({ service: "nope", metric: HTTP_SERVER_DURATION, q: 0.99, sinceMs: NOW - HOUR, untilMs: NOW })).toEqual({ value: 0, count: 0 });
    expect(await queries.percentile({ service: "payments", metric: "other", q: 0.99, sinceMs: NOW - HOUR, untilMs: NOW })).toEqual({ value: 0, count: 0 });
  });

  it("counts requests and errors like the raw SERVER spans", async () => {
    const conn = await store.connect();
    const r = await conn.runAndReadAll(
      `SELECT count(*), count(*) FILTER (WHERE status_code = 'ERROR' OR http_status_code >= 500) FROM spans
       WHERE service_name = 'legacy-api' AND kind = 'SERVER'`,
    );
    conn.closeSync();
    const [total, errors] = r.getRowsJS()[0]!.map(Number);
    expect(await queries.counts({ service: "legacy-api", sinceMs: NOW - 3 * HOUR, untilMs: NOW })).toEqual({ total, errors });
    expect(await queries.counts({ service: "nope", sinceMs: NOW - HOUR, untilMs: NOW })).toEqual({ total: 0, errors: 0 });
  });

  it("lists and gets services, filtered by namespace and region", async () => {
    const all = await queries.listServices({});
    expect(all.map((s) => s.name)).toEqual(["auth", "frontend", "inventory", "legacy-api", "orders", "payments"]);
    const shop = await queries.listServices({ namespace: "shop" });
    expect(shop.map((s) => s.name)).toEqual(["inventory", "orders", "payments"]);
    expect((await queries.listServices({ namespace: "shop", region: "us-west-2" })).map((s) => s.name)).toEqual(["inventory"]);
    const payments = await queries.getService("payments");
    expect(payments?.service).toMatchObject({ name: "payments", namespace: "shop", region: "us-east-1", instanceCount: 3 });
    expect(timestampMs(payments!.firstSeen)).toBe(NOW - 3 * HOUR);
    expect(timestampMs(payments!.lastSeen)).toBe(NOW);
    expect(await queries.getService("nope")).toBeUndefined();
  });

  it("finds slow traces, slowest first, with a total beyond the limit", async () => {
    const r = await queries.slowTraces({ service: "payments", minDurationNs: 500e6, sinceMs: NOW - HOUR, untilMs: NOW, limit: 5 });
    expect(r.traces).toHaveLength(5);
    expect(r.totalCount).toBeGreaterThan(5n);
    const durations = r.traces.map((t) => t.durationNs);
    expect([...durations].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0))).toEqual(durations);
    for (const t of r.traces) {
      expect(t.durationNs).toBeGreaterThanOrEqual(500_000_000n);
      expect(t.service).toBe("payments");
      expect(t.rootName).toMatch(/^POST \/(charge|refund)$/);
      expect(timestampMs(t.timestamp!)).toBeGreaterThanOrEqual(NOW - HOUR);
    }
  });

  it("finds error traces, most recent first", async () => {
    const r = await queries.errorTraces({ service: "legacy-api", sinceMs: NOW - 3 * HOUR, untilMs: NOW, limit: 10 });
    expect(r.traces).toHaveLength(10);
    expect(r.totalCount).toBeGreaterThan(10n);
    const times = r.traces.map((t) => timestampMs(t.timestamp!));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    expect(r.traces.every((t) => t.error)).toBe(true);
  });

  it("summarises system metrics per service", async () => {
    const m = await queries.systemMetrics({ service: "payments", sinceMs: NOW - HOUR, untilMs: NOW });
    expect(m.service).toBe("payments");
    expect(m.hostCount).toBe(3);
    expect(m.sampleCount).toBe(3n * 60n);
    expect(m.cpuPercent).toBeGreaterThan(0);
    expect(m.memoryPercent).toBeGreaterThan(0);
    expect(m.memoryTotalBytes).toBe(8n * 2n ** 30n);
    expect(m.memoryUsedBytes).toBeGreaterThan(0n);
    // No samples: no data (unset), not a measured 0.
    const none = await queries.systemMetrics({ service: "nope", sinceMs: NOW - HOUR, untilMs: NOW });
    expect([none.cpuPercent, none.memoryPercent, none.memoryUsedBytes, none.memoryTotalBytes]).toEqual([undefined, undefined, undefined, undefined]);
    expect([none.hostCount, none.sampleCount]).toEqual([0, 0n]);
  });

  it("knows which metrics exist", async () => {
    expect(await queries.metricExists("payments", HTTP_SERVER_DURATION)).toBe(true);
    expect(await queries.metricExists("payments", "http.client.duration")).toBe(false);
    expect(await queries.metricExists("nope", HTTP_SERVER_DURATION)).toBe(false);
  });
});
