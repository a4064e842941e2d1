// ClickHouseUserSql against a real ClickHouse (chdb), on the colony's tables: the same answers and
// refusals SqlRunner gives on DuckDB (readonly-sql.test.ts, sql-policy.test.ts), for the same
// classes of SQL.
import { rmSync } from "node:fs";
import type { ClickHouseClient } from "@clickhouse/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqlRejected, type SqlBatch } from "../readonly-sql.js";
import { createTables, ident } from "./schema.js";
import { chdbClient } from "./testing.js";
import { CLICKHOUSE_SQL_DEFAULTS, ClickHouseUserSql, guardSettings, guardedStatement, readOnlyUserDdl, type ClickHouseSqlLimits } from "./user-sql.js";

let store: ClickHouseClient;
let query: ClickHouseClient;
let dir: string;
let database: string;

beforeAll(async () => {
  ({ client: store, dir, database } = await chdbClient());
  await createTables(store, { database });
  await store.command({ query: "SET insert_deduplication_token = ''" });
  await store.insert({
    table: `${ident(database)}.spans`,
    values: [1, 2, 3].map((i) => ({
      trace_id: `t${i}`,
      span_id: `s${i}`,
      parent_span_id: null,
      service_name: "payments",
      name: "POST /charge",
      kind: "SERVER",
      start_time: `2026-01-01 12:00:0${i}.000000`,
      duration_ns: i * 1_000_000,
      status_code: "OK",
      http_status_code: 200,
      attributes: JSON.stringify({ i }),
    })),
    format: "JSONEachRow",
  });
  // User SQL has a client (a chdb session) of its own, as the colony gives it.
  ({ client: query } = await chdbClient(dir, database));
});

afterAll(async () => {
  await query?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const runner = (limits: ClickHouseSqlLimits = {}) => new ClickHouseUserSql(query, database, limits, { embedded: true });

async function rejection(p: Promise<unknown>): Promise<SqlRejected> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SqlRejected);
    return err as SqlRejected;
  }
  throw new Error("expected the query to be rejected");
}

