// `coral colony start --store chdb:DIR --otel-schema` as a user runs it: a colony over the traces
// table the OpenTelemetry Collector's ClickHouse exporter writes, read-only. The same spans are
// ingested over OTLP into a normal colony on embedded ClickHouse; every `coral query -o json`
// answer of the two must be byte-identical (both see one fixed "now"). The table is made by a
// fixture process (chdb binds one data directory per process).
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { runCoral, spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { otlpRequest, testSpans } from "../helpers/otel-spans.js";

const NOW = Date.UTC(2026, 5, 1, 12, 0, 30, 250);
const clock = {
  NODE_OPTIONS: `--require ${fileURLToPath(new URL("../helpers/fixed-clock.cjs", import.meta.url))}`,
  CORAL_TEST_FIXED_NOW_MS: String(NOW),
};
const root = fileURLToPath(new URL("../..", import.meta.url));

let dir: string;
let coral: SpawnedColony;
let otel: SpawnedColony;

/** Runs the fixture: makes (or reads, `peek`) the exporter's table in `store`. */
async function fixture(store: string, mode: string): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "test/e2e/otel-schema-fixture.ts", store, mode, String(NOW)], { cwd: root, maxBuffer: 1 << 20 });
  return stdout;
}

const onOtel = (store: string, extra: string[] = []) => spawnColony({ otlp: "off", extraArgs: ["--store", `chdb:${store}`, "--otel-schema", ...extra], env: clock });

/** One line for the user: no stack trace, no internal error. */
function expectOneLine(stderr: string): void {
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr).not.toMatch(/internal error|Error: /);
  expect(stderr.trim().split("\n")).toHaveLength(1);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-otel-"));
  const [, ingested] = await Promise.all([
    fixture(join(dir, "otel"), "spans"),
    spawnColony({ otlp: "127.0.0.1:0", extraArgs: ["--store", `chdb:${join(dir, "coral")}`], env: clock }),
  ]);
  coral = ingested;
  const r = await fetch(`${coral.otlpUrl}/v1/traces`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(otlpRequest(testSpans(NOW))) });
  expect(r.status, await r.text()).toBe(200);
  otel = await onOtel(join(dir, "otel"));
}, 300_000);

