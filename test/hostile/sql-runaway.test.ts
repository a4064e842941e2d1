// User SQL the colony cannot stop from the inside: memory that DuckDB allocates outside its buffer
// manager (so outside --query-memory), and operators DuckDB never interrupts. `coral colony start`
// runs the colony as a worker process under a supervisor that holds the ports, stops user SQL
// when the worker's memory passes --memory-limit and restarts the worker when that is not enough,
// or when a query runs on past its deadline. Evidence, against real colony processes: the
// colony's resident memory (supervisor + worker, from /proc) sampled through each bomb, the
// caller's error, the same `coral query services` answer afterwards; a probe answered (or retried)
// through a restart; acknowledged OTLP spans counted after one; no process left behind when the
// supervisor is killed, and a start right after on the same database.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { processLives, runCoral, spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { storeServices } from "../helpers/otlp-span.js";
import { failureOf } from "../helpers/rpc.js";
import { AckedLoad, querySql, seededRandom } from "../helpers/crash.js";

const LIMIT_MIB = 1024;
/** What the colony may pass the limit by: the supervisor (~55 MiB) and growth between two of its 100 ms reads. */
const MARGIN_MIB = 512;
const LIMITS = ["--query-memory", "256MiB", "--memory-limit", `${LIMIT_MIB}MiB`];


/** The colony's processes' memory together, sampled every 10 ms while `work` runs; the highest. */
async function peakWhile<T>(colony: SpawnedColony, work: Promise<T>): Promise<{ result: T; peakMiB: number }> {
  let peakMiB = colony.memoryMiB();
  const timer = setInterval(() => (peakMiB = Math.max(peakMiB, colony.memoryMiB())), 10);
  try {
    return { result: await work, peakMiB };
  } finally {
    clearInterval(timer);
  }
}

