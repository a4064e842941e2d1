// ClickHouseReads against Queries (DuckDB) on the same stored data: the demo seeded into DuckDB
// through the ingestion Writer, then every table copied into ClickHouse's tables as the rows the
// ClickHouse writer stores (contributions of one row per key), so each method can be compared
// exactly, row for row and bit for bit.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../../demo/demo.js";
import { Writer } from "../../ingest/writer.js";
import { Queries } from "../queries.js";
import { HTTP_SERVER_DURATION } from "../schema.js";
import { bucketIndex } from "../sketch.js";
import { Store } from "../store.js";
import { bucketIndexClickHouseSql, ClickHouseReads } from "./reads.js";
import { createTables, ident } from "./schema.js";
import { chdbClient } from "./testing.js";

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const HOUR = 3_600_000;
let dir: string;
let store: Store;
let duck: Queries;
let client: ClickHouseClient;
let database: string;
let ch: ClickHouseReads;

/** DateTime64(6)'s text from microseconds since the epoch. */
function ts(us: number): string {
  const ms = Math.floor(us / 1000);
  return `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")}.${String(us - Math.floor(us / 1_000_000) * 1_000_000).padStart(6, "0")}`;
}

async function duckRows(sql: string): Promise<Record<string, unknown>[]> {
  const conn = await store.connect();
  try {
    const r = await conn.runAndReadAll(sql);
    const names = r.columnNames();
    return r.getRowsJS().map((row) => Object.fromEntries(row.map((v, i) => [names[i]!, typeof v === "bigint" ? Number(v) : v])));
  } finally {
    conn.closeSync();
  }
}

async function copy(table: string, sql: string, map: (r: Record<string, unknown>) => Record<string, unknown>): Promise<void> {
  const rows = (await duckRows(sql)).map(map);
  for (let i = 0; i < rows.length; i += 20_000) {
    await client.insert({ table: `${ident(database)}.${ident(table)}`, values: rows.slice(i, i + 20_000), format: "JSONEachRow" });
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-ch-reads-"));
  store = await Store.open(join(dir, "coral.duckdb"));
  const writer = new Writer(store);
  await seedDemo(writer, { nowMs: NOW, seed: 7, hours: 1 });
  // Attributes of every kind, and spans without the attribute, for attributeGroups and explain.
  await writer.writeSpans(
    Array.from({ length: 40 }, (_, i) => ({
      traceId: `odd${i}`,
      spanId: `odd${i}`,
      parentSpanId: null,
      serviceName: "payments",
      name: "POST /odd",
      kind: "SERVER" as const,
      startTimeMs: NOW - 10 * 60_000 + i * 1000,
      durationNs: 2 ** (20 + (i % 7)) + i,
      statusCode: i % 5 === 0 ? ("ERROR" as const) : ("OK" as const),
      httpStatusCode: i % 3 === 0 ? null : 200,
      attributes: i % 4 === 0 ? ({} as Record<string, string>) : { "http.route": i % 2 ? "/odd/{id}" : "/odd/ünï", n: i % 3, ok: i % 2 === 0, "a/b~c": "x'\\\"y", tie: `v${i % 37}` },
      // Resource attributes: one the span also has (the span's wins), one only some spans' resources have,
      // and 30 values seen once each, so the 20-value cut falls among equal counts. None on odd0..odd3.
      resourceRows: i < 4 ? [] : [
        ...(i % 2 ? ["http.route", "/from-resource"] : []),
        ...(i % 3 === 0 ? ["k8s.pod.name", `pod-${i % 4}`] : []),
        "tie.res",
        `r${String(29 - (i % 30)).padStart(2, "0")}`,
      ],
    })),
  );
  await writer.close();
  duck = new Queries(store);

  ({ client, database } = await chdbClient(join(dir, "chdb")));
  await createTables(client, { database });
  // createTables' insert_deduplication_token stays set on a chdb session (its settings become SETs):
  // cleared, so the copies below are not taken for retries of its inserts.
  await client.command({ query: "SET insert_deduplication_token = ''" });
  const us = "epoch_us(start_time)";
  await copy("spans", `SELECT *, ${us} AS us FROM spans`, ({ us: t, ...r }) => ({ ...r, start_time: ts(t as number) }));
  await copy("service_latency_buckets", "SELECT *, epoch_us(timestamp) AS us FROM service_latency_buckets", ({ us: t, ...r }) => ({ ...r, timestamp: ts(t as number) }));
  await copy(
    "service_summary_parts",
    "SELECT timestamp, epoch_us(timestamp) AS us, service_name, metric, request_count, error_count, sum_duration_ns, min_duration_ns, max_duration_ns FROM service_summary",
    ({ us: t, ...r }) => ({ ...r, timestamp: ts(t as number) }),
  );
  await copy("trace_summary_parts", "SELECT *, epoch_us(timestamp) AS us FROM trace_summary", (r) => ({
    trace_id: r.trace_id,
    service_name: r.service_name,
    // Beyond 2^53: exact as text.
    root: [r.us, String(-(BigInt(r.us as number) * 1000n + BigInt(r.duration_ns as number))), r.root_name],
    start_time: ts(r.us as number),
    end_ns: String(BigInt(r.us as number) * 1000n + BigInt(r.duration_ns as number)),
    span_count: r.span_count,
    error: r.error ? 1 : 0,
  }));
  await copy("services_parts", "SELECT *, epoch_us(first_seen) AS f, epoch_us(last_seen) AS l FROM services", (r) => ({
    name: r.name,
    namespace: [ts(r.l as number), r.namespace],
    region: [ts(r.l as number), r.region],
    first_seen: ts(r.f as number),
    last_seen: ts(r.l as number),
  }));
  await copy("service_instances_parts", "SELECT *, epoch_us(last_seen) AS l FROM service_instances", (r) => ({ service_name: r.service_name, instance_id: r.instance_id, last_seen: ts(r.l as number) }));
  await copy("span_attributes", "SELECT *, epoch_us(start_time) AS us FROM span_attributes", ({ us: t, ...r }) => ({ ...r, start_time: ts(t as number) }));
  await copy("latency_exemplar_parts", "SELECT *, epoch_us(timestamp) AS m, epoch_us(start_time) AS us FROM latency_exemplars", ({ m, us: t, ...r }) => ({ ...r, timestamp: ts(m as number), start_time: ts(t as number) }));
  // Candidates another colony inserted that rank after the 4 kept ones of their key: reads must drop them.
  await copy(
    "latency_exemplar_parts",
    "SELECT timestamp, service_name, metric, bucket, min(duration_ns) - 1 AS duration_ns, epoch_us(timestamp) AS m, epoch_us(min(start_time)) AS us FROM latency_exemplars GROUP BY ALL HAVING count(*) = 4",
    ({ m, us: t, ...r }) => ({ ...r, trace_id: "zz-loser", span_id: `zz-${String(r.bucket)}`, timestamp: ts(m as number), start_time: ts(t as number) }),
  );
  await copy("host_samples", "SELECT *, epoch_us(timestamp) AS us FROM host_samples", ({ us: t, ...r }) => ({ ...r, timestamp: ts(t as number) }));
  ch = new ClickHouseReads(client, database);
}, 300_000);