afterAll(async () => {
  await Promise.all([coral?.stop(), otel?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

async function both(args: string[], a = coral, b = otel) {
  const [c, o] = await Promise.all([runCoral([...args, "--colony", a.addr], { env: clock }), runCoral([...args, "--colony", b.addr], { env: clock })]);
  return { coral: c, otel: o };
}

const COMMANDS: string[][] = [
  ["query", "services"],
  ["query", "services", "--namespace", "shop"],
  ["query", "services", "--region", "us-east-1"],
  ["query", "metrics", "payments", "--percentile", "99", "--window", "3h"],
  ["query", "metrics", "payments", "--percentile", "50", "--window", "5m"],
  ["query", "metrics", "frontend", "--percentile", "99.9", "--window", "1h"],
  ["query", "metrics", "payments", "--metric", "no.such.metric"],
  ["query", "metrics", "nope", "--percentile", "99"],
  ["query", "metrics", "payments", "--error-rate", "--window", "1h"],
  ["query", "metrics", "frontend", "--error-rate", "--window", "3h"],
  ["query", "metrics", "payments", "--percentile", "99", "--exemplars", "5", "--window", "3h"],
  ["query", "metrics", "payments", "--by", "http.route", "--window", "3h"],
  ["query", "metrics", "payments", "--by", "k8s.pod.name", "--window", "3h"],
  ["query", "metrics", "payments", "--by", "payment.method", "--window", "1h", "--limit", "1"],
  ["query", "metrics", "payments", "--by", "no.such.attribute"],
  ["query", "traces", "payments", "--slow", "--threshold", "500ms", "--limit", "10", "--window", "3h"],
  ["query", "traces", "frontend", "--slow", "--threshold", "1s", "--limit", "3", "--window", "3h"],
  ["query", "traces", "payments", "--errors", "--window", "3h"],
  ["query", "traces", "orders", "--errors", "--window", "3h"],
  ["query", "explain", "payments", "--slow", "500ms", "--window", "3h"],
  ["query", "explain", "frontend", "--errors", "--window", "3h"],
  ["query", "system", "payments"],
];

describe("coral colony start --otel-schema", () => {
  it.each(COMMANDS.map((c) => [c.join(" "), c]))("answers %s as a colony that ingested the same spans", async (_, args) => {
    const r = await both([...args, "--output", "json"]);
    expect(r.otel.code, `coral: ${r.coral.stderr} otel: ${r.otel.stderr}`).toBe(r.coral.code);
    expect(r.otel.stderr).toBe(r.coral.stderr);
    expect(r.otel.stdout).toBe(r.coral.stdout);
  });

  it("answers query trace alike, for the traces the traces commands name", async () => {
    const slow = JSON.parse((await runCoral(["query", "traces", "payments", "--slow", "--threshold", "500ms", "--limit", "3", "--window", "3h", "-o", "json", "--colony", coral.addr], { env: clock })).stdout);
    const errors = JSON.parse((await runCoral(["query", "traces", "frontend", "--errors", "--window", "3h", "--limit", "3", "-o", "json", "--colony", coral.addr], { env: clock })).stdout);
    const ids: string[] = [...slow.traces, ...errors.traces].map((t: { trace_id?: string; traceId?: string }) => t.trace_id ?? t.traceId ?? "");
    expect(ids.length).toBeGreaterThan(3);
    for (const id of [...ids, "0".repeat(32)]) {
      const r = await both(["query", "trace", id, "--output", "json"]);
      expect(r.otel.code, id).toBe(r.coral.code);
      expect(r.otel.stdout, id).toBe(r.coral.stdout);
    }
  });

  it("answers the same with the older exporter's Int64 Duration and the newer short kind and status names", async () => {
    await fixture(join(dir, "int64"), "spans-int64");
    const older = await onOtel(join(dir, "int64"));
    try {
      for (const args of [COMMANDS[3]!, COMMANDS[8]!, COMMANDS[15]!, COMMANDS[17]!, COMMANDS[19]!]) {
        const r = await both([...args, "--output", "json"], coral, older);
        expect(r.otel.stdout, args.join(" ")).toBe(r.coral.stdout);
      }
    } finally {
      await older.stop();
    }
  }, 120_000);

  it("runs scripts (coral run) as on the colony that ingested the spans, and their SQL on the Collector's tables", async () => {
    const report = await both(["run", "examples/latency-report.ts", "--param", "window=3h"]);
    expect(report.coral.code, report.coral.stderr).toBe(0);
    expect(report.otel.stderr).toBe("");
    expect(report.otel.stdout).toBe(report.coral.stdout);
    const script = `import * as coral from "@coral/sdk";
const rows = await coral.db.query<{ kind: string; n: number }>("SELECT SpanKind AS kind, count() AS n FROM otel_traces GROUP BY kind ORDER BY kind");
console.log(JSON.stringify(rows.rows));
try {
  await coral.db.query("INSERT INTO otel_traces (TraceId) VALUES ('x')");
} catch (e) {
  console.log((e as Error).message);
}`;
    const r = await runCoral(["run", "--colony", otel.addr, "-"], { input: script, env: clock });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const [rows, refusal] = r.stdout.trim().split("\n");
    expect(JSON.parse(rows!)).toEqual([
      { kind: "SPAN_KIND_CLIENT", n: 400 },
      { kind: "SPAN_KIND_SERVER", n: 1200 },
    ]);
    expect(refusal).toMatch(/only SELECT statements are allowed/);
  });

  it("runs users' SQL on the Collector's tables, read-only", async () => {
    const sql = (q: string) => runCoral(["query", "sql", q, "--output", "json", "--colony", otel.addr], { env: clock });
    const count = await sql("SELECT ServiceName, count() AS n FROM otel_traces GROUP BY ServiceName ORDER BY ServiceName");
    expect(count.code, count.stderr).toBe(0);
    expect((JSON.parse(count.stdout) as { rows: unknown[] }).rows).toEqual([
      { ServiceName: "frontend", n: 400 },
      { ServiceName: "orders", n: 400 },
      { ServiceName: "payments", n: 800 },
    ]);
    for (const write of [
      "INSERT INTO otel_traces (TraceId) VALUES ('x')",
      "ALTER TABLE otel_traces DELETE WHERE 1",
      "DROP TABLE otel_traces",
      "CREATE TABLE coral.x (a Int8) ENGINE = Memory",
      "SELECT * FROM file('/etc/passwd')",
      "SELECT 1 SETTINGS readonly = 0",
      "SELECT count() FROM system.tables",
    ]) {
      const r = await sql(write);
      expect(r.code, write).not.toBe(0);
      expect(r.stderr, write).toMatch(/invalid_argument|permission_denied/);
      expectOneLine(r.stderr);
    }
  });

  it("refuses flags that would write or that do not apply, as usage errors (exit 2)", async () => {
    const store = ["--store", `chdb:${join(dir, "otel")}`];
    const cases: [string[], RegExp][] = [
      [["--otel-schema"], /--otel-schema applies to a ClickHouse store: add --store/],
      [[...store, "--otel-table", "t"], /--otel-table names the OpenTelemetry Collector's table: add --otel-schema/],
      [[...store, "--otel-schema", "--otlp", "127.0.0.1:0"], /--otlp does not go with --otel-schema: the colony stores nothing; send telemetry to the Collector/],
      [[...store, "--otel-schema", "--demo"], /--demo does not go with --otel-schema/],
      [[...store, "--otel-schema", "--retention", "7d"], /--retention does not go with --otel-schema: the colony deletes nothing; the exporter's ttl/],
      [["--store", "clickhouse://h/otel", "--otel-schema", "--cluster", "prod"], /--cluster does not go with --otel-schema/],
      [[...store, "--otel-schema", "--otel-table", "otel_traces; DROP TABLE otel_traces"], /--otel-table: "otel_traces; DROP TABLE otel_traces" is not a table name/],
      [[...store, "--otel-schema", "--otel-table", "a`b"], /is not a table name/],
      [[...store, "--otel-schema", "--otel-table", "x\ny"], /is not a table name/],
      [[...store, "--otel-schema", "--otel-table", "t".repeat(500)], /is not a table name/],
    ];
    for (const [args, why] of cases) {
      const r = await runCoral(["colony", "start", "--listen", "127.0.0.1:0", ...args]);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toMatch(why);
      expectOneLine(r.stderr);
    }
  });

  it("fails to start with one line (exit 1) when the table is missing or not the exporter's", async () => {
    const cases: [string, string[], RegExp][] = [
      ["no-table", [], /--otel-schema: table coral\.otel_traces does not exist \(or the user may not read it\) — point --store at the exporter's database and --otel-table at its traces_table_name/],
      ["wrong-columns", [], /--otel-schema: table coral\.otel_traces is not an OpenTelemetry Collector traces table: it has no column StatusCode/],
      ["empty", ["--otel-table", "other_traces"], /table coral\.other_traces does not exist/],
    ];
    for (const [mode, extra, why] of cases) {
      const store = join(dir, `bad-${mode}`);
      await fixture(store, mode);
      const r = await runCoral(["colony", "start", "--listen", "127.0.0.1:0", "--otlp", "off", "--store", `chdb:${store}`, "--otel-schema", ...extra]);
      expect(r.code, mode).toBe(1);
      expect(r.stderr, mode).toMatch(why);
      expectOneLine(r.stderr);
    }
  }, 120_000);

  it("answers on an empty table as on a colony with no data", async () => {
    await fixture(join(dir, "empty"), "empty");
    const [empty, nothing] = await Promise.all([onOtel(join(dir, "empty")), spawnColony({ otlp: "off", extraArgs: ["--store", `chdb:${join(dir, "nothing")}`], env: clock })]);
    try {
      for (const args of [["query", "services"], ["query", "metrics", "payments", "--percentile", "99"], ["query", "traces", "payments", "--errors"], ["query", "trace", "0".repeat(32)], ["query", "system", "payments"]]) {
        const r = await both([...args, "--output", "json"], nothing, empty);
        expect(r.otel.code, args.join(" ")).toBe(r.coral.code);
        expect(r.otel.stderr, args.join(" ")).toBe(r.coral.stderr);
        expect(r.otel.stdout, args.join(" ")).toBe(r.coral.stdout);
      }
    } finally {
      await Promise.all([empty.stop(), nothing.stop()]);
    }
  }, 120_000);

  it("reads hostile rows (NUL in names, a 10 MiB attribute, 5,000-key maps, the largest UInt64 duration) without failing, and writes nothing", async () => {
    const store = join(dir, "hostile");
    await fixture(store, "hostile");
    const before = await fixture(store, "peek");
    const c = await onOtel(store);
    try {
      const q = (...args: string[]) => runCoral([...args, "--output", "json", "--colony", c.addr], { env: clock });
      const services = await q("query", "services");
      expect(services.code, services.stderr).toBe(0);
      expect(JSON.parse(services.stdout)).toMatchObject({ services: expect.arrayContaining([expect.objectContaining({ name: "evil\u0000svc" }), expect.objectContaining({ name: "wide" })]) });
      const forever = await q("query", "metrics", "forever", "--percentile", "99");
      expect(forever.code, forever.stderr).toBe(0);
      // Capped where OTLP ingest stops accepting durations (2200-01-01 in ns), so a trace's end stays within Int64.
      expect(JSON.parse(forever.stdout).value).toBeGreaterThan(7e18);
      for (const id of ["f".repeat(32), "e".repeat(32)]) {
        const trace = await q("query", "trace", id);
        expect(trace.code, trace.stderr).toBe(0);
      }
      for (const args of [
        ["query", "traces", "huge", "--slow", "--threshold", "1ms"],
        ["query", "metrics", "wide", "--by", "r4999"],
        ["query", "explain", "wide", "--errors"],
        ["query", "sql", "SELECT SpanName, length(SpanAttributes['blob']) AS n FROM otel_traces ORDER BY n DESC LIMIT 1"],
        ["query", "sql", "SELECT SpanAttributes['blob'] FROM otel_traces WHERE ServiceName = 'huge'"],
      ]) {
        const r = await q(...args);
        // An answer, or a refusal worded for the user (a size limit): never a crash.
        if (r.code !== 0) expectOneLine(r.stderr);
        expect(r.stderr, args.join(" ")).not.toMatch(/^\s+at /m);
      }
      // A NUL cannot travel in argv: the service named with one is asked over the API.
      const api = createClient(QueryService, transports["Connect over HTTP/1.1"]!(c.baseUrl));
      const evil = await api.groupByAttribute({ service: "evil\u0000svc", by: "k\u0000ey", timeRangeMs: 3_600_000n });
      expect(evil.groups.map((g) => [g.value, Number(g.requestCount), Number(g.errorCount)])).toEqual([["v\u0000al", 1, 1]]);
    } finally {
      expect(await c.stop()).toBe(0);
    }
    expect(await fixture(store, "peek")).toBe(before);
  }, 180_000);
});
