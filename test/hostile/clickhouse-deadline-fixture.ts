// Builds the chdb store of typed-deadline-clickhouse.test.ts in a process of its own (chdb binds one
// data directory per process, and the colony must open this one after): WRITTEN requests of one
// service with 24 attributes each through the real ClickHouse writer, then copied in SQL, each copy
// an hour earlier. Prints how long an explain over all of them takes here, as JSON.
//   npx tsx test/hostile/clickhouse-deadline-fixture.ts DIR COPIES
import type { SpanRecord } from "../../colony/ingest/records.js";
import { openClickHouse } from "../../colony/store/clickhouse/connection.js";
import { ClickHouseReads } from "../../colony/store/clickhouse/reads.js";
import { createTables } from "../../colony/store/clickhouse/schema.js";
import { ClickHouseWriter } from "../../colony/store/clickhouse/writer.js";

export const WRITTEN = 2_000;
const HOUR = 3_600_000;

const [dir, copiesArg] = process.argv.slice(2);
const copies = Number(copiesArg);
const database = "coral";
const { client } = await openClickHouse({ kind: "chdb", path: dir!, database });
await createTables(client, { database });
const writer = new ClickHouseWriter(client, { database });
const now = Date.now();
const spans: SpanRecord[] = [];
for (let i = 0; i < WRITTEN; i++) {
  const attributes: Record<string, string> = {};
  for (let k = 0; k < 24; k++) attributes[`attr.${k}`] = `value-${k}-${(i * 7 + k) % (50 + k * 40)}`;
  spans.push({
    traceId: i.toString(16).padStart(32, "0"), spanId: i.toString(16).padStart(16, "0"), parentSpanId: null, serviceName: "api",
    name: "GET /x", kind: "SERVER", startTimeMs: now - HOUR + i * 1_000, durationNs: 1e6 + (i % 1000) * 1e5,
    statusCode: i % 20 === 0 ? "ERROR" : "OK", httpStatusCode: 200, attributes,
  });
}
await writer.writeSpans(spans);
await writer.writeResources([{ serviceName: "api", namespace: "hostile", region: "local", instanceId: "api-1", seenAtMs: now }]);
// Hours, not days: a day per copy would make more partitions (by day) than one INSERT may touch.
const copy = (table: string) =>
  client.command({
    query: `INSERT INTO ${database}.${table}
      SELECT * EXCEPT (c) REPLACE (concat(leftPad(hex(c), 16, '0'), substring(trace_id, 17)) AS trace_id,
                                   concat(leftPad(hex(c), 16, '0'), substring(span_id, 17)) AS span_id,
                                   start_time - toIntervalHour(c) AS start_time)
      FROM (SELECT *, arrayJoin(range(1, ${copies})) AS c FROM ${database}.${table})`,
    clickhouse_settings: { max_partitions_per_insert_block: "10000" },
  });
await copy("spans");
await copy("span_attributes");
const t0 = performance.now();
const e = await new ClickHouseReads(client, database).explain({ service: "api", selection: { slowNs: 50_000_000 }, limit: 10, excludeKeys: [], sinceMs: now - (copies + 1) * HOUR, untilMs: Date.now() });
const explainMs = performance.now() - t0;
await client.close();
console.log(JSON.stringify({ explainMs, total: e.total }));
