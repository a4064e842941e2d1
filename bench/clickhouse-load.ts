// Bulk-loads the percentile benchmark's spans into an embedded ClickHouse (chdb) directory, in a
// process of its own: chdb binds one data directory per process for the process's life, and the
// colony that is timed afterwards opens the same directory.
//
//   node --import tsx bench/clickhouse-load.ts DIR SPANS START_MS [PARITY_SPANS]
//
// Spans come from numbers() with the latency mix of percentile.ts (94 % lognormal around 40 ms,
// 5 % around 300 ms, 1 % around 2 s; ClickHouse's hash, so not DuckDB's exact values), and the
// rollups from the spans in SQL, the bucket by reads.ts bucketIndexClickHouseSql. With
// PARITY_SPANS, the same load into a second database is read back and written through the real
// ClickHouseWriter into a third, and the two bucket tables are compared: what is timed is what
// ingestion would have stored. Prints one JSON line.
import type { ClickHouseClient } from "@clickhouse/client";
import { openClickHouse } from "../colony/store/clickhouse/connection.js";
import { bucketIndexClickHouseSql } from "../colony/store/clickhouse/reads.js";
import { createTables } from "../colony/store/clickhouse/schema.js";
import { ClickHouseWriter } from "../colony/store/clickhouse/writer.js";
import type { SpanRecord } from "../colony/ingest/records.js";
import { HTTP_SERVER_DURATION } from "../colony/store/schema.js";
import { median } from "./lib.js";
import { BENCH_SERVICE as SERVICE, OFFSET_MS, SPREAD_MS } from "./percentile.js";

const uniform = (salt: number) => `((toFloat64(bitShiftRight(sipHash64(number * 4 + ${salt}), 11)) + 0.5) / 9007199254740992.0)`;

async function load(client: ClickHouseClient, db: string, n: number, startMs: number): Promise<void> {
  const z = `sqrt(-2 * log(${uniform(0)})) * cos(2 * pi() * ${uniform(1)})`;
  const mix = uniform(2);
  const error = `${uniform(3)} < 0.01`;
  await client.command({
    query: `
      INSERT INTO ${db}.spans (trace_id, span_id, parent_span_id, service_name, name, kind, start_time, duration_ns, status_code, http_status_code, attributes)
      SELECT lower(leftPad(hex(number), 32, '0')), lower(leftPad(hex(number), 16, '0')), NULL, '${SERVICE}', 'POST /checkout', 'SERVER',
             fromUnixTimestamp64Milli(toInt64(${startMs} + intDiv(number * ${SPREAD_MS}, ${n})), 'UTC'),
             toInt64(round(exp(multiIf(${mix} < 0.94, log(40e6), ${mix} < 0.99, log(300e6), log(2e9)) + multiIf(${mix} < 0.94, 0.5, ${mix} < 0.99, 0.7, 0.6) * ${z}))),
             if(${error}, 'ERROR', 'OK'), if(${error}, 503, 200), '{}'
      FROM numbers(${n})`,
  });
  const minute = "toDateTime64(toStartOfMinute(start_time), 6, 'UTC')";
  const failed = "(status_code = 'ERROR' OR ifNull(http_status_code, 0) >= 500)";
  await client.command({
    query: `
      INSERT INTO ${db}.service_latency_buckets (timestamp, service_name, metric, bucket, count)
      SELECT ${minute} AS m, service_name, '${HTTP_SERVER_DURATION}', ${bucketIndexClickHouseSql("duration_ns")} AS b, count()
      FROM ${db}.spans WHERE kind = 'SERVER' GROUP BY m, service_name, b`,
  });
  await client.command({
    query: `
      INSERT INTO ${db}.service_summary_parts (timestamp, service_name, metric, request_count, error_count, sum_duration_ns, min_duration_ns, max_duration_ns)
      SELECT ${minute} AS m, service_name, '${HTTP_SERVER_DURATION}', count(), countIf(${failed}), sum(toFloat64(duration_ns)), min(duration_ns), max(duration_ns)
      FROM ${db}.spans WHERE kind = 'SERVER' GROUP BY m, service_name`,
  });
  const at = (ms: number) => `fromUnixTimestamp64Milli(toInt64(${ms}), 'UTC')`;
  await client.command({
    query: `
      INSERT INTO ${db}.services_parts (name, namespace, region, first_seen, last_seen)
      SELECT '${SERVICE}', (${at(startMs)}, 'shop'), (${at(startMs)}, 'us-east-1'), ${at(startMs)}, ${at(startMs + SPREAD_MS)}`,
  });
}

