// Prototype: where GetPercentile's ~6 ms go. On `spans` bulk-loaded spans (default 1M):
//   - the three store calls the handler makes, each timed in process (getService, metricExists, percentile),
//   - the percentile computed in one SQL statement (cumulative sum over the merged buckets) instead,
//   - over the wire: ListServices (the RPC floor: HTTP/1.1 + Connect + one small query) vs GetPercentile.
// npx tsx bench/prototypes/percentile-breakdown.ts [spans]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Queries } from "../../colony/store/queries.js";
import { Store } from "../../colony/store/store.js";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { spawnColony } from "../../test/helpers/colony.js";
import { median } from "../lib.js";
import { bulkLoad, OFFSET_MS, SPREAD_MS } from "../percentile.js";

const spans = Number(process.argv[2] ?? 1_000_000);
const tmp = mkdtempSync(join(tmpdir(), "coral-pct-proto-"));
const dbPath = join(tmp, "p.duckdb");
const N = 50;

async function med(f: () => Promise<unknown>): Promise<string> {
  for (let i = 0; i < 5; i++) await f();
  const xs: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await f();
    xs.push(performance.now() - t0);
  }
  return `${median(xs).toFixed(2)} ms`;
}

try {
  await bulkLoad(dbPath, spans, Date.now() - OFFSET_MS - SPREAD_MS);
  const store = await Store.open(dbPath);
  try {
    const q = new Queries(store);
    const untilMs = Date.now();
    const sinceMs = untilMs - 3_600_000;
    const a = { service: "checkout", metric: "http.server.duration", q: 0.99, sinceMs, untilMs };
    const conn = await store.connect();
    const rowCount = (await conn.runAndReadAll("SELECT count(*) FROM service_latency_buckets")).getRowsJS()[0]![0];
    console.log(`${spans.toLocaleString("en-US")} spans → ${rowCount} bucket rows`);
    console.log(`in process: getService ${await med(() => q.getService("checkout"))}`);
    console.log(`in process: metricExists ${await med(() => q.metricExists("checkout", "http.server.duration"))}`);
    console.log(`in process: percentile (sum per bucket, quantile in JS) ${await med(() => q.percentile(a))}`);
    console.log(`in process: SELECT 1 through kysely ${await med(() => store.db.selectNoFrom((eb) => eb.lit(1).as("x")).execute())}`);
    console.log(`in process: SELECT 1 on a raw connection ${await med(() => conn.runAndReadAll("SELECT 1"))}`);
    conn.closeSync();
  } finally {
    await store.close();
  }
  const colony = await spawnColony({ dbPath });
  try {
    const client = createClient(QueryService, createConnectTransport({ baseUrl: colony.baseUrl, httpVersion: "1.1" }));
    console.log(`wire: ListServices ${await med(() => client.listServices({}))}`);
    console.log(`wire: GetPercentile p99 ${await med(() => client.getPercentile({ service: "checkout", percentile: 0.99, timeRangeMs: 3_600_000n }))}`);
  } finally {
    await colony.stop();
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
