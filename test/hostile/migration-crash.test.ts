// The start-up migration of a version-1 colony file (colony/store/migrations.ts) under kill -9: a
// real colony process starting on a real old file is killed at random moments of its start (before,
// during and after the rewrite, including while the rewrite's WAL is being written), again and
// again; after every kill the file is wholly old or wholly migrated, and the start that is let
// finish answers exactly what an uninterrupted migration gives. The kill points come from a seed
// printed at the start: CORAL_CRASH_SEED=N npx vitest run test/hostile/migration-crash.test.ts.
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import type { LatencyRecord, SpanRecord } from "../../colony/ingest/records.js";
import { DATA_VERSION } from "../../colony/store/migrations.js";
import { bucketIndex, bucketIndexSql } from "../../colony/store/sketch.js";
import { Store } from "../../colony/store/store.js";
import { killAtWalWrite, killIntoStart, peekDatabase, querySql, seededRandom, snapshotCli, startKillableColony } from "../helpers/crash.js";
import { writeLegacyFile } from "../helpers/legacy.js";

const SEED = process.env.CORAL_CRASH_SEED ? Number(process.env.CORAL_CRASH_SEED) : Math.floor(Math.random() * 2 ** 31);
const EPISODES = 4;
const MAX_KILLS_PER_EPISODE = 3;
const MIN = 60_000;
/** Every bucket row, as a count and one hash (tens of thousands of rows: too many for one ExecuteQuery answer). */
const BUCKETS = `SELECT count(*) || ' rows, md5 ' || md5(coalesce(string_agg(epoch_ms(timestamp) || ' ' || service_name || ' ' || metric || ' ' || bucket || ' ' || count, chr(10)
                   ORDER BY timestamp, service_name, metric, bucket), '')) FROM service_latency_buckets`;

/** Every span_attributes row (data version 4), as a count and one hash. */
const ATTRIBUTES = `SELECT count(*) || ' rows, md5 ' || md5(coalesce(string_agg(concat_ws(' ', trace_id, span_id, key, value, duration_ns, failed, resource), chr(10)
                      ORDER BY trace_id, span_id, key), '')) FROM span_attributes`;

/** A killed colony's file as the next start will find it (through a copy: see peekDatabase). */
const peekCopy = <T>(dbPath: string, sql: string) => peekDatabase<T>(dbPath, sql, { access: "copy" });

