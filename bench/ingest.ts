// ingest: OTLP/HTTP protobuf spans per second, end to end — a separate sender process
// (`coral demo load --otlp URL --rate max --duration S --batch 512 --concurrency 16`) into `coral colony start --otlp`,
// timed from the sender's start until every span it sent is queryable (count(*) over the query API).
// `lost` = spans sent − spans stored. Baseline, same run: the Writer in process on 512-span batches
// (the storage path without HTTP, protobuf or a second process), so the ratio shows what OTLP costs.
//
// Uses the OTLP receiver (spawnColony's `otlpUrl`) and `coral demo load`; where the checkout has no
// receiver or no `demo load`, the OTLP part reports itself as not run rather than failing.
//
// The same OTLP runs against a colony on ClickHouse (`--store chdb:DIR`, embedded, in the colony's
// process) sit next to DuckDB's, and every run reports the colony's CPU time per stored span
// (supervisor and worker, user + system, from /proc): what a span costs, apart from the wall clock
// the shared machine stretches.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { spawn } from "node:child_process";
import { Writer } from "../colony/ingest/writer.js";
import type { SpanRecord } from "../colony/ingest/records.js";
import { Store } from "../colony/store/store.js";
import { QueryService } from "../gen/coral/colony/v1/query_pb.js";
import { colonyPids, spawnColony } from "../test/helpers/colony.js";
import { cleanEnv, coralBin, median, root, round, runProcess, type BenchContext, type BenchResult, type Benchmark } from "./lib.js";

const BATCH = 512;
/** Requests the sender keeps in flight: enough that the colony's group commit has several to gather. */
const CONCURRENCY = 16;
/**
 * A second point of the curve: more exporters sending at once (a fleet, or a Collector with more
 * consumers). Each commit then gathers more spans, and a commit's cost is mostly fixed.
 */
const HIGH_CONCURRENCY = 64;

/** Whether this checkout's colony has an OTLP receiver yet. */
async function otlpAvailable(): Promise<boolean> {
  const help = await runProcess(process.execPath, [coralBin, "colony", "start", "--help"]);
  const load = await runProcess(process.execPath, [coralBin, "demo", "load", "--help"]);
  return /--otlp/.test(help.stdout + help.stderr) && load.code === 0;
}

/** Spans shaped like OTLP server spans, for the in-process Writer baseline. */
export function syntheticSpans(n: number, startMs: number): SpanRecord[] {
  const out: SpanRecord[] = [];
  for (let i = 0; i < n; i++) {
    const trace = Math.floor(i / 4);
    out.push({
      traceId: trace.toString(16).padStart(32, "0"),
      spanId: i.toString(16).padStart(16, "0"),
      parentSpanId: i % 4 === 0 ? null : (trace * 4).toString(16).padStart(16, "0"),
      serviceName: ["frontend", "orders", "payments", "inventory"][i % 4]!,
      name: "GET /orders/:id",
      kind: "SERVER",
      startTimeMs: startMs + i / 100,
      durationNs: 1e6 * (5 + (i % 97)),
      statusCode: i % 100 === 0 ? "ERROR" : "OK",
      httpStatusCode: i % 100 === 0 ? 503 : 200,
      attributes: { "http.method": "GET", "http.route": "/orders/:id" },
    });
  }
  return out;
}

async function writerBaseline(n: number, batch = BATCH): Promise<number> {
  const store = await Store.open(":memory:");
  try {
    const writer = new Writer(store);
    const spans = syntheticSpans(n, Date.now() - 30 * 60_000);
    await writer.writeSpans(spans.slice(0, batch)); // open the connection and staging tables
    const t0 = performance.now();
    for (let off = batch; off < spans.length; off += batch) await writer.writeSpans(spans.slice(off, off + batch));
    await writer.settle(); // the rollups too, as a reader would see them
    const s = (performance.now() - t0) / 1000;
    await writer.close();
    return (spans.length - batch) / s;
  } finally {
    await store.close();
  }
}

interface OtlpRun {
  sent: number;
  rejected: number;
  stored: number;
  seconds: number;
  spans_per_s: number;
  /** The colony's CPU time (all its processes, user + system) per stored span. */
  cpu_us_per_span: number;
}

type Engine = "duckdb" | "clickhouse";

