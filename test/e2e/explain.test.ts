// `coral query explain` (ExplainSpans) against a real colony seeded with a staged incident
// (`colony start --demo --demo-static --demo-incident pod`): the staged cause first, every number
// equal to plain SQL over the raw spans (p99s within the sketch's 1%), refusals that say what to
// do, and hostile attribute values (10,000 distinct ids, 100 KB strings, JSON objects).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planIncident } from "../../colony/demo/incidents.js";
import { encodeTraces } from "../../colony/demo/load.js";
import type { SpanRecord } from "../../colony/ingest/records.js";
import { runCoral, spawnColony, type SpawnedColony } from "../helpers/colony.js";
import { exactQuantile } from "../helpers/engine-sql.js";
import { queryJson, sqlQuote, sqlRows as sqlRowsOf } from "../helpers/query.js";

let colony: SpawnedColony;
beforeAll(async () => {
  colony = await spawnColony({ demo: true, extraArgs: ["--demo-incident", "pod"] });
});
afterAll(async () => {
  await colony?.stop();
});

const env = () => ({ CORAL_COLONY_ADDR: colony.addr });

const json = (...args: string[]) => queryJson(colony, ...args);
const sqlRows = (text: string) => sqlRowsOf(colony, text);
const quote = sqlQuote;
/** The colony seeds with seed 42: the same plan the colony staged. */
const plan = planIncident("pod", { seed: 42, fromMs: 0, toMs: 0 });
const selectArgs = plan.effect === "slow" ? ["--slow", "1s"] : ["--errors"];