test(
  "kill -9 during the start-up migration of an old file: every kill leaves it old or migrated, the next start completes it",
  async () => {
    console.log(`migration crash test seed ${SEED} — replay with CORAL_CRASH_SEED=${SEED}`);
    const random = seededRandom(SEED);
    const dir = mkdtempSync(join(tmpdir(), "coral-migrate-crash-"));
    const cli = await snapshotCli();
    try {
      // An hour of four services' spans (recent, so retention keeps them), the oldest ten minutes'
      // spans gone as if by retention, plus latency from OTLP histograms and a cumulative stream.
      const t0 = Math.floor(Date.now() / MIN) * MIN - 60 * MIN;
      const spans: SpanRecord[] = [];
      for (let i = 0; i < 48_000; i++) {
        const service = ["api", "web", "db", "auth"][i % 4]!;
        spans.push({
          traceId: `t${i}`, spanId: `s${i}`, parentSpanId: null, serviceName: service, name: "GET /", kind: i % 7 === 0 ? "CLIENT" : "SERVER",
          startTimeMs: t0 + (i % 3600) * 1000 + (i % 997), durationNs: i % 501 === 0 ? 2 ** (10 + (i % 40)) : Math.round(1e5 * Math.exp(random() * 12)),
          statusCode: "OK", httpStatusCode: i % 50 === 0 ? 503 : 200,
          attributes: { "http.route": `/r/${i % 5}`, "k8s.pod.name": `pod-"${i % 3}"-ü`, ...(i % 11 === 0 ? { "app.note": "x".repeat(300 + (i % 7)) } : {}) },
        });
      }
      const latency: LatencyRecord[] = Array.from({ length: 30 }, (_, m) => ({
        serviceName: "metered", metric: "http.server.request.duration", timestampMs: t0 + m * MIN,
        buckets: new Map([[bucketIndex(2e6 + m * 1e5), 7], [bucketIndex(3e8), 1]]), errorCount: 0, sumNs: 1e9, minNs: 2e6, maxNs: 3e8,
      }));
      latency.push({ ...latency[0]!, timestampMs: t0 + 40 * MIN, cumulative: { stream: "s", startNs: 1n, errors: false } });
      const legacy = join(dir, "legacy.duckdb");
      await writeLegacyFile(legacy, { spans, latency, deleteSpans: `start_time < '${new Date(t0 + 10 * MIN).toISOString()}'` });
      const legacyBuckets = await peekCopy<string>(legacy, BUCKETS);

      // What an uninterrupted migration gives, and that span minutes come out as the raw spans give.
      const reference = join(dir, "reference.duckdb");
      copyFileSync(legacy, reference);
      await (await Store.open(reference)).close();
      const migrated = await peekCopy<string>(reference, BUCKETS);
      const migratedAttributes = await peekCopy<string>(reference, ATTRIBUTES);
      // Two attributes per span still stored (the spans retention took have none), plus the long notes.
      const kept = spans.filter((s) => s.startTimeMs >= t0 + 10 * MIN);
      expect(migratedAttributes[0]![0]).toMatch(new RegExp(`^${kept.reduce((n, s) => n + Object.keys(s.attributes).length, 0)} rows`));
      expect(migrated).not.toEqual(legacyBuckets);
      const truth = await peekCopy<bigint>(
        reference,
        `SELECT count(*) FROM (
           SELECT date_trunc('minute', start_time) AS timestamp, service_name, ${bucketIndexSql("duration_ns")} AS bucket, count(*) AS count
           FROM spans WHERE kind = 'SERVER' AND start_time >= '${new Date(t0 + 10 * MIN).toISOString()}' GROUP BY ALL
           EXCEPT SELECT timestamp, service_name, bucket, count FROM service_latency_buckets WHERE metric = 'http.server.duration')`,
      );
      expect(truth).toEqual([[0n]]);

      const db = join(dir, "coral.duckdb");
      // How long a start takes on the old file: the window the kills land in.
      copyFileSync(legacy, db);
      const timed = startKillableColony(cli.bin, db);
      const startMs = (await timed.ready).readyMs;
      await timed.kill();

      for (let episode = 0; episode < EPISODES; episode++) {
        copyFileSync(legacy, db);
        rmSync(`${db}.wal`, { force: true });
        const kills = 1 + Math.floor(random() * MAX_KILLS_PER_EPISODE);
        const what: string[] = [];
        for (let k = 0; k < kills; k++) {
          const c = startKillableColony(cli.bin, db);
          if (random() < 0.5) {
            what.push(await killIntoStart(c, startMs, random));
          } else {
            const writes = 1 + Math.floor(random() * 4);
            const interrupted = await killAtWalWrite(c, db, writes, 4096);
            what.push(`at WAL write ${writes}${interrupted ? "" : " (it was ready first)"}`);
          }
          const version = (await peekCopy<number | null>(db, "SELECT max(version) FROM schema_migrations"))[0]![0] ?? 1;
          const now = await peekCopy<string>(db, BUCKETS);
          // Each data version is a step of its own: a kill between two leaves the file at the first.
          const state = version === DATA_VERSION ? "migrated" : `version ${version}`;
          expect(now, `seed ${SEED}, episode ${episode + 1}, killed ${what.join(", then ")}: a ${state} file with the wrong buckets`).toEqual(
            version >= 2 ? migrated : legacyBuckets,
          );
          const hasTable = await peekCopy<bigint>(db, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'span_attributes'");
          const attributes = hasTable[0]![0] === 0n ? [["absent"]] : await peekCopy<string>(db, ATTRIBUTES);
          expect(attributes, `seed ${SEED}, episode ${episode + 1}, killed ${what.join(", then ")}: a ${state} file with the wrong span_attributes`).toEqual(
            version === DATA_VERSION ? migratedAttributes : hasTable[0]![0] === 0n ? [["absent"]] : [[expect.stringMatching(/^0 rows/)]],
          );
          what[what.length - 1] += ` → ${state}`;
        }
        const c = startKillableColony(cli.bin, db);
        try {
          const { addr } = await c.ready;
          const rows = await querySql(addr, BUCKETS);
          expect(rows.truncated).toBe(false);
          expect(rows.rows, `seed ${SEED}, episode ${episode + 1}, killed ${what.join(", then ")}`).toEqual(migrated.map(([r]) => [r]));
          const attributes = await querySql(addr, ATTRIBUTES);
          expect(attributes.rows, `seed ${SEED}, episode ${episode + 1}, killed ${what.join(", then ")}`).toEqual(migratedAttributes.map(([r]) => [r]));
          const meta = await querySql(addr, "SELECT (SELECT max(version) FROM schema_migrations), (SELECT count(*) FROM duckdb_indexes() WHERE index_name = 'service_latency_buckets_key')");
          expect(meta.rows).toEqual([[DATA_VERSION, 1]]);
        } finally {
          await c.kill();
        }
        console.log(`episode ${episode + 1}: killed ${what.join(", then ")}; the next start completed the migration`);
      }
    } finally {
      cli.remove();
      rmSync(dir, { recursive: true, force: true });
    }
  },
  300_000,
);
