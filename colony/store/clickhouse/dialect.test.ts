// The ClickHouse dialect against a real ClickHouse (chdb): every value a query carries travels as a
// typed server-side parameter and comes back unchanged, whatever it holds; identifiers are quoted
// so no name can end the quote; values no Coral query means are refused before anything is sent.
import { rmSync } from "node:fs";
import type { ClickHouseClient } from "@clickhouse/client";
import { Kysely, sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClickHouseDialect, dateTimeText, ParameterError, toParam } from "./dialect.js";
import { chdbClient } from "./testing.js";

let client: ClickHouseClient;
let dir: string;
let db: Kysely<any>;

beforeAll(async () => {
  ({ client, dir } = await chdbClient());
  db = new Kysely<any>({ dialect: new ClickHouseDialect(client) });
});

afterAll(async () => {
  await client?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function roundTrip(v: unknown): Promise<unknown> {
  const r = await sql<{ v: unknown }>`SELECT ${v} AS v`.execute(db);
  return r.rows[0]!.v;
}

const HOSTILE_STRINGS = [
  "",
  "'",
  "''",
  "\\",
  "\\'",
  "a\\' OR 1=1 --",
  "'; DROP TABLE spans; --",
  "{p0:String}",
  "{p1:Int64}) OR ({x:String}",
  "\0",
  "before\0after",
  "\t\n\r\b\f\v",
  "\\N",
  "\\t\\n",
  "`backtick`",
  '"double"',
  "ünïcödé 🦀 \u2028\u2029",
  "\uFFFD",
  "x".repeat(1 << 20),
];

describe("compiled SQL", () => {
  it("holds placeholders, never the values", () => {
    const q = db
      .selectFrom("spans")
      .selectAll()
      .where("service_name", "=", "'; DROP TABLE spans; --")
      .where("duration_ns", ">=", 5)
      .where("start_time", "<", new Date(0))
      .where("name", "in", ["a", "b"])
      .limit(3)
      .compile();
    expect(q.sql).toBe(
      "select * from `spans` where `service_name` = {p0:String} and `duration_ns` >= {p1:Int64} and `start_time` < {p2:DateTime64(6, 'UTC')} and `name` in ({p3:String}, {p4:String}) limit {p5:Int64}",
    );
    expect(q.parameters).toEqual(["'; DROP TABLE spans; --", "5", "1970-01-01 00:00:00.000000", "a", "b", "3"]);
  });

  it("turns literals into parameters too, and NULL into the keyword", () => {
    const q = sql`SELECT ${sql.lit("a'\\b")} AS x, ${null} AS n`.compile(db);
    expect(q.sql).toBe("SELECT {p0:String} AS x, NULL AS n");
    expect(q.parameters).toEqual(["a'\\b"]);
  });
});

describe("values round-trip through ClickHouse unchanged", () => {
  it.each(HOSTILE_STRINGS.map((s) => [s.length > 40 ? `${s.slice(0, 20)}… (${s.length} chars)` : JSON.stringify(s), s]))("string %s", async (_, s) => {
    expect(await roundTrip(s)).toBe(s);
  });

  it("hostile strings in WHERE match only themselves", async () => {
    const rows = HOSTILE_STRINGS.slice(0, -1).map((s, i) => sql`SELECT ${i} AS i, ${s} AS s`);
    const all = sql.join(rows, sql` UNION ALL `);
    for (const [i, s] of HOSTILE_STRINGS.slice(0, -1).entries()) {
      const r = await sql<{ i: number }>`SELECT i FROM (${all}) WHERE s = ${s} ORDER BY i`.execute(db);
      expect(r.rows.map((x) => x.i)).toEqual([i]);
    }
  });

  it.each([
    [0, "Int64"],
    [-0, "Int64"],
    [42, "Int64"],
    [-42, "Int64"],
    [Number.MAX_SAFE_INTEGER, "Int64"],
    [Number.MIN_SAFE_INTEGER, "Int64"],
    [0.1, "Float64"],
    [-1.5e-7, "Float64"],
    [1e300, "Float64"],
    [5e-324, "Float64"],
    [Number.MAX_VALUE, "Float64"],
    [2 ** 60, "Float64"],
  ])("number %s as %s", async (n, type) => {
    expect(toParam(n).type).toBe(type);
    expect(await roundTrip(n)).toBe(n === 0 ? 0 : n);
  });

  it.each([
    [0n, "Int64"],
    [-(2n ** 63n), "Int64"],
    [2n ** 63n - 1n, "Int64"],
    [2n ** 64n - 1n, "UInt64"],
    [-(2n ** 127n), "Int128"],
    [2n ** 200n, "Int256"],
  ])("bigint %s as %s", async (n, type) => {
    expect(toParam(n).type).toBe(type);
    // Read back as text: 64-bit and wider integers are exact there.
    const r = await sql<{ v: string }>`SELECT toString(${n}) AS v`.execute(db);
    expect(r.rows[0]!.v).toBe(n.toString());
  });

  it("booleans", async () => {
    expect(await roundTrip(true)).toBe(true);
    expect(await roundTrip(false)).toBe(false);
  });

  it.each([
    new Date(0),
    new Date(Date.UTC(1900, 0, 1)),
    new Date(Date.UTC(1969, 11, 31, 23, 59, 59, 999)),
    new Date(Date.UTC(2026, 5, 1, 12, 0, 0, 1)),
    new Date(Date.UTC(2299, 11, 31, 23, 59, 59, 999)),
  ])("date %s, to the millisecond", async (d) => {
    expect(await roundTrip(d)).toEqual(d);
  });

  it("arrays of each kind, nested, with NULLs, empty", async () => {
    const hostile = HOSTILE_STRINGS.slice(0, -1);
    expect(await roundTrip(hostile)).toEqual(hostile);
    expect(await roundTrip([1, -2, 3])).toEqual([1, -2, 3]);
    expect(await roundTrip([1, 2.5])).toEqual([1, 2.5]);
    expect(await roundTrip([2 ** 60, 0.5])).toEqual([2 ** 60, 0.5]);
    expect(await roundTrip(["a", null])).toEqual(["a", null]);
    expect(await roundTrip([["x'"], [], ["\\", "{p0:String}"]])).toEqual([["x'"], [], ["\\", "{p0:String}"]]);
    expect(await roundTrip([true, false])).toEqual([true, false]);
    expect(await roundTrip([new Date(Date.UTC(2026, 0, 1, 0, 0, 0, 7))])).toEqual([new Date(Date.UTC(2026, 0, 1, 0, 0, 0, 7))]);
    expect(toParam([]).type).toBe("Array(Nothing)");
    expect(await roundTrip([])).toEqual([]);
  });

  it("IN lists of hostile strings", async () => {
    const r = await sql<{ n: number }>`SELECT count() AS n FROM (SELECT arrayJoin(${["'", "\\", "x"]}) AS s) WHERE s IN (${sql.join(["'", "\\"])})`.execute(db);
    expect(r.rows[0]!.n).toBe(2);
  });
});

describe("refused before anything is sent", () => {
  it.each([
    [Number.NaN, /NaN cannot be a query parameter/],
    [Number.POSITIVE_INFINITY, /Infinity cannot be a query parameter/],
    [Number.NEGATIVE_INFINITY, /-Infinity cannot be a query parameter/],
    [2n ** 256n, /does not fit/],
    [new Date(Number.NaN), /invalid Date/],
    [new Date(Date.UTC(1899, 11, 31, 23, 59, 59, 999)), /outside ClickHouse's DateTime64 range/],
    [new Date(Date.UTC(2300, 0, 1)), /outside ClickHouse's DateTime64 range/],
    [[1, "a"], /mixing Int64 and String/],
    [[[1], null], /arrays and NULL/],
    [[Number.NaN], /NaN/],
    [{ a: 1 }, /a object cannot be a query parameter/],
    [Symbol("s"), /a symbol cannot/],
  ])("%s", (v, why) => {
    expect(() => sql`SELECT ${v}`.compile(db)).toThrow(ParameterError);
    expect(() => sql`SELECT ${v}`.compile(db)).toThrow(why);
  });

  it("dateTimeText is DateTime64(6)'s text", () => {
    expect(dateTimeText(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6)))).toBe("2026-01-02 03:04:05.006000");
  });
});

describe("identifiers", () => {
  it.each(["a`b", "a\\b", "a\\`b", 'a"b', "x\ny", "{p0:String}", "`; DROP TABLE spans; --", "ünï", " "])("%j is quoted whole", async (name) => {
    const r = await sql<Record<string, number>>`SELECT 1 AS ${sql.ref(name)}`.execute(db);
    expect(Object.keys(r.rows[0]!)).toEqual([name]);
  });

  it("a table name cannot escape its quotes", async () => {
    await expect(db.selectFrom("spans` UNION ALL SELECT 1 --").selectAll().execute()).rejects.toThrow(/UNKNOWN_TABLE|Unknown table|doesn't exist|does not exist/);
  });
});
