// `coral query metrics SERVICE --by KEY` (GroupByAttribute) against a real demo colony: counts and
// error counts equal to exact SQL over the raw spans, percentiles within the sketch's 1%, top-N with
// an "other" row, and attribute keys that try to be SQL or JSON-path syntax.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeTraces } from "../../colony/demo/load.js";
import type { SpanRecord } from "../../colony/ingest/records.js";
import { runCoral, spawnColony, type SpawnedColony } from "../helpers/colony.js";
import { exactQuantile, jsonAttribute } from "../helpers/engine-sql.js";
import { queryJson, sqlQuote, sqlRows as sqlRowsOf } from "../helpers/query.js";

let colony: SpawnedColony;
beforeAll(async () => {
  colony = await spawnColony({ demo: true });
});
afterAll(async () => {
  await colony?.stop();
});

const env = () => ({ CORAL_COLONY_ADDR: colony.addr });

const json = (...args: string[]) => queryJson(colony, ...args);
const sqlRows = (text: string) => sqlRowsOf(colony, text);
const quote = sqlQuote;

/** The exact percentiles of the spans as SQL columns p50, p95, p99. */
const EXACT_PERCENTILES = `${exactQuantile("duration_ns", 0.5)} AS p50, ${exactQuantile("duration_ns", 0.95)} AS p95, ${exactQuantile("duration_ns", 0.99)} AS p99`;

/** The groups as exact SQL over the service's SERVER spans computes them. */
async function exact(service: string, key: string, where = "true"): Promise<any[]> {
  return sqlRows(
    `SELECT v, count(*) AS n, count(*) FILTER (WHERE status_code = 'ERROR' OR coalesce(http_status_code, 0) >= 500) AS errors,
            ${EXACT_PERCENTILES}
     FROM (SELECT ${jsonAttribute("attributes", key)} AS v, * FROM spans WHERE service_name = ${quote(service)} AND kind = 'SERVER')
     WHERE ${where}
     GROUP BY v ORDER BY n DESC, v NULLS LAST`,
  );
}

/** The sketch's bound: every percentile within 1% of the exact one. */
function expectPercentilesNear(group: any, truth: any): void {
  for (const p of ["p50", "p95", "p99"]) {
    expect(Math.abs(group[`${p}_ns`] - truth[p]) / truth[p]).toBeLessThan(0.01);
  }
}

