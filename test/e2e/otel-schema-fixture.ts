// Makes the OpenTelemetry Collector's traces table in a chdb directory, in a process of its own
// (chdb binds one data directory per process; the colony under test opens it after):
//   npx tsx test/e2e/otel-schema-fixture.ts DIR MODE NOW_MS
// MODE peek prints what DIR holds instead: every table of every database but system's, with its rows.
// MODE: spans (UInt64 Duration, SPAN_KIND_* names), spans-int64 (Int64 Duration, short names),
// empty (no rows), no-table, wrong-columns (Duration as String, no StatusCode), hostile (NUL in
// names, a 10 MiB attribute, 5,000-key maps, the largest UInt64 duration, an injection-shaped name).
import { openClickHouse } from "../../colony/store/clickhouse/connection.js";
import { otelRows, otelTracesDdl, testSpans, type TestSpan } from "../helpers/otel-spans.js";

const [dir, mode, now] = process.argv.slice(2);
const nowMs = Number(now);
const { client } = await openClickHouse({ kind: "chdb", path: dir!, database: "coral" });
if (mode !== "peek") await client.command({ query: "CREATE DATABASE IF NOT EXISTS coral" });
const table = "coral.otel_traces";

async function insert(rows: Record<string, unknown>[]): Promise<void> {
  for (let i = 0; i < rows.length; i += 500) await client.insert({ table, values: rows.slice(i, i + 500), format: "JSONEachRow" });
}

switch (mode) {
  case "spans":
    await client.command({ query: otelTracesDdl(table, "UInt64") });
    await insert(otelRows(testSpans(nowMs), "proto"));
    break;
  case "spans-int64":
    await client.command({ query: otelTracesDdl(table, "Int64") });
    await insert(otelRows(testSpans(nowMs), "short"));
    break;
  case "empty":
    await client.command({ query: otelTracesDdl(table) });
    break;
  case "no-table":
    break;
  case "wrong-columns":
    await client.command({ query: otelTracesDdl(table).replace("Duration UInt64", "Duration String").replace(/\n  StatusCode [^\n]*/, "") });
    break;
  case "hostile": {
    await client.command({ query: otelTracesDdl(table) });
    const startUs = (nowMs - 60_000) * 1000;
    const base: TestSpan = {
      traceId: "f".repeat(32), spanId: "1".repeat(16), parentSpanId: "", resource: { "service.name": "evil\u0000svc" }, name: "GET /\u0000x",
      kind: "SERVER", startUs, durationNs: 5e6, status: "ERROR", attributes: { "k\u0000ey": "v\u0000al", "'; DROP TABLE otel_traces; --": "x" },
    };
    const huge: TestSpan = { ...base, spanId: "2".repeat(16), resource: { "service.name": "huge" }, name: "huge", attributes: { blob: "x".repeat(10 * 2 ** 20) } };
    const wide: TestSpan = {
      ...base, traceId: "e".repeat(32), spanId: "3".repeat(16), resource: Object.fromEntries([["service.name", "wide"], ...Array.from({ length: 5000 }, (_, i) => [`r${i}`, `v${i}`])]),
      name: "wide", attributes: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`a${i}`, "y".repeat(i % 50)])),
    };
    const rows = otelRows([base, huge, wide]);
    // The largest duration a UInt64 holds: read as Int64's largest, not as a negative number.
    rows.push({ ...rows[0]!, SpanId: "4".repeat(16), ServiceName: "forever", ResourceAttributes: { "service.name": "forever" }, Duration: "18446744073709551615" });
    await insert(rows);
    break;
  }
  case "peek": {
    const rs = await client.query({ query: "SELECT database, name, total_rows FROM system.tables WHERE database NOT IN ('system', 'information_schema', 'INFORMATION_SCHEMA') ORDER BY database, name", format: "JSONEachRow" });
    process.stdout.write(`${JSON.stringify(await rs.json())}\n`);
    break;
  }
  default:
    throw new Error(`unknown mode ${mode}`);
}
await client.close();
if (mode !== "peek") process.stdout.write("ok\n");
