// explain: `coral query explain` (ExplainSpans) and `--by` (GroupByAttribute) on 1M requests in the
// window, ten attributes each (three of them high-cardinality: a request id, 10,000 users, 1,000
// peers), against the plain SQL over `span_attributes` that computes the same ranking and groups —
// all through the same colony process, timed round by round so noise hits both alike.
//
// Spans are bulk-loaded with INSERT … SELECT (attributes as JSON, as `spans.attributes` holds them),
// and `span_attributes` is filled by the colony's own start-up migration (version 4), which is timed
// too. A parity check writes a sample through the real Writer and requires the same rows as the
// migration gives for it, so what is measured is what ingestion would have stored.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DuckDBInstance } from "@duckdb/node-api";
import { QueryService } from "../gen/coral/colony/v1/query_pb.js";
import type { SpanRecord } from "../colony/ingest/records.js";
import { Writer } from "../colony/ingest/writer.js";
import { Store } from "../colony/store/store.js";
import { spawnColony } from "../test/helpers/colony.js";
import { median, round, timeMs, type BenchContext, type BenchResult, type Benchmark } from "./lib.js";

const SERVICE = "checkout";
const MINUTE_MS = 60_000;
/** Spans sit 10..50 minutes before load time, so the 1 h window of every query holds all of them. */
const SPREAD_MS = 40 * MINUTE_MS;
const OFFSET_MS = 10 * MINUTE_MS;
const WINDOW_MS = 3_600_000;
const SLOW_NS = 1_000_000_000;
const GROUP_KEY = "http.route";
/** The staged cause: one pod makes a third of its requests slow. */
const CULPRIT = { key: "k8s.pod.name", value: "checkout-7c9f-7" };

const u = (salt: number) => `((CAST(hash(i * 16 + ${salt}) >> 11 AS DOUBLE) + 0.5) / 9007199254740992.0)`;
const pick = (salt: number, n: number) => `CAST(floor(${u(salt)} * ${n}) AS INTEGER)`;

/** `n` requests of SERVICE with ten attributes; durations lognormal around 40 ms, the culprit pod's a third slower than 1 s. */
function spansSql(n: number, startMs: number): string {
  const z = `sqrt(-2 * ln(${u(0)})) * cos(2 * pi() * ${u(1)})`;
  const pod = `'checkout-7c9f-' || ${pick(2, 12)}`;
  return `
    INSERT INTO spans
    SELECT printf('%032x', i), printf('%016x', i), NULL, '${SERVICE}', 'POST /checkout', 'SERVER',
           to_timestamp((${startMs} + (i * ${SPREAD_MS}) // ${n}) / 1000.0),
           CAST(round(exp(ln(40e6) + 0.6 * ${z})) AS BIGINT) + CASE WHEN pod = '${CULPRIT.value}' AND ${u(3)} < 0.33 THEN 1500000000 ELSE 0 END,
           CASE WHEN failed THEN 'ERROR' ELSE 'OK' END, CASE WHEN failed THEN 503 ELSE 200 END,
           json_object('http.route', '/r/' || ${pick(4, 8)}, 'http.method', CASE WHEN i % 3 = 0 THEN 'GET' ELSE 'POST' END,
                       'http.status_code', CASE WHEN failed THEN 503 ELSE 200 END, 'k8s.pod.name', pod,
                       'service.version', '2.' || ${pick(5, 3)} || '.0', 'cloud.region', 'region-' || ${pick(6, 5)},
                       'app.customer.tier', 'tier-' || ${pick(7, 4)}, 'request.id', 'req-' || i,
                       'user.id', 'user-' || ${pick(8, 10_000)}, 'net.peer.ip', '10.0.' || ${pick(9, 4)} || '.' || ${pick(10, 250)})::VARCHAR
    FROM (SELECT i, ${pod} AS pod, ${u(11)} < 0.01 AS failed FROM range(${n}) t(i))`;
}