describe("coral query metrics --by", () => {
  it("per route: counts and errors exactly as SQL over the raw spans, percentiles within 1%", async () => {
    for (const [service, key] of [
      ["payments", "http.route"],
      ["frontend", "http.route"],
      ["orders", "service.instance.id"],
      ["legacy-api", "http.status_code"],
    ] as const) {
      const r = await json("query", "metrics", service, "--by", key, "--window", "24h", "--limit", "100");
      const truth = await exact(service, key);
      expect(r.groups.map((g: any) => [g.value, g.other, g.request_count, g.error_count])).toEqual(truth.map((t) => [t.v, false, t.n, t.errors]));
      for (const [i, g] of r.groups.entries()) {
        expect(g.error_rate).toBeCloseTo(truth[i].errors / truth[i].n, 12);
        expectPercentilesNear(g, truth[i]);
      }
      expect(r.request_count).toBe(truth.reduce((n, t) => n + t.n, 0));
      expect(r.value_count).toBe(truth.length);
    }
  });

  it("top N with the rest in one 'other' row, last", async () => {
    const r = await json("query", "metrics", "frontend", "--by", "http.route", "--window", "24h", "--limit", "2");
    const truth = await exact("frontend", "http.route");
    expect(truth.length).toBeGreaterThan(3);
    expect(r.groups).toHaveLength(3);
    expect(r.groups.slice(0, 2).map((g: any) => g.value)).toEqual(truth.slice(0, 2).map((t) => t.v));
    const other = r.groups[2];
    expect(other).toMatchObject({ value: `(${truth.length - 2} other values)`, other: true });
    const top = truth.slice(0, 2).map((t) => quote(t.v));
    const [rest] = await sqlRows(
      `SELECT count(*) AS n, count(*) FILTER (WHERE status_code = 'ERROR' OR coalesce(http_status_code, 0) >= 500) AS errors,
              ${EXACT_PERCENTILES}
       FROM spans WHERE service_name = 'frontend' AND kind = 'SERVER'
         AND ${jsonAttribute("attributes", "http.route")} NOT IN (${top.join(", ")})`,
    );
    expect([other.request_count, other.error_count]).toEqual([rest.n, rest.errors]);
    expectPercentilesNear(other, rest);
  });

  it("spans without the attribute form one group with no value", async () => {
    const r = await json("query", "metrics", "frontend", "--by", "peer.service", "--window", "24h");
    const [all] = await sqlRows("SELECT count(*) AS n FROM spans WHERE service_name = 'frontend' AND kind = 'SERVER'");
    expect(r.groups).toHaveLength(1);
    expect(r.groups[0]).toMatchObject({ value: null, other: false, request_count: all.n });
  });

  it("a key written as SQL is a key, nothing else: one group without the attribute, spans intact", async () => {
    const [before] = await sqlRows("SELECT count(*) AS n FROM spans");
    for (const key of ["x'); DROP TABLE spans;--", "http.route' OR '1'='1", "$.http.route", '"; SELECT 1; --']) {
      const r = await json("query", "metrics", "payments", "--by", key, "--window", "24h");
      expect(r.groups).toHaveLength(1);
      expect(r.groups[0].value).toBe(null);
    }
    const [after] = await sqlRows("SELECT count(*) AS n FROM spans");
    expect(after.n).toBe(before.n);
  });

  it("keys with the characters of JSON paths and pointers name exactly their attribute", async () => {
    const attrs: Record<string, string> = {
      "a/b": "slash",
      "a~1b": "tilde one",
      "a~b": "tilde",
      "$.x": "dollar",
      'a"b': "quote",
      "a.b": "dot",
      "a[0]": "bracket",
      "": "empty",
    };
    const t0 = Date.now() - 60_000;
    const spans: SpanRecord[] = Array.from({ length: 3 }, (_, i) => ({
      traceId: `${"ab".repeat(15)}0${i}`,
      spanId: `${"cd".repeat(7)}0${i}`,
      parentSpanId: null,
      serviceName: "keys",
      name: "GET /k",
      kind: "SERVER",
      startTimeMs: t0 + i,
      durationNs: 1e6 * (i + 1),
      statusCode: "OK",
      httpStatusCode: 200,
      attributes: attrs,
    }));
    const body = encodeTraces([{ resource: { serviceName: "keys", namespace: "e2e", region: "r1", instanceId: "keys-0" }, spans }]);
    const res = await fetch(`${colony.otlpUrl}/v1/traces`, { method: "POST", headers: { "content-type": "application/x-protobuf" }, body: new Uint8Array(body) });
    expect(res.status).toBe(200);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "") continue; // a blank key is refused, below
      const r = await json("query", "metrics", "keys", "--by", key);
      expect(r.groups.map((g: any) => [g.value, g.request_count])).toEqual([[value, 3]]);
    }
  });

  it("the table: value, requests, errors, error rate and percentiles in human units", async () => {
    const r = await runCoral(["query", "metrics", "payments", "--by", "http.route", "--window", "24h"], { env: env() });
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^VALUE\s+REQUESTS\s+ERRORS\s+ERROR_RATE\s+P50\s+P95\s+P99$/);
    expect(lines[1]).toMatch(/^\/charge\s+\d+\s+\d+\s+\d+\.\d\d%\s+[\d.]+ms\s+[\d.]+ms\s+[\d.]+(ms|s)$/);
  });

  it("refuses what it cannot answer, with the flag or field named", async () => {
    const cases: [string[], number, RegExp][] = [
      [["query", "metrics", "nope", "--by", "http.route"], 1, /^coral: service "nope" not found .*\(not_found\)\n$/],
      [["query", "metrics", "payments", "--by", ""], 2, /^coral: by is required \(invalid_argument\)\n$/],
      [["query", "metrics", "payments", "--by", "k".repeat(257)], 2, /^coral: by must be an attribute key of at most 256 characters; got 257 \(invalid_argument\)\n$/],
      [["query", "metrics", "payments", "--by", "http.route", "--limit", "101"], 2, /^coral: --limit: must be in 1\.\.100; got 101\n$/],
      [["query", "metrics", "payments", "--by", "http.route", "--error-rate"], 2, /^coral: choose one of --error-rate, --by\n$/],
      [["query", "metrics", "payments", "--by", "http.route", "--percentile", "50"], 2, /^coral: --percentile does not apply with --by\n$/],
      [["query", "metrics", "payments", "--by"], 2, /--by/],
    ];
    for (const [args, code, message] of cases) {
      const r = await runCoral(args, { env: env() });
      expect(r.code, args.join(" ")).toBe(code);
      expect(r.stderr).toMatch(message);
    }
  });

  it("coral.metrics.groupBy and svc.metrics.groupBy in a script: the CLI's answer", async () => {
    const script = `import * as coral from "@coral/sdk";
const a = await coral.metrics.groupBy("payments", "http.route", 24 * 3600_000);
const svc = (await coral.services.list()).find((s) => s.name === "payments");
const b = await svc.metrics.groupBy("http.route", 24 * 3600_000);
console.log(JSON.stringify({ a, same: JSON.stringify(a) === JSON.stringify(b) }));`;
    const r = await runCoral(["run", "--colony", colony.addr, "-"], { input: script });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const got = JSON.parse(r.stdout);
    expect(got.same).toBe(true);
    expect(got.a).toEqual(await json("query", "metrics", "payments", "--by", "http.route", "--window", "24h"));
  });
});
