// Typed queries over a window too wide for the colony: a real colony process on 200,000 spans with
// 25 attributes each (one of them 2 KB), where an `explain` over all of them runs for a while. While
// it runs, rollup reads are answered (before, they queued behind it on the store's one connection)
// and OTLP ingest is too; the explain ends at --query-timeout with deadline_exceeded saying what to
// narrow; a client that goes away mid-call stops DuckDB (the worker's CPU time stops growing), as
// user SQL's does. The timeout is half of what that explain takes on this machine, measured first:
// explain keeps getting faster, and no fixed data size stays slow enough.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Writer } from "../../colony/ingest/writer.js";
import { Queries } from "../../colony/store/queries.js";
import { Store } from "../../colony/store/store.js";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { failureOf } from "../helpers/rpc.js";
import { explainAllRequest, explainDeadlineMessage, postLateSpan, SLOW_NS, workerTicksAcross, writeRequests, WRITTEN } from "../helpers/typed-deadline.js";

/** The written spans are copied this many times (each copy a day earlier): 1,600,000 in all. */
const COPIES = 800;
const ALL_MS = (COPIES + 1) * 86_400_000;
const SLOW_FIXTURE = "the explain ended before the other calls were answered: the fixture no longer makes it slow — raise COPIES";
const explainAll = explainAllRequest(ALL_MS);

/**
 * A colony file with one service's requests: WRITTEN spans through the real Writer (services,
 * rollups), then copied in SQL, which takes a second where writing them all would take a minute.
 */
async function bigColonyFile(path: string): Promise<{ explainMs: number }> {
  const store = await Store.open(path);
  const writer = new Writer(store);
  try {
    await writeRequests(writer, Date.now());
    await writer.settle();
    await sql`INSERT INTO spans SELECT s.* REPLACE (printf('%016x', c) || substr(trace_id, 17) AS trace_id, printf('%016x', c) || substr(span_id, 17) AS span_id,
                start_time - to_days(c::INTEGER) AS start_time)
              FROM spans s, range(1, ${COPIES}) AS r(c)`.execute(store.db);
    // explain and --by read attributes from span_attributes: the copies need theirs too.
    await sql`INSERT INTO span_attributes SELECT a.* REPLACE (printf('%016x', c) || substr(trace_id, 17) AS trace_id, printf('%016x', c) || substr(span_id, 17) AS span_id,
                start_time - to_days(c::INTEGER) AS start_time)
              FROM span_attributes a, range(1, ${COPIES}) AS r(c)`.execute(store.db);
    const t0 = performance.now();
    const e = await new Queries(store).explain({ service: "api", selection: { slowNs: SLOW_NS }, limit: 10, excludeKeys: [], sinceMs: Date.now() - ALL_MS, untilMs: Date.now() });
    expect(e.total).toBe(WRITTEN * COPIES);
    return { explainMs: performance.now() - t0 };
  } finally {
    await writer.close();
    await store.close();
  }
}

describe("typed queries past the deadline", () => {
  let dir: string;
  let colony: SpawnedColony;
  let client: Client<typeof QueryService>;
  let timeoutMs: number;
  let explainMs: number;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "coral-typed-deadline-"));
    const seeding = performance.now();
    ({ explainMs } = await bigColonyFile(join(dir, "coral.duckdb")));
    timeoutMs = Math.round(explainMs / 2);
    console.log(`${WRITTEN * COPIES} spans seeded in ${((performance.now() - seeding) / 1000).toFixed(1)} s; explain over all of them took ${explainMs.toFixed(0)} ms in process`);
    // Below this, the other calls of the test could themselves be cut on a busy machine.
    expect(timeoutMs, "explain over the fixture is too fast for this test: raise COPIES").toBeGreaterThan(300);
    colony = await spawnColony({ dbPath: join(dir, "coral.duckdb"), extraArgs: ["--query-timeout", `${timeoutMs}ms`, "--retention", "0"] });
    client = createClient(QueryService, transports["Connect over HTTP/2"]!(colony.baseUrl));
  }, 300_000);
  afterAll(async () => {
    await colony?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("an explain over every span ends at --query-timeout saying what to narrow, while rollup reads and OTLP ingest are served", async () => {
    const started = performance.now();
    // Before, every other read queued behind the explain on the store's one connection for as long
    // as it ran; now each is answered while it still runs.
    const order: string[] = [];
    const note = <T>(name: string, p: Promise<T>) => p.then((v) => (order.push(name), v));
    const explain = note("ExplainSpans", failureOf(client.explainSpans(explainAll)));
    const other = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
    const [services, percentile, ingested] = await Promise.all([
      note("ListServices", other.listServices({})),
      note("GetPercentile", other.getPercentile({ service: "api" })),
      // Not ordered: ingest has its own connections, and its commit's time is the machine's load.
      postLateSpan(colony).then((r) => r.status),
    ]);
    expect(services.services.map((s) => s.name)).toEqual(["api"]);
    expect(percentile.sampleCount).toBeGreaterThan(0n);
    expect(ingested).toBe(200);
    const e = await explain;
    const seconds = (performance.now() - started) / 1000;
    expect(order.at(-1), SLOW_FIXTURE).toBe("ExplainSpans");
    expect(e.code, e.message).toBe(Code.DeadlineExceeded);
    expect(e.message).toBe(explainDeadlineMessage(timeoutMs));
    console.log(`explain over every span: ${Code[e.code]} after ${seconds.toFixed(2)} s (--query-timeout ${timeoutMs}ms); colony RSS ${colony.memoryMiB().toFixed(0)} MiB`);
    // The colony is unharmed, and the span it was sent meanwhile is stored.
    expect((await client.listServices({})).services.map((s) => s.name)).toEqual(["api", "late"]);
  }, 120_000);

  it("a client that goes away mid-explain stops the query in DuckDB", async () => {
    // Without the colony's own deadline in the way: restarted with a long one.
    await colony.stop();
    colony = await spawnColony({ dbPath: colony.dbPath, extraArgs: ["--query-timeout", "10m", "--retention", "0"] });
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
      // A moment for the interrupt to reach DuckDB's threads, then as long again as measured above.
      settleMs: 200,
    });
    console.log(`worker CPU over ${span.toFixed(0)} ms: ${running} ticks while the explain ran, ${after} after its client went away`);
    // DuckDB computing while the explain runs, next to nothing once it is stopped.
    expect(running).toBeGreaterThan(4 * after);
    expect((await client2.listServices({})).services.map((s) => s.name)).toContain("api");
  }, 120_000);
});
