import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { Store } from "../store/store.js";
import { spawnColony, transports, type SpawnedColony } from "../../test/helpers/colony.js";

async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    const ce = ConnectError.from(err);
    return { code: Code[ce.code], message: ce.rawMessage };
  }
  throw new Error("expected the call to fail");
}

// One demo seed for the file (it is most of the file's cost): the protocol and QueryService tests
// query it, then the shutdown tests stop it and start a colony on its database again.
let dir: string;
let dbPath: string;
let colony: SpawnedColony;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-protocols-"));
  dbPath = join(dir, "coral.duckdb");
  colony = await spawnColony({ demo: true, dbPath });
});
afterAll(async () => {
  await colony?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("one colony port, every protocol", () => {

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

// The query service's answers, here rather than in colony/query/ to share this file's demo colony
// (a demo seed costs more than all of these tests).
describe("QueryService over the wire, on demo data", () => {
  let client: Client<typeof QueryService>;
  beforeAll(() => {
    client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
  });

  const scalar = async (sql: string) => (await client.executeQuery({ sql })).rows[0]!.values[0]!.kind.value;

  describe("answers", () => {
    it("ListServices filters by namespace", async () => {
      const all = (await client.listServices({})).services;
      const ns = all[0]!.namespace;
      const some = (await client.listServices({ namespace: ns })).services;
      expect(some.length).toBeGreaterThan(0);
      expect(some.every((s) => s.namespace === ns)).toBe(true);
      expect(some.length).toBe(all.filter((s) => s.namespace === ns).length);
      expect((await client.listServices({ namespace: "no-such-namespace" })).services).toEqual([]);
    });

    it("GetService describes a service with its counts", async () => {
      const r = await client.getService({ service: "payments" });
      expect(r.service?.name).toBe("payments");
      expect(timestampDate(r.firstSeen!).getTime()).toBeLessThanOrEqual(timestampDate(r.lastSeen!).getTime());
      expect(r.requestCount).toBeGreaterThan(0n);
      expect(r.errorCount).toBeLessThanOrEqual(r.requestCount);
    });

    it("GetPercentile applies the proto defaults (p99 of http.server.duration over 1h) and reports ns", async () => {
      // The window ends at "now": a minute of the seed can slide out of it between two calls, so the
      // explicit call is compared with a default call made just before and one made just after it.
      const bare = await client.getPercentile({ service: "payments" });
      const explicit = await client.getPercentile({
        service: "payments",
        metric: "http.server.duration",
        percentile: 0.99,
        timeRangeMs: 3_600_000n,
      });
      const bareAfter = await client.getPercentile({ service: "payments" });
      expect(bare.unit).toBe("nanoseconds");
      expect(bare.value).toBeGreaterThan(0);
      expect(bare.sampleCount).toBeGreaterThan(0n);
      const same = (d: typeof bare) => d.value === explicit.value && d.sampleCount === explicit.sampleCount;
      expect(same(bare) || same(bareAfter), `${bare.value}/${bareAfter.value} vs ${explicit.value}`).toBe(true);

      const p50 = await client.getPercentile({ service: "payments", percentile: 0.5 });
      expect(p50.value).toBeLessThan(bare.value!);
    });

    it("a window longer than time itself covers everything (no error)", async () => {
      const all = await client.getErrorRate({ service: "payments", timeRangeMs: 2n ** 62n });
      const day = await client.getErrorRate({ service: "payments", timeRangeMs: 24n * 3_600_000n });
      expect(all.totalCount).toBe(day.totalCount);
    });

    it("GetErrorRate is errors over total", async () => {
      const r = await client.getErrorRate({ service: "payments" });
      expect(r.totalCount).toBeGreaterThan(0n);
      expect(r.rate).toBeCloseTo(Number(r.errorCount) / Number(r.totalCount), 12);
    });

    it("FindSlowTraces applies threshold and limit defaults and returns timestamps", async () => {
      const r = await client.findSlowTraces({ service: "payments", timeRangeMs: 24n * 3_600_000n });
      expect(r.traces.length).toBeGreaterThan(0);
      expect(r.traces.length).toBeLessThanOrEqual(100);
      expect(r.totalCount).toBeGreaterThanOrEqual(BigInt(r.traces.length));
      for (const t of r.traces) {
        expect(t.durationNs).toBeGreaterThanOrEqual(500_000_000n);
        expect(t.service).toBe("payments");
        expect(t.traceId).toMatch(/^[0-9a-f]{32}$/);
        expect(timestampDate(t.timestamp!).getTime()).toBeLessThanOrEqual(Date.now());
      }
      const durations = r.traces.map((t) => t.durationNs);
      expect(durations).toEqual([...durations].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0)));

      const three = await client.findSlowTraces({ service: "payments", timeRangeMs: 24n * 3_600_000n, limit: 3 });
      expect(three.traces.map((t) => t.traceId)).toEqual(r.traces.slice(0, 3).map((t) => t.traceId));
    });

    it("FindErrorTraces returns failed traces", async () => {
      const r = await client.findErrorTraces({ service: "payments", timeRangeMs: 24n * 3_600_000n, limit: 5 });
      expect(r.traces.length).toBeGreaterThan(0);
      expect(r.traces.length).toBeLessThanOrEqual(5);
      expect(r.traces.every((t) => t.error)).toBe(true);
    });

    it("GetSystemMetrics reports the service's hosts", async () => {
      const r = await client.getSystemMetrics({ service: "payments" });
      expect(r.service).toBe("payments");
      expect(r.hostCount).toBeGreaterThan(0);
      expect(r.cpuPercent).toBeGreaterThan(0);
      expect(r.cpuPercent).toBeLessThanOrEqual(100);
      expect(r.memoryUsedBytes).toBeLessThanOrEqual(r.memoryTotalBytes!);
    });

    it("no data is no value, not a 0: an empty window leaves the percentile, the rate and host metrics unset", async () => {
      // A service whose one request was two hours ago and which never sent host metrics.
      const startNs = BigInt(Date.now() - 2 * 3_600_000) * 1_000_000n;
      const span = { traceId: "ab".repeat(16), spanId: "cd".repeat(8), name: "GET /", kind: 2, startTimeUnixNano: String(startNs), endTimeUnixNano: String(startNs + 5_000_000n) };
      const body = { resourceSpans: [{ resource: { attributes: [{ key: "service.name", value: { stringValue: "quiet" } }] }, scopeSpans: [{ spans: [span] }] }] };
      const posted = await fetch(`${colony.otlpUrl}/v1/traces`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(posted.status).toBe(200);

      const p = await client.getPercentile({ service: "quiet", timeRangeMs: 60_000n });
      expect(p.sampleCount).toBe(0n);
      expect(p.value).toBeUndefined();
      const e = await client.getErrorRate({ service: "quiet", timeRangeMs: 60_000n });
      expect(e.totalCount).toBe(0n);
      expect(e.rate).toBeUndefined();
      const m = await client.getSystemMetrics({ service: "quiet" });
      expect(m.sampleCount).toBe(0n);
      expect([m.cpuPercent, m.memoryPercent, m.memoryUsedBytes, m.memoryTotalBytes]).toEqual([undefined, undefined, undefined, undefined]);
    });
  });

  describe("refusals say what is wrong", () => {
    it("an unknown service is NotFound, with the way to list services", async () => {
      const expected = { code: "NotFound", message: 'service "paymnts" not found — list services with: coral query services' };
      expect(await failure(client.getPercentile({ service: "paymnts" }))).toEqual(expected);
      expect(await failure(client.getService({ service: "paymnts" }))).toEqual(expected);
      expect(await failure(client.getErrorRate({ service: "paymnts" }))).toEqual(expected);
      expect(await failure(client.findSlowTraces({ service: "paymnts" }))).toEqual(expected);
      expect(await failure(client.findErrorTraces({ service: "paymnts" }))).toEqual(expected);
      expect(await failure(client.getSystemMetrics({ service: "paymnts" }))).toEqual(expected);
    });

    it("an unknown metric of a known service is NotFound, naming the metric", async () => {
      const f = await failure(client.getPercentile({ service: "payments", metric: "http.client.nope" }));
      expect(f.code).toBe("NotFound");
      expect(f.message).toMatch(/^metric "http\.client\.nope" not found for service "payments"/);
    });

    it("a percentile outside (0, 1] is InvalidArgument", async () => {
      expect(await failure(client.getPercentile({ service: "payments", percentile: 1.5 }))).toEqual({
        code: "InvalidArgument",
        message: "percentile must be in (0, 1]; got 1.5",
      });
      expect(await failure(client.getPercentile({ service: "payments", percentile: -0.5 }))).toEqual({
        code: "InvalidArgument",
        message: "percentile must be in (0, 1]; got -0.5",
      });
      expect(await client.getPercentile({ service: "payments", percentile: 1 })).toMatchObject({ unit: "nanoseconds" });
    });

    it("negative windows and limits, and limits above 1000, are InvalidArgument", async () => {
      // Each call starts only when awaited: a rejection waiting for its turn would be "unhandled".
      const cases: [() => Promise<unknown>, string][] = [
        [() => client.getErrorRate({ service: "payments", timeRangeMs: -1n }), "time_range_ms must be at least 0; got -1"],
        [() => client.findSlowTraces({ service: "payments", minDurationNs: -5n }), "min_duration_ns must be at least 0; got -5"],
        [() => client.findSlowTraces({ service: "payments", limit: 1001 }), "limit must be in 1..1000; got 1001"],
        [() => client.findErrorTraces({ service: "payments", limit: -1 }), "limit must be in 1..1000; got -1"],
      ];
      for (const [call, message] of cases) {
        expect(await failure(call())).toEqual({ code: "InvalidArgument", message });
      }
      const stream = async () => {
        for await (const _ of client.streamQuery({ sql: "SELECT 1", maxRows: -1n }));
      };
      expect(await failure(stream())).toEqual({ code: "InvalidArgument", message: "max_rows must be at least 1; got -1" });
    });
  });

  describe("SQL guardrails hold over the wire", () => {
    const refused: [string, RegExp][] = [
      ["DELETE FROM spans", /only SELECT/],
      ["DROP TABLE services", /only SELECT/],
      ["SELECT * FROM read_text('/etc/passwd')", /./],
      ["SELECT 1; DELETE FROM spans", /exactly one SQL statement/],
      ["SET enable_external_access = true", /only SELECT/],
      ["ATTACH '/tmp/evil.duckdb' AS evil", /only SELECT/],
      ["COPY spans TO '/tmp/spans.csv'", /only SELECT/],
      ["PRAGMA database_list", /only SELECT/],
    ];

    it("refuses writes, file access, several statements and settings, leaving the data intact", async () => {
      const counts = "SELECT (SELECT count(*) FROM spans) || '/' || (SELECT count(*) FROM services) || '/' || (SELECT count(*) FROM trace_summary)";
      const before = await scalar(counts);
      expect(before).toMatch(/^[1-9]\d*\/[1-9]\d*\/[1-9]\d*$/);
      for (const [sql, why] of refused) {
        const f = await failure(client.executeQuery({ sql }));
        expect(f.code, sql).toBe("InvalidArgument");
        expect(f.message, sql).toMatch(why);
        const s = await failure((async () => {
          for await (const _ of client.streamQuery({ sql }));
        })());
        expect(s.code, `stream: ${sql}`).toBe("InvalidArgument");
      }
      expect(await scalar(counts)).toBe(before);
      expect(await failure(client.executeQuery({ sql: "SELECT * FROM read_text('/etc/passwd')" }))).not.toMatchObject({
        message: expect.stringContaining("root:"),
      });
    });

    it("cuts a 20,000-row result at 10,000 rows and sets truncated", async () => {
      const r = await client.executeQuery({ sql: "SELECT range AS n FROM range(20000)" });
      expect(r.rows.length).toBe(10_000);
      expect(r.truncated).toBe(true);
      expect(r.columns.map((c) => [c.name, c.type])).toEqual([["n", "BIGINT"]]);
      const small = await client.executeQuery({ sql: "SELECT range AS n FROM range(3)" });
      expect(small.rows.length).toBe(3);
      expect(small.truncated).toBe(false);
    });

    it("reports a SQL mistake as InvalidArgument with DuckDB's reason", async () => {
      const f = await failure(client.executeQuery({ sql: "SELECT nope FROM spans" }));
      expect(f.code).toBe("InvalidArgument");
      expect(f.message).toMatch(/nope/);
      expect(await failure(client.executeQuery({ sql: "  " }))).toEqual({ code: "InvalidArgument", message: "sql is required" });
    });
  });
});

// Before the shutdown tests, which stop the file's colony: it is the --demo-static one here.
describe("--demo traffic", () => {
  it("--demo adds live traffic while the colony runs; --demo-static keeps the seed as it is", async () => {
    const live = await spawnColony({ demo: true, liveDemo: true, otlp: "off" });
    try {
      const count = async (c: SpawnedColony) =>
        (await createClient(QueryService, transports.gRPC!(c.baseUrl)).executeQuery({ sql: "SELECT count(*) FROM spans" })).rows[0]!.values[0]!.kind.value;
      const before = [await count(live), await count(colony)];
      // The live demo ticks every 5 s: poll until a tick has landed (bounded, for a loaded machine).
      await expect.poll(() => count(live), { timeout: 30_000, interval: 500 }).toBeGreaterThan(before[0] as number);
      expect(await count(colony)).toBe(before[1]);
    } finally {
      await live.stop();
    }
  }, 120_000);
});

describe("colony shutdown", () => {
  let spansBefore: unknown;

  it("exits 0 on SIGTERM and leaves a database that reopens with its data", async () => {
    const client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
    const served = (await client.listServices({})).services.map((s) => s.name).sort();
    expect(served).toEqual(expect.arrayContaining(["payments", "orders", "inventory"]));
    // An open HTTP/2 session must not keep the colony from exiting.
    const h2 = createClient(QueryService, transports.gRPC!(colony.baseUrl));
    spansBefore = (await h2.executeQuery({ sql: "SELECT count(*) FROM spans" })).rows[0]!.values[0]!.kind.value;

    expect(await colony.stop()).toBe(0);

    const store = await Store.open(dbPath);
    try {
      const rows = await store.db.selectFrom("services").select("name").execute();
      expect(rows.map((r) => r.name).sort()).toEqual(served);
    } finally {
      await store.close();
    }
  });

  it("exits 0 on SIGINT (Ctrl-C) too", async () => {
    const plain = await spawnColony();
    const exited = once(plain.proc, "exit");
    plain.proc.kill("SIGINT");
    expect((await exited)[0]).toBe(0);
    await plain.stop();
  });

  it("keeps an existing database's data when started with --demo again", async () => {
    // The database the SIGTERM test left, seeded by the first --demo start.
    expect(spansBefore, "the SIGTERM test above did not run to its end").toBeGreaterThan(0);
    const second = await spawnColony({ demo: true, dbPath });
    try {
      const again = createClient(QueryService, transports.gRPC!(second.baseUrl));
      const after = await again.executeQuery({ sql: "SELECT count(*) FROM spans" });
      expect(after.rows[0]!.values[0]!.kind.value).toBe(spansBefore);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});