async function onConnection<T>(path: string, f: (run: (sql: string) => Promise<unknown[][]>) => Promise<T>): Promise<T> {
  const instance = await DuckDBInstance.create(path);
  try {
    const conn = await instance.connect();
    try {
      return await f(async (sql) => (await conn.runAndReadAll(sql)).getRowsJS());
    } finally {
      conn.closeSync();
    }
  } finally {
    instance.closeSync();
  }
}

/**
 * A colony file holding `n` bulk-loaded spans whose `span_attributes` rows the start-up migration
 * made: the spans are written into a current file, which is then marked as version 2 and opened again.
 */
async function bulkLoad(path: string, n: number, startMs: number): Promise<{ migrateMs: number }> {
  await (await Store.open(path)).close();
  await onConnection(path, async (run) => {
    await run(spansSql(n, startMs));
    await run(`INSERT INTO services VALUES ('${SERVICE}', 'shop', 'us-east-1', 12, to_timestamp(${startMs} / 1000.0), to_timestamp(${startMs + SPREAD_MS} / 1000.0))`);
    await run("DELETE FROM schema_migrations; INSERT INTO schema_migrations VALUES (2, now())");
    await run("CHECKPOINT");
  });
  const { ms } = await timeMs(async () => (await Store.open(path)).close());
  return { migrateMs: ms };
}

const ROWS_DIGEST = `SELECT count(*) || ' rows, md5 ' || md5(coalesce(string_agg(concat_ws(' ', service_name, epoch_us(start_time), trace_id, span_id, kind, duration_ns, failed, key, value, resource), chr(10)
                      ORDER BY trace_id, span_id, key), '')) FROM span_attributes`;

/** The migration's rows for `n` spans, and the Writer's for the same spans read back from `spans`. */
async function writerParity(ctx: BenchContext, n: number): Promise<{ spans: number; identical: boolean }> {
  const bulk = join(ctx.tmp, "explain-parity-bulk.duckdb");
  const viaWriter = join(ctx.tmp, "explain-parity-writer.duckdb");
  try {
    await bulkLoad(bulk, n, Date.now() - OFFSET_MS - SPREAD_MS);
    const { spans, migrated } = await onConnection(bulk, async (run) => {
      const rows = await run(`SELECT trace_id, span_id, service_name, name, epoch_us(start_time), duration_ns, status_code, http_status_code, attributes FROM spans`);
      return {
        migrated: String((await run(ROWS_DIGEST))[0]![0]),
        spans: rows.map(([traceId, spanId, serviceName, name, us, d, status, http, attributes]): SpanRecord => ({
          traceId: String(traceId),
          spanId: String(spanId),
          parentSpanId: null,
          serviceName: String(serviceName),
          name: String(name),
          kind: "SERVER",
          startTimeMs: Number(us) / 1000,
          durationNs: Number(d),
          statusCode: status as SpanRecord["statusCode"],
          httpStatusCode: Number(http),
          attributes: String(attributes),
        })),
      };
    });
    const store = await Store.open(viaWriter);
    try {
      const writer = new Writer(store);
      for (let off = 0; off < spans.length; off += 5000) await writer.writeSpans(spans.slice(off, off + 5000));
      await writer.close();
    } finally {
      await store.close();
    }
    const written = await onConnection(viaWriter, async (run) => String((await run(ROWS_DIGEST))[0]![0]));
    return { spans: n, identical: !migrated.startsWith("0 rows") && migrated === written };
  } finally {
    for (const f of [bulk, viaWriter]) for (const p of [f, `${f}.wal`]) rmSync(p, { force: true });
  }
}

/**
 * CPU ms a process has used so far (all its threads: the colony's worker runs DuckDB's), from
 * /proc/PID/stat. Less sensitive than wall time to other work on a shared machine.
 */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime (fields 14 and 15 of stat) in USER_HZ ticks, 100 per second on Linux.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The window both ways ask about: [now − 1 h, now), in SQL. */
