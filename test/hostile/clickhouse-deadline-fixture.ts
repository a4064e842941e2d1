// Builds the chdb store of typed-deadline-clickhouse.test.ts in a process of its own (chdb binds one
// data directory per process, and the colony must open this one after): WRITTEN requests of one
// service with 24 attributes each through the real ClickHouse writer, then copied in SQL, each copy
// an hour earlier, as many copies as it takes for an explain over all of them to run at least MIN_MS
// here (machines differ several-fold: a fixed count was too fast on CI). Prints the copies and how
// long the explain took, as JSON.
//   npx tsx test/hostile/clickhouse-deadline-fixture.ts DIR MIN_MS
import { openClickHouse } from "../../colony/store/clickhouse/connection.js";
import { ClickHouseReads } from "../../colony/store/clickhouse/reads.js";
import { createTables } from "../../colony/store/clickhouse/schema.js";
import { ClickHouseWriter } from "../../colony/store/clickhouse/writer.js";
import { SLOW_NS, writeRequests } from "../helpers/typed-deadline.js";

const HOUR = 3_600_000;

/** Where the copies start, and where they stop even if the explain is still faster than asked. */
const FIRST_COPIES = 40;
const MAX_COPIES = 1_000;

const [dir, minMsArg] = process.argv.slice(2);
const minMs = Number(minMsArg);
const database = "coral";
const { client } = await openClickHouse({ kind: "chdb", path: dir!, database });
await createTables(client, { database });
const writer = new ClickHouseWriter(client, { database });
const now = Date.now();
await writeRequests(writer, now);
// Hours, not days: a day per copy would make more partitions (by day) than one INSERT may touch.
// Copies [from, to) of the written requests (trace ids with a zero prefix), copy c an hour earlier per c.
const copy = (table: string, from: number, to: number) =>
  client.command({
    query: `INSERT INTO ${database}.${table}
      SELECT * EXCEPT (c) REPLACE (concat(leftPad(hex(c), 16, '0'), substring(trace_id, 17)) AS trace_id,
                                   concat(leftPad(hex(c), 16, '0'), substring(span_id, 17)) AS span_id,
                                   start_time - toIntervalHour(c) AS start_time)
      FROM (SELECT *, arrayJoin(range(${from}, ${to})) AS c FROM ${database}.${table}
            WHERE startsWith(trace_id, '0000000000000000'))`,
    clickhouse_settings: { max_partitions_per_insert_block: "10000" },
  });
let copies = 1;
let explainMs = 0;
let total = 0;
for (let want = FIRST_COPIES; ; ) {
  await copy("spans", copies, want);
  await copy("span_attributes", copies, want);
  copies = want;
  // The faster of two: the first after an insert runs cold (new parts, empty caches), slower than
  // the colony will run it — a deadline set from it let the colony's explain finish in time.
  explainMs = Infinity;
  for (let run = 0; run < 2; run++) {
    const t0 = performance.now();
    const e = await new ClickHouseReads(client, database).explain({ service: "api", selection: { slowNs: SLOW_NS }, limit: 10, excludeKeys: [], sinceMs: now - (copies + 1) * HOUR, untilMs: Date.now() });
    explainMs = Math.min(explainMs, performance.now() - t0);
    total = e.total;
  }
  if (explainMs >= minMs || copies >= MAX_COPIES) break;
  // Explain time grows about linearly with the spans; a fifth more for the slack.
  want = Math.min(MAX_COPIES, Math.ceil(copies * (minMs / explainMs) * 1.2));
}
await client.close();
console.log(JSON.stringify({ copies, explainMs, total }));
