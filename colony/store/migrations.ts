// Versioned, one-time rewrites of a colony file's data, run at start-up after the tables exist.
//
// `schema_migrations` holds one row per data version a file has been brought to. A file that has
// the tables but no row was written before versions existed (version 1); a file created now starts
// at the current version. Each step runs in one transaction that also records its version, so a
// kill at any point leaves the file either wholly before the step (the next start redoes it) or
// wholly after it.
import { sql, type Kysely, type Transaction } from "kysely";
import { HTTP_SERVER_DURATION, type Database } from "./schema.js";
import { bucketIndex, bucketIndexSql } from "./sketch.js";
import { rebuildExemplars } from "../ingest/exemplars.js";

/**
 * 1: latency buckets were DDSketch log buckets with α = 1 % (γ = 1.01/0.99; bucket i held
 *    (γ^(i−1), γ^i] and reported 2γ^i/(γ+1)).
 * 2: latency buckets are OpenTelemetry's exponential mapping at scale 6 (sketch.ts).
 * 3: `latency_exemplars` holds the exemplars of every minute whose raw spans are stored.
 * 4: every span's attributes also have rows in `span_attributes` (what group-by and explain read).
 */
export const DATA_VERSION = 4;

const LEGACY_GAMMA = 1.01 / 0.99;

/** The value a version-1 bucket reported for its observations (within 1 % of each). */
export function legacyBucketValue(index: number): number {
  return (2 * Math.pow(LEGACY_GAMMA, index)) / (LEGACY_GAMMA + 1);
}

export interface UpgradeOptions {
  /** Told what a long step is doing, more than once when it is long (a start that says nothing looks hung). */
  log?: (line: string) => void;
  /** Spans per statement of the span_attributes backfill (version 4), one progress line each. */
  chunkSpans?: number;
}

/** Brings the file's data to DATA_VERSION. `fresh`: the tables were created by this start. */
export async function upgradeData(db: Kysely<Database>, fresh: boolean, o: UpgradeOptions = {}): Promise<void> {
  const row = await db.selectFrom("schema_migrations").select((eb) => eb.fn.max("version").as("v")).executeTakeFirst();
  const version = row?.v ?? (fresh ? 0 : 1);
  // An empty file (or one whose first start died before this line) has nothing to rewrite.
  if (version === 0) {
    await recordVersion(db, DATA_VERSION);
    return;
  }
  if (version < 2) {
    await db.transaction().execute(async (trx) => rebucket(trx));
    // Not inside the transaction: DuckDB refuses to create an index under the name of one dropped
    // by the same transaction. Killed before this, the next start's `migrate` builds it.
    await sql`CREATE UNIQUE INDEX IF NOT EXISTS service_latency_buckets_key ON service_latency_buckets (timestamp, service_name, metric, bucket)`.execute(db);
  }
  if (version < 3) await db.transaction().execute(async (trx) => fillExemplars(trx));
  if (version < 4) await db.transaction().execute(async (trx) => fillSpanAttributes(trx, o));
}

async function recordVersion(db: Kysely<Database>, version: number): Promise<void> {
  await db.insertInto("schema_migrations").values({ version, applied_at: new Date() }).execute();
}

/**
 * Version 1 → 2: every latency bucket row in the new buckets. A (service, minute) of span latency
 * whose raw SERVER spans are all still stored (their count equals the summary's request count) is
 * rebuilt from them, exactly as ingestion would have bucketed them. Any other row — minutes whose
 * spans retention deleted, latency from OTLP histograms, and the stored totals of cumulative
 * histogram streams — has only its old buckets: each old bucket's count moves to the new bucket of
 * the value it reported. Those observations can then be off by up to 1 % (the old bucket) plus
 * 0.54 % (the new one); service_summary keeps its counts, sums, extremes and percentile columns.
 */
