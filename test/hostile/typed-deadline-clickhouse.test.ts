// typed-deadline.test.ts on ClickHouse (embedded chdb): an explain over a window too wide ends at
// --query-timeout with deadline_exceeded saying what to narrow; the reads after it answer correctly
// (chdb leaves a failed query's output in its session: reads clean theirs, colony/store/clickhouse/
// guard.ts); OTLP ingest is served while it runs; and a client that goes away mid-explain stops
// the query in chdb (a KILL: chdb's C API cannot interrupt), as the worker's CPU time shows.
//
// Unlike DuckDB, chdb runs parameterised queries one at a time in the whole process, so rollup
// reads wait behind a running explain (up to the deadline) instead of being answered meanwhile; a
// ClickHouse server has no such limit. That ordering is not asserted here.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { failureOf } from "../helpers/rpc.js";
import { explainAllRequest, explainDeadlineMessage, postLateSpan, workerTicksAcross, WRITTEN } from "../helpers/typed-deadline.js";

/**
 * The fixture copies the WRITTEN (2,000) requests (each copy an hour earlier) until an explain over
 * all of them takes this long in process: the deadline below is half of it.
 */
const EXPLAIN_AT_LEAST_MS = 1_200;

/** Runs the fixture script in a process of its own (chdb binds one data directory per process). */
function buildStore(dir: string): Promise<{ copies: number; explainMs: number; total: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join("node_modules", ".bin", "tsx"), [join("test", "hostile", "clickhouse-deadline-fixture.ts"), dir, String(EXPLAIN_AT_LEAST_MS)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out.trim().split("\n").at(-1)!)) : reject(new Error(`fixture exited with ${code}:\n${err}`))));
  });
}

describe("typed queries past the deadline on ClickHouse", () => {
  let dir: string;
  let store: string;
  let colony: SpawnedColony;
  let client: Client<typeof QueryService>;
  let timeoutMs: number;
  let explainMs: number;
  let allMs: number;
  let explainAll: ReturnType<typeof explainAllRequest>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "coral-ch-typed-deadline-"));
    store = `chdb:${join(dir, "chdb")}`;
    const built = await buildStore(join(dir, "chdb"));
    expect(built.total).toBe(WRITTEN * built.copies);
    allMs = (built.copies + 1) * 3_600_000;
    explainAll = explainAllRequest(allMs);
    explainMs = built.explainMs;
    timeoutMs = Math.round(explainMs / 2);
    console.log(`explain over ${built.total} spans took ${explainMs.toFixed(0)} ms in process`);
    expect(timeoutMs, "explain over the fixture stayed fast at the fixture's most copies: raise MAX_COPIES").toBeGreaterThan(300);
    colony = await spawnColony({ extraArgs: ["--store", store, "--query-timeout", `${timeoutMs}ms`, "--retention", "0"] });
    client = createClient(QueryService, transports["Connect over HTTP/2"]!(colony.baseUrl));
  }, 600_000);
  afterAll(async () => {
    await colony?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("an explain over every span ends at --query-timeout saying what to narrow; OTLP ingest is served meanwhile, and the reads after it answer correctly", async () => {
    const explain = failureOf(client.explainSpans(explainAll));
    const ingested = await postLateSpan(colony);
    expect(ingested.status).toBe(200);
    const e = await explain;
    expect(e.code, e.message).toBe(Code.DeadlineExceeded);
    expect(e.message).toBe(explainDeadlineMessage(timeoutMs));
    // Twice more, each followed by reads of every shape, on whichever session the explain had.
    for (let i = 0; i < 2; i++) {
      expect((await failureOf(client.explainSpans(explainAll))).code).toBe(Code.DeadlineExceeded);
      expect((await client.listServices({})).services.map((s) => s.name)).toEqual(["api", "late"]);
      expect((await client.getPercentile({ service: "api", timeRangeMs: BigInt(allMs) })).sampleCount).toBe(BigInt(WRITTEN));
      expect((await client.getService({ service: "api" })).service?.namespace).toBe("hostile");
    }
  }, 120_000);

  it("a client that goes away mid-explain stops the query in chdb", async () => {
    // Without the colony's own deadline in the way: restarted with a long one.
    await colony.stop();
    colony = await spawnColony({ extraArgs: ["--store", store, "--query-timeout", "10m", "--retention", "0"] });
    const client2 = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
    const abort = new AbortController();
    const call = failureOf(client2.explainSpans(explainAll, { signal: abort.signal }));
    // CPU is measured over the middle of what the explain would take: a third of it while it runs,
    // as long again once its client is gone.
    const span = explainMs / 3;
    const { running, after } = await workerTicksAcross(colony, {
      windowMs: span,
      stop: async () => {
        abort.abort();
        expect((await call).code).toBe(Code.Canceled);
      },
      // A KILL reaches chdb's operators a block later: as long again as the measurement's start. The
      // explain would run on for the whole second window below.
      settleMs: span / 2,
    });
    console.log(`worker CPU over ${span.toFixed(0)} ms: ${running} ticks while the explain ran, ${after} after its client went away`);
    // chdb computing while the explain runs (on two cores shared with the rest of the machine),
    // next to nothing but its background threads once it is stopped.
    // Were the KILL lost, the explain would run through the second window as through the first.
    expect(running).toBeGreaterThan(2 * after);
    expect((await client2.listServices({})).services.map((s) => s.name)).toContain("api");
  }, 120_000);
});
