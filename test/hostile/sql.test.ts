// Hostile user SQL against a real colony process: queries built to exhaust its heap, to run past
// every deadline inside an operator DuckDB cannot interrupt, to read the colony's own files and
// configuration. Evidence for each: the process alive, its RSS (from /proc) under a ceiling, and a
// concurrent probe from another client answered while the attack runs.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { storeServices } from "../helpers/otlp-span.js";
import { failureOf } from "../helpers/rpc.js";

let colony: SpawnedColony;
let client: Client<typeof QueryService>;


/** Times a cheap RPC from a second client: the colony must keep answering others while it is attacked. */
async function probe(target: SpawnedColony = colony, withPayments = true): Promise<number> {
  const other = createClient(QueryService, transports["Connect over HTTP/1.1"]!(target.baseUrl));
  const t = performance.now();
  if (withPayments) {
    const r = await other.getPercentile({ service: "payments", metric: "http.server.duration", percentile: 0.99 });
    expect(r.sampleCount).toBeGreaterThan(0n);
  } else {
    await other.listServices({});
  }
  return performance.now() - t;
}

beforeAll(async () => {
  colony = await spawnColony({ extraArgs: ["--query-timeout", "1s"] });
  // A payments span for the probe's p99; the attacks need no data (a demo seed costs more than they do).
  await storeServices(colony, ["payments"]);
  client = createClient(QueryService, transports["Connect over HTTP/2"]!(colony.baseUrl));
}, 180_000);

afterAll(async () => {
  await colony?.stop();
});