/** The worker's resident memory in MiB (0 while none runs). */
function workerMiB(colony: SpawnedColony): number {
  const pid = colony.workerPid();
  try {
    return pid === undefined ? 0 : Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}


const restarts = (c: SpawnedColony) => c.stderr().match(/^colony worker restarted: serving again after [\d.]+ s$/gm)?.length ?? 0;

describe("memory bombs: the colony stays under --memory-limit and keeps its data", () => {
  let colony: SpawnedColony;
  let services: string;
  beforeAll(async () => {
    colony = await spawnColony({ extraArgs: [...LIMITS, "--query-timeout", "60s"] });
    // Data the worker must still serve after each bomb (a demo seed would cost more than the bombs).
    await storeServices(colony, ["checkout", "payments", "orders"]);
    services = (await runCoral(["query", "services", "--colony", colony.addr, "-o", "json"])).stdout;
    expect(JSON.parse(services).services).toHaveLength(3);
  }, 180_000);
  afterAll(async () => {
    await colony?.stop();
  });

  // Each builds gigabytes, in a different part of DuckDB: one scalar's list, lists built by a
  // lambda, one string, a recursive CTE's doubling rows, an aggregate's state. Some DuckDB refuses
  // itself within --query-memory; the others grow outside it until the supervisor steps in.
  const bombs = [
    "SELECT len(range(100000000))",
    "SELECT len(list_transform(range(20000), x -> range(10000)))",
    "SELECT length(repeat(repeat('ab', 50000000), 20))",
    "WITH RECURSIVE t(n, s) AS (SELECT 1, repeat('x', 1000) UNION ALL SELECT n + 1, s || s FROM t WHERE n < 40) SELECT max(length(s)) FROM t",
    "SELECT length(string_agg(repeat('x', 1000), '')) FROM range(5000000)",
  ];
  for (const sql of bombs) {
    it(sql, async () => {
      const client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
      const before = restarts(colony);
      const { result: e, peakMiB } = await peakWhile(colony, failureOf(client.executeQuery({ sql })));
      expect(e.code, e.message).toBe(Code.ResourceExhausted);
      expect(e.message).toMatch(/memory/);
      expect(e.message.split("\n")).toHaveLength(1);
      expect(colony.proc.exitCode).toBeNull();
      // The supervisor steps in once the worker passes the limit; it kills it if it grows on.
      expect(peakMiB).toBeLessThan(LIMIT_MIB + MARGIN_MIB);
      // Settled: a worker under the limit (the same one, its memory freed, or a new one)...
      await expect.poll(() => workerMiB(colony) > 0 && workerMiB(colony) < LIMIT_MIB, { timeout: 60_000, interval: 100 }).toBe(true);
      // ...serving again, with the same data.
      await expect.poll(async () => (await runCoral(["query", "services", "--colony", colony.addr, "-o", "json"])).stdout, { timeout: 60_000, interval: 250 }).toBe(services);
      const restarted = restarts(colony) > before;
      if (restarted) expect(colony.stderr()).toMatch(/exceeded the memory limit \(RSS \d+ MiB > 1024 MiB\): restarting the colony worker/);
      console.log(`${sql}: ${e.message.slice(0, 80)}…; peak ${peakMiB.toFixed(0)} MiB (supervisor + worker)${restarted ? ", worker restarted" : ""}`);
    }, 120_000);
  }
});

describe("queries DuckDB cannot interrupt", () => {
  it("four runaways: callers answered at the deadline, the worker restarted after the grace, SQL served again, a probe answered throughout", async () => {
    const colony = await spawnColony({ otlp: "off", extraArgs: ["--query-timeout", "1s"] });
    try {
      const firstWorker = colony.workerPid()!;
      const client = createClient(QueryService, transports["Connect over HTTP/2"]!(colony.baseUrl));
      // Minutes of backtracking in one GLOB evaluation, which never looks at DuckDB's interrupt flag.
      const runaway = "SELECT repeat('a', 2000) GLOB '*a*a*a*a*b' AS m";
      const answers = Promise.all(Array.from({ length: 4 }, () => failureOf(client.executeQuery({ sql: runaway }))));
      // A probe from another client every 200 ms until SQL is served again: each answered, or
      // (its connection cut by the restart) answered when retried.
      let probing = true;
      const probes: { ok: boolean; retried: boolean }[] = [];
      const probe = async () => {
        const call = () => createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl)).listServices({});
        try {
          await call();
          probes.push({ ok: true, retried: false });
        } catch {
          probes.push({ ok: await call().then(() => true, () => false), retried: true });
        }
      };
      const prober = (async () => {
        while (probing) await Promise.all([probe(), new Promise((r) => setTimeout(r, 200))]);
      })();
      for (const a of await answers) expect(a.code).toBe(Code.DeadlineExceeded);
      await expect
        .poll(async () => (await client.executeQuery({ sql: "SELECT 42 AS n" }).catch(() => undefined))?.rows.length, { timeout: 90_000, interval: 250 })
        .toBe(1);
      probing = false;
      await prober;
      expect(colony.stderr()).toMatch(/a query DuckDB could not interrupt was still running \d+ s past its 1 s deadline: restarting the colony worker/);
      expect(restarts(colony)).toBe(1);
      // The runaways died with the worker that ran them: no core is left busy with them.
      expect(colony.workerPid()).not.toBe(firstWorker);
      expect(processLives(firstWorker)).toBe(false);
      expect(probes.length).toBeGreaterThan(0);
      expect(probes.filter((p) => !p.ok)).toEqual([]);
      console.log(`runaways: ${probes.length} probes during the episode, ${probes.filter((p) => p.retried).length} retried; ${colony.stderr().match(/serving again after [\d.]+ s/)![0]}`);
    } finally {
      await colony.stop();
    }
  }, 150_000);
});