async function rebucket(trx: Transaction<Database>): Promise<void> {
  const old = await sql<{ bucket: number }>`SELECT DISTINCT bucket FROM service_latency_buckets`.execute(trx);
  await sql`CREATE OR REPLACE TEMP TABLE rebucket_map (old INTEGER, new INTEGER)`.execute(trx);
  // Mapped in TypeScript: the new index of a value is bucketIndex's, by definition. A few thousand
  // rows at most (old buckets of 1 ns … 2^63 ns).
  const pairs = old.rows.map((r) => [r.bucket, bucketIndex(legacyBucketValue(r.bucket))] as const);
  for (let i = 0; i < pairs.length; i += 1000) {
    const values = pairs.slice(i, i + 1000).map(([o, n]) => sql`(${sql.lit(o)}, ${sql.lit(n)})`);
    await sql`INSERT INTO temp.rebucket_map VALUES ${sql.join(values)}`.execute(trx);
  }
  await sql`
    CREATE OR REPLACE TEMP TABLE rebucket_exact AS
    SELECT s.timestamp, s.service_name FROM service_summary s
    JOIN (SELECT service_name, date_trunc('minute', start_time) AS timestamp, count(*) AS n
          FROM spans WHERE kind = 'SERVER' GROUP BY ALL) r USING (timestamp, service_name)
    WHERE s.metric = ${HTTP_SERVER_DURATION} AND r.n = s.request_count`.execute(trx);
  await sql`
    CREATE OR REPLACE TEMP TABLE rebucket_rows AS
    SELECT date_trunc('minute', s.start_time) AS timestamp, s.service_name, ${HTTP_SERVER_DURATION} AS metric,
           ${sql.raw(bucketIndexSql("s.duration_ns"))} AS bucket, count(*) AS count
    FROM spans s SEMI JOIN temp.rebucket_exact e ON e.service_name = s.service_name AND e.timestamp = date_trunc('minute', s.start_time)
    WHERE s.kind = 'SERVER'
    GROUP BY ALL
    UNION ALL
    SELECT b.timestamp, b.service_name, b.metric, m.new AS bucket,
           -- Old rows were saturated at 2^63 − 1 (rollups.ts); two of them merging must not overflow.
           CAST(least(sum(b.count::HUGEINT), 9223372036854775807) AS BIGINT) AS count
    FROM service_latency_buckets b JOIN temp.rebucket_map m ON m.old = b.bucket
    WHERE NOT EXISTS (SELECT 1 FROM temp.rebucket_exact e
                      WHERE b.metric = ${HTTP_SERVER_DURATION} AND e.service_name = b.service_name AND e.timestamp = b.timestamp)
    GROUP BY ALL`.execute(trx);
  // The table's rows are replaced wholesale, without its unique index (upgradeData builds it again
  // after the commit): an index DuckDB loaded from the file refuses a key deleted and inserted again
  // in one transaction.
  await sql`DROP INDEX IF EXISTS service_latency_buckets_key`.execute(trx);
  await sql`DELETE FROM service_latency_buckets`.execute(trx);
  await sql`INSERT INTO service_latency_buckets BY NAME SELECT timestamp, service_name, metric, bucket, count FROM temp.rebucket_rows`.execute(trx);

  const streams = await trx.selectFrom("histogram_streams").select(["stream", "buckets"]).execute();
  for (const s of streams) {
    const moved = new Map<number, number>();
    for (const [b, n] of JSON.parse(s.buckets) as [number, number][]) {
      const to = bucketIndex(legacyBucketValue(b));
      moved.set(to, (moved.get(to) ?? 0) + n);
    }
    await trx.updateTable("histogram_streams").set({ buckets: JSON.stringify([...moved]) }).where("stream", "=", s.stream).execute();
  }
  for (const t of ["rebucket_map", "rebucket_exact", "rebucket_rows"]) await sql`DROP TABLE temp.${sql.raw(t)}`.execute(trx);
  await recordVersion(trx, 2);
}

/** Version 2 → 3: the exemplars ingestion would have kept, for every span still stored. */
async function fillExemplars(trx: Transaction<Database>): Promise<void> {
  await rebuildExemplars(trx, new Date(0), new Date(8.64e15));
  await recordVersion(trx, 3);
}

/** Spans per statement of the version-4 backfill: one progress line each, a few seconds of work. */
const BACKFILL_CHUNK_SPANS = 250_000;

/**
 * Version → 4: `span_attributes` rows for the spans already stored, from their JSON, exactly as
 * group-by and explain used to read it (json_extract_string of each top-level key; a null value, or
 * text that is not a JSON object, gives no row). Files of that age have no resource attributes.
 * Rows a killed earlier attempt left cannot exist: every chunk commits with the version, in one
 * transaction.
 *
 * Set-based: each span's JSON is parsed once, into a MAP of its keys to json_extract_string's text
 * (json_transform to VARCHAR gives the same text), and unnested in the select list (a lateral
 * json_each or unnest join runs per span, ~5× slower on 1M spans). A JSON object with a duplicate
 * key, where json_extract_string reads the first occurrence, takes the per-key path. Chunks are
 * rowid ranges of `spans`, so a big file says how far it is.
 */
async function fillSpanAttributes(trx: Transaction<Database>, o: UpgradeOptions): Promise<void> {
  const chunk = o.chunkSpans ?? BACKFILL_CHUNK_SPANS;
  const size = (await sql<{ n: number; end: number | null }>`SELECT count(*) AS n, max(rowid) + 1 AS "end" FROM spans`.execute(trx)).rows[0]!;
  const end = Number(size.end ?? 0);
  const chunks = Math.ceil(end / chunk);
  const say = chunks > 1 ? o.log : undefined;
  say?.(`indexing the attributes of ${size.n.toLocaleString("en-US")} stored spans for group-by and explain (data version 4, once)…`);
  for (let from = 0, done = 0; from < end; from += chunk) {
    await sql`
      INSERT INTO span_attributes
      WITH o AS (
        SELECT service_name, start_time, trace_id, span_id, kind, duration_ns,
               status_code = 'ERROR' OR coalesce(http_status_code, 0) >= 500 AS failed, attributes,
               json_transform(attributes, '"MAP(VARCHAR, VARCHAR)"') AS m
        FROM spans
        WHERE rowid >= ${sql.lit(from)} AND rowid < ${sql.lit(from + chunk)}
          AND CASE WHEN json_valid(attributes) THEN json_type(attributes) = 'OBJECT' ELSE false END
      )
      SELECT service_name, start_time, trace_id, span_id, kind, duration_ns, failed, k, v, false
      FROM (
        SELECT service_name, start_time, trace_id, span_id, kind, duration_ns, failed, unnest(map_keys(m)) AS k, unnest(map_values(m)) AS v
        FROM o WHERE len(map_keys(m)) = len(list_distinct(map_keys(m)))
        UNION ALL
        SELECT service_name, start_time, trace_id, span_id, kind, duration_ns, failed, k,
               json_extract_string(attributes, '/' || replace(replace(k, '~', '~0'), '/', '~1')) AS v
        FROM (SELECT *, unnest(list_distinct(map_keys(m))) AS k FROM o WHERE len(map_keys(m)) > len(list_distinct(map_keys(m))))
      )
      WHERE v IS NOT NULL`.execute(trx);
    done += 1;
    if (done < chunks) say?.(`… ${Math.round((100 * done) / chunks)} % of the stored spans' attributes indexed`);
  }
  say?.("stored spans' attributes indexed");
  await recordVersion(trx, 4);
}
