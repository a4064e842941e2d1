import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ClickHouseClient } from "@clickhouse/client";
import { quantileFromBuckets } from "../sketch.js";
import type { SpanRecord } from "../../ingest/records.js";
import { BUCKET_RANGE, createTables, ddl, schemaVersion, SCHEMA_VERSION } from "./schema.js";
import { chdbClient } from "./testing.js";
import { ClickHouseWriter } from "./writer.js";

let client: ClickHouseClient;
const database = "coral";

beforeAll(async () => {
  ({ client } = await chdbClient(undefined, database));
});
afterAll(async () => {
  await client?.close();
});

async function rows<T>(query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  const r = await client.query({ query, query_params: params, format: "JSONEachRow" });
  return r.json<T>();
}

/** The tables raw SQL sees on DuckDB (colony/store/schema.ts), minus DuckDB's internal bookkeeping. */
const PUBLIC_SHAPES: Record<string, string[]> = {
  spans: ["trace_id", "span_id", "parent_span_id", "service_name", "name", "kind", "start_time", "duration_ns", "status_code", "http_status_code", "attributes"],
  span_attributes: ["service_name", "start_time", "trace_id", "span_id", "kind", "duration_ns", "failed", "key", "value", "resource"],
  latency_exemplars: ["timestamp", "service_name", "metric", "bucket", "trace_id", "span_id", "start_time", "duration_ns"],
  trace_summary: ["trace_id", "service_name", "root_name", "timestamp", "duration_ns", "span_count", "error"],
  service_summary: ["timestamp", "service_name", "metric", "request_count", "error_count", "sum_duration_ns", "min_duration_ns", "max_duration_ns", "p50_duration_ns", "p95_duration_ns", "p99_duration_ns"],
  service_latency_buckets: ["timestamp", "service_name", "metric", "bucket", "count"],
  host_samples: ["timestamp", "host_name", "service_name", "cpu_percent", "memory_percent", "memory_used_bytes", "memory_total_bytes"],
  system_metrics_rollup: ["timestamp", "host_name", "service_name", "cpu_percent", "memory_percent", "memory_used_bytes", "memory_total_bytes", "sample_count"],
  services: ["name", "namespace", "region", "instance_count", "first_seen", "last_seen"],
  service_instances: ["service_name", "instance_id", "last_seen"],
  histogram_streams: ["stream", "start_ns", "sum_ns", "buckets", "updated_at"],
  schema_migrations: ["version", "applied_at"],
};

