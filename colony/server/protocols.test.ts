import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { Store } from "../store/store.js";
import { spawnColony, transports, type SpawnedColony } from "../../test/helpers/colony.js";

describe("one colony port, every protocol", () => {
  let colony: SpawnedColony;
  beforeAll(async () => {
    colony = await spawnColony({ demo: true });
  });
  afterAll(async () => {
    await colony?.stop();
  });

  for (const [name, make] of Object.entries(transports)) {
    it(`${name}: ListServices returns the demo services`, async () => {
      const client = createClient(QueryService, make(colony.baseUrl));
      const res = await client.listServices({});
      const names = res.services.map((s) => s.name);
      expect(names).toEqual(expect.arrayContaining(["payments", "orders", "inventory"]));
      const payments = res.services.find((s) => s.name === "payments")!;
      expect(payments.namespace).not.toBe("");
      expect(payments.instanceCount).toBeGreaterThan(0);
    });
  }

  for (const name of ["Connect over HTTP/1.1", "gRPC"]) {
    it(`${name}: StreamQuery streams a large result in batches, columns first`, async () => {
      const client = createClient(QueryService, transports[name]!(colony.baseUrl));
      const batches = [];
      for await (const b of client.streamQuery({ sql: "SELECT range AS n, range % 7 = 0 AS lucky FROM range(25000)" })) {
        batches.push(b);
      }
      expect(batches.length).toBeGreaterThan(1);
      expect(batches[0]!.columns.map((c) => c.name)).toEqual(["n", "lucky"]);
      expect(batches.slice(1).every((b) => b.columns.length === 0)).toBe(true);
      expect(batches.every((b) => JSON.parse(b.valuesJson)[0].length === b.rowCount)).toBe(true);
      const values = batches.flatMap((b) => JSON.parse(b.valuesJson)[0] as number[]);
      expect(batches.flatMap((b) => JSON.parse(b.valuesJson)[1] as boolean[]).slice(0, 8)).toEqual([true, false, false, false, false, false, false, true]);
      expect(values.length).toBe(25000);
      expect(values[0]).toBe(0);
      expect(values[24999]).toBe(24999);
      expect(batches.at(-1)!.truncated).toBe(false);
    });

    it(`${name}: StreamQuery cuts at max_rows and says so on the last batch`, async () => {
      const client = createClient(QueryService, transports[name]!(colony.baseUrl));
      let rows = 0;
      let truncated = false;
      for await (const b of client.streamQuery({ sql: "SELECT * FROM range(5000)", maxRows: 1234n })) {
        rows += b.rowCount;
        truncated = b.truncated;
      }
      expect(rows).toBe(1234);
      expect(truncated).toBe(true);
    });
  }

  it("a client that cancels a stream midway leaves the colony serving", async () => {
    const client = createClient(QueryService, transports.gRPC!(colony.baseUrl));
    const ac = new AbortController();
    let batches = 0;
    const cancelled = (async () => {
      for await (const _ of client.streamQuery({ sql: "SELECT * FROM range(100000000)" }, { signal: ac.signal })) {
        if (++batches === 2) ac.abort();
      }
    })();
    await expect(cancelled).rejects.toThrow(/aborted|canceled/i);
    // A batch already on its way may still arrive after the abort; the stream must stop long
    // before its ~12,000 batches.
    expect(batches).toBeGreaterThanOrEqual(2);
    expect(batches).toBeLessThan(10);
    const after = await client.executeQuery({ sql: "SELECT 42" });
    expect(after.rows[0]!.values[0]!.kind.value).toBe(42);
  });

  it("streams typed values: numbers, strings, booleans, nulls, timestamps", async () => {
    const client: Client<typeof QueryService> = createClient(QueryService, transports.gRPC!(colony.baseUrl));
    const res = await client.executeQuery({
      sql: "SELECT 1.5 AS d, 'x' AS s, true AS b, NULL AS n, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS t, 'inf'::DOUBLE AS inf",
    });
    const kinds = res.rows[0]!.values.map((v) => [v.kind.case, v.kind.value]);
    expect(kinds).toEqual([
      ["numberValue", 1.5],
      ["stringValue", "x"],
      ["boolValue", true],
      ["nullValue", 0],
      ["stringValue", "2024-01-02T03:04:05.000Z"],
      ["stringValue", "inf"],
    ]);
  });
});

describe("colony shutdown", () => {
  it("exits 0 on SIGTERM and leaves a database that reopens with its data", async () => {
    const dir = mkdtempSync(join(tmpdir(), "coral-shutdown-"));
    try {
      const dbPath = join(dir, "coral.duckdb");
      const colony = await spawnColony({ demo: true, dbPath });
      const client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
      const served = (await client.listServices({})).services.map((s) => s.name).sort();
      // An open HTTP/2 session must not keep the colony from exiting.
      const h2 = createClient(QueryService, transports.gRPC!(colony.baseUrl));
      await h2.listServices({});

      expect(await colony.stop()).toBe(0);

      const store = await Store.open(dbPath);
      try {
        const rows = await store.db.selectFrom("services").select("name").execute();
        expect(rows.map((r) => r.name).sort()).toEqual(served);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("exits 0 on SIGINT (Ctrl-C) too", async () => {
    const colony = await spawnColony();
    const exited = once(colony.proc, "exit");
    colony.proc.kill("SIGINT");
    expect((await exited)[0]).toBe(0);
    await colony.stop();
  });

  it("keeps an existing database's data when started with --demo again", async () => {
    const dir = mkdtempSync(join(tmpdir(), "coral-reseed-"));
    try {
      const dbPath = join(dir, "coral.duckdb");
      const first = await spawnColony({ demo: true, dbPath });
      const client = createClient(QueryService, transports.gRPC!(first.baseUrl));
      const before = await client.executeQuery({ sql: "SELECT count(*) FROM spans" });
      expect(await first.stop()).toBe(0);

      const second = await spawnColony({ demo: true, dbPath });
      try {
        const again = createClient(QueryService, transports.gRPC!(second.baseUrl));
        const after = await again.executeQuery({ sql: "SELECT count(*) FROM spans" });
        expect(after.rows[0]!.values[0]!.kind.value).toBe(before.rows[0]!.values[0]!.kind.value);
      } finally {
        expect(await second.stop()).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
