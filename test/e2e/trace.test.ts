// `coral query trace <id>` (GetTrace) against a real demo colony: the spans as stored (checked
// against SQL over the raw `spans` table), the waterfall on an 80-column pty, the SDK's
// coral.traces.get, and what partial or hostile stored traces do: missing parents, parent links that
// loop, 100,000 spans, megabytes of attributes.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeTraces } from "../../colony/demo/load.js";
import type { SpanRecord } from "../../colony/ingest/records.js";
import { QueryService } from "../../gen/coral/colony/v1/query_pb.js";
import { runCoral, spawnColony, transports, type SpawnedColony } from "../helpers/colony.js";
import { epochMicros } from "../helpers/engine-sql.js";
import { failureOf } from "../helpers/rpc.js";

let colony: SpawnedColony;
beforeAll(async () => {
  colony = await spawnColony({ demo: true });
});
afterAll(async () => {
  await colony?.stop();
});

const bin = new URL("../../bin/coral.cjs", import.meta.url).pathname;
const env = () => ({ CORAL_COLONY_ADDR: colony.addr });

async function json(...args: string[]): Promise<any> {
  const r = await runCoral([...args, "-o", "json"], { env: env() });
  expect(r.stderr.replace(/^\(.*\)\n$/, "")).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

const sqlRows = async (text: string): Promise<any[]> => (await json("query", "sql", text)).rows;

/** `coral ARGS…` on a pty of `cols` columns, as a user's terminal; stdout and stderr together. */
function inPty(args: string[], cols = 80): string {
  const cmd = [process.execPath, bin, ...args, "--colony", colony.addr].map((a) => `'${a}'`).join(" ");
  return execFileSync("script", ["-qec", `stty cols ${cols}; ${cmd}`, "/dev/null"], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
    maxBuffer: 256 * 2 ** 20,
  }).replace(/\r/g, "");
}

/** The span lines of a waterfall: between the column header and the blank line before the legend. */
function spanLines(out: string): string[] {
  const lines = out.split("\n");
  const header = lines.findIndex((l) => /^ SPAN\s+DURATION 0/.test(l));
  return lines.slice(header + 1, lines.indexOf("", header));
}

const hex = (bytes: number) => randomBytes(bytes).toString("hex");

/** Stores spans through the colony's OTLP/HTTP receiver, as any exporter would. */
async function ingest(spans: SpanRecord[], service = "hostile"): Promise<void> {
  const body = encodeTraces([{ resource: { serviceName: service, namespace: "e2e", region: "r1", instanceId: `${service}-0` }, spans }]);
  const res = await fetch(`${colony.otlpUrl}/v1/traces`, { method: "POST", headers: { "content-type": "application/x-protobuf" }, body: new Uint8Array(body) });
  expect(res.status).toBe(200);
}

function record(traceId: string, spanId: string, parentSpanId: string | null, name: string, startTimeMs: number, durationNs: number, attributes: SpanRecord["attributes"] = {}): SpanRecord {
  return { traceId, spanId, parentSpanId, serviceName: "hostile", name, kind: "INTERNAL", startTimeMs, durationNs, statusCode: "UNSET", httpStatusCode: null, attributes };
}