afterAll(async () => {
  await client?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const windows = [
  { sinceMs: NOW - HOUR, untilMs: NOW },
  { sinceMs: NOW - 5 * 60_000 + 1234, untilMs: NOW - 60_000 + 17 },
  { sinceMs: NOW + HOUR, untilMs: NOW + 2 * HOUR },
];
const services = ["payments", "orders", "legacy-api", "frontend", "nope"];

describe("ClickHouseReads answers as Queries (DuckDB) does, on the same data", () => {
  it("copied the data", async () => {
    expect((await duck.listServices({})).length).toBeGreaterThan(3);
    expect((await duck.counts({ service: "payments", ...windows[0]! })).total).toBeGreaterThan(500);
  });

  it("listServices and getService", async () => {
    for (const f of [{}, { namespace: "shop" }, { region: "us-west-2" }, { namespace: "shop", region: "eu-west-1" }, { namespace: "x'\\" }]) {
      expect(await ch.listServices(f)).toEqual(await duck.listServices(f));
    }
    for (const s of services) expect(await ch.getService(s)).toEqual(await duck.getService(s));
  });

  it("percentile, counts, metricExists", async () => {
    for (const service of services) {
      for (const w of windows) {
        for (const q of [0, 0.5, 0.95, 0.99, 0.999, 1]) {
          expect(await ch.percentile({ service, metric: HTTP_SERVER_DURATION, q, ...w })).toEqual(await duck.percentile({ service, metric: HTTP_SERVER_DURATION, q, ...w }));
        }
        expect(await ch.counts({ service, ...w })).toEqual(await duck.counts({ service, ...w }));
      }
      for (const metric of [HTTP_SERVER_DURATION, "nope", "{p0:String}"]) expect(await ch.metricExists(service, metric)).toBe(await duck.metricExists(service, metric));
    }
  });

  it("slowTraces and errorTraces", async () => {
    for (const service of services) {
      for (const w of windows) {
        for (const limit of [1, 1000]) {
          for (const minDurationNs of [0, 100_000_000]) {
            expect(await ch.slowTraces({ service, minDurationNs, limit, ...w })).toEqual(await duck.slowTraces({ service, minDurationNs, limit, ...w }));
          }
          expect(await ch.errorTraces({ service, limit, ...w })).toEqual(await duck.errorTraces({ service, limit, ...w }));
        }
      }
    }
  });

  it("systemMetrics", async () => {
    for (const service of services) {
      for (const w of windows) {
        const [c, d] = [await ch.systemMetrics({ service, ...w }), await duck.systemMetrics({ service, ...w })];
        const averages = { cpuPercent: 0, memoryPercent: 0, memoryUsedBytes: 0n };
        expect({ ...c, ...averages }).toEqual({ ...d, ...averages });
        // Averages of averages: summed in another order, the last bits may differ (bytes: rounded to 1).
        for (const k of ["cpuPercent", "memoryPercent"] as const) {
          if (d[k] === undefined) expect(c[k]).toBeUndefined();
          else expect(c[k]).toBeCloseTo(d[k], 6);
        }
        if (d.memoryUsedBytes === undefined) expect(c.memoryUsedBytes).toBeUndefined();
        else expect(Math.abs(Number(c.memoryUsedBytes! - d.memoryUsedBytes))).toBeLessThanOrEqual(1);
      }
    }
  });

  it("traceSpans", async () => {
    const ids = (await duckRows("SELECT trace_id FROM spans GROUP BY trace_id ORDER BY count(*) DESC, trace_id LIMIT 5")).map((r) => r.trace_id as string);
    // The demo's spans carry their resource's attributes (pods, versions), odd6 its own: both engines read them.
    const withResource = await ch.traceSpans({ traceId: "odd6", limit: 10, maxTextBytes: 1 << 20 });
    expect(withResource.spans[0]!.resourceAttributes).toEqual({ "k8s.pod.name": "pod-2", "tie.res": "r23" });
    for (const traceId of [...ids, "odd3", "odd5", "odd6", "unknown", "'; DROP TABLE spans; --"]) {
      for (const [limit, maxTextBytes] of [
        [1000, 1 << 20],
        [3, 1 << 20],
        [1000, 200],
        [1, 0],
      ] as const) {
        expect(await ch.traceSpans({ traceId, limit, maxTextBytes })).toEqual(await duck.traceSpans({ traceId, limit, maxTextBytes }));
      }
    }
  });

  it("attributeGroups", { timeout: 300_000 }, async () => {
    for (const service of ["payments", "nope"]) {
      for (const w of windows.slice(0, 2)) {
        for (const key of ["http.route", "n", "ok", "a/b~c", "missing", "k8s.pod.name", "tie", "tie.res", "service.version"]) {
          for (const limit of [1, 10]) {
            expect(await ch.attributeGroups({ service, key, limit, ...w }), `${service} ${key} ${limit}`).toEqual(await duck.attributeGroups({ service, key, limit, ...w }));
          }
        }
      }
    }
  });

  it("explain", { timeout: 300_000 }, async () => {
    for (const service of ["payments", "nope"]) {
      for (const selection of [{ slowNs: 500_000_000 }, { slowNs: 2 ** 22 }, { errors: true as const }]) {
        for (const excludeKeys of [[], ["http.route"], ["http.route", "tie", "tie.res"]]) {
          const a = { service, selection, limit: 10, excludeKeys, ...windows[0]! };
          expect(await ch.explain(a), JSON.stringify(a)).toEqual(await duck.explain(a));
        }
      }
    }
  });

  it("exemplars", { timeout: 300_000 }, async () => {
    const [{ n }] = (await duckRows("SELECT count(*) AS n FROM latency_exemplars")) as [{ n: number }];
    expect(n).toBeGreaterThan(100);
    const picks = await duckRows("SELECT service_name, bucket, duration_ns FROM latency_exemplars ORDER BY duration_ns DESC, trace_id LIMIT 2");
    for (const service of services) {
      for (const w of windows) {
        for (const [bucket, valueNs] of [[0, 0], ...picks.map((p) => [p.bucket as number, p.duration_ns as number]), [bucketIndex(2 ** 24), 2 ** 24]] as [number, number][]) {
          for (const limit of [1, 1000]) {
            const a = { service, metric: HTTP_SERVER_DURATION, bucket, valueNs, limit, ...w };
            expect(await ch.exemplars(a), JSON.stringify(a)).toEqual(await duck.exemplars(a));
          }
        }
      }
    }
  });
});

describe("bucketIndexClickHouseSql", () => {
  it("puts every value in the bucket sketch.ts bucketIndex does, at and around each edge", async () => {
    const values: number[] = [0, -5, 0.5, 1, 1.0000001, 2, 3, 1e18, 2 ** 62];
    for (let octave = 0; octave < 40; octave += 13) {
      for (let j = 0; j < 64; j++) {
        const edge = 2 ** (octave + j / 64);
        for (const f of [1 - 1e-15, 1 - 2e-16, 1, 1 + 2e-16, 1 + 1e-15]) values.push(edge * f);
      }
    }
    const rs = await client.query({
      // Shortest round-trip text, parsed correctly rounded by ClickHouse: the same doubles.
      query: `SELECT ${bucketIndexClickHouseSql("v")} AS b FROM (SELECT toFloat64(arrayJoin(splitByChar(',', {vs:String}))) AS v)`,
      query_params: { vs: values.join(",") },
      format: "JSONCompactEachRow",
    });
    const got = ((await rs.json()) as [number][]).map((r) => r[0]);
    expect(got).toEqual(values.map(bucketIndex));
  });
});