function windowSql(table: "spans" | "span_attributes"): string {
  const now = Date.now();
  return `${table}.service_name = '${SERVICE}' AND ${table}.kind = 'SERVER' AND ${table}.start_time >= to_timestamp(${now - WINDOW_MS} / 1000.0) AND ${table}.start_time < to_timestamp(${now} / 1000.0)`;
}

/** ExplainSpans' ranking as one plain statement: every (key, value), its count among the slow requests and the rest, best score first. */
const rankingSql = () => `
  WITH t AS (SELECT count(*) FILTER (WHERE duration_ns >= ${SLOW_NS}) AS n_sel, count(*) FILTER (WHERE duration_ns < ${SLOW_NS}) AS n_base FROM spans WHERE ${windowSql("spans")})
  SELECT key, value, sel_n, base_n, sel_n / t.n_sel - base_n / t.n_base AS score
  FROM (SELECT key, value, count(*) FILTER (WHERE duration_ns >= ${SLOW_NS}) AS sel_n, count(*) FILTER (WHERE duration_ns < ${SLOW_NS}) AS base_n
        FROM span_attributes WHERE ${windowSql("span_attributes")} GROUP BY key, value), t
  ORDER BY score DESC, sel_n DESC, key, value LIMIT 10`;

/** GroupByAttribute's groups as one plain statement, percentiles exact. */
const groupsSql = () => `
  SELECT value, count(*) AS n, count(*) FILTER (WHERE failed) AS errors, quantile_cont(duration_ns, [0.5, 0.95, 0.99]) AS p
  FROM span_attributes WHERE ${windowSql("span_attributes")} AND key = '${GROUP_KEY}'
  GROUP BY value ORDER BY n DESC, value LIMIT 10`;