describe("coral query trace on demo data", () => {
  let slowId: string;
  let errorId: string;
  beforeAll(async () => {
    slowId = (await json("query", "traces", "payments", "--slow", "--limit", "1")).traces[0].trace_id;
    errorId = (await json("query", "traces", "payments", "--errors", "--limit", "1")).traces[0].trace_id;
  });

  it("json: every span of the trace as stored, with offsets from the trace's start", async () => {
    for (const id of [slowId, errorId]) {
      const t = await json("query", "trace", id);
      const rows = await sqlRows(
        `SELECT span_id, coalesce(parent_span_id, '') AS parent, service_name, name, kind, ${epochMicros("start_time")} AS start_us, duration_ns,
                status_code, http_status_code, attributes
         FROM spans WHERE trace_id = '${id}' ORDER BY start_time, span_id`,
      );
      expect(rows.length).toBeGreaterThan(1);
      const resources = await sqlRows(`SELECT span_id, key, value FROM span_attributes WHERE trace_id = '${id}' AND resource`);
      const resourceOf = (spanId: string) => Object.fromEntries(resources.filter((r) => r.span_id === spanId).map((r) => [r.key, r.value]));
      expect(t.trace_id).toBe(id);
      expect(t.total_count).toBe(rows.length);
      expect(t.truncated).toBe(false);
      const start = Math.min(...rows.map((r) => r.start_us));
      // JSON times are whole milliseconds; offsets keep the microseconds.
      expect(Math.abs(new Date(t.start_time).getTime() - start / 1000)).toBeLessThan(1);
      expect(t.duration_ns).toBe(Math.max(...rows.map((r) => (r.start_us - start) * 1000 + r.duration_ns)));
      for (const [i, s] of t.spans.entries()) expect(Math.abs(new Date(s.start_time).getTime() - rows[i].start_us / 1000)).toBeLessThan(1);
      expect(t.spans.map(({ start_time: _, ...s }: any) => s)).toEqual(
        rows.map((r) => ({
          span_id: r.span_id,
          parent_span_id: r.parent,
          service: r.service_name,
          name: r.name,
          kind: r.kind,
          start_offset_ns: (r.start_us - start) * 1000,
          duration_ns: r.duration_ns,
          status: r.status_code,
          http_status_code: r.http_status_code,
          error: r.status_code === "ERROR" || (r.http_status_code ?? 0) >= 500,
          attributes: JSON.parse(r.attributes),
          resource_attributes: resourceOf(r.span_id),
        })),
      );
    }
  });

  it("table on an 80-column terminal: the tree, bars scaled to the trace, the critical path, errors", async () => {
    const t = await json("query", "trace", errorId);
    const out = inPty(["query", "trace", errorId]);
    const lines = out.trimEnd().split("\n");
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
    expect(lines[0]).toMatch(new RegExp(`^${errorId}  ${t.spans.length} spans · \\d services · [\\d.]+(ms|s) · \\d+ failed$`));
    const spans = spanLines(out);
    expect(spans).toHaveLength(t.spans.length);
    // The root (no parent) comes first, names its service, and its bar spans the whole time line.
    const root = t.spans.find((s: any) => s.parent_span_id === "");
    expect(spans[0]).toContain(`${root.service} ${root.name}`);
    expect(spans[0]).toMatch(/ █{32}$/);
    // Children are indented below their parents.
    expect(spans.slice(1).every((l) => /^[! ] {2,}\S/.test(l))).toBe(true);
    expect(spans.filter((l) => l.startsWith("!"))).toHaveLength(t.spans.filter((s: any) => s.error).length);
    expect(out).toContain("█ critical path  ░ other spans  ! failed");
  });

  it("wide: span ids and whole names; csv: one row per span", async () => {
    const t = await json("query", "trace", slowId);
    const wide = await runCoral(["query", "trace", slowId, "-o", "wide"], { env: env() });
    expect(wide.code).toBe(0);
    for (const s of t.spans) expect(wide.stdout).toContain(s.span_id);
    const csv = (await runCoral(["query", "trace", slowId, "-o", "csv"], { env: env() })).stdout.trimEnd().split("\r\n");
    expect(csv[0]).toMatch(/^span_id,parent_span_id,service,name,kind,start_time,start_offset_ns,duration_ns,status,http_status_code,error/);
    expect(csv).toHaveLength(t.spans.length + 1);
  });

  it("an id in capitals is the same trace", async () => {
    expect((await json("query", "trace", slowId.toUpperCase())).trace_id).toBe(slowId);
  });

  it("an unknown id is not_found (exit 1), saying where trace ids come from", async () => {
    const r = await runCoral(["query", "trace", "0".repeat(32)], { env: env() });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^coral: trace 0{32} not found — .*coral query traces SERVICE --slow \(not_found\)\n$/);
  });

  it("a malformed id is a usage error naming trace_id (exit 2), never a stack trace", async () => {
    for (const [id, why] of [
      ["abc", "is 3 characters long"],
      [`${slowId}0`, "is 33 characters long"],
      [`${slowId.slice(0, 31)}g`, "has a character that is not a hex digit"],
      [` ${slowId.slice(1)}`, "has a character that is not a hex digit"],
      ["x".repeat(100_000), "is 100000 characters long"],
    ]) {
      const r = await runCoral(["query", "trace", id!], { env: env() });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("coral: trace_id must be 32 hex digits");
      expect(r.stderr).toContain(why);
      expect(r.stderr.length).toBeLessThan(300);
    }
    const limit = await runCoral(["query", "trace", slowId, "--limit", "10001"], { env: env() });
    expect(limit.code).toBe(2);
    expect(limit.stderr).toBe("coral: --limit: must be in 1..10000; got 10001\n");
  });

  it("coral.traces.get in a script: the same spans; an unknown id is a CoralError not_found", async () => {
    const script = `import * as coral from "@coral/sdk";
const t = await coral.traces.get(${JSON.stringify(slowId)});
let missing = "";
try { await coral.traces.get("${"f".repeat(32)}"); } catch (e) { missing = e.code; }
console.log(JSON.stringify({ n: t.spans.length, total: t.total_count, root: t.spans[0].parent_span_id, ms: t.duration_ns / 1e6, attrs: t.spans[0].attributes, missing }));`;
    const r = await runCoral(["run", "--colony", colony.addr, "-"], { input: script });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const got = JSON.parse(r.stdout);
    const t = await json("query", "trace", slowId);
    expect(got).toEqual({ n: t.spans.length, total: t.total_count, root: "", ms: t.duration_ns / 1e6, attrs: t.spans[0].attributes, missing: "not_found" });
  });
});