describe("ClickHouse schema", () => {
  it("creates every table and view with DuckDB's names and columns, and again without harm", async () => {
    const first = await createTables(client, { database });
    const second = await createTables(client, { database });
    expect([first.fresh, second.fresh]).toEqual([true, false]);
    for (const [table, columns] of Object.entries(PUBLIC_SHAPES)) {
      const got = await rows<{ name: string }>("SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} ORDER BY position", { db: database, t: table });
      expect(got.map((c) => c.name), table).toEqual(columns);
    }
    // One version row and one set of bucket values, however many starts ran.
    expect(await schemaVersion(client, database)).toBe(SCHEMA_VERSION);
    const [{ n }] = await rows<{ n: string | number }>("SELECT count() AS n FROM coral.coral_bucket_values");
    expect(Number(n)).toBe(BUCKET_RANGE.last - BUCKET_RANGE.first + 1);
    const [{ v }] = await rows<{ v: string | number }>("SELECT count() AS v FROM coral.schema_migrations");
    expect(Number(v)).toBe(1);
  });

  it("derives service_summary's percentiles from the buckets exactly as quantileFromBuckets does", async () => {
    await createTables(client, { database });
    // Random sketches, including counts that put a rank exactly on a bucket boundary, single buckets and huge indexes.
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const sketches: { minute: number; buckets: Map<number, number> }[] = [];
    for (let i = 0; i < 40; i++) {
      const buckets = new Map<number, number>();
      const size = i === 0 ? 1 : 1 + Math.floor(rand() * 60);
      for (let j = 0; j < size; j++) {
        const b = i === 1 ? BUCKET_RANGE.last - j : BUCKET_RANGE.first + Math.floor(rand() * 2200);
        buckets.set(b, (buckets.get(b) ?? 0) + 1 + Math.floor(rand() * (i % 3 === 0 ? 3 : 1000)));
      }
      sketches.push({ minute: Date.UTC(2026, 0, 1, 0, i), buckets });
    }
    const bucketRows = sketches.flatMap((s) => [...s.buckets].map(([bucket, count]) => ({ timestamp: s.minute * 1000, service_name: "svc", metric: "m", bucket, count })));
    // Split in two inserts: the view must add rows of one key that no merge has combined yet.
    const half = Math.floor(bucketRows.length / 2);
    for (const part of [bucketRows.slice(0, half), bucketRows.slice(half).map((r) => ({ ...r }))]) {
      await client.insert({ table: "coral.service_latency_buckets", values: part, format: "JSONEachRow", clickhouse_settings: { insert_deduplication_token: "" } });
    }
    await client.insert({
      table: "coral.service_summary_parts",
      values: sketches.map((s) => ({ timestamp: s.minute * 1000, service_name: "svc", metric: "m", request_count: 1, error_count: 0, sum_duration_ns: 1, min_duration_ns: 1, max_duration_ns: 1 })),
      format: "JSONEachRow",
      clickhouse_settings: { insert_deduplication_token: "" },
    });
    const got = await rows<{ ms: string; p50: number; p95: number; p99: number }>(
      "SELECT toString(toUnixTimestamp64Milli(timestamp)) AS ms, p50_duration_ns AS p50, p95_duration_ns AS p95, p99_duration_ns AS p99 FROM coral.service_summary WHERE service_name = 'svc' ORDER BY timestamp",
    );
    expect(got).toHaveLength(sketches.length);
    for (const [i, s] of sketches.entries()) {
      const buckets = [...s.buckets].map(([bucket, count]) => ({ bucket, count }));
      expect(Number(got[i]!.ms)).toBe(s.minute);
      expect([got[i]!.p50, got[i]!.p95, got[i]!.p99]).toEqual([0.5, 0.95, 0.99].map((q) => quantileFromBuckets(buckets, q)));
    }
  });

  it("brings a database of the first shape to this one: span_attributes filled, latency_exemplars the kept rows", async () => {
    // Spans of one minute whose attributes hold every JSON kind, and more exemplar candidates per
    // bucket than are kept (equal durations: the trace and span ids decide).
    const at = Date.UTC(2026, 0, 1, 12, 0, 0);
    const attributes: SpanRecord["attributes"][] = [
      { "http.route": "/a", n: 3, ok: true, nested: { a: [1, "x"] }, gone: null, quote: 'say "hi"\n\u00e9' },
      { n: -1.5e21, "": "empty key", "a.b": "" },
      {},
    ];
    const spans: SpanRecord[] = Array.from({ length: 30 }, (_, i) => ({
      traceId: `t${i % 7}`,
      spanId: `s${i}`,
      parentSpanId: null,
      serviceName: "svc",
      name: "GET /",
      kind: "SERVER",
      startTimeMs: at + i * 100,
      durationNs: 1_000_000 * (1 + (i % 3)),
      statusCode: i % 4 === 0 ? "ERROR" : "OK",
      httpStatusCode: i % 5 === 0 ? 503 : 200,
      attributes: attributes[i % 3]!,
    }));
    const write = async (db: string) => {
      await createTables(client, { database: db });
      const w = new ClickHouseWriter(client, { database: db });
      for (let i = 0; i < spans.length; i += 4) await w.writeSpans(spans.slice(i, i + 4));
    };
    const shapes = async (db: string) => ({
      attributes: await rows(`SELECT * EXCEPT start_time, toString(start_time) AS at FROM \`${db}\`.span_attributes ORDER BY ALL`),
      exemplars: await rows(`SELECT * EXCEPT (timestamp, start_time), toString(start_time) AS at FROM \`${db}\`.latency_exemplars ORDER BY ALL`),
    });
    await write("current");
    const want = await shapes("current");
    expect(want.attributes.length).toBeGreaterThan(50);
    expect(want.exemplars.length).toBe(12);

    // The first shape: no span_attributes, the candidates in a table named latency_exemplars, version 1.
    await write("old");
    for (const q of [
      "DROP TABLE old.span_attributes",
      "DROP VIEW old.latency_exemplars",
      "RENAME TABLE old.latency_exemplar_parts TO old.latency_exemplars",
      "TRUNCATE TABLE old.schema_migrations",
      "INSERT INTO old.schema_migrations VALUES (1, now64(6))",
    ]) {
      await client.command({ query: q });
    }
    const [{ n: candidates }] = await rows<{ n: string }>("SELECT count() AS n FROM old.latency_exemplars");
    expect(Number(candidates)).toBeGreaterThan(12);

    expect((await createTables(client, { database: "old" })).fresh).toBe(false);
    expect(await shapes("old")).toEqual(want);
    expect(await schemaVersion(client, "old")).toBe(SCHEMA_VERSION);
    // Again, as a second colony starting at the same time would: nothing is added twice.
    await createTables(client, { database: "old" });
    expect(await shapes("old")).toEqual(want);
  });

  describe("the span_attributes fill of an upgrade", () => {
    // Three days of spans, a few with attributes of megabytes (chunks end on bytes too; one span is
    // alone past a chunk's 8 MiB: a chunk of its own), some with none (they never get rows, so
    // every run looks at them again).
    const day0 = Date.UTC(2026, 0, 10);
    const span = (i: number, startTimeMs: number): SpanRecord => ({
      traceId: `t${i % 97}`,
      spanId: `s${i}`,
      parentSpanId: null,
      serviceName: ["api", "db", "web"][i % 3]!,
      name: "GET /",
      kind: i % 5 === 0 ? "CLIENT" : "SERVER",
      startTimeMs,
      durationNs: 1000 * (1 + (i % 13)),
      statusCode: i % 4 === 0 ? "ERROR" : "OK",
      httpStatusCode: i % 6 === 0 ? 503 : 200,
      attributes: i % 7 === 0 ? {} : { "http.route": `/r/${i % 5}`, n: i, ...(i % 100 === 1 && i < 300 ? { big: "x".repeat((i === 201 ? 9 : 3) * 1024 * 1024 + i) } : {}) },
    });
    const oldSpans = Array.from({ length: 900 }, (_, i) => span(i, day0 + Math.floor(i / 300) * 86_400_000 + (i % 300) * 1000));
    const attributesOf = (db: string) => rows(`SELECT * EXCEPT start_time, toString(start_time) AS at FROM \`${db}\`.span_attributes ORDER BY ALL`);
    /** Spans written by the current writer, in batches of one day. */
    const writeAll = async (w: ClickHouseWriter, spans: SpanRecord[]) => {
      for (let i = 0; i < spans.length; i += 100) await w.writeSpans(spans.slice(i, i + 100));
    };
    /** A database of the first shape holding `oldSpans`, and the attribute rows of the `kept` spans (a fill cut short). */
    const oldDatabase = async (db: string, kept: SpanRecord[] = []) => {
      await createTables(client, { database: db });
      await writeAll(new ClickHouseWriter(client, { database: db }), oldSpans);
      await client.command({ query: `DELETE FROM \`${db}\`.span_attributes WHERE span_id NOT IN {kept:Array(String)}`, query_params: { kept: kept.map((x) => x.spanId) } });
      await client.command({ query: `TRUNCATE TABLE \`${db}\`.schema_migrations` });
      await client.command({ query: `INSERT INTO \`${db}\`.schema_migrations VALUES (1, now64(6))` });
    };

    it("resumes a fill cut short: the spans filled before are skipped, the rest added once", async () => {
      await createTables(client, { database: "ref_partial" });
      await writeAll(new ClickHouseWriter(client, { database: "ref_partial" }), oldSpans);
      const want = await attributesOf("ref_partial");
      // What landed before the kill: the first day's spans of api and db.
      await oldDatabase("partial", oldSpans.filter((x) => x.startTimeMs < day0 + 86_400_000 && x.serviceName !== "web"));
      expect((await attributesOf("partial")).length).toBeGreaterThan(0);
      expect((await attributesOf("partial")).length).toBeLessThan(want.length);
      await createTables(client, { database: "partial" });
      expect(await attributesOf("partial")).toEqual(want);
      expect(await schemaVersion(client, "partial")).toBe(SCHEMA_VERSION);
    });

    it("gives the writer's rows with two colonies upgrading at once while one already ingests, late spans too", async () => {
      // New spans: some start before the cutoff (late arrivals into the days being filled), some after.
      const newSpans = [...Array.from({ length: 200 }, (_, i) => span(1000 + i, day0 + 86_400_000 + i * 997)), ...Array.from({ length: 200 }, (_, i) => span(2000 + i, Date.now() + i))];
      await createTables(client, { database: "ref_ingest" });
      await writeAll(new ClickHouseWriter(client, { database: "ref_ingest" }), [...oldSpans, ...newSpans]);
      const want = await attributesOf("ref_ingest");
      await oldDatabase("ingest");
      await Promise.all([
        createTables(client, { database: "ingest" }),
        (async () => {
          await createTables(client, { database: "ingest" });
          await writeAll(new ClickHouseWriter(client, { database: "ingest" }), newSpans);
        })(),
      ]);
      expect(await attributesOf("ingest")).toEqual(want);
      // A start after the upgrade adds nothing.
      await createTables(client, { database: "ingest" });
      expect(await attributesOf("ingest")).toEqual(want);
    }, 60_000);
  });

  it("gives a version-2 span_attributes the trace_id bloom filter, built for the rows it holds, which a trace lookup then uses", async () => {
    const indexed = async (db: string) =>
      (await rows<{ table: string }>("SELECT table FROM system.data_skipping_indices WHERE database = {db:String} AND name = 'trace_id_bf' ORDER BY table", { db })).map((r) => r.table);
    await createTables(client, { database: "v2" });
    expect(await indexed("v2")).toEqual(["span_attributes", "spans"]);
    // Version 2's shape: no index on span_attributes; rows of many traces, 4 of one, over 120 granules.
    // The version row gets a token of its own: chdb's client SETs an insert's settings on the
    // session, where the last createTables' `schema_migrations:3` would otherwise still be.
    for (const q of [
      "ALTER TABLE v2.span_attributes DROP INDEX trace_id_bf",
      "TRUNCATE TABLE v2.schema_migrations",
      "INSERT INTO v2.schema_migrations SETTINGS insert_deduplication_token = 'test:v2' VALUES (2, now64(6))",
      `INSERT INTO v2.span_attributes (service_name, start_time, trace_id, span_id, kind, duration_ns, failed, key, value, resource)
       SELECT 'svc', toDateTime64('2026-01-01 12:00:00', 6, 'UTC') + number, if(number % 250000 = 7, 'wanted', toString(number)), toString(number), 'SERVER', 1, false, 'k', 'v', true
       FROM numbers(1000000)`,
    ]) {
      await client.command({ query: q });
    }
    expect(await indexed("v2")).toEqual(["spans"]);

    await createTables(client, { database: "v2" });
    expect(await indexed("v2")).toEqual(["span_attributes", "spans"]);
    expect(await schemaVersion(client, "v2")).toBe(SCHEMA_VERSION);
    // The build of the stored parts runs in the background.
    for (let i = 0; i < 600 && (await rows("SELECT 1 FROM system.mutations WHERE database = 'v2' AND NOT is_done")).length > 0; i++) await new Promise((r) => setTimeout(r, 100));

    const lookup = "SELECT count() AS n FROM v2.span_attributes WHERE trace_id = 'wanted'";
    expect(await rows(lookup)).toEqual([{ n: 4 }]);
    const plan = (await rows<{ explain: string }>(`EXPLAIN indexes = 1 ${lookup}`)).map((r) => r.explain.trim());
    const skip = plan.indexOf("Name: trace_id_bf");
    expect(skip, plan.join("\n")).toBeGreaterThan(0);
    const [kept, all] = /^Granules: (\d+)\/(\d+)$/.exec(plan.slice(skip).find((l) => l.startsWith("Granules:"))!)!.slice(1).map(Number);
    expect(all).toBeGreaterThanOrEqual(120);
    // The 4 rows' index granules (GRANULARITY 4: 4 granules each, fewer at a part's end), and the
    // filter's rare false positives: far from all.
    expect(kept).toBeLessThan(all! / 4);
    // Again, as a second colony starting at the same time would: the index stays as it is.
    await createTables(client, { database: "v2" });
    expect(await indexed("v2")).toEqual(["span_attributes", "spans"]);
  }, 60_000);

  it("writes the --cluster DDL as the golden text (ON CLUSTER, Replicated*MergeTree, Distributed)", () => {
    const golden = readFileSync(new URL("./testdata/cluster-ddl.sql", import.meta.url), "utf8");
    expect(ddl({ database: "coral", cluster: "prod" }).join(";\n\n") + ";\n").toBe(golden);
  });
});
