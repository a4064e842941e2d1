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
        "host_samples",
        "service_instances",
        "service_latency_buckets",
        "service_summary",
        "services",
        "spans",
        "system_metrics_rollup",
        "trace_summary",
      ]);
      expect(await second.db.selectFrom("services").select("name").execute()).toEqual([{ name: "svc" }]);
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
