// The typed reads' guard on embedded ClickHouse (chdb): reads past the deadline and reads whose
// caller goes away end with the codes DuckDB's give, and — the point of the session handling — the
// reads after them answer correctly although chdb leaves a failed query's output in its session.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqlRejected } from "../deadline.js";
import { ClickHouseTypedReads, withSettings } from "./guard.js";
import { createTables } from "./schema.js";
import { chdbClient } from "./testing.js";
import { ClickHouseWriter } from "./writer.js";

/** Streams rows for 1000 s: fails at max_execution_time with rows already out, as a scan cut short does. */
const ENDLESS = "SELECT number, sleepEachRow(0.001) FROM numbers(1000000) SETTINGS max_block_size = 100";
/** The same for about 2 s: what chdb keeps running after the caller of a cancelled read was answered. */
const TWO_SECONDS = "SELECT number, sleepEachRow(0.001) FROM numbers(2000) SETTINGS max_block_size = 100";
const never = new AbortController().signal;

let dir: string;
let writer: ClickHouseClient;
const database = "coral";
const opened: ClickHouseClient[] = [];
const connect = async () => {
  const { client } = await chdbClient(dir, database);
  opened.push(client);
  return client;
};

const text = (query: string) => async (c: ClickHouseClient) => (await c.query({ query, format: "JSONCompactEachRow" })).text();
/** Waits until every read has let go of its session (stopAll with none running stops nothing). */
const settled = (g: ClickHouseTypedReads) => g.stopAll(new SqlRejected("cancelled", "unused"), 60_000);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-ch-guard-"));
  ({ client: writer } = await chdbClient(dir, database));
  await createTables(writer, { database });
  const w = new ClickHouseWriter(writer, { database });
  await w.writeResources([
    { serviceName: "checkout", namespace: "shop", region: "eu", instanceId: "c1", seenAtMs: Date.now() },
    { serviceName: "payments", namespace: "shop", region: "eu", instanceId: "p1", seenAtMs: Date.now() },
  ]);
}, 120_000);