describe("a worker restart under OTLP load", () => {
  it("every acknowledged span is stored once, unacknowledged requests whole or not at all, and ingestion goes on", async () => {
    const colony = await spawnColony({ extraArgs: LIMITS });
    try {
      const random = seededRandom(9);
      const options = { tracesPerRequest: 20, concurrency: 4, rate: 4_000, startAt: (now: number) => now - random() * 5_000 };
      const during = new AckedLoad(colony.otlpUrl!, 0, random, options);
      during.start();
      await new Promise((r) => setTimeout(r, 1_000));
      // The worker is killed for memory while the load runs.
      const bomb = await failureOf(createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl)).executeQuery({ sql: "SELECT len(range(100000000))" }));
      expect(bomb.code).toBe(Code.ResourceExhausted);
      await expect.poll(() => restarts(colony), { timeout: 60_000, interval: 100 }).toBe(1);
      await during.stop();
      const after = new AckedLoad(colony.otlpUrl!, 1, random, options);
      after.start();
      await new Promise((r) => setTimeout(r, 1_000));
      await after.stop();
      expect([...during.partial, ...after.partial]).toEqual([]);
      expect(after.ackedSpans).toBeGreaterThan(0);

      const stored = await querySql(colony.addr, "SELECT substr(span_id, 1, 8) AS req, count(*) AS n, count(DISTINCT span_id) AS d FROM spans GROUP BY 1");
      const byRequest = new Map(stored.rows.map(([req, n, d]) => [req as string, { n: Number(n), d: Number(d) }]));
      const problems: string[] = [];
      let unackedWhole = 0;
      for (const [req, r] of [...during.requests, ...after.requests]) {
        const got = byRequest.get(req) ?? { n: 0, d: 0 };
        if (got.n !== got.d) problems.push(`request ${req}: ${got.n} rows for ${got.d} span ids`);
        if (r.acked && got.n !== r.spans) problems.push(`request ${req} was acknowledged with ${r.spans} spans; ${got.n} stored`);
        if (!r.acked && got.n !== 0 && got.n !== r.spans) problems.push(`request ${req} (not acknowledged) is stored in part: ${got.n} of ${r.spans}`);
        if (!r.acked && got.n === r.spans) unackedWhole++;
      }
      expect(problems).toEqual([]);
      console.log(`OTLP across a restart: ${during.ackedSpans} spans acknowledged before/while it, ${after.ackedSpans} after, all stored once; ${unackedWhole} unacknowledged requests stored whole`);
    } finally {
      await colony.stop();
    }
  }, 150_000);
});

/** One acknowledged span of `service`, over OTLP/JSON. */
async function sendSpan(colony: SpawnedColony, service: string, spanId: string): Promise<number> {
  const r = await fetch(`${colony.otlpUrl}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      resourceSpans: [{
        resource: { attributes: [{ key: "service.name", value: { stringValue: service } }] },
        scopeSpans: [{ spans: [{ traceId: "1af7651916cd43dd8448eb211c80319c", spanId, name: "GET /", kind: 2,
          startTimeUnixNano: String(BigInt(Date.now()) * 1_000_000n), endTimeUnixNano: String(BigInt(Date.now() + 5) * 1_000_000n) }] }],
      }],
    }),
  });
  return r.status;
}

describe("the worker killed from outside (a crash, the kernel's OOM killer)", () => {
  it("is restarted at once on the same ports, with its data", async () => {
    const colony = await spawnColony();
    try {
      expect(await sendSpan(colony, "crash-test", "d7ad6b7169203331")).toBe(200);
      const worker = colony.workerPid()!;
      process.kill(worker, "SIGKILL");
      // Same address: the supervisor kept the listening sockets.
      await expect.poll(async () => (await querySql(colony.addr, "SELECT count(*) FROM spans WHERE service_name = 'crash-test'").catch(() => undefined))?.rows[0]?.[0], { timeout: 60_000, interval: 100 }).toBe(1);
      expect(colony.stderr()).toMatch(/the colony worker ended unexpectedly \(signal SIGKILL\): restarting it; calls in flight were cancelled/);
      expect(colony.workerPid()).not.toBe(worker);
      expect(await sendSpan(colony, "crash-test", "d7ad6b7169203332")).toBe(200);
    } finally {
      expect(await colony.stop()).toBe(0);
    }
  }, 90_000);
});

describe("the supervisor killed", () => {
  it("kill -9 of `coral colony start`: its worker ends too, and a start right after on the same database has the data", async () => {
    const dir = mkdtempSync(join(tmpdir(), "coral-supervisor-"));
    const dbPath = join(dir, "coral.duckdb");
    try {
      const colony = await spawnColony({ dbPath });
      expect(await sendSpan(colony, "orphan-test", "c7ad6b7169203331")).toBe(200);
      const worker = colony.workerPid()!;
      colony.proc.kill("SIGKILL");
      await colony.stop();
      // At once: the start waits for the old worker to let go of the database if it must.
      const again = await spawnColony({ dbPath });
      try {
        expect(processLives(worker)).toBe(false);
        const r = await querySql(again.addr, "SELECT count(*) FROM spans WHERE service_name = 'orphan-test'");
        expect(Number(r.rows[0]![0])).toBe(1);
      } finally {
        expect(await again.stop()).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
