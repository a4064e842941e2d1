// Prototype: where stream_sql's time goes. The same query over `rows` bulk-loaded spans, read
//   1. by DuckDB alone, in process (fetchChunk + getColumns: the floor),
//   2. by the colony's SqlRunner.stream in process (converted column-major batches, no network),
//   3. over StreamQuery by a Node Connect client (server + protobuf + HTTP, no SDK row objects).
// The Deno SDK's number is stream_sql itself. npx tsx bench/prototypes/stream-breakdown.ts [rows]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { SqlRunner } from "../../colony/store/readonly-sql.js";
import { Store } from "../../colony/store/store.js";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { spawnColony } from "../../test/helpers/colony.js";
import { bulkLoad, OFFSET_MS, SPREAD_MS } from "../percentile.js";

const rows = Number(process.argv[2] ?? 1_000_000);
const SQL = "SELECT trace_id, service_name, duration_ns, status_code FROM spans";
const tmp = mkdtempSync(join(tmpdir(), "coral-stream-proto-"));
const dbPath = join(tmp, "stream.duckdb");
const rate = (n: number, ms: number) => `${Math.round(n / (ms / 1000)).toLocaleString("en-US")} rows/s`;

try {
  await bulkLoad(dbPath, rows, Date.now() - OFFSET_MS - SPREAD_MS);
  const store = await Store.open(dbPath);
  try {
    for (let i = 0; i < 2; i++) {
      const conn = await store.connect();
      const t0 = performance.now();
      const result = await conn.stream(SQL);
      let n = 0;
      for (;;) {
        const chunk = await result.fetchChunk();
        if (!chunk || chunk.rowCount === 0) break;
        chunk.getColumns();
        n += chunk.rowCount;
      }
      console.log(`1. DuckDB fetchChunk + getColumns, in process: ${rate(n, performance.now() - t0)}`);
      conn.closeSync();
    }
    const runner = new SqlRunner(store);
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      let n = 0;
      for await (const b of runner.stream(SQL, { maxRows: rows })) n += b.rowCount;
      console.log(`2. SqlRunner.stream (converted column-major batches), in process: ${rate(n, performance.now() - t0)}`);
    }
  } finally {
    await store.close();
  }
  const colony = await spawnColony({ dbPath });
  try {
    const client = createClient(QueryService, createConnectTransport({ baseUrl: colony.baseUrl, httpVersion: "1.1" }));
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      let n = 0;
      let messages = 0;
      for await (const res of client.streamQuery({ sql: SQL, maxRows: BigInt(rows) })) {
        n += res.rowCount;
        messages++;
      }
      console.log(`3. StreamQuery → Node Connect client (decoded messages, JSON not parsed): ${rate(n, performance.now() - t0)} in ${messages} messages`);
    }
  } finally {
    await colony.stop();
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