describe("ClickHouseUserSql", () => {
  it("runs a SELECT and converts values for the wire as SqlRunner does", async () => {
    const r = await runner().run(`
      SELECT toInt64(42) AS n, toUInt64(9007199254740993) AS big, toInt128(12) AS h, toDecimal32(1.25, 2) AS d,
             toDecimal128('123456789012345678.5', 1) AS wide, toDateTime64('2026-01-01 12:00:00.123456', 6, 'UTC') AS ts,
             toDateTime64('2026-01-01 12:00:00', 6, 'UTC') AS whole, [1, 2] AS list, tuple(1, 'a') AS tup, NULL AS nothing, true AS yes, 'x' AS s,
             nan AS a, inf AS b, -inf AS c, 1.5 AS f`);
    expect(r.columns.map((c) => c.name)).toEqual(["n", "big", "h", "d", "wide", "ts", "whole", "list", "tup", "nothing", "yes", "s", "a", "b", "c", "f"]);
    expect(r.columns[0]!.type).toBe("Int64");
    expect(r.rows).toEqual([
      [42, "9007199254740993", 12, 1.25, "123456789012345678.5", "2026-01-01T12:00:00.123456Z", "2026-01-01T12:00:00.000Z", "[1,2]", '[1,"a"]', null, true, "x", "nan", "inf", "-inf", 1.5],
    ]);
    expect(r.truncated).toBe(false);
  });

  it("reads the colony's tables, by bare and qualified name, with CTEs, joins and generators", async () => {
    const run = runner();
    expect((await run.run("SELECT count() AS n FROM spans")).rows).toEqual([[3]]);
    expect((await run.run(`SELECT count() FROM ${database}.spans`)).rows).toEqual([[3]]);
    expect((await run.run("WITH x AS (SELECT count() AS n FROM spans) SELECT n FROM x")).rows).toEqual([[3]]);
    expect((await run.run("SELECT s.span_id FROM spans s JOIN trace_summary t USING (trace_id) ORDER BY 1")).rows).toEqual([]);
    expect((await run.run("SELECT * FROM numbers(3)")).rows).toEqual([[0], [1], [2]]);
    expect((await run.run("SELECT number FROM system.numbers LIMIT 2")).rows).toEqual([[0], [1]]);
    expect((await run.run("SELECT count() > 0 FROM information_schema.columns WHERE table_name = 'spans'")).rows).toEqual([[1]]);
    expect((await run.run("SELECT format('{} {}', 'a', 'b')")).rows).toEqual([["a b"]]);
    expect((await run.run("SELECT 1;")).rows).toEqual([[1]]);
    expect((await run.run("SELECT span_id FROM spans ORDER BY span_id DESC -- a trailing comment")).rows).toEqual([["s3"], ["s2"], ["s1"]]);
  });

  it("refuses more than one statement, even if the first is a SELECT, and runs neither", async () => {
    const e = await rejection(runner().run("SELECT 1; TRUNCATE TABLE spans"));
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toBe("exactly one SQL statement is allowed; got more than one");
    expect((await runner().run("SELECT count() FROM spans")).rows).toEqual([[3]]);
  });

  it.each([
    ["EXPLAIN SELECT 1", "EXPLAIN"],
    ["SET max_threads = 1", "SET"],
    ["INSERT INTO spans (trace_id) VALUES ('x')", "INSERT"],
    ["ALTER TABLE spans DELETE WHERE 1", "ALTER"],
    ["DELETE FROM spans WHERE 1", "DELETE"],
    ["DROP TABLE spans", "DROP"],
    ["TRUNCATE TABLE spans", "TRUNCATE"],
    ["CREATE TABLE t ENGINE = Memory AS SELECT 1", "CREATE"],
    ["RENAME TABLE spans TO x", "RENAME"],
    ["OPTIMIZE TABLE spans FINAL", "OPTIMIZE"],
    ["SYSTEM SHUTDOWN", "SYSTEM"],
    ["KILL QUERY WHERE 1", "KILL"],
    ["GRANT ALL ON *.* TO default", "GRANT"],
    ["CREATE USER evil", "CREATE"],
    ["SHOW TABLES", "SHOW"],
    ["DESCRIBE TABLE spans", "DESCRIBE"],
    ["USE system", "USE"],
    ["DETACH TABLE spans", "DETACH"],
    ["ATTACH TABLE spans", "ATTACH"],
    ["BACKUP TABLE spans TO File('b')", "BACKUP"],
  ])("refuses %s as a non-SELECT statement", async (statement, kind) => {
    const e = await rejection(runner().run(statement));
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toBe(`only SELECT statements are allowed; got ${kind}`);
    expect(e.stack).toBeUndefined();
  });

  it("leaves the data untouched after refused writes", async () => {
    await rejection(runner().run("ALTER TABLE spans DELETE WHERE 1"));
    await rejection(runner().run("DROP TABLE spans"));
    expect((await runner().run("SELECT count() FROM spans")).rows).toEqual([[3]]);
  });

  it.each([
    ["SELECT 1 FORMAT JSON", /FORMAT and INTO OUTFILE clauses are not allowed/],
    ["SELECT * FROM spans INTO OUTFILE '/tmp/coral-out.csv'", /FORMAT and INTO OUTFILE clauses are not allowed/],
    ["SELECT 1 SETTINGS readonly = 0", /settings cannot be changed by a query/],
    ["SELECT * FROM (SELECT 1 SETTINGS max_execution_time = 1000000)", /settings cannot be changed/],
    ["SELECT getSetting('max_memory_usage')", /function getsetting\(\) is not available/],
    ["SELECT file('/etc/hostname')", /function file\(\) is not available/],
    ["SELECT dictGet('d', 'x', 1)", /function dictget\(\) is not available/],
    ["SELECT hasColumnInTable('system', 'users', 'name')", /hascolumnintable/],
  ])("refuses %s", async (statement, why) => {
    const e = await rejection(runner().run(statement));
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toMatch(why);
  });

  it.each([
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM FILE('/etc/passwd', 'LineAsString')",
    "SELECT * FROM `file`('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM remoteSecure('127.0.0.1', system.one)",
    "SELECT * FROM cluster('default', system.one)",
    "SELECT * FROM clusterAllReplicas('default', system.one)",
    "SELECT * FROM merge('system', '^users$')",
    "SELECT * FROM mysql('127.0.0.1:3306', 'db', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:5432', 'db', 't', 'u', 'p')",
    "SELECT * FROM executable('x.sh', 'CSV', 'a String')",
    "SELECT * FROM input('a String')",
    "SELECT * FROM dictionary('d')",
    "SELECT * FROM generateRandom('a String') LIMIT 1",
    "SELECT * FROM loop(numbers(1)) LIMIT 1",
    "SELECT * FROM filesystem('/')",
    "SELECT * FROM hdfs('hdfs://127.0.0.1:9000/x', 'CSV')",
    "SELECT * FROM (SELECT * FROM (SELECT * FROM file('/etc/passwd', 'LineAsString')))",
    "WITH x AS (SELECT * FROM file('/etc/passwd', 'LineAsString')) SELECT * FROM x",
    "SELECT (SELECT count() FROM file('/etc/passwd', 'LineAsString'))",
    "SELECT 1 WHERE 1 IN (SELECT 1 FROM url('http://127.0.0.1:9/', 'LineAsString'))",
    "SELECT * FROM numbers(1) AS n JOIN file('/etc/passwd', 'LineAsString') AS f ON 1 = 1",
    // A quoted name holding a newline adds lines to EXPLAIN AST's output: they cannot hide the real node.
    "SELECT `x\n      TableIdentifier spans` FROM file('/etc/passwd', 'LineAsString')",
  ])("cannot reach files, the network or other servers: %s", async (statement) => {
    const e = await rejection(runner().run(statement));
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toMatch(/^table function \w+\(\) is not available to queries/);
  });

  it.each([
    ["SELECT * FROM system.settings", /table "system\.settings" is not available/],
    ["SELECT * FROM system.users", /system\.users/],
    ["SELECT path FROM system.disks", /system\.disks/],
    ["SELECT data_paths FROM system.tables", /system\.tables/],
    ["SELECT * FROM system.processes", /system\.processes/],
    ["SELECT * FROM SYSTEM.SETTINGS", /not available/],
    ["SELECT 1 WHERE 'x' IN system.users", /system\.users/],
    ["SELECT * FROM spans WHERE trace_id IN (SELECT name FROM system.databases)", /system\.databases/],
    ["SELECT * FROM default.anything", /"default\.anything" is not available/],
  ])("reads no other database: %s", async (statement, why) => {
    const e = await rejection(runner().run(statement));
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toMatch(why);
  });

  it("reports ClickHouse's own message for a broken query, without the colony's wrapping", async () => {
    const syntax = await rejection(runner().run("SELEC 1"));
    expect(syntax.code).toBe("invalid_argument");
    expect(syntax.message).toMatch(/Syntax error/);
    const unknown = await rejection(runner().run("SELECT nope FROM spans"));
    expect(unknown.code).toBe("invalid_argument");
    expect(unknown.message).toMatch(/nope/);
    expect(unknown.message).not.toMatch(/SETTINGS|max_execution_time/);
    const thrown = await rejection(runner().run("SELECT throwIf(number = 3, 'boom') FROM numbers(10)"));
    expect(thrown.code).toBe("invalid_argument");
    expect(thrown.message).toMatch(/boom/);
  });

  it("a failed query leaves nothing behind for the next one (chdb keeps partial output in the session)", async () => {
    const run = runner();
    await rejection(run.run("SELECT throwIf(number = 3, 'late') AS x FROM numbers(10) SETTINGS max_block_size = 1".replace(" SETTINGS max_block_size = 1", "")));
    expect(await run.run("SELECT 'after' AS s")).toEqual({ columns: [{ name: "s", type: "String" }], rows: [["after"]], truncated: false });
  });

  it("refuses statements with parameters", async () => {
    const e = await rejection(runner().run("SELECT {x:String}"));
    expect(e.code).toBe("invalid_argument");
    expect(e.message).toMatch(/parameters/);
  });

  it("limits rows and says so", async () => {
    const run = runner({ maxRows: 10 });
    const over = await run.run("SELECT * FROM numbers(25)");
    expect(over.rows).toHaveLength(10);
    expect(over.truncated).toBe(true);
    const exact = await run.run("SELECT * FROM numbers(10)");
    expect(exact.rows).toHaveLength(10);
    expect(exact.truncated).toBe(false);
  });

  it("stops a query at the deadline", async () => {
    const e = await rejection(runner({ timeoutMs: 300 }).run("SELECT count() FROM numbers(5000000000) WHERE number % 7 = 3"));
    expect(e.code).toBe("deadline_exceeded");
    expect(e.message).toBe("the query ran longer than the 300 ms statement timeout and was cancelled");
  });

  it("caps the bytes of a response, on the wire size and in the server", async () => {
    const run = runner({ maxBytes: 10_000 });
    const e = await rejection(run.run("SELECT repeat('x', 1000) FROM numbers(100)"));
    expect(e.code).toBe("resource_exhausted");
    expect(e.message).toContain("10000-byte");
    expect((await run.run("SELECT repeat('x', 1000) FROM numbers(5)")).rows).toHaveLength(5);
    const big = await rejection(runner().run("SELECT repeat('a', 20000000) AS s"));
    expect(big.code).toBe("resource_exhausted");
    // Truncated at 10,000 rows, still over 16 MiB.
    const many = await rejection(runner().run("SELECT repeat('a', 2000) FROM numbers(10000000)"));
    expect(many.code).toBe("resource_exhausted");
    expect(many.message).toMatch(/response limit/);
  });

  it("refuses memory bombs within --query-memory", async () => {
    const e = await rejection(runner({ maxMemoryBytes: 256 * 2 ** 20 }).run("SELECT length(groupArray(repeat('x', 1000))) FROM numbers(10000000)"));
    expect(e.code).toBe("resource_exhausted");
    expect(e.message).toMatch(/^the query needs more memory than the colony allows \(--query-memory\)/);
    expect(e.message.split("\n")).toHaveLength(1);
  });

  it("bounds the rows a query may read", async () => {
    const e = await rejection(runner({ maxRowsToRead: 1000 }).run("SELECT count() FROM numbers(1000000)"));
    expect(e.code).toBe("resource_exhausted");
    expect(e.message).toMatch(/max_rows_to_read/);
  });

  it("answers many columns", async () => {
    const cols = Array.from({ length: 2000 }, (_, i) => `${i} AS c${i}`).join(", ");
    const r = await runner().run(`SELECT ${cols}`);
    expect(r.columns).toHaveLength(2000);
  });

  it("cancels when the caller's signal aborts", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const e = await rejection(runner().run("SELECT count() FROM numbers(5000000000) WHERE number % 7 = 3", ac.signal));
    expect(e.code).toBe("cancelled");
    // The session serves the next query, with its own result only.
    expect((await runner().run("SELECT 42 AS answer")).rows).toEqual([[42]]);
  });

  it("queues queries beyond the concurrency limit and refuses beyond the queue", async () => {
    const run = runner({ maxConcurrent: 1, maxQueued: 1 });
    const slow = "SELECT sleep(0.5) AS s";
    const first = run.run(slow);
    const second = run.run(slow);
    const third = await rejection(run.run(slow));
    expect(third.code).toBe("resource_exhausted");
    expect(third.message).toMatch(/too many SQL queries at once \(1 running, 1 waiting\)/);
    expect((await first).rows).toEqual([[0]]);
    expect((await second).rows).toEqual([[0]]);
  });

  it("reports an internal fault as internal, not as the user's SQL", async () => {
    const { client: closed } = await chdbClient(dir, database);
    const run = new ClickHouseUserSql(closed, database, {}, { embedded: true });
    await closed.close();
    await expect(run.run("SELECT 1")).rejects.not.toBeInstanceOf(SqlRejected);
  });
});

