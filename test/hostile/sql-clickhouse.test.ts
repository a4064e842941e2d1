// The hostile SQL of sql.test.ts and sql-runaway.test.ts against a colony on ClickHouse (embedded
// chdb): reads of files, the network, other servers and the server's configuration; writes and DDL;
// settings changes; results built to exhaust the heap; queries that run on and on; memory bombs;
// very wide results. Each is refused or bounded with the code DuckDB's colony answers, the colony
// stays up, and another client is answered meanwhile.
import { Code, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { storeServices } from "../helpers/otlp-span.js";
import { failureOf } from "../helpers/rpc.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

let dir: string;
let colony: SpawnedColony;
let client: Client<typeof QueryService>;

async function probe(): Promise<number> {
  const other = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
  const t = performance.now();
  const r = await other.getPercentile({ service: "payments", metric: "http.server.duration", percentile: 0.99 });
  expect(r.sampleCount).toBeGreaterThan(0n);
  return performance.now() - t;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-ch-hostile-"));
  colony = await spawnColony({ extraArgs: ["--store", `chdb:${join(dir, "chdb")}`, "--query-timeout", "2s", "--query-memory", "512MiB"] });
  // Spans for the probe's p99 and for the writes to leave alone; the attacks need no more (a demo
  // seed into chdb costs minutes).
  await storeServices(colony, ["payments", "orders"]);
  client = createClient(QueryService, transports["Connect over HTTP/2"]!(colony.baseUrl));
}, 240_000);

afterAll(async () => {
  await colony?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("hostile SQL against a colony on ClickHouse", () => {
  it("reads neither files, the network, other servers nor the server's configuration", async () => {
    for (const sql of [
      "SELECT * FROM file('/etc/passwd', 'LineAsString')",
      `SELECT * FROM file('${dir}/chdb/metadata/coral.sql', 'LineAsString')`,
      "SELECT file('/etc/hostname')",
      "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
      "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV')",
      "SELECT * FROM remote('127.0.0.1', system.one)",
      "SELECT * FROM cluster('default', system.one)",
      "SELECT * FROM executable('id', 'TSV', 'x String')",
      "SELECT * FROM merge('system', '.*')",
      "SELECT * FROM system.settings",
      "SELECT path FROM system.disks",
      "SELECT data_paths FROM system.tables",
      "SELECT getSetting('max_memory_usage')",
      "SELECT 1 WHERE 'x' IN system.users",
    ]) {
      const e = await failureOf(client.executeQuery({ sql }));
      expect(e.code, sql).toBe(Code.InvalidArgument);
      expect(e.message, sql).not.toContain(dir);
    }
  });

  it("refuses writes, DDL and settings changes, and keeps the data", async () => {
    const before = await client.executeQuery({ sql: "SELECT count() AS n FROM spans" });
    for (const sql of [
      "INSERT INTO spans (trace_id) VALUES ('x')",
      "ALTER TABLE spans DELETE WHERE 1",
      "DROP TABLE spans",
      "TRUNCATE TABLE spans",
      "CREATE TABLE evil ENGINE = Memory AS SELECT 1",
      "SET readonly = 0",
      "SELECT 1 SETTINGS readonly = 0",
      "SELECT * FROM spans SETTINGS max_execution_time = 100000, max_memory_usage = 0",
      "SYSTEM DROP MARK CACHE",
      "KILL QUERY WHERE 1",
      "SELECT 1; DROP TABLE spans",
      "SELECT * FROM spans INTO OUTFILE '/tmp/coral-evil.csv'",
    ]) {
      const e = await failureOf(client.executeQuery({ sql }));
      expect(e.code, sql).toBe(Code.InvalidArgument);
    }
    expect(await client.executeQuery({ sql: "SELECT count() AS n FROM spans" })).toEqual(before);
  });

  it("refuses results that would exhaust the heap, and stays responsive", async () => {
    const before = colony.memoryMiB();
    const bombs = [
      "SELECT repeat('a', 200000000) AS s",
      "SELECT arrayMap(x -> range(100), range(600)) AS l FROM numbers(2048)",
      "SELECT groupArray(number) AS l FROM numbers(3000000)",
      "SELECT repeat('a', 2000) AS s FROM numbers(10000000)",
    ];
    const answers = bombs.map((sql) => failureOf(client.executeQuery({ sql })));
    const streamed = failureOf(
      (async () => {
        for await (const _ of client.streamQuery({ sql: "SELECT arrayMap(x -> repeat('b', 1000), range(2000)) AS l FROM numbers(100000)" }));
      })(),
    );
    const probeMs = await probe();
    for (const a of [...(await Promise.all(answers)), await streamed]) expect([Code.ResourceExhausted, Code.DeadlineExceeded], a.message).toContain(a.code);
    expect(colony.proc.exitCode).toBeNull();
    expect(colony.memoryMiB() - before).toBeLessThan(1024);
    console.log(`ClickHouse heap bombs: probe answered in ${probeMs.toFixed(0)} ms; RSS ${before.toFixed(0)} → ${colony.memoryMiB().toFixed(0)} MiB`);
  }, 120_000);

  it("stops runaway CPU at the deadline, and keeps serving", async () => {
    const runaway = "SELECT count() FROM numbers(5000000000) WHERE cityHash64(number) % 7 = 3";
    const answers = await Promise.all(Array.from({ length: 6 }, () => failureOf(client.executeQuery({ sql: runaway }))));
    for (const a of answers) expect([Code.DeadlineExceeded, Code.ResourceExhausted], a.message).toContain(a.code);
    expect(answers.some((a) => /ran longer than the 2000 ms/.test(a.message))).toBe(true);
    await probe();
    await expect.poll(async () => (await client.executeQuery({ sql: "SELECT 42 AS n" }).catch(() => undefined))?.rows.length, { timeout: 60_000, interval: 250 }).toBe(1);
  }, 120_000);

  it("refuses memory bombs within --query-memory, in one line", async () => {
    for (const sql of ["SELECT length(groupArray(repeat('x', 1000))) FROM numbers(10000000)", "SELECT count() FROM (SELECT number FROM numbers(100000000) ORDER BY toString(number) DESC LIMIT 100000000)"]) {
      const e = await failureOf(client.executeQuery({ sql }));
      expect([Code.ResourceExhausted, Code.DeadlineExceeded], e.message).toContain(e.code);
      expect(e.message.split("\n")).toHaveLength(1);
    }
    expect(colony.proc.exitCode).toBeNull();
    await probe();
  }, 120_000);

  it("answers very wide results, or refuses them by size", async () => {
    const cols = Array.from({ length: 1000 }, (_, i) => `number + ${i} AS c${i}`).join(", ");
    const wide = await client.executeQuery({ sql: `SELECT ${cols} FROM numbers(2)` });
    expect(wide.columns).toHaveLength(1000);
    const tooWide = await failureOf(client.executeQuery({ sql: `SELECT ${cols} FROM numbers(10000)` }));
    // Refused by size, or by the deadline while 10 million cells are being produced.
    expect([Code.ResourceExhausted, Code.DeadlineExceeded], tooWide.message).toContain(tooWide.code);
  }, 120_000);
});