describe("hostile SQL against a running colony", () => {
  it("reads neither the colony's files nor its configuration", async () => {
    const db = colony.dbPath;
    for (const sql of [
      `SELECT * FROM read_blob('${db}')`,
      `SELECT * FROM read_text('${db}.wal')`,
      "SELECT * FROM checkpoint()",
      "SELECT current_setting('temp_directory')",
      "SELECT path FROM duckdb_databases",
      "SELECT * FROM pg_settings",
      `SELECT * FROM '${db}'`,
    ]) {
      const e = await failureOf(client.executeQuery({ sql }));
      expect(e.code, sql).toBe(Code.InvalidArgument);
      expect(e.message, sql).not.toContain(db);
    }
  });

  it("refuses results that would exhaust the heap, without building them, and stays responsive", async () => {
    // Supervisor and worker together, as the kernel reports them.
    const before = colony.memoryMiB();
    const bombs = [
      "SELECT list_transform(range(600), x -> range(100)) AS l FROM range(2048)",
      "SELECT repeat('a', 200000000) AS s",
      "SELECT list(range) AS l FROM range(3000000)",
    ];
    const answers = bombs.map((sql) => failureOf(client.executeQuery({ sql })));
    const streamed = failureOf(
      (async () => {
        for await (const _ of client.streamQuery({ sql: "SELECT list_transform(range(2000), x -> repeat('b', 1000)) AS l FROM range(100000)" }));
      })(),
    );
    let attacksAnswered = 0;
    for (const a of [...answers, streamed]) void a.then(() => attacksAnswered++);
    const probeMs = await probe();
    // Answered while the attack runs: not after it (the slowest took ~3 s here, the probe ~0.1 s).
    expect(attacksAnswered, "the probe was answered only once every attack was").toBeLessThan(bombs.length + 1);
    // Refused by size, or by the deadline while DuckDB was still building the value.
    for (const a of [...(await Promise.all(answers)), await streamed]) expect([Code.ResourceExhausted, Code.DeadlineExceeded]).toContain(a.code);
    expect(colony.proc.exitCode).toBeNull();
    // Converted into JS values these were gigabytes; refused in DuckDB's memory they cost little.
    expect(colony.memoryMiB() - before).toBeLessThan(1024);
    console.log(`heap bombs: probe answered in ${probeMs.toFixed(0)} ms; RSS ${before.toFixed(0)} → ${colony.memoryMiB().toFixed(0)} MiB`);
  });

  it("ends queries DuckDB cannot interrupt at the deadline, keeps serving, and refuses more than it can hold", async () => {
    // A colony of its own: the bombs above may still hold slots while DuckDB finishes building what was refused.
    const own = await spawnColony({ extraArgs: ["--query-timeout", "1s"] });
    const client = createClient(QueryService, transports["Connect over HTTP/2"]!(own.baseUrl));
    // One GLOB evaluation that backtracks for ~5 s of CPU and never looks at DuckDB's interrupt flag.
    const runaway = "SELECT repeat('a', 190) GLOB '*a*a*a*a*b' AS m";
    const t = performance.now();
    const answers = await Promise.all(Array.from({ length: 6 }, () => failureOf(client.executeQuery({ sql: runaway }))));
    const answeredMs = performance.now() - t;
    // Four run (the concurrency limit) and are abandoned at the deadline; the rest wait their deadline for a slot.
    for (const a of answers) expect([Code.DeadlineExceeded, Code.ResourceExhausted]).toContain(a.code);
    expect(answers.filter((a) => /ran longer than the 1000 ms/.test(a.message)).length).toBe(4);
    // The four still hold their slots (DuckDB is inside them), so more SQL is refused at once...
    const held = await failureOf(client.executeQuery({ sql: "SELECT 1" }));
    expect(held.code).toBe(Code.ResourceExhausted);
    expect(held.message).toMatch(/4 earlier queries are still running past their deadline/);
    // ...while the other RPCs are answered, DuckDB burning both cores on them or not.
    const probeMs = await probe(own, false);
    // During them indeed: the four still hold their slots after it.
    expect((await failureOf(client.executeQuery({ sql: "SELECT 1" }))).message).toMatch(/4 earlier queries are still running past their deadline/);
    console.log(`runaways: all 6 answered after ${answeredMs.toFixed(0)} ms (deadline 1 s); probe during them ${probeMs.toFixed(0)} ms`);
    // Once DuckDB lets go of them (or, past a grace, the worker running them is restarted: see
    // sql-runaway.test.ts), user SQL is served again.
    await expect.poll(async () => (await client.executeQuery({ sql: "SELECT 42 AS n" }).catch(() => undefined))?.rows.length, { timeout: 150_000, interval: 500 }).toBe(1);
    await own.stop();
  }, 180_000);

  it("stops on SIGTERM while a query DuckDB cannot interrupt is running, losing nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "coral-stuck-"));
    const dbPath = join(dir, "coral.duckdb");
    const own = await spawnColony({ dbPath, extraArgs: ["--query-timeout", "30s"] });
    const c = createClient(QueryService, transports["Connect over HTTP/1.1"]!(own.baseUrl));
    const otlp = await fetch(`${own.otlpUrl}/v1/traces`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        resourceSpans: [{
          resource: { attributes: [{ key: "service.name", value: { stringValue: "stuck-test" } }] },
          scopeSpans: [{ spans: [{ traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", name: "GET /", kind: 2,
            startTimeUnixNano: String(BigInt(Date.now()) * 1_000_000n), endTimeUnixNano: String(BigInt(Date.now() + 5) * 1_000_000n) }] }],
        }],
      }),
    });
    expect(otlp.status).toBe(200);
    // Minutes of backtracking: far past any grace period.
    const running = c.executeQuery({ sql: "SELECT repeat('a', 2000) GLOB '*a*a*a*a*b'" }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
    const t = performance.now();
    await own.stop();
    // The worker cannot exit() (that would wait for DuckDB's thread): it ends itself once everything
    // is committed, and the colony exits as usual.
    expect(own.proc.exitCode).toBe(0);
    expect(own.stderr()).toMatch(/a query DuckDB cannot interrupt is still running: stopping without a checkpoint/);
    console.log(`SIGTERM with a runaway query: ended after ${(performance.now() - t).toFixed(0)} ms`);
    await running;
    // The acknowledged span is there after a restart on the same database.
    const again = await spawnColony({ dbPath, extraArgs: ["--query-timeout", "30s"] });
    try {
      const c2 = createClient(QueryService, transports["Connect over HTTP/1.1"]!(again.baseUrl));
      const r = await c2.executeQuery({ sql: "SELECT count(*) FROM spans WHERE service_name = 'stuck-test'" });
      expect(r.rows[0]!.values[0]!.kind.value).toBe(1);
    } finally {
      await again.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