describe("the limits in each query's SETTINGS, on their own", () => {
  // As if the checks before them had a bug: statements they refuse, run as the colony runs a judged
  // one. chdb has no users or profiles (its only user may not create them), so on chdb these
  // settings are the server's half of the guard; docs/scale-out.md says what a server adds.
  const limits = { ...CLICKHOUSE_SQL_DEFAULTS, maxRowsToRead: 1_000_000, maxMemoryBytes: 256 * 2 ** 20 };
  const guarded = async (sql: string, secondsLeft = 30) => {
    try {
      const rs = await query.query({ query: guardedStatement(sql, 10, guardSettings(limits, secondsLeft, false)), format: "JSONCompactEachRow" });
      return `allowed: ${await rs.text()}`;
    } catch (err) {
      return (err as { code?: string }).code;
    } finally {
      // A refused query may leave output in the session (see ClickHouseUserSql).
      await query.query({ query: "SELECT 1", format: "JSONCompactEachRow" }).then((r) => r.text());
    }
  };

  it("refuse file, url, s3, remote and executable table functions (readonly mode)", async () => {
    for (const sql of [
      "SELECT * FROM file('/etc/passwd', 'LineAsString')",
      "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
      "SELECT * FROM s3('http://127.0.0.1:9/bucket/key.csv', 'CSV', 'x String')",
      "SELECT * FROM remote('127.0.0.1', system.one)",
      "SELECT * FROM executable('id', 'TSV', 'x String')",
    ]) {
      expect(await guarded(sql), sql).toBe("164"); // READONLY
    }
  });

  // The result size: "caps the bytes of a response, on the wire size and in the server" above.
  it("bound rows read, time and memory", async () => {
    expect(await guarded("SELECT count() FROM numbers(100000000)")).toBe("158"); // TOO_MANY_ROWS
    // TIMEOUT_EXCEEDED, or TOO_SLOW when ClickHouse's estimate already exceeds the limit.
    expect(["159", "160"]).toContain(await guarded("SELECT count() FROM numbers_mt(1000000) WHERE sleepEachRow(0.001) = 0", 0.2));
    expect(await guarded("SELECT length(groupArray(repeat('x', 1000))) FROM numbers(1000000)")).toBe("241"); // MEMORY_LIMIT_EXCEEDED
  });
});