/** CPU seconds used so far by the colony's processes (supervisor and worker), from /proc/PID/stat. */
function colonyCpuS(pid: number): number {
  let ticks = 0;
  for (const p of [pid, ...colonyPids(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // utime and stime: fields 14 and 15 of stat, 12 and 13 after the command name.
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      /* exited */
    }
  }
  // USER_HZ is 100 on Linux builds since 2.6 (sysconf(_SC_CLK_TCK)).
  return ticks / 100;
}

async function otlpRun(ctx: BenchContext, rate: number | "max", durationS: number, concurrency = CONCURRENCY, engine: Engine = "duckdb"): Promise<OtlpRun> {
  const store = join(ctx.tmp, `ingest-${engine}-${Date.now()}`);
  const colony = await spawnColony(engine === "clickhouse" ? { otlp: "127.0.0.1:0", extraArgs: ["--store", `chdb:${store}`] } : { otlp: "127.0.0.1:0", dbPath: `${store}.duckdb` });
  try {
    const otlpUrl = colony.otlpUrl;
    if (!otlpUrl) throw new Error("spawnColony returned no otlpUrl: the colony printed no `otlp listening on HOST:PORT` line");
    const client = createClient(QueryService, createConnectTransport({ baseUrl: colony.baseUrl, httpVersion: "1.1" }));
    const stored = async (): Promise<number> => {
      const r = await client.executeQuery(create(QueryService.method.executeQuery.input, { sql: "SELECT count(*) AS n FROM spans" }));
      return Number(r.rows[0]!.values[0]!.kind.value);
    };

    const cpu0 = colonyCpuS(colony.proc.pid!);
    const t0 = performance.now();
    const sender = spawn(
      process.execPath,
      [coralBin, "demo", "load", "--otlp", otlpUrl, "--rate", String(rate), "--duration", String(durationS), "--batch", String(BATCH), "--concurrency", String(concurrency)],
      { cwd: root, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    sender.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    sender.stderr.setEncoding("utf8").on("data", (d: string) => (out += d));
    const code = await new Promise<number | null>((resolve) => sender.once("close", resolve));
    if (code !== 0) throw new Error(`coral demo load exited with ${code}:\n${out}`);
    // The sender ends with `sent N spans in S s (R spans/s), X rejected`; sent = acknowledged.
    const m = /sent (\d[\d,_]*) spans in .*?(\d[\d,_]*) rejected/i.exec(out);
    const num = (x: string) => Number(x.replace(/[,_]/g, ""));
    const sent = m ? num(m[1]!) : NaN;
    const rejected = m ? num(m[2]!) : NaN;
    if (!(sent > 0)) throw new Error(`cannot tell how many spans coral demo load sent from its output:\n${out}`);

    // Queryable: poll until the count reaches what was sent, or stops moving for 5 s.
    let n = await stored();
    let last = n;
    let lastChange = performance.now();
    let doneAt = performance.now();
    while (n < sent && performance.now() - lastChange < 5000) {
      await new Promise((r) => setTimeout(r, 20));
      n = await stored();
      doneAt = performance.now();
      if (n !== last) {
        last = n;
        lastChange = doneAt;
      }
    }
    const seconds = (doneAt - t0) / 1000;
    const cpuUs = (colonyCpuS(colony.proc.pid!) - cpu0) * 1e6;
    const result = { sent, rejected, stored: n, seconds: round(seconds, 2), spans_per_s: round(n / seconds, 0), cpu_us_per_span: round(cpuUs / Math.max(n, 1), 1) };
    ctx.log(
      `  ingest (${engine}): ${concurrency} in flight: sent ${sent}, stored ${n} in ${result.seconds} s → ${result.spans_per_s.toLocaleString("en-US")} spans/s, ${result.cpu_us_per_span} µs CPU/span`,
    );
    return result;
  } finally {
    await colony.stop();
    rmSync(store, { recursive: true, force: true });
    rmSync(`${store}.duckdb`, { force: true });
    rmSync(`${store}.duckdb.wal`, { force: true });
  }
}

export const ingest: Benchmark = {
  name: "ingest",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const baselineRuns: number[] = [];
    for (let i = 0; i < (ctx.quick ? 1 : 3); i++) baselineRuns.push(await writerBaseline(ctx.quick ? 4_096 : 204_800));
    const writerRate = round(median(baselineRuns), 0);
    ctx.log(`  ingest: baseline Writer in process, ${BATCH}-span batches: ${writerRate.toLocaleString("en-US")} spans/s`);
    // Much of the Writer's cost per call is fixed (one transaction per call), so its rate depends on
    // batch size; this curve says how much a receiver gains by coalescing requests.
    const byBatch: Record<string, number> = { [BATCH]: writerRate };
    for (const b of ctx.quick ? [4096] : [4096, 32768]) byBatch[b] = round(await writerBaseline(ctx.quick ? 8_192 : 262_144, b), 0);
    ctx.log(`  ingest: Writer by batch size: ${JSON.stringify(byBatch)}`);
    const batchNote = `Writer in process by batch size (spans/s): ${Object.entries(byBatch).map(([b, r]) => `${b}: ${r.toLocaleString("en-US")}`).join(" · ")}`;

    if (!(await otlpAvailable())) {
      ctx.log("  ingest: no OTLP receiver in this checkout (`colony start --otlp` / `demo load` missing); OTLP part not run");
      return {
        fields: { writer_spans_per_s: writerRate, writer_spans_per_s_by_batch: byBatch, otlp: "not available in this checkout" },
        goals: [
          { field: "ingest.spans_per_s", value: "not run", goal: "≥ 100,000/s (needs the OTLP receiver)", met: false },
          { field: "ingest.lost", value: "not run", goal: "0", met: false },
        ],
        notes: [`Writer in process (baseline): ${writerRate.toLocaleString("en-US")} spans/s; OTLP receiver not in this checkout`, batchNote],
      };
    }

    // Full: `--rate max` — the sender goes as fast as the colony acknowledges, so the colony sets the pace.
    const rate = ctx.quick ? 4_000 : "max";
    const duration = ctx.quick ? 1 : 10;
    const runs: OtlpRun[] = [];
    for (let i = 0; i < (ctx.quick ? 1 : 3); i++) runs.push(await otlpRun(ctx, rate, duration));
    const spansPerS = round(median(runs.map((r) => r.spans_per_s)), 0);
    const high = ctx.quick ? undefined : await otlpRun(ctx, rate, duration, HIGH_CONCURRENCY);
    const lost = Math.max(...[...runs, ...(high ? [high] : [])].map((r) => r.sent - r.stored));
    const cpuUsPerSpan = round(median(runs.map((r) => r.cpu_us_per_span)), 1);
    // The same load into ClickHouse (chdb, in the colony's process), right after DuckDB's runs.
    const chRuns: OtlpRun[] = [];
    for (let i = 0; i < (ctx.quick ? 1 : 2); i++) chRuns.push(await otlpRun(ctx, ctx.quick ? 2_000 : rate, duration, CONCURRENCY, "clickhouse"));
    const clickhouse = {
      spans_per_s: round(median(chRuns.map((r) => r.spans_per_s)), 0),
      cpu_us_per_span: round(median(chRuns.map((r) => r.cpu_us_per_span)), 1),
      lost: Math.max(...chRuns.map((r) => r.sent - r.stored)),
      runs: chRuns,
    };
    return {
      fields: {
        spans_per_s: spansPerS,
        cpu_us_per_span: cpuUsPerSpan,
        lost,
        clickhouse,
        offered_rate: rate,
        duration_s: duration,
        batch: BATCH,
        concurrency: CONCURRENCY,
        runs,
        ...(high ? { spans_per_s_by_concurrency: { [CONCURRENCY]: spansPerS, [HIGH_CONCURRENCY]: high.spans_per_s }, high_concurrency_run: high } : {}),
        writer_spans_per_s: writerRate,
        writer_spans_per_s_by_batch: byBatch,
        ratio_vs_writer: round(spansPerS / writerRate, 2),
      },
      goals: [
        { field: "ingest.spans_per_s", value: spansPerS, goal: "≥ 100,000/s", met: spansPerS >= 100_000 },
        { field: "ingest.lost", value: lost, goal: "0", met: lost === 0 },
        { field: "ingest.clickhouse.lost", value: clickhouse.lost, goal: "0", met: clickhouse.lost === 0 },
      ],
      notes: [
        `side by side, OTLP end to end: DuckDB ${spansPerS.toLocaleString("en-US")} spans/s at ${cpuUsPerSpan} µs CPU/span · ClickHouse (chdb) ${clickhouse.spans_per_s.toLocaleString("en-US")} spans/s at ${clickhouse.cpu_us_per_span} µs CPU/span (median of ${chRuns.length})`,
        `OTLP/HTTP protobuf, ${BATCH}-span batches, ${CONCURRENCY} in flight, offered at ${rate === "max" ? "max" : rate.toLocaleString("en-US") + "/s"} for ${duration} s: ${spansPerS.toLocaleString("en-US")} spans/s until queryable, ${lost} lost (median of ${runs.length})`,
        ...(high ? [`with ${HIGH_CONCURRENCY} requests in flight (larger group commits): ${high.spans_per_s.toLocaleString("en-US")} spans/s, one run`] : []),
        `Writer in process (baseline): ${writerRate.toLocaleString("en-US")} spans/s → OTLP end to end is ${round(spansPerS / writerRate, 2)}× of it`,
        batchNote,
      ],
    };
  },
};
