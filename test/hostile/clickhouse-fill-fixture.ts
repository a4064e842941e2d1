// The chdb stores of clickhouse-fill-crash.test.ts, each in a process of its own (chdb binds one
// data directory per process, and the colony under test must open it after):
//   npx tsx test/hostile/clickhouse-fill-fixture.ts legacy DIR   the spans, in the first schema's shape
//   npx tsx test/hostile/clickhouse-fill-fixture.ts fresh DIR    the same spans through today's writer
//   npx tsx test/hostile/clickhouse-fill-fixture.ts peek DIR     what DIR holds now
// Each prints one JSON line: the schema version and span_attributes as a row count, a distinct
// row count and an order-free digest of the rows.
import type { SpanRecord } from "../../colony/ingest/records.js";
import { openClickHouse } from "../../colony/store/clickhouse/connection.js";
import { createTables, schemaVersion } from "../../colony/store/clickhouse/schema.js";
import { ClickHouseWriter } from "../../colony/store/clickhouse/writer.js";

const DAY = 86_400_000;
const DAYS = 12;
const PER_DAY = 500;

/** Spans over DAYS days (a partition each, so the fill has as many chunks at least), some with long attributes. */
function spans(): SpanRecord[] {
  const day0 = Math.floor(Date.now() / DAY) * DAY - DAYS * DAY;
  return Array.from({ length: DAYS * PER_DAY }, (_, i) => ({
    traceId: `t${i % 1013}`,
    spanId: `s${i}`,
    parentSpanId: null,
    serviceName: ["api", "web", "db", "auth"][i % 4]!,
    name: "GET /",
    kind: i % 7 === 0 ? "CLIENT" : "SERVER",
    startTimeMs: day0 + Math.floor(i / PER_DAY) * DAY + (i % PER_DAY) * 60_000,
    durationNs: 1000 + ((i * 7919) % 1_000_000),
    statusCode: i % 9 === 0 ? "ERROR" : "OK",
    httpStatusCode: i % 50 === 0 ? 503 : 200,
    attributes:
      i % 13 === 0
        ? {}
        : { "http.route": `/r/${i % 5}`, "k8s.pod.name": `pod-"${i % 3}"-ü`, n: i % 11 === 0 ? -1.5e21 : i, ...(i % 17 === 0 ? { "app.note": "x".repeat(3000 + (i % 7)) } : {}) },
  }));
}

const [mode, dir] = process.argv.slice(2);
const database = "coral";
const { client } = await openClickHouse({ kind: "chdb", path: dir!, database });
const q = async <T>(query: string) => (await (await client.query({ query, format: "JSONEachRow" })).json()) as T[];

if (mode === "legacy" || mode === "fresh") {
  await createTables(client, { database });
  const writer = new ClickHouseWriter(client, { database });
  const all = spans();
  for (let i = 0; i < all.length; i += PER_DAY / 2) await writer.writeSpans(all.slice(i, i + PER_DAY / 2));
  if (mode === "legacy") {
    for (const query of [
      "DROP TABLE coral.span_attributes",
      "DROP TABLE coral.coral_schema",
      "DROP VIEW coral.latency_exemplars",
      "RENAME TABLE coral.latency_exemplar_parts TO coral.latency_exemplars",
      "TRUNCATE TABLE coral.schema_migrations",
      "INSERT INTO coral.schema_migrations VALUES (1, now64(6))",
    ]) {
      await client.command({ query });
    }
  }
}
const version = await schemaVersion(client, database);
const has = Number((await q<{ n: string }>("SELECT count() AS n FROM system.tables WHERE database = 'coral' AND name = 'span_attributes'"))[0]!.n) > 0;
const [attributes] = has
  ? await q<{ rows: string; distinct: string; digest: string }>(
      `SELECT toString(count()) AS rows, toString(uniqExact(h)) AS distinct, toString(sum(h)) AS digest
       FROM (SELECT cityHash64(service_name, toString(start_time), trace_id, span_id, kind, duration_ns, failed, key, value, resource) AS h FROM coral.span_attributes)`,
    )
  : [null];
console.log(JSON.stringify({ version, attributes }));
await client.close();
