import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Writer } from "../ingest/writer.js";
import { Store } from "./store.js";

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "coral-store-"));
  writeFileSync(join(dir, "secret.txt"), "secret");
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("Store", () => {
  it("creates the schema once and reopens an existing file without losing data", async () => {
    const path = join(dir, "reopen.duckdb");
    const first = await Store.open(path);
    const writer = new Writer(first);
    await writer.writeResources([{ serviceName: "svc", namespace: "ns", region: "eu", instanceId: "i", seenAtMs: Date.UTC(2026, 0, 1) }]);
    await writer.close();
    await first.close();

    const second = await Store.open(path);
    try {
      const tables = await sql<{ name: string }>`SELECT table_name AS name FROM information_schema.tables ORDER BY 1`.execute(second.db);
      expect(tables.rows.map((r) => r.name)).toEqual([
        "histogram_streams",
        "host_samples",
        "latency_exemplars",
        "rollup_pending",
        "schema_migrations",
        "service_instances",
        "service_latency_buckets",
        "service_summary",
        "services",
        "span_attributes",
        "spans",
        "system_metrics_rollup",
        "trace_summary",
      ]);
      expect(await second.db.selectFrom("services").select("name").execute()).toEqual([{ name: "svc" }]);
    } finally {
      await second.close();
    }
  });

  it("opens a file from before the rollup key indexes, merging any duplicate keys into one row", async () => {
    const path = join(dir, "pre-index.duckdb");
    const first = await Store.open(path);
    // The older layout: no unique indexes, and (hypothetically) a key stored twice. Merged, the trace
    // starts at the earlier row and ends at the later one's end (5 ms + 1 ms).
    for (const index of ["trace_summary_key", "service_summary_key", "service_latency_buckets_key"]) {
      await sql`DROP INDEX ${sql.ref(index)}`.execute(first.db);
    }
    const t = new Date(Date.UTC(2026, 0, 1, 12));
    const later = new Date(t.getTime() + 5);
    await first.db
      .insertInto("trace_summary")
      .values([
        { trace_id: "t1", service_name: "svc", root_name: "child", timestamp: later, duration_ns: 1_000_000, span_count: 1, error: false },
        { trace_id: "t1", service_name: "svc", root_name: "root", timestamp: t, duration_ns: 2_000_000, span_count: 2, error: true },
      ])
      .execute();
    const bucket = { timestamp: t, service_name: "svc", metric: "m", bucket: 7 };
    await first.db.insertInto("service_latency_buckets").values([{ ...bucket, count: 2 }, { ...bucket, count: 3 }]).execute();
    await first.close();

    const second = await Store.open(path);
    try {
      const indexes = await sql<{ name: string }>`SELECT index_name AS name FROM duckdb_indexes() ORDER BY 1`.execute(second.db);
      expect(indexes.rows.map((r) => r.name)).toEqual(["service_latency_buckets_key", "service_summary_key", "trace_summary_key"]);
      const traces = await second.db.selectFrom("trace_summary").selectAll().execute();
      expect(traces.map((r) => [r.root_name, r.timestamp.getTime(), r.duration_ns, r.span_count, r.error])).toEqual([["root", t.getTime(), 6_000_000, 3, true]]);
      expect(await second.db.selectFrom("service_latency_buckets").select("count").execute()).toEqual([{ count: 5 }]);
    } finally {
      await second.close();
    }
  });

  it("locks the instance: no file access, no settings changes, on any connection", async () => {
    const store = await Store.open(join(dir, "locked.duckdb"));
    const conn = await store.connect();
    try {
      await expect(conn.run(`SELECT * FROM read_text('${join(dir, "secret.txt")}')`)).rejects.toThrow(/disabled by configuration/);
      await expect(conn.run(`ATTACH '${join(dir, "other.duckdb")}' AS other`)).rejects.toThrow(/disabled by configuration/);
      await expect(conn.run("SET enable_external_access = true")).rejects.toThrow(/locked/);
      await expect(conn.run("SET lock_configuration = false")).rejects.toThrow(/locked/);
      await expect(sql`SET threads = 1`.execute(store.db)).rejects.toThrow(/locked/);
      await expect(sql`COPY spans TO ${join(dir, "out.csv")}`.execute(store.db)).rejects.toThrow();
    } finally {
      conn.closeSync();
      await store.close();
    }
  });
});

describe("migrating a file written before the rollups' unique index", () => {
  it("merges duplicate keys, in one transaction, and builds the index", async () => {
    const path = join(dir, "legacy.duckdb");
    const first = await Store.open(path);
    await sql`DROP INDEX service_latency_buckets_key`.execute(first.db);
    const row = sql`(TIMESTAMPTZ '2026-01-01 00:00:00+00', 'svc', 'http.server.duration', 7, 2)`;
    await sql`INSERT INTO service_latency_buckets VALUES ${row}, ${row}, (TIMESTAMPTZ '2026-01-01 00:00:00+00', 'svc', 'http.server.duration', 8, 1)`.execute(first.db);
    await first.close();

    const second = await Store.open(path);
    try {
      const rows = await sql<{ bucket: number; count: bigint }>`SELECT bucket, count FROM service_latency_buckets ORDER BY bucket`.execute(second.db);
      expect(rows.rows.map((r) => [r.bucket, Number(r.count)])).toEqual([[7, 4], [8, 1]]);
      const idx = await sql<{ n: bigint }>`SELECT count(*) AS n FROM duckdb_indexes() WHERE index_name = 'service_latency_buckets_key'`.execute(second.db);
      expect(Number(idx.rows[0]!.n)).toBe(1);
    } finally {
      await second.close();
    }
  });
});
