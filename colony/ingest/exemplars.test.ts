import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { prng } from "../demo/prng.js";
import { bucketIndex, bucketIndexSql, SCALE } from "../store/sketch.js";
import { Store } from "../store/store.js";
import { EXEMPLARS_PER_BUCKET } from "../store/exemplar-limits.js";
import type { SpanRecord } from "./records.js";
import { Writer } from "./writer.js";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
let dir: string;
let store: Store;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-exemplars-"));
  store = await Store.open(join(dir, "coral.duckdb"));
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function span(i: number, p: Partial<SpanRecord>): SpanRecord {
  return {
    traceId: i.toString(16).padStart(32, "0"),
    spanId: i.toString(16).padStart(16, "0"),
    parentSpanId: null,
    serviceName: "svc",
    name: "GET /",
    kind: "SERVER",
    startTimeMs: T0,
    durationNs: 1_000_000,
    statusCode: "OK",
    httpStatusCode: 200,
    attributes: {},
    ...p,
  };
}

const stored = async () =>
  (await sql`SELECT epoch_ms(timestamp) AS minute, service_name, metric, bucket, trace_id, span_id, epoch_us(start_time) AS start_us, duration_ns
             FROM latency_exemplars ORDER BY ALL`.execute(store.db)).rows;

/** What the table must hold: the slowest EXEMPLARS_PER_BUCKET SERVER spans of each (minute, service, bucket), by plain SQL. */
const truth = async () =>
  (await sql`SELECT epoch_ms(date_trunc('minute', start_time)) AS minute, service_name, 'http.server.duration' AS metric,
                    ${sql.raw(bucketIndexSql("duration_ns"))} AS bucket, trace_id, span_id, epoch_us(start_time) AS start_us, duration_ns
             FROM spans WHERE kind = 'SERVER'
             QUALIFY row_number() OVER (PARTITION BY minute, service_name, bucket ORDER BY duration_ns DESC, trace_id, span_id) <= ${sql.lit(EXEMPLARS_PER_BUCKET)}
             ORDER BY ALL`.execute(store.db)).rows;

describe("latency exemplars", () => {
  it("keep the slowest spans of each bucket and minute, whatever the batches and their order, as a rebuild from raw spans does", async () => {
    const random = prng(7);
    // Few distinct durations: ties are broken by trace and span id, on both sides.
    const spans = Array.from({ length: 3000 }, (_, i) =>
      span(i, {
        serviceName: i % 3 === 0 ? "a" : "b",
        kind: i % 7 === 0 ? "CLIENT" : "SERVER",
        startTimeMs: T0 + Math.floor(random() * 5 * 60_000) + 0.25,
        durationNs: Math.round(1e6 * 2 ** Math.floor(random() * 40) / 8),
      }),
    );
    const shuffled = [...spans].sort(() => random() - 0.5);
    const writer = new Writer(store, { rollupDelayMs: Infinity });
    try {
      for (let i = 0; i < shuffled.length; ) {
        const n = 1 + Math.floor(random() * 400);
        await writer.writeSpans(shuffled.slice(i, i + n));
        i += n;
        if (random() < 0.3) await writer.settle();
      }
      await writer.settle();
      const merged = await stored();
      expect(merged.length).toBeGreaterThan(0);
      expect(merged).toEqual(await truth());
      await writer.recompute(T0, T0 + 10 * 60_000);
      expect(await stored()).toEqual(merged);
    } finally {
      await writer.close();
    }
  });

  it("bounded per bucket and minute: 1M spans in one bucket keep EXEMPLARS_PER_BUCKET rows a minute", async () => {
    const k = bucketIndex(100e6);
    const lo = Math.ceil(2 ** (k / 2 ** SCALE)) + 1;
    const width = Math.floor(2 ** ((k + 1) / 2 ** SCALE)) - lo - 1;
    const writer = new Writer(store);
    const N = 1_000_000;
    const MINUTES = 3;
    try {
      for (let off = 0; off < N; off += 50_000) {
        await writer.writeSpans(
          Array.from({ length: 50_000 }, (_, j) => {
            const i = off + j;
            return span(i, { startTimeMs: T0 + (i % MINUTES) * 60_000 + (i % 60_000), durationNs: lo + ((i * 7919) % width) });
          }),
        );
      }
      await writer.settle();
      const buckets = await sql<{ bucket: number; n: number }>`SELECT bucket, count(*) AS n FROM service_latency_buckets GROUP BY bucket`.execute(store.db);
      expect(buckets.rows).toEqual([{ bucket: k, n: MINUTES }]);
      const perKey = await sql<{ n: number }>`SELECT count(*) AS n FROM latency_exemplars GROUP BY timestamp, service_name, metric, bucket`.execute(store.db);
      expect(perKey.rows.map((r) => r.n)).toEqual(Array(MINUTES).fill(EXEMPLARS_PER_BUCKET));
      expect(await stored()).toEqual(await truth());
    } finally {
      await writer.close();
    }
  }, 600_000);

  it("go with their spans at retention", async () => {
    const writer = new Writer(store);
    try {
      await writer.writeSpans([span(1, { startTimeMs: T0 }), span(2, { startTimeMs: T0 + 120_000 })]);
      await writer.settle();
      expect(await stored()).toHaveLength(2);
      await writer.deleteTracesBefore(T0 + 60_000);
      expect((await stored()).map((r: any) => r.trace_id)).toEqual([span(2, {}).traceId]);
    } finally {
      await writer.close();
    }
  });

  it("a file of data version 2 gets the exemplars of the spans it holds when it is opened", async () => {
    const path = join(dir, "v2.duckdb");
    const old = await Store.open(path);
    const writer = new Writer(old);
    await writer.writeSpans(Array.from({ length: 50 }, (_, i) => span(i, { durationNs: 1e6 * (1 + (i % 9)), startTimeMs: T0 + i * 5_000 })));
    await writer.close();
    // As a version-2 colony left it: no exemplar table rows, no record of version 3.
    await sql`DELETE FROM latency_exemplars`.execute(old.db);
    await sql`DELETE FROM schema_migrations`.execute(old.db);
    await sql`INSERT INTO schema_migrations VALUES (2, now())`.execute(old.db);
    await old.close();
    const reopened = await Store.open(path);
    try {
      const before = store;
      store = reopened;
      expect(await stored()).toEqual(await truth());
      expect((await stored()).length).toBeGreaterThan(0);
      store = before;
    } finally {
      await reopened.close();
    }
  });
});