describe("partial and hostile stored traces", () => {
  it("missing parents, parent links in a loop, a span its own parent, a repeated span id: each drawn once", async () => {
    const traceId = hex(16);
    const [root, child, orphan, a, b, self] = Array.from({ length: 6 }, () => hex(8));
    const t0 = Date.now() - 60_000;
    await ingest([
      record(traceId, root!, null, "root", t0, 50e6),
      record(traceId, child!, root!, "child", t0 + 5, 20e6),
      record(traceId, orphan!, hex(8), "orphan of a lost parent", t0 + 10, 10e6),
      record(traceId, a!, b!, "loop a", t0 + 12, 8e6),
      record(traceId, b!, a!, "loop b", t0 + 13, 6e6),
      record(traceId, self!, self!, "own parent", t0 + 14, 4e6),
      record(traceId, child!, root!, "child again", t0 + 15, 2e6),
    ]);
    const t = await json("query", "trace", traceId);
    expect(t.spans).toHaveLength(7);
    const out = inPty(["query", "trace", traceId]);
    const lines = spanLines(out);
    expect(lines).toHaveLength(7);
    for (const name of ["root", "child", "orphan of a lost parent", "loop a", "loop b", "own parent", "child again"]) {
      expect(lines.filter((l) => new RegExp(`(hostile |\\s)${name}\\s{2,}`).test(l))).toHaveLength(1);
    }
    expect(lines.find((l) => l.includes("orphan"))).toMatch(/^ … hostile orphan of a lost parent/);
    expect(out).toContain("… parent missing");
  });

  it("a trace of 100,000 spans: the longest `limit` of them, said to be cut, drawn in 80 columns", async () => {
    const traceId = hex(16);
    const ids = Array.from({ length: 100_000 }, () => hex(8));
    const t0 = Date.now() - 120_000;
    // One chain, each span inside its parent and shorter: the longest are the top of the tree.
    const spans = ids.map((id, i) => record(traceId, id, i === 0 ? null : ids[i - 1]!, `step ${i}`, t0 + i * 0.001, 200e6 - i * 1000));
    for (let i = 0; i < spans.length; i += 20_000) await ingest(spans.slice(i, i + 20_000));

    const r = await runCoral(["query", "trace", traceId, "-o", "json"], { env: env() });
    expect(r.code).toBe(0);
    const t = JSON.parse(r.stdout);
    expect(t.total_count).toBe(100_000);
    expect(t.truncated).toBe(true);
    expect(t.spans.map((s: any) => s.span_id)).toEqual(ids.slice(0, 1000));

    const out = inPty(["query", "trace", traceId, "--limit", "10000"]);
    const lines = spanLines(out);
    expect(lines).toHaveLength(10_000);
    expect(out.split("\n").every((l) => l.length <= 80)).toBe(true);
    expect(out).toContain("(10000 of 100000 shown; truncated at the row limit)");
  });

  it("resource attributes sent over OTLP: per span, beside its own attributes, which win on the same key", async () => {
    const traceId = hex(16);
    const [root, child] = [hex(8), hex(8)];
    const t0 = Date.now() - 30_000;
    const group = (pod: string, spans: SpanRecord[]) => ({
      resource: { serviceName: "hostile", namespace: "e2e", region: "r1", instanceId: pod, attributes: ["k8s.pod.name", pod, "service.version", "1.4.2", "shared.key", "from resource"] },
      spans,
    });
    const body = encodeTraces([
      group("pod-a", [record(traceId, root, null, "root", t0, 50e6, { "shared.key": "from span" })]),
      group("pod-b", [record(traceId, child, root, "child", t0 + 1, 20e6)]),
    ]);
    const res = await fetch(`${colony.otlpUrl}/v1/traces`, { method: "POST", headers: { "content-type": "application/x-protobuf" }, body: new Uint8Array(body) });
    expect(res.status).toBe(200);
    const t = await json("query", "trace", traceId);
    const common = { "service.namespace": "e2e", "cloud.region": "r1", "service.version": "1.4.2" };
    expect(t.spans.map((s: any) => [s.name, s.attributes, s.resource_attributes])).toEqual([
      ["root", { "shared.key": "from span" }, { ...common, "service.instance.id": "pod-a", "k8s.pod.name": "pod-a" }],
      ["child", {}, { ...common, "service.instance.id": "pod-b", "k8s.pod.name": "pod-b", "shared.key": "from resource" }],
    ]);
  });

  it("attributes beyond 16 MiB in all: the longest spans that fit, said to be cut", async () => {
    const traceId = hex(16);
    const t0 = Date.now() - 90_000;
    const big = "x".repeat(2 ** 20);
    const spans = Array.from({ length: 24 }, (_, i) => record(traceId, hex(8), null, `big ${i}`, t0 + i, (100 - i) * 1e6, { blob: big }));
    for (let i = 0; i < spans.length; i += 8) await ingest(spans.slice(i, i + 8));
    const client = createClient(QueryService, transports["Connect over HTTP/1.1"]!(colony.baseUrl));
    const t = await client.getTrace({ traceId });
    expect(t.totalCount).toBe(24n);
    expect(t.truncated).toBe(true);
    // Each span holds a little over 1 MiB of names and attributes: 15 fit in 16 MiB.
    expect(t.spans.map((s) => s.name)).toEqual(Array.from({ length: 15 }, (_, i) => `big ${i}`));
    expect(await failureOf(client.getTrace({ traceId: "z".repeat(32) }))).toMatchObject({ code: Code.InvalidArgument });
  });
});