export const explain: Benchmark = {
  name: "explain",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const n = ctx.quick ? 2_000 : 1_000_000;
    const rounds = ctx.quick ? 1 : 5;
    const parity = await writerParity(ctx, ctx.quick ? 200 : 20_000);
    ctx.log(`  explain: migration vs Writer on ${parity.spans} spans: span_attributes ${parity.identical ? "identical" : "DIFFER"}`);
    if (!parity.identical) throw new Error("the migration's span_attributes rows differ from the Writer's; the benchmark would not measure real data");

    const dbPath = join(ctx.tmp, "explain.duckdb");
    const load = await timeMs(() => bulkLoad(dbPath, n, Date.now() - OFFSET_MS - SPREAD_MS));
    ctx.log(`  explain: ${n.toLocaleString("en-US")} spans bulk-loaded in ${(load.ms / 1000).toFixed(1)} s, span_attributes migrated in ${(load.value.migrateMs / 1000).toFixed(1)} s`);
    const colony = await spawnColony({ dbPath });
    try {
      const client: Client<typeof QueryService> = createClient(
        QueryService,
        createConnectTransport({ baseUrl: colony.baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
      );
      const apiExplain = () =>
        client.explainSpans(create(QueryService.method.explainSpans.input, { service: SERVICE, slowThresholdNs: BigInt(SLOW_NS), timeRangeMs: BigInt(WINDOW_MS), limit: 10 }));
      const apiGroups = () => client.groupByAttribute(create(QueryService.method.groupByAttribute.input, { service: SERVICE, by: GROUP_KEY, timeRangeMs: BigInt(WINDOW_MS), limit: 10 }));
      const sqlRows = async (text: string) => (await client.executeQuery({ sql: text })).rows.map((r) => r.values.map((v) => v.kind.value));

      // The same answers both ways (untimed): the staged pod first, with the same counts.
      const e = await apiExplain();
      const ranking = await sqlRows(rankingSql());
      if (Number(e.requestCount) !== n) throw new Error(`ExplainSpans counted ${e.requestCount} requests in the window, expected ${n}`);
      const top = e.causes[0];
      const sqlTop = ranking[0]!;
      const agree = top?.key === CULPRIT.key && top.value === CULPRIT.value && sqlTop[0] === CULPRIT.key && sqlTop[1] === CULPRIT.value && Number(top.selected) === Number(sqlTop[2]) && Number(top.baseline) === Number(sqlTop[3]);
      if (!agree) throw new Error(`ExplainSpans and the plain SQL disagree on the top cause: ${top?.key}=${top?.value} (${top?.selected}/${top?.baseline}) vs ${sqlTop.join(" ")}`);
      const g = await apiGroups();
      const groups = await sqlRows(groupsSql());
      const sameGroups = g.groups.length === groups.length && g.groups.every((x, i) => x.value === groups[i]![0] && Number(x.requestCount) === Number(groups[i]![1]));
      if (!sameGroups) throw new Error("GroupByAttribute and the plain SQL disagree on the groups");

      const ms = { apiExplain: [] as number[], sqlExplain: [] as number[], apiGroups: [] as number[], sqlGroups: [] as number[] };
      const cpu = { apiExplain: [] as number[], sqlExplain: [] as number[] };
      const worker = colony.workerPid()!;
      const withCpu = async (f: () => Promise<unknown>, into: number[]) => {
        const before = cpuMs(worker);
        const { ms: wall } = await timeMs(f);
        into.push(cpuMs(worker) - before);
        return wall;
      };
      for (let r = 0; r < rounds; r++) {
        ms.apiExplain.push(await withCpu(apiExplain, cpu.apiExplain));
        ms.sqlExplain.push(await withCpu(() => sqlRows(rankingSql()), cpu.sqlExplain));
        ms.apiGroups.push((await timeMs(apiGroups)).ms);
        ms.sqlGroups.push((await timeMs(() => sqlRows(groupsSql()))).ms);
      }
      const [apiE, sqlE, apiG, sqlG] = [ms.apiExplain, ms.sqlExplain, ms.apiGroups, ms.sqlGroups].map((x) => round(median(x), 1)) as [number, number, number, number];
      const [apiCpu, sqlCpu] = [median(cpu.apiExplain), median(cpu.sqlExplain)];
      const selected = Number(e.selectedCount);
      ctx.log(`  explain: api ${apiE} ms (worker CPU ${apiCpu} ms) vs plain SQL ${sqlE} ms (${sqlCpu} ms); group-by api ${apiG} ms vs plain SQL ${sqlG} ms`);
      return {
        fields: {
          spans: n,
          attribute_rows: n * 10,
          selected,
          api_ms: apiE,
          sql_ms: sqlE,
          ratio_sql_to_api: round(sqlE / apiE, 2),
          api_cpu_ms: apiCpu,
          sql_cpu_ms: sqlCpu,
          group_by_api_ms: apiG,
          group_by_sql_ms: sqlG,
          group_by_ratio_sql_to_api: round(sqlG / apiG, 2),
          load_s: round(load.ms / 1000, 1),
          migrate_s: round(load.value.migrateMs / 1000, 1),
          writer_parity: parity,
        },
        goals: [
          { field: "explain.spans", value: n, goal: "≥ 1,000,000 in the window", met: n >= 1_000_000 },
          { field: "explain.api_ms", value: apiE, goal: "< 1000 ms", met: apiE < 1000 },
          { field: "explain.group_by_api_ms", value: apiG, goal: "< 1000 ms", met: apiG < 1000 },
        ],
        notes: [
          `${n.toLocaleString("en-US")} requests × 10 attributes, ${selected.toLocaleString("en-US")} selected (--slow 1s)`,
          `explain: api ${apiE} ms · plain SQL over span_attributes ${sqlE} ms (${round(sqlE / apiE, 1)}×); the colony worker's CPU per call: ${apiCpu} vs ${sqlCpu} ms`,
          `--by ${GROUP_KEY}: api ${apiG} ms · plain SQL ${sqlG} ms (${round(sqlG / apiG, 1)}×)`,
          `migration 4 (span_attributes from spans.attributes): ${round(load.value.migrateMs / 1000, 1)} s`,
        ],
      };
    } finally {
      await colony.stop();
      rmSync(dbPath, { force: true });
      rmSync(`${dbPath}.wal`, { force: true });
    }
  },
};
