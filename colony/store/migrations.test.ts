import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { peekDatabase } from "../../test/helpers/crash.js";
import { legacyBucketIndex, migratedBucket, writeLegacyFile } from "../../test/helpers/legacy.js";
import type { LatencyRecord, SpanRecord } from "../ingest/records.js";
import { Writer } from "../ingest/writer.js";
import { DATA_VERSION } from "./migrations.js";
import { HTTP_SERVER_DURATION } from "./schema.js";
import { bucketIndex } from "./sketch.js";
import { Store } from "./store.js";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const MIN = 60_000;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "coral-migrate-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Durations that sit on bucket edges of both mappings, powers of two, 0 and 1 ns, and a spread. */
function durations(n: number): number[] {
  const out = [0, 1, 2, 1024, 2 ** 40, 2 ** 53, 999_999_999];
  for (let i = 0; out.length < n; i++) out.push(Math.round(1e5 * Math.exp((i * 7919) % 1000 / 70)));
  return out;
}

function spans(service: string, minute: number, values: number[]): SpanRecord[] {
  return values.map((durationNs, i) => ({
    traceId: `${service}-${minute}-${i}`, spanId: `${service}-${minute}-${i}`, parentSpanId: null, serviceName: service, name: "GET /",
    kind: "SERVER", startTimeMs: T0 + minute * MIN + (i % 50) * 1000, durationNs, statusCode: "OK", httpStatusCode: 200, attributes: {},
  }));
}

type Row = [number, string, string, number, number];
async function bucketRows(store: Store): Promise<Row[]> {
  const rows = await store.db.selectFrom("service_latency_buckets").selectAll().orderBy("timestamp").orderBy("service_name").orderBy("metric").orderBy("bucket").execute();
  return rows.map((r) => [r.timestamp.getTime(), r.service_name, r.metric, r.bucket, r.count]);
}

function summed(rows: Row[]): Row[] {
  const m = new Map<string, Row>();
  for (const r of rows) {
    const k = JSON.stringify(r.slice(0, 4));
    const had = m.get(k);
    if (had) had[4] += r[4];
    else m.set(k, [...r]);
  }
  return [...m.values()].sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1]) || a[2].localeCompare(b[2]) || a[3] - b[3]);
}

describe("start-up migration of latency buckets (data version 1 → 2)", () => {
  it("rebuilds minutes from raw spans, maps the rest by value, once, and keeps summaries", async () => {
    const path = join(dir, "legacy.duckdb");
    const values = durations(400);
    const latency: LatencyRecord[] = [
      { serviceName: "metered", metric: "http.server.request.duration", timestampMs: T0, buckets: new Map([[bucketIndex(3e6), 5], [bucketIndex(9e8), 2]]), errorCount: 1, sumNs: 1e9, minNs: 3e6, maxNs: 9e8 },
      {
        serviceName: "metered", metric: "http.server.request.duration", timestampMs: T0 + MIN, buckets: new Map([[bucketIndex(4e6), 3]]), errorCount: 0, sumNs: 1e7, minNs: 4e6, maxNs: 4e6,
        cumulative: { stream: "s1", startNs: 1n, errors: false },
      },
    ];
    // Minute 0: all spans kept; minute 1: retention took half; minute 2: all gone.
    await writeLegacyFile(path, {
      spans: [...spans("api", 0, values), ...spans("api", 1, values), ...spans("api", 2, values), ...spans("web", 0, values.slice(0, 50))],
      latency,
      deleteSpans: `start_time >= '${new Date(T0 + MIN).toISOString()}' AND start_time < '${new Date(T0 + MIN + 25_000).toISOString()}' OR start_time >= '${new Date(T0 + 2 * MIN).toISOString()}'`,
    });

    const legacy = (await peekDatabase<unknown>(path, "SELECT epoch_ms(timestamp), service_name, metric, bucket, count FROM service_latency_buckets")).map(
      ([t, svc, metric, b, n]) => [Number(t), svc, metric, Number(b), Number(n)] as Row,
    );
    const legacyStreams = await peekDatabase<string>(path, "SELECT buckets FROM histogram_streams");
    const summaryBefore = await peekDatabase<unknown>(path, "SELECT * FROM service_summary ORDER BY ALL");
    expect(await peekDatabase(path, "SELECT count(*) FROM schema_migrations")).toEqual([[0n]]);
    // The legacy file really is in the old buckets.
    expect(legacy).toContainEqual([T0, "api", HTTP_SERVER_DURATION, legacyBucketIndex(999_999_999), expect.any(Number)]);

    const whole = (t: number, svc: string) => (svc === "api" && t === T0) || (svc === "web" && t === T0);
    const truth: Row[] = [];
    for (const [svc, n] of [["api", values.length], ["web", 50]] as const) {
      for (const v of values.slice(0, n)) truth.push([T0, svc, HTTP_SERVER_DURATION, bucketIndex(v), 1]);
    }
    const mapped: Row[] = legacy.filter((r) => !(r[2] === HTTP_SERVER_DURATION && whole(r[0], r[1]))).map((r) => [r[0], r[1], r[2], migratedBucket(r[3]), r[4]]);
    const expected = summed([...truth, ...mapped]);

    const store = await Store.open(path);
    try {
      expect(await bucketRows(store)).toEqual(expected);
      const streams = await store.db.selectFrom("histogram_streams").select("buckets").execute();
      expect(streams.map((r) => JSON.parse(r.buckets))).toEqual(
        legacyStreams.map(([b]) => summed(JSON.parse(b!).map(([k, n]: [number, number]) => [0, "", "", migratedBucket(k), n])).map((r) => [r[3], r[4]])),
      );
      expect(await sql`SELECT * FROM service_summary ORDER BY ALL`.execute(store.db).then((r) => r.rows.length)).toBe(summaryBefore.length);
      // One row per step the file went through; the last is the current version.
      const versions = await store.db.selectFrom("schema_migrations").select("version").orderBy("version").execute();
      expect(versions.at(-1)).toEqual({ version: DATA_VERSION });

      // The rebuilt table takes incremental merges again (its unique index is back).
      const writer = new Writer(store);
      await writer.writeSpans(spans("api", 0, [values[10]!]).map((s) => ({ ...s, spanId: "late", traceId: "late" })));
      await writer.close();
      const bumped = (await bucketRows(store)).find((r) => r[0] === T0 && r[1] === "api" && r[3] === bucketIndex(values[10]!))!;
      expect(bumped[4]).toBe(expected.find((r) => r[0] === T0 && r[1] === "api" && r[3] === bucketIndex(values[10]!))![4] + 1);
    } finally {
      await store.close();
    }

    // Runs once: a second start finds version 2 and leaves the rows alone.
    const again = await Store.open(path);
    try {
      expect((await again.db.selectFrom("schema_migrations").select("version").orderBy("version").execute()).at(-1)).toEqual({ version: DATA_VERSION });
      expect((await bucketRows(again)).reduce((n, r) => n + r[4], 0)).toBe(expected.reduce((n, r) => n + r[4], 0) + 1);
    } finally {
      await again.close();
    }
  });

  it("records the current version on a new file and rewrites nothing", async () => {
    const path = join(dir, "new.duckdb");
    const store = await Store.open(path);
    await store.close();
    expect(await peekDatabase(path, "SELECT version FROM schema_migrations")).toEqual([[DATA_VERSION]]);
  });
});
