import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Writer } from "../ingest/writer.js";
import { SqlRejected, SqlRunner, type SqlBatch } from "./readonly-sql.js";
import { Store } from "./store.js";

let dir: string;
let store: Store;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-sql-"));
  store = await Store.open(join(dir, "coral.duckdb"));
  const writer = new Writer(store);
  await writer.writeSpans(
    [1, 2, 3].map((i) => ({
      traceId: `t${i}`,
      spanId: `s${i}`,
      parentSpanId: null,
      serviceName: "payments",
      name: "POST /charge",
      kind: "SERVER" as const,
      startTimeMs: Date.UTC(2026, 0, 1, 12, 0, i),
      durationNs: i * 1_000_000,
      statusCode: "OK" as const,
      httpStatusCode: 200,
      attributes: { i },
    })),
  );
  await writer.close();
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>): Promise<SqlRejected> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SqlRejected);
    return err as SqlRejected;
  }
  throw new Error("expected the query to be rejected");
}

describe("SqlRunner", () => {
  it("runs a SELECT and converts values for the wire", async () => {
    const r = await new SqlRunner(store).run(`
      SELECT 42::BIGINT AS n, 9007199254740993::BIGINT AS big, 12::HUGEINT AS h, 1.25::DECIMAL(4,2) AS d,
             123456789012345678.5::DECIMAL(38,1) AS wide, TIMESTAMPTZ '2026-01-01 12:00:00.123456+00' AS ts,
             [1, 2] AS list, {'a': 1} AS struct, NULL AS nothing, true AS yes, 'x' AS s`);
    expect(r.columns.map((c) => c.name)).toEqual(["n", "big", "h", "d", "wide", "ts", "list", "struct", "nothing", "yes", "s"]);
    expect(r.columns[0]!.type).toBe("BIGINT");
    expect(r.rows).toEqual([[42, "9007199254740993", 12, 1.25, "123456789012345678.5", "2026-01-01T12:00:00.123456Z", "[1,2]", '{"a":1}', null, true, "x"]]);
    expect(r.truncated).toBe(false);
  });

  it("accepts every form DuckDB classifies as a query", async () => {
    const runner = new SqlRunner(store);
    expect((await runner.run("WITH x AS (SELECT count(*) AS n FROM spans) SELECT n FROM x")).rows).toEqual([[3]]);
    expect((await runner.run("FROM spans SELECT span_id ORDER BY span_id")).rows).toEqual([["s1"], ["s2"], ["s3"]]);
    expect((await runner.run("DESCRIBE spans")).rows.length).toBeGreaterThan(0);
    expect((await runner.run("SELECT count(*) > 0 FROM information_schema.columns WHERE table_name = 'spans'")).rows).toEqual([[true]]);
    expect((await runner.run("SELECT 1;")).rows).toEqual([[1]]);
  });

  it("refuses more than one statement, even if the first is a SELECT", async () => {
    const runner = new SqlRunner(store);
    const e = await rejection(runner.run("SELECT 1; DELETE FROM spans"));
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toBe("exactly one SQL statement is allowed; got 2");
    expect((await runner.run("SELECT count(*) FROM spans")).rows).toEqual([[3]]);
  });

  it.each([
    ["EXPLAIN SELECT 1", "EXPLAIN"],
    ["PRAGMA version", "PRAGMA"],
    ["PRAGMA table_info('spans')", "PRAGMA"],
    ["SET threads = 1", "SET"],
    ["RESET threads", "SET"],
    ["ATTACH 'other.duckdb' AS other", "ATTACH"],
    ["INSTALL httpfs", "LOAD"],
    ["LOAD json", "LOAD"],
    ["DELETE FROM spans", "DELETE"],
    ["DROP TABLE spans", "DROP"],
    ["CREATE TABLE t AS SELECT 1", "CREATE"],
    ["INSERT INTO services VALUES ('x', 'y', 'z', 1, now(), now())", "INSERT"],
    ["UPDATE spans SET name = 'x'", "UPDATE"],
    ["CALL pragma_version()", "CALL"],
    ["CHECKPOINT", "CALL"],
    ["BEGIN TRANSACTION", "TRANSACTION"],
  ])("refuses %s as a non-SELECT statement", async (statement, type) => {
    const e = await rejection(new SqlRunner(store).run(statement));
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toBe(`only SELECT statements are allowed; got ${type}`);
    expect(e.stack).toBeUndefined();
  });

  it.each(["COPY spans TO 'out.csv'", "EXPORT DATABASE 'dump'", "ATTACH 'other.duckdb' AS other (READ_ONLY)"])(
    "refuses %s as a statement kind, before it would touch a file",
    async (statement) => {
      const e = await rejection(new SqlRunner(store).run(statement));
      expect(e.code).toBe("invalid_argument");
      expect(e.message).toMatch(/^only SELECT statements are allowed; got /);
    },
  );

  it("leaves the data untouched after refused writes", async () => {
    const runner = new SqlRunner(store);
    await rejection(runner.run("DELETE FROM spans"));
    await rejection(runner.run("DROP TABLE spans"));
    expect((await runner.run("SELECT count(*) FROM spans")).rows).toEqual([[3]]);
  });

  it.each([
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('/tmp/x.parquet')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_text('https://example.com/')",
  ])("cannot reach files or the network: %s", async (statement) => {
    const e = await rejection(new SqlRunner(store).run(statement));
    expect(e.code).toBe("invalid_argument");
    // Refused by name first (sql-policy.ts); the instance would refuse the access too (store.ts).
    expect(e.message).toMatch(/not available to queries|disabled by configuration/);
  });

  it.each([
    ["error() on a later row", "SELECT CASE WHEN range < 900000 THEN range ELSE error('boom') END AS i FROM range(1000000);", /boom/],
    ["a failing cast on a later row", "SELECT (CASE WHEN range < 900000 THEN range::VARCHAR ELSE 'x' END)::INTEGER AS i FROM range(1000000) -- trailing comment", /Conversion Error/],
  ])("a stream failing partway through (%s) fails with DuckDB's reason instead of ending as if complete", async (_, sql, reason) => {
    const runner = new SqlRunner(store, { maxRows: 2_000_000 });
    let rows = 0;
    const e = await rejection(
      (async () => {
        for await (const b of runner.stream(sql, { maxRows: 2_000_000 })) rows += b.rowCount;
      })(),
    );
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toMatch(reason);
    expect(e.message).toMatch(/the query failed after [\d,]+ rows had been read/);
    expect(rows).toBeLessThan(900_000);
    // The runner's connection is usable again: the next query completes.
    expect((await runner.run("SELECT 42 AS answer")).rows).toEqual([[42]]);
  });

  it("a query that fails partway is not passed off as a complete ExecuteQuery answer", async () => {
    const e = await rejection(new SqlRunner(store, { maxRows: 1_000_000 }).run("SELECT CASE WHEN range < 500000 THEN range ELSE error('late') END AS i FROM range(600000)"));
    expect(e.message).toMatch(/late/);
  });

  it("reports DuckDB's own message for a broken query", async () => {
    const e = await rejection(new SqlRunner(store).run("SELEC 1"));
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toMatch(/syntax error/);
  });

  it("limits rows and says so", async () => {
    const runner = new SqlRunner(store, { maxRows: 10 });
    const over = await runner.run("SELECT * FROM range(25)");
    expect(over.rows).toHaveLength(10);
    expect(over.truncated).toBe(true);
    const exact = await runner.run("SELECT * FROM range(10)");
    expect(exact.rows).toHaveLength(10);
    expect(exact.truncated).toBe(false);
  });

  it("interrupts a query that outruns the deadline, and only that query", async () => {
    const runner = new SqlRunner(store, { timeoutMs: 300 });
    const slow = rejection(runner.run("SELECT count(*) FROM range(100000000) a, range(1000000) b"));
    const quick = await new SqlRunner(store).run("SELECT count(*) FROM spans");
    const e = await slow;
    expect(e.code).toBe("deadline_exceeded");
    expect(e.message).toContain("300 ms");
    expect(quick.rows).toEqual([[3]]);
  });

  it("a stream cut by the deadline fails instead of ending as if complete", async () => {
    const runner = new SqlRunner(store, { timeoutMs: 300 });
    let rows = 0;
    const e = await rejection(
      (async () => {
        for await (const b of runner.stream("SELECT range AS i FROM range(200000)", { maxRows: 200_000, batchRows: 1000 })) {
          rows += b.rowCount;
          // A slow reader: the deadline covers the whole stream, reading included.
          await new Promise((r) => setTimeout(r, 5));
        }
      })(),
    );
    expect(e.code).toBe("deadline_exceeded");
    expect(rows).toBeLessThan(200_000);
  });

  it("caps the bytes of a response", async () => {
    const runner = new SqlRunner(store, { maxBytes: 10_000 });
    const e = await rejection(runner.run("SELECT repeat('x', 1000) FROM range(100)"));
    expect(e.code).toBe("resource_exhausted");
    expect(e.message).toContain("10000-byte");
    expect((await runner.run("SELECT repeat('x', 1000) FROM range(5)")).rows).toHaveLength(5);
  });

  it("streams in batches with columns first and truncation last", async () => {
    const batches: SqlBatch[] = [];
    for await (const b of new SqlRunner(store).stream("SELECT range AS i FROM range(10)", { maxRows: 8, batchRows: 3 })) batches.push(b);
    expect(batches.map((b) => b.rowCount)).toEqual([3, 3, 2]);
    expect(batches.map((b) => b.columns.length)).toEqual([1, 0, 0]);
    expect(batches.map((b) => b.truncated)).toEqual([false, false, true]);
    expect(batches.flatMap((b) => b.values[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("streams column-major batches across DuckDB's chunks, converted per column", async () => {
    const batches: SqlBatch[] = [];
    const sql = "SELECT range AS i, range::DOUBLE / 2 AS half, 'r' || range AS s, range % 3 = 0 AS b, CASE WHEN range % 5 = 0 THEN NULL ELSE range END AS n FROM range(5000)";
    for await (const b of new SqlRunner(store).stream(sql, { maxRows: 5000, batchRows: 3000 })) batches.push(b);
    expect(batches.map((b) => b.rowCount)).toEqual([3000, 2000]);
    expect(batches.every((b) => b.values.length === 5 && b.values.every((col) => col.length === b.rowCount))).toBe(true);
    const col = (c: number) => batches.flatMap((b) => b.values[c]!);
    expect(col(0)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(col(1)[4999]).toBe(2499.5);
    expect(col(2)[2048]).toBe("r2048");
    expect(col(3).slice(0, 4)).toEqual([true, false, false, true]);
    expect(col(4).slice(0, 6)).toEqual([null, 1, 2, 3, 4, null]);
  });

  it("cuts batches at the byte budget too", async () => {
    const batches: SqlBatch[] = [];
    for await (const b of new SqlRunner(store).stream("SELECT repeat('x', 100) AS s FROM range(50)", { batchBytes: 1000 })) batches.push(b);
    // Each row is about 105 bytes: nine fit in 1,000.
    expect(batches.map((b) => b.rowCount)).toEqual([9, 9, 9, 9, 9, 5]);
  });

  it("sends NaN and infinities as the strings DuckDB prints", async () => {
    const r = await new SqlRunner(store).run("SELECT 'nan'::DOUBLE AS a, 'inf'::DOUBLE AS b, '-inf'::FLOAT AS c, 1.5::DOUBLE AS d");
    expect(r.rows).toEqual([["nan", "inf", "-inf", 1.5]]);
  });

  it("streams an empty result as one batch carrying the columns", async () => {
    const batches: SqlBatch[] = [];
    for await (const b of new SqlRunner(store).stream("SELECT span_id FROM spans WHERE false")) batches.push(b);
    expect(batches).toEqual([{ columns: [{ name: "span_id", type: "VARCHAR" }], values: [[]], rowCount: 0, truncated: false }]);
  });

  it("refuses statements with parameters", async () => {
    const e = await rejection(new SqlRunner(store).run("SELECT $1"));
    expect(e.code).toBe("invalid_argument");
  });
});

describe("SqlRunner governance", () => {
  it("refuses a cell too large for the response before building it in the heap", async () => {
    const runner = new SqlRunner(store);
    const heapBefore = process.memoryUsage().heapUsed;
    // 4M numbers in one list cell: tens of MB of JSON, over the 16 MiB cap.
    const list = await rejection(runner.run("SELECT list(range) AS x FROM range(4000000)"));
    const text = await rejection(runner.run("SELECT repeat('x', 20000000) AS s"));
    const nested = await rejection(runner.run("SELECT list_transform(range(3000), i -> repeat('y', 10000)) AS l"));
    for (const e of [list, text, nested]) {
      expect(e.code).toBe("resource_exhausted");
      expect(e.message).toMatch(/response limit/);
    }
    // Converted, the list alone would be 4M JS numbers (32+ MB of heap).
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(16 * 2 ** 20);
  });

  it("streams rows whose sum exceeds the cap when each batch fits", async () => {
    const runner = new SqlRunner(store, { maxBytes: 1 << 20 });
    let rows = 0;
    for await (const b of runner.stream("SELECT repeat('z', 100000) AS s FROM range(30)", { batchBytes: 256 * 1024 })) rows += b.rowCount;
    expect(rows).toBe(30);
  });

  it("queues queries beyond the concurrency limit and refuses beyond the queue", async () => {
    const runner = new SqlRunner(store, { maxConcurrent: 1, maxQueued: 1 });
    // Each takes DuckDB a while (a GLOB that backtracks), so the three overlap.
    const slow = "SELECT repeat('a', 90) GLOB '*a*a*a*a*b' AS m";
    const first = runner.run(slow);
    const second = runner.run(slow);
    const third = await rejection(runner.run(slow));
    expect(third.code).toBe("resource_exhausted");
    expect(third.message).toMatch(/too many SQL queries at once \(1 running, 1 waiting\)/);
    expect((await first).rows).toEqual([[false]]);
    expect((await second).rows).toEqual([[false]]);
  });

  it("abandons a query DuckDB cannot interrupt, keeps its slot until DuckDB lets go, then serves again", async () => {
    const runner = new SqlRunner(store, { maxConcurrent: 1, timeoutMs: 200, abandonAfterMs: 200 });
    // One GLOB evaluation backtracks for seconds and never checks for an interrupt.
    const e = await rejection(runner.run("SELECT repeat('a', 150) GLOB '*a*a*a*a*b'"));
    expect(e.code).toBe("deadline_exceeded");
    // Answered while DuckDB is still inside the query.
    expect(runner.runaways).toBe(1);
    const refused = await rejection(runner.run("SELECT 1"));
    expect(refused.code).toBe("resource_exhausted");
    expect(refused.message).toMatch(/still running past their deadline/);
    await vi.waitFor(() => expect(runner.runaways).toBe(0), { timeout: 30_000, interval: 100 });
    expect((await runner.run("SELECT 1 AS one")).rows).toEqual([[1]]);
  });

  it("reports an internal DuckDB fault as internal, not as the user's SQL", async () => {
    // A closed store is the colony's fault: the error must not be a SqlRejected.
    const dir2 = mkdtempSync(join(tmpdir(), "coral-sql-closed-"));
    const s2 = await Store.open(join(dir2, "c.duckdb"));
    const runner = new SqlRunner(s2);
    await s2.close();
    await expect(runner.run("SELECT 1")).rejects.not.toBeInstanceOf(SqlRejected);
    rmSync(dir2, { recursive: true, force: true });
  });
});

describe("SqlRunner.stopAll (the supervisor's memory limit)", () => {
  it("answers every running query with the reason; one DuckDB lets go of ends, one it cannot interrupt is counted and keeps its slot", async () => {
    const runner = new SqlRunner(store, { timeoutMs: 60_000 });
    let abandonedAt: number | undefined;
    runner.onRunaway = () => (abandonedAt = runner.oldestRunawaySince);
    const interruptible = rejection(runner.run("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3"));
    const stuck = rejection(runner.run("SELECT repeat('a', 150) GLOB '*a*a*a*a*b'"));
    await new Promise((r) => setTimeout(r, 300));
    const why = new SqlRejected("resource_exhausted", "the colony's memory went over its limit");
    expect(await runner.stopAll(why)).toBe(1);
    for (const e of [await interruptible, await stuck]) expect({ code: e.code, message: e.message }).toEqual({ code: "resource_exhausted", message: why.message });
    expect(runner.runaways).toBe(1);
    expect(abandonedAt).toBe(runner.oldestRunawaySince);
    await vi.waitFor(() => expect(runner.runaways).toBe(0), { timeout: 30_000, interval: 100 });
    expect(runner.oldestRunawaySince).toBeUndefined();
  });
});

describe("SqlRunner cancellation", () => {
  it("interrupts DuckDB when the caller's signal aborts, and never passes a cut result off as whole", async () => {
    const runner = new SqlRunner(store);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const e = await rejection(runner.run("SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3", ac.signal));
    expect(e.code).toBe("cancelled");
  });
});