describe("coral query explain", () => {
  it("says what it staged, and explain ranks that pod first", async () => {
    expect(colony.stderr()).toContain(`staged incident: k8s.pod.name=${plan.value}`);
    const r = await json("query", "explain", "payments", ...selectArgs, "--window", "30m");
    expect(r.causes[0]).toMatchObject({ key: "k8s.pod.name", value: plan.value });
    expect(r.causes[0].score).toBeGreaterThan(0.3);
    expect(r.selection).toBe(plan.effect === "slow" ? "duration >= 1.00s" : "failed");
    // The status codes restate an error selection; they are never offered as its cause.
    if (plan.effect === "errors") expect(r.causes.map((c: any) => c.key)).not.toContain("http.status_code");
  });

  it("every number as plain SQL over the raw spans computes it", async () => {
    for (const args of [["--errors"], ["--slow", "500ms"]]) {
      const r = await json("query", "explain", "payments", ...args, "--window", "24h", "--limit", "6");
      const sel = args[0] === "--errors" ? "status_code = 'ERROR' OR coalesce(http_status_code, 0) >= 500" : "duration_ns >= 500000000";
      const base = `FROM spans WHERE service_name = 'payments' AND kind = 'SERVER'`;
      const [totals] = await sqlRows(`SELECT count(*) AS n, count(*) FILTER (WHERE ${sel}) AS n_sel ${base}`);
      expect([r.request_count, r.selected_count]).toEqual([totals.n, totals.n_sel]);
      expect(r.causes.length).toBeGreaterThan(0);
      // One statement for all causes (a CLI process per query was most of this test's time): each
      // cause's own SELECT, as written for one cause, joined by UNION ALL.
      const perCause = (r.causes as any[]).map((c, i) => {
        // Span or resource attribute (the staged pod is its pod's resource attribute): span_attributes has both.
        // A key list rather than a correlated EXISTS: ClickHouse refuses correlated subqueries inside aggregates' FILTER.
        const has = `(trace_id, span_id) IN (SELECT trace_id, span_id FROM span_attributes WHERE key = ${quote(c.key)} AND value = ${quote(c.value)})`;
        // Exemplars are selected requests that have the value: each of their traces holds one.
        const exemplars = c.exemplar_trace_ids.length ? `trace_id IN (${c.exemplar_trace_ids.map(quote).join(", ")})` : "false";
        return `SELECT ${i} AS i, count(*) FILTER (WHERE (${sel}) AND ${has}) AS sel_n, count(*) FILTER (WHERE NOT (${sel}) AND coalesce(${has}, false)) AS base_n,
                  count(*) FILTER (WHERE ${has}) AS with_n, count(*) FILTER (WHERE ${has} AND (status_code = 'ERROR' OR coalesce(http_status_code, 0) >= 500)) AS with_errors,
                  count(*) FILTER (WHERE status_code = 'ERROR' OR coalesce(http_status_code, 0) >= 500) AS all_errors,
                  ${exactQuantile("duration_ns", 0.99)} FILTER (WHERE ${has}) AS p99_with,
                  ${exactQuantile("duration_ns", 0.99)} FILTER (WHERE NOT coalesce(${has}, false)) AS p99_without,
                  count(DISTINCT trace_id) FILTER (WHERE ${exemplars} AND (${sel}) AND ${has}) AS exemplar_traces
           ${base}`;
      });
      const rows = await sqlRows(`${perCause.join("\nUNION ALL\n")}\nORDER BY i`);
      expect(rows.map((t) => t.i)).toEqual(r.causes.map((_: unknown, i: number) => i));
      for (const [i, c] of (r.causes as any[]).entries()) {
        const t = rows[i];
        const label = `${args.join(" ")} ${c.key}=${c.value}`;
        expect([c.selected, c.baseline], label).toEqual([t.sel_n, t.base_n]);
        expect(c.selected_share, label).toBeCloseTo(t.sel_n / totals.n_sel, 12);
        expect(c.baseline_share, label).toBeCloseTo(t.base_n / (totals.n - totals.n_sel), 12);
        expect(c.score, label).toBeCloseTo(c.selected_share - c.baseline_share, 12);
        expect(c.error_rate_with, label).toBeCloseTo(t.with_errors / t.with_n, 12);
        expect(c.error_rate_without, label).toBeCloseTo((t.all_errors - t.with_errors) / (totals.n - t.with_n), 12);
        expect(Math.abs(c.p99_with_ns - t.p99_with) / t.p99_with, label).toBeLessThan(0.01);
        expect(Math.abs(c.p99_without_ns - t.p99_without) / t.p99_without, label).toBeLessThan(0.01);
        expect(c.exemplar_trace_ids.length).toBeGreaterThan(0);
        expect(t.exemplar_traces, `${label}: exemplars ${c.exemplar_trace_ids.join(", ")}`).toBe(new Set(c.exemplar_trace_ids).size);
      }
      // Best first.
      const scores = r.causes.map((c: any) => c.score);
      expect(scores).toEqual([...scores].sort((a, b) => b - a));
    }
  });

  it("refuses what it cannot compare, saying what to do instead", async () => {
    const cases: [string[], number, RegExp][] = [
      [["query", "explain", "payments"], 2, /^coral: say which requests to explain: .*--slow THRESHOLD.*--errors.*\(invalid_argument\)\n$/],
      [["query", "explain", "payments", "--slow", "1s", "--errors"], 2, /not both/],
      [["query", "explain", "nope", "--errors"], 1, /^coral: service "nope" not found .*\(not_found\)\n$/],
      [["query", "explain", "payments", "--slow", "1h"], 1, /^coral: none of the \d+ requests payments served in the last 1h took 60\.0m or more: nothing to explain — lower --slow/],
      [["query", "explain", "payments", "--slow", "1ns", "--window", "24h"], 1, /^coral: all \d+ requests payments served in the last 24h were 1ns or slower: nothing to compare them with — raise --slow/],
      [["query", "explain", "payments", "--errors", "--window", "1ms"], 1, /^coral: payments served no requests in the last 1\.0ms: nothing to explain — widen --window/],
      [["query", "explain", "payments", "--errors", "--limit", "51"], 2, /--limit: must be in 1\.\.50; got 51/],
    ];
    for (const [args, code, message] of cases) {
      const r = await runCoral(args, { env: env() });
      expect(r.stderr, args.join(" ")).toMatch(message);
      expect(r.code, args.join(" ")).toBe(code);
      expect(r.stderr).not.toMatch(/NaN|at .*\.js:\d+/);
    }
  });

  it("hostile values: 10,000 distinct ids, 100 KB strings and JSON objects cost no more than their share", async () => {
    const t0 = Date.now() - 5 * 60_000;
    const huge = "x".repeat(100_000);
    const spans: SpanRecord[] = Array.from({ length: 10_000 }, (_, i) => {
      const slow = i % 20 === 0;
      return {
        traceId: (i + 1).toString(16).padStart(32, "0"),
        spanId: (i + 1).toString(16).padStart(16, "0"),
        parentSpanId: null,
        serviceName: "hostile",
        name: "GET /h",
        kind: "SERVER",
        startTimeMs: t0 + i,
        durationNs: slow ? 2e9 + i : 1e7 + i,
        statusCode: "OK",
        httpStatusCode: 200,
        attributes: {
          "request.id": `req-${i}`,
          "app.cart": { items: i % 7, plan: i % 2 ? "gold" : "silver" },
          ...(slow ? { "db.replica": "replica-3" } : { "db.replica": `replica-${i % 3}` }),
          ...(slow && i < 100 ? { blob: huge } : {}),
        },
      };
    });
    for (let i = 0; i < spans.length; i += 2_000) {
      const body = encodeTraces([{ resource: { serviceName: "hostile", namespace: "e2e", region: "r1", instanceId: "h-0" }, spans: spans.slice(i, i + 2_000) }]);
      const res = await fetch(`${colony.otlpUrl}/v1/traces`, { method: "POST", headers: { "content-type": "application/x-protobuf" }, body: new Uint8Array(body) });
      expect(res.status).toBe(200);
    }
    const r = await json("query", "explain", "hostile", "--slow", "1s", "--window", "1h", "--limit", "50");
    expect([r.request_count, r.selected_count]).toEqual([10_000, 500]);
    expect(r.causes[0]).toMatchObject({ key: "db.replica", value: "replica-3", selected: 500, baseline: 0, score: 1 });
    const blob = r.causes.find((c: any) => c.key === "blob");
    expect(blob).toMatchObject({ value: huge.slice(0, 256), value_truncated: true, selected: 5, baseline: 0 });
    for (const c of r.causes) expect(c.value.length).toBeLessThanOrEqual(256);
    // One id per request: each is 1/500 of the selection, never near the top; at most 20 values of a key are compared.
    expect(r.causes.filter((c: any) => c.key === "request.id").length).toBeLessThanOrEqual(20);
    expect(r.causes.findIndex((c: any) => c.key === "request.id")).toBeGreaterThan(0);
    expect(r.causes.every((c: any) => Number.isFinite(c.score) && Number.isFinite(c.error_rate_without))).toBe(true);
  });

  it("--demo-incident and --incident refuse what they cannot stage, before starting anything", async () => {
    const cases: [string[], RegExp][] = [
      [["colony", "start", "--demo-incident", "pod"], /^coral: --demo-incident stages an incident in the demo seed: add --demo/],
      [["colony", "start", "--demo", "--demo-incident", "node"], /^coral: --demo-incident: unknown incident "node": use one of pod, region, route, version, tier, optionally with :slow or :errors/],
      [["demo", "load", "--incident", "pod:fast", "--duration", "1s"], /^coral: --incident: unknown effect "fast" in "pod:fast": use :slow or :errors \(e\.g\. pod:slow\)/],
      [["demo", "load", "--incident", "pod:slow:x", "--duration", "1s"], /^coral: --incident: unknown incident "pod:slow:x"/],
    ];
    for (const [args, message] of cases) {
      const r = await runCoral(args, { env: env() });
      expect(r.stderr, args.join(" ")).toMatch(message);
      expect(r.code, args.join(" ")).toBe(2);
    }
  });

  it("coral.traces.explain in a script: the CLI's answer", async () => {
    const script = `import * as coral from "@coral/sdk";
const r = await coral.traces.explain("payments", undefined, true, 24 * 3600_000, 5);
console.log(JSON.stringify(r));`;
    const r = await runCoral(["run", "--colony", colony.addr, "-"], { input: script });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(await json("query", "explain", "payments", "--errors", "--window", "24h", "--limit", "5"));
  });
});