describe("streaming", () => {
  it("streams in batches with columns first and truncation last", async () => {
    const batches: SqlBatch[] = [];
    for await (const b of runner().stream("SELECT number AS i FROM numbers(10)", { maxRows: 8, batchRows: 3 })) batches.push(b);
    expect(batches.map((b) => b.rowCount)).toEqual([3, 3, 2]);
    expect(batches.map((b) => b.columns.length)).toEqual([1, 0, 0]);
    expect(batches.map((b) => b.truncated)).toEqual([false, false, true]);
    expect(batches.flatMap((b) => b.values[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("column-major batches, converted per column", async () => {
    const batches: SqlBatch[] = [];
    const sql = "SELECT number AS i, number / 2 AS half, concat('r', toString(number)) AS s, number % 3 = 0 AS b, if(number % 5 = 0, NULL, number) AS n FROM numbers(5000)";
    for await (const b of runner().stream(sql, { maxRows: 5000, batchRows: 3000 })) batches.push(b);
    expect(batches.map((b) => b.rowCount)).toEqual([3000, 2000]);
    expect(batches.every((b) => b.values.length === 5 && b.values.every((col) => col.length === b.rowCount))).toBe(true);
    const col = (c: number) => batches.flatMap((b) => b.values[c]!);
    expect(col(0)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(col(1)[4999]).toBe(2499.5);
    expect(col(2)[2048]).toBe("r2048");
    expect(col(3).slice(0, 4)).toEqual([1, 0, 0, 1]);
    expect(col(4).slice(0, 6)).toEqual([null, 1, 2, 3, 4, null]);
  });

  it("cuts batches at the byte budget too", async () => {
    const batches: SqlBatch[] = [];
    for await (const b of runner().stream("SELECT repeat('x', 100) AS s FROM numbers(50)", { batchBytes: 1000 })) batches.push(b);
    expect(batches.map((b) => b.rowCount)).toEqual([9, 9, 9, 9, 9, 5]);
  });

  it("streams an empty result as one batch carrying the columns", async () => {
    const batches: SqlBatch[] = [];
    for await (const b of runner().stream("SELECT span_id FROM spans WHERE 0")) batches.push(b);
    expect(batches).toEqual([{ columns: [{ name: "span_id", type: "String" }], values: [[]], rowCount: 0, truncated: false }]);
  });

  it("a consumer that stops early leaves the session clean", async () => {
    const run = runner();
    for await (const _ of run.stream("SELECT number FROM numbers(100000)", { batchRows: 10 })) break;
    expect((await run.run("SELECT 7 AS seven")).rows).toEqual([[7]]);
  });
});

describe("readOnlyUserDdl", () => {
  it("is the profile, user and grant for a real server (golden)", () => {
    const ddl = readOnlyUserDdl({ database: "coral", passwordSha256Hex: "0".repeat(64) });
    expect(ddl.join(";\n\n")).toBe(`CREATE SETTINGS PROFILE IF NOT EXISTS \`coral_query\` SETTINGS
  readonly = 2 CONST,
  allow_ddl = 0 CONST,
  allow_introspection_functions = 0 CONST,
  max_execution_time = 30 MAX 30,
  timeout_overflow_mode = 'throw' CONST,
  max_memory_usage = 2147483648 MAX 2147483648,
  max_result_bytes = 268435456 MAX 268435456,
  result_overflow_mode = 'throw' CONST,
  max_rows_to_read = 10000000000 MAX 10000000000,
  read_overflow_mode = 'throw' CONST,
  cancel_http_readonly_queries_on_client_close = 1 CONST,
  max_concurrent_queries_for_user = 4 MAX 4;

CREATE USER IF NOT EXISTS \`coral_query\` IDENTIFIED WITH sha256_hash BY '${"0".repeat(64)}' DEFAULT DATABASE \`coral\` SETTINGS PROFILE \`coral_query\`;

GRANT SELECT ON \`coral\`.* TO \`coral_query\``);
    const cluster = readOnlyUserDdl({ database: "coral", cluster: "main", passwordSha256Hex: "a".repeat(64) });
    expect(cluster[0]).toMatch(/^CREATE SETTINGS PROFILE IF NOT EXISTS `coral_query` ON CLUSTER `main` SETTINGS/);
    expect(cluster[1]).toMatch(/^CREATE USER IF NOT EXISTS `coral_query` ON CLUSTER `main` /);
    expect(cluster[2]).toBe("GRANT ON CLUSTER `main` SELECT ON `coral`.* TO `coral_query`");
    expect(() => readOnlyUserDdl({ database: "coral", passwordSha256Hex: "secret' OR 1" })).toThrow(/64 lower-case hex/);
  });

  it("parses as ClickHouse DDL", async () => {
    for (const statement of readOnlyUserDdl({ database: "coral", cluster: "main", passwordSha256Hex: "0".repeat(64) })) {
      const rs = await store.query({ query: "SELECT formatQuery({q:String}) AS f", query_params: { q: statement }, format: "JSONCompactEachRow" });
      expect(((await rs.json()) as [string][])[0]![0]).toMatch(/^(CREATE|GRANT)/);
    }
  });
});