async function buckets(client: ClickHouseClient, db: string): Promise<string> {
  const r = await client.query({
    query: `SELECT toString(toUnixTimestamp64Milli(timestamp)) AS t, bucket, toString(sum(count)) AS c FROM ${db}.service_latency_buckets GROUP BY t, bucket ORDER BY t, bucket`,
    format: "JSONEachRow",
  });
  return JSON.stringify(await r.json());
}

/**
 * Active parts of a table: what a read merges at query time. The bulk load is one INSERT … SELECT,
 * so one part, the state a server reaches once its background merges have run (nothing is waited for).
 */
async function activeParts(client: ClickHouseClient, db: string, table: string): Promise<number> {
  const r = await client.query({
    query: "SELECT count() AS n FROM system.parts WHERE database = {db:String} AND table = {t:String} AND active",
    query_params: { db, t: table },
    format: "JSONEachRow",
  });
  return Number(((await r.json()) as { n: string | number }[])[0]!.n);
}

/** The median time of GetPercentile's one query (reads.ts percentile: the last hour's buckets), here with no RPC around it. */
async function bucketReadMs(client: ClickHouseClient, db: string): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < 15; i++) {
    const now = Date.now();
    const t0 = performance.now();
    const r = await client.query({
      query: `SELECT bucket, sum(count) AS count FROM ${db}.service_latency_buckets
              WHERE service_name = {s:String} AND metric = {m:String}
                AND timestamp >= fromUnixTimestamp64Milli({since:Int64}, 'UTC') AND timestamp < fromUnixTimestamp64Milli({until:Int64}, 'UTC')
              GROUP BY bucket`,
      query_params: { s: SERVICE, m: HTTP_SERVER_DURATION, since: Math.floor((now - 3_600_000) / 60_000) * 60_000, until: now },
      format: "JSONEachRow",
    });
    await r.json();
    ms.push(performance.now() - t0);
  }
  return Math.round(median(ms) * 100) / 100;
}

/** The bulk load's buckets against the Writer's for the same spans. */
async function parity(client: ClickHouseClient, n: number, startMs: number): Promise<{ spans: number; identical: boolean }> {
  await createTables(client, { database: "parity_bulk" });
  await createTables(client, { database: "parity_writer" });
  await load(client, "parity_bulk", n, startMs);
  const r = await client.query({
    query: "SELECT trace_id, span_id, toString(toUnixTimestamp64Micro(start_time)) AS us, toString(duration_ns) AS d, status_code, http_status_code FROM parity_bulk.spans",
    format: "JSONEachRow",
  });
  const rows = (await r.json()) as { trace_id: string; span_id: string; us: string; d: string; status_code: string; http_status_code: number }[];
  const spans = rows.map(
    (x): SpanRecord => ({
      traceId: x.trace_id,
      spanId: x.span_id,
      parentSpanId: null,
      serviceName: SERVICE,
      name: "POST /checkout",
      kind: "SERVER",
      startTimeMs: Number(x.us) / 1000,
      durationNs: Number(x.d),
      statusCode: x.status_code as SpanRecord["statusCode"],
      httpStatusCode: x.http_status_code,
      attributes: {},
    }),
  );
  const writer = new ClickHouseWriter(client, { database: "parity_writer" });
  for (let off = 0; off < spans.length; off += 5000) await writer.writeSpans(spans.slice(off, off + 5000));
  const [a, b] = [await buckets(client, "parity_bulk"), await buckets(client, "parity_writer")];
  return { spans: n, identical: a.length > 2 && a === b };
}

const [dir, spans, start, paritySpans] = process.argv.slice(2);
if (!dir || !spans || !start) {
  console.error("usage: node --import tsx bench/clickhouse-load.ts DIR SPANS START_MS [PARITY_SPANS]");
  process.exit(2);
}
const { client } = await openClickHouse({ kind: "chdb", path: dir, database: "coral" });
try {
  await createTables(client, { database: "coral" });
  const t0 = performance.now();
  await load(client, "coral", Number(spans), Number(start));
  const loadS = (performance.now() - t0) / 1000;
  const check = paritySpans ? await parity(client, Number(paritySpans), Date.now() - OFFSET_MS - SPREAD_MS) : undefined;
  console.log(JSON.stringify({ load_s: loadS, parity: check, bucket_parts: await activeParts(client, "coral", "service_latency_buckets"), bucket_read_ms: await bucketReadMs(client, "coral") }));
} finally {
  await client.close();
}