afterAll(async () => {
  await writer?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("chdb sessions", () => {
  it("hand a failed query's output to the session's next query (why reads clean their session)", async () => {
    const raw = await connect();
    await expect(text(`${ENDLESS.replace("SETTINGS", "SETTINGS max_execution_time = 0.3,")}`)(raw)).rejects.toMatchObject({ code: "159" });
    const next = await text("SELECT 42")(raw);
    expect(next.length).toBeGreaterThan("[42]\n".length);
    expect(next.endsWith("[42]\n")).toBe(true);
    await raw.close();
  }, 60_000);
});

describe("a read's settings in its SETTINGS clause", () => {
  it("reach the query whatever the text, join a clause that ends the statement, and stay off the session", async () => {
    const odd = "it's a \\ test, SETTINGS x = 1 -- not a comment";
    const rows = async (query: string) => JSON.parse((await text(query)(writer)).trim()) as unknown[];
    expect(await rows(withSettings("SELECT getSetting('log_comment') -- a comment", { log_comment: odd }))).toEqual([odd]);
    expect(await rows(withSettings("SELECT getSetting('max_threads'), getSetting('max_block_size') SETTINGS max_threads = 1", { max_block_size: 7, use_query_cache: false }))).toEqual([1, 7]);
    // A trailing clause after UNION ALL is the whole statement's.
    const union = "SELECT getSetting('max_execution_time') UNION ALL SELECT getSetting('max_execution_time')";
    expect(await text(withSettings(union, { max_execution_time: 1.5 }))(writer)).toBe("[1.5]\n[1.5]\n");

    const guard = new ClickHouseTypedReads({ connect, database, embedded: true });
    try {
      const tag = await guard.run("lookup", never, text("SELECT getSetting('log_comment')"));
      expect(tag).toMatch(/^\["coral-read-[0-9a-f-]{36}"\]\n$/);
      // The session the read ran on (connect's last one) keeps none of the read's settings.
      expect(JSON.parse(await text("SELECT getSetting('log_comment'), getSetting('max_execution_time')")(opened.at(-1)!))).toEqual(["", 0]);
    } finally {
      await guard.close();
    }
  });
});

describe("typed reads on chdb", () => {
  it("a read past the deadline gets deadline_exceeded, and the reads after it answer correctly on the same session", async () => {
    opened.length = 0;
    const guard = new ClickHouseTypedReads({ connect, database, embedded: true }, { timeoutMs: 300 });
    const e = await guard.run("scan", never, text(ENDLESS)).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(SqlRejected);
    expect(e).toMatchObject({ code: "deadline_exceeded", message: "the query ran longer than the 300 ms query timeout (--query-timeout) and was cancelled" });
    await settled(guard);
    for (let i = 0; i < 3; i++) {
      expect(await guard.run("lookup", never, text(`SELECT ${i}`))).toBe(`[${i}]\n`);
      expect((await guard.read("lookup", never, (q) => q.listServices({}))).map((s) => s.name)).toEqual(["checkout", "payments"]);
    }
    // One session for reads throughout (the one the failed read left output in), one for the KILL.
    expect(opened).toHaveLength(2);
    expect(await guard.close()).toBe(true);
  }, 60_000);

  it("a read whose caller goes away is answered at once and KILLed; its session answers correctly after", async () => {
    opened.length = 0;
    // No deadline in the way: only the KILL can stop a query that would run for 1000 s.
    const guard = new ClickHouseTypedReads({ connect, database, embedded: true }, { timeoutMs: 3_600_000 });
    let runaways = 0;
    guard.onRunaway = () => runaways++;
    const caller = new AbortController();
    const read = guard.run("scan", caller.signal, text(ENDLESS)).catch((err: unknown) => err);
    await new Promise((r) => setTimeout(r, 200));
    caller.abort();
    expect(await read).toMatchObject({ code: "cancelled" });
    // Answered before chdb let go of the query (the abort does not stop it; the KILL does, a moment later).
    expect(runaways).toBe(1);
    expect(guard.runaways).toBe(1);
    // Other reads are served meanwhile, on sessions of their own.
    expect(await guard.run("lookup", never, text("SELECT 7"))).toBe("[7]\n");
    expect(await guard.stopAll(new SqlRejected("cancelled", "unused"), 20_000)).toBe(0);
    expect(guard.oldestRunawaySince).toBeUndefined();
    for (let i = 0; i < opened.length + 1; i++) {
      expect((await guard.read("scan", never, (q) => q.listServices({}))).map((s) => s.name)).toEqual(["checkout", "payments"]);
    }
    expect(await guard.close()).toBe(true);
  }, 60_000);

  it("lookups are not queued behind scans that hold every scan slot", async () => {
    const guard = new ClickHouseTypedReads({ connect, database, embedded: true }, { timeoutMs: 1_500 });
    const order: string[] = [];
    const scans = [0, 1].map(() => guard.run("scan", never, text(ENDLESS)).catch((err: unknown) => (order.push("scan"), err)));
    await new Promise((r) => setTimeout(r, 100));
    expect(await guard.run("lookup", never, text("SELECT 1")).then((v) => (order.push("lookup"), v))).toBe("[1]\n");
    for (const e of await Promise.all(scans)) expect(e).toMatchObject({ code: "deadline_exceeded" });
    expect(order).toEqual(["lookup", "scan", "scan"]);
    expect(await guard.close()).toBe(true);
  }, 60_000);

  it("stopAll answers every running read with its reason, and a closed guard refuses new reads", async () => {
    const guard = new ClickHouseTypedReads({ connect, database, embedded: true }, { timeoutMs: 60_000 });
    const read = guard.run("scan", never, text(TWO_SECONDS)).catch((err: unknown) => err);
    await new Promise((r) => setTimeout(r, 200));
    const why = new SqlRejected("resource_exhausted", "the colony is short of memory");
    const still = await guard.stopAll(why, 60_000);
    expect(await read).toBe(why);
    expect(still).toBe(0);
    expect(await guard.close()).toBe(true);
    await expect(guard.run("lookup", never, text("SELECT 1"))).rejects.toMatchObject({ code: "cancelled" });
  }, 60_000);
});
