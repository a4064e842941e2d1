// Colony files as the colony wrote them before data versions (version 1, DDSketch buckets with
// α = 1 %), for the tests of the start-up migration (colony/store/migrations.ts).
import { sql } from "kysely";
import { Writer } from "../../colony/ingest/writer.js";
import type { LatencyRecord, SpanRecord } from "../../colony/ingest/records.js";
import { legacyBucketValue } from "../../colony/store/migrations.js";
import { HTTP_SERVER_DURATION } from "../../colony/store/schema.js";
import { bucketIndex, bucketValue } from "../../colony/store/sketch.js";
import { Store } from "../../colony/store/store.js";

const LN_GAMMA = Math.log(1.01 / 0.99);

/** The version-1 bucket of a duration: ceil(ln v / ln γ). */
export function legacyBucketIndex(valueNs: number): number {
  return Math.ceil(Math.log(Math.max(valueNs, 1)) / LN_GAMMA);
}

/** The version-1 bucketing in SQL, as the colony ran it (the same float arithmetic as legacyBucketIndex). */
const legacyBucketIndexSql = (column: string) => `CAST(ceil(ln(greatest(${column}, 1)) / ${LN_GAMMA}) AS INTEGER)`;

/** A version-1 bucket near a version-2 one: how a row that came from an OTLP histogram looked then. */
const toLegacy = (bucket: number) => legacyBucketIndex(bucketValue(bucket));

/**
 * Writes `spans` and `latency` through the real Writer, then turns the file into what version 1
 * left: span latency bucketed from the raw spans the old way, other latency rows and cumulative
 * stream totals moved to the old bucket of their value, and no data version recorded. Then
 * `afterwards` may remove raw spans (as retention does) so some minutes exist only as rollups.
 */
export async function writeLegacyFile(
  path: string,
  o: { spans: SpanRecord[]; latency?: LatencyRecord[]; deleteSpans?: string },
): Promise<void> {
  const store = await Store.open(path);
  try {
    const writer = new Writer(store);
    for (let i = 0; i < o.spans.length; i += 5000) await writer.writeSpans(o.spans.slice(i, i + 5000));
    if (o.latency) await writer.writeLatency(o.latency);
    await writer.close();
    const db = store.db;
    await db.transaction().execute(async (trx) => {
      const rows = await trx.selectFrom("service_latency_buckets").selectAll().where("metric", "<>", HTTP_SERVER_DURATION).execute();
      await sql`DROP INDEX service_latency_buckets_key`.execute(trx);
      await sql`DELETE FROM service_latency_buckets`.execute(trx);
      await sql.raw(`
        INSERT INTO service_latency_buckets
        SELECT date_trunc('minute', start_time), service_name, '${HTTP_SERVER_DURATION}', ${legacyBucketIndexSql("duration_ns")} AS b, count(*)
        FROM spans WHERE kind = 'SERVER' GROUP BY ALL`).execute(trx);
      const moved = new Map<string, { timestamp: Date; service_name: string; metric: string; bucket: number; count: number }>();
      for (const r of rows) {
        const bucket = toLegacy(r.bucket);
        const key = `${r.timestamp.getTime()}\u0000${r.service_name}\u0000${r.metric}\u0000${bucket}`;
        const m = moved.get(key);
        if (m) m.count += r.count;
        else moved.set(key, { ...r, bucket });
      }
      if (moved.size > 0) await trx.insertInto("service_latency_buckets").values([...moved.values()]).execute();
      for (const s of await trx.selectFrom("histogram_streams").selectAll().execute()) {
        const legacy = new Map<number, number>();
        for (const [b, n] of JSON.parse(s.buckets) as [number, number][]) legacy.set(toLegacy(b), (legacy.get(toLegacy(b)) ?? 0) + n);
        await trx.updateTable("histogram_streams").set({ buckets: JSON.stringify([...legacy]) }).where("stream", "=", s.stream).execute();
      }
      await trx.deleteFrom("schema_migrations").execute();
      // Version 1 had no span_attributes (data version 4 fills it from the spans' JSON).
      await sql`DROP TABLE span_attributes`.execute(trx);
      if (o.deleteSpans) await sql.raw(`DELETE FROM spans WHERE ${o.deleteSpans}`).execute(trx);
    });
    await sql`CREATE UNIQUE INDEX service_latency_buckets_key ON service_latency_buckets (timestamp, service_name, metric, bucket)`.execute(db);
    await sql`CHECKPOINT`.execute(db);
  } finally {
    await store.close();
  }
}

/** Where a version-1 bucket's count goes when its raw spans are gone (what migrations.ts promises). */
export const migratedBucket = (legacyBucket: number) => bucketIndex(legacyBucketValue(legacyBucket));
