// Every @coral/sdk function, called from a real Deno script through the real `coral run`
// against a real demo colony; results are checked against `coral query` (the same API) where
// the CLI offers the same question. Windows of 24 h cover all of the demo's history, so the
// numbers do not move while the tests run.
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closedPort, DEMO_SERVICES, runCoral, spawnColony, STORE_ENGINE, type RunResult, type SpawnedColony } from "../helpers/colony.js";

const DAY_MS = 86_400_000;

let colony: SpawnedColony;
let dir: string;
beforeAll(async () => {
  colony = await spawnColony({ demo: true });
  dir = mkdtempSync(join(tmpdir(), "coral-sdk-test-"));
});
afterAll(async () => {
  await colony?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let scriptCount = 0;

/** Writes `source` as a script and runs it with `coral run --colony <demo colony>`. */
async function run(source: string, o: { colony?: string; flags?: string[] } = {}): Promise<RunResult> {
  const file = join(dir, `script-${++scriptCount}.ts`);
  writeFileSync(file, source);
  return runCoral(["run", "--colony", o.colony ?? colony.addr, ...(o.flags ?? []), file]);
}

/**
 * Runs `body` (the inside of an async function that returns a JSON-able value, with `coral`
 * imported) and parses what it returned. Fails with the script's stderr if it did not succeed.
 */
async function probe<T = any>(body: string, o: { colony?: string } = {}): Promise<T> {
  const r = await run(`import * as coral from "@coral/sdk";\nconst W = ${DAY_MS};\nconst out = await (async () => {\n${body}\n})();\nconsole.log(JSON.stringify(out));\n`, o);
  expect(r.stderr, "script stderr").toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as T;
}

/** `coral query …` against the same colony, JSON output. */
async function cli(args: string[]): Promise<any> {
  const r = await runCoral(["query", ...args, "--colony", colony.addr, "-o", "json"]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe("services", () => {
  it("list() returns the demo services as plain objects, the same as `coral query services`", async () => {
    const out = await probe(`
      const svcs = await coral.services.list();
      return {
        svcs,
        keys: svcs.map((s) => Object.keys(s).sort().join(",")),
        types: svcs.map((s) => [typeof s.name, typeof s.namespace, typeof s.region, typeof s.instance_count].join(",")),
      };`);
    expect(out.svcs.map((s: { name: string }) => s.name)).toEqual(DEMO_SERVICES);
    // The bound helpers are not enumerable: a service prints and serialises as its four fields.
    expect(new Set(out.keys)).toEqual(new Set(["instance_count,name,namespace,region"]));
    expect(new Set(out.types)).toEqual(new Set(["string,string,string,number"]));
    expect(out.svcs).toEqual((await cli(["services"])).services);
  });

  it("list(namespace) filters", async () => {
    const names = await probe(`return (await coral.services.list("shop")).map((s) => s.name);`);
    expect(names).toEqual(["inventory", "orders", "payments"]);
  });

  it("get() describes a service with dates and counts", async () => {
    const out = await probe(`
      const s = await coral.services.get("payments", W);
      return { s, firstIsDate: s.first_seen instanceof Date, lastIsDate: s.last_seen instanceof Date,
               ordered: s.first_seen <= s.last_seen, counts: [typeof s.request_count, typeof s.error_count] };`);
    expect(out.s.service).toEqual({ name: "payments", namespace: "shop", region: "us-east-1", instance_count: 3 });
    expect(out.firstIsDate && out.lastIsDate && out.ordered).toBe(true);
    expect(out.counts).toEqual(["number", "number"]);
    expect(out.s.request_count).toBeGreaterThan(out.s.error_count);
    expect(out.s.error_count).toBeGreaterThan(0);
    const fromCli = await cli(["service", "payments", "--window", "24h"]);
    expect(out.s.request_count).toBe(fromCli.request_count);
    expect(out.s.error_count).toBe(fromCli.error_count);
  });
});

describe("bound helpers on services.list() results", () => {
  it("each helper answers exactly what the module function answers for that service", async () => {
    const out = await probe(`
      const svc = (await coral.services.list()).find((s) => s.name === "payments");
      const m = "http.server.duration";
      const ids = (ts) => ts.map((t) => t.trace_id);
      // The default window ends at "now": a seeded minute can slide out of it between the three
      // calls, so they are retried (twice at most) until one round falls within the same minute.
      const defaultsRound = async () => [await svc.metrics.getP99(), await coral.metrics.getP99("payments"), await coral.metrics.getPercentile("payments")];
      let p99Defaults = await defaultsRound();
      for (let i = 0; i < 2 && new Set(p99Defaults).size > 1; i++) p99Defaults = await defaultsRound();
      return {
        percentile: [await svc.metrics.getPercentile(m, 0.9, W), await coral.metrics.getPercentile("payments", m, 0.9, W)],
        p50: [await svc.metrics.getP50(m, W), await coral.metrics.getP50("payments", m, W), await coral.metrics.getPercentile("payments", m, 0.5, W)],
        p95: [await svc.metrics.getP95(m, W), await coral.metrics.getP95("payments", m, W), await coral.metrics.getPercentile("payments", m, 0.95, W)],
        p99: [await svc.metrics.getP99(m, W), await coral.metrics.getP99("payments", m, W), await coral.metrics.getPercentile("payments", m, 0.99, W)],
        p99Defaults,
        errorRate: [await svc.metrics.getErrorRate(W), await coral.metrics.getErrorRate("payments", W)],
        slow: [ids(await svc.traces.findSlow(300_000_000, W, 20)), ids(await coral.traces.findSlow("payments", 300_000_000, W, 20))],
        errors: [ids(await svc.traces.findErrors(W, 20)), ids(await coral.traces.findErrors("payments", W, 20))],
        system: [await svc.system.getMetrics(W), await coral.system.getMetrics("payments", W)],
        get: [await svc.services.get(W), await coral.services.get("payments", W)],
      };`);
    for (const [name, values] of Object.entries(out) as [string, unknown[]][]) {
      expect(values.length, name).toBeGreaterThan(1);
      for (const v of values.slice(1)) expect(v, name).toEqual(values[0]);
    }
    expect(out.slow[0].length).toBeGreaterThan(0);
    expect(out.errors[0].length).toBeGreaterThan(0);
    expect(out.p50[0]).toBeLessThan(out.p95[0]);
    expect(out.p95[0]).toBeLessThan(out.p99[0]);
  });
});

describe("metrics", () => {
  it("getPercentile/getP99 return nanoseconds as a number, equal to `coral query metrics`", async () => {
    const out = await probe(`
      const p99 = await coral.metrics.getP99("payments", "http.server.duration", W);
      return { p99, type: typeof p99, ms: p99 / 1_000_000,
               p999: await coral.metrics.getPercentile("payments", "http.server.duration", 0.999, W) };`);
    expect(out.type).toBe("number");
    expect(out.ms).toBeCloseTo(out.p99 / 1e6, 9);
    const p99 = await cli(["metrics", "payments", "--percentile", "99", "--window", "24h"]);
    expect(p99.unit).toBe("nanoseconds");
    expect(out.p99).toBe(p99.value);
    const p999 = await cli(["metrics", "payments", "--percentile", "99.9", "--window", "24h"]);
    expect(out.p999).toBe(p999.value);
  });

  it("getErrorRate returns the rate 0..1, equal to `coral query metrics --error-rate`", async () => {
    const rates = await probe<Record<string, number>>(`
      const out = {};
      for (const s of ["payments", "legacy-api", "orders"]) out[s] = await coral.metrics.getErrorRate(s, W);
      return out;`);
    for (const [svc, rate] of Object.entries(rates)) {
      expect(rate).toBeGreaterThanOrEqual(0);
      expect(rate).toBeLessThan(1);
      expect(rate).toBe((await cli(["metrics", svc, "--error-rate", "--window", "24h"])).rate);
    }
    // The demo's legacy-api fails a few percent of the time; payments had an incident.
    expect(rates["legacy-api"]).toBeGreaterThan(0.01);
    expect(rates.payments).toBeGreaterThan(0);
  });
});

describe("traces", () => {
  it("findSlow returns traces above the threshold, slowest first, with number durations and Date timestamps", async () => {
    const out = await probe(`
      const ts = await coral.traces.findSlow("payments", 500_000_000, W, 10);
      return { ts, durationTypes: ts.map((t) => typeof t.duration_ns), dates: ts.map((t) => t.timestamp instanceof Date) };`);
    expect(out.ts).toHaveLength(10);
    expect(new Set(out.durationTypes)).toEqual(new Set(["number"]));
    expect(new Set(out.dates)).toEqual(new Set([true]));
    const durations = out.ts.map((t: { duration_ns: number }) => t.duration_ns);
    expect(durations).toEqual([...durations].sort((a, b) => b - a));
    for (const t of out.ts) {
      expect(t.trace_id).toMatch(/^[0-9a-f]{32}$/);
      expect(t.duration_ns).toBeGreaterThanOrEqual(500_000_000);
      expect(t.service).toBe("payments");
    }
    const fromCli = await cli(["traces", "payments", "--slow", "--threshold", "500ms", "--window", "24h", "--limit", "10"]);
    expect(out.ts).toEqual(fromCli.traces);
  });

  it("findErrors returns failed traces, most recent first", async () => {
    const out = await probe(`
      const ts = await coral.traces.findErrors("payments", W, 25);
      return { ts, dates: ts.map((t) => t.timestamp instanceof Date), times: ts.map((t) => t.timestamp.getTime()) };`);
    expect(out.ts.length).toBeGreaterThan(0);
    expect(new Set(out.dates)).toEqual(new Set([true]));
    expect(out.times).toEqual([...out.times].sort((a: number, b: number) => b - a));
    for (const t of out.ts) {
      expect(t.error).toBe(true);
      expect(t.service).toBe("payments");
      expect(typeof t.duration_ns).toBe("number");
    }
    expect(out.ts).toEqual((await cli(["traces", "payments", "--errors", "--window", "24h", "--limit", "25"])).traces);
  });
});

describe("system", () => {
  it("getMetrics returns CPU and memory of the service's hosts as numbers", async () => {
    const m = await probe(`return await coral.system.getMetrics("payments", W);`);
    expect(Object.keys(m).sort()).toEqual(
      ["cpu_percent", "host_count", "memory_percent", "memory_total_bytes", "memory_used_bytes", "sample_count", "service"].sort(),
    );
    expect(m.service).toBe("payments");
    for (const k of ["cpu_percent", "memory_percent"]) {
      expect(typeof m[k]).toBe("number");
      expect(m[k]).toBeGreaterThan(0);
      expect(m[k]).toBeLessThan(100);
    }
    expect(m.memory_used_bytes).toBeLessThan(m.memory_total_bytes);
    expect(m.host_count).toBeGreaterThan(0);
    expect(m).toEqual(await cli(["system", "payments", "--window", "24h"]));
  });
});

describe("db", () => {
  it("query returns columns, rows as objects with numbers (not bigint), truncated, and is iterable", async () => {
    const out = await probe(`
      const r = await coral.db.query(\`
        SELECT service_name, COUNT(*) AS minutes, AVG(p99_duration_ns) AS avg_p99
        FROM service_summary
        WHERE timestamp > now() - INTERVAL '1 day'
        GROUP BY service_name
        ORDER BY service_name\`);
      let iterated = 0;
      for (const row of r) iterated++;
      return { columns: r.columns, rows: r.rows, truncated: r.truncated, iterated,
               types: r.rows.map((row) => [typeof row.minutes, typeof row.avg_p99].join(",")),
               ms: r.rows.map((row) => row.avg_p99 / 1_000_000) };`);
    expect(out.columns.map((c: { name: string }) => c.name)).toEqual(["service_name", "minutes", "avg_p99"]);
    // Each engine names its own types: COUNT(*) is DuckDB's BIGINT, ClickHouse's UInt64.
    expect(out.columns[1].type).toBe(STORE_ENGINE === "clickhouse" ? "UInt64" : "BIGINT");
    expect(out.truncated).toBe(false);
    expect(out.rows.map((r: { service_name: string }) => r.service_name)).toEqual(DEMO_SERVICES);
    expect(out.iterated).toBe(DEMO_SERVICES.length);
    expect(new Set(out.types)).toEqual(new Set(["number,number"]));
    out.ms.forEach((ms: number, i: number) => expect(ms).toBeCloseTo(out.rows[i].avg_p99 / 1e6, 6));
  });

  it("query cuts large results at 10,000 rows and says so", async () => {
    const out = await probe(`const r = await coral.db.query("SELECT generate_series AS i FROM generate_series(0, 19999)"); return { n: r.rows.length, truncated: r.truncated, first: r.rows[0] };`);
    expect(out).toEqual({ n: 10_000, truncated: true, first: { i: 0 } });
  });

  it("stream is an async iterator over batches of row objects (25,000 rows)", async () => {
    const out = await probe(`
      let rows = 0, batches = 0, sum = 0, arrays = true, max = -1;
      for await (const batch of coral.db.stream("SELECT generate_series AS i FROM generate_series(0, 24999)")) {
        batches++;
        arrays &&= Array.isArray(batch);
        for (const row of batch) { rows++; sum += row.i; max = Math.max(max, row.i); }
      }
      return { rows, batches, sum, arrays, max };`);
    expect(out.rows).toBe(25_000);
    expect(out.sum).toBe((24_999 * 25_000) / 2);
    expect(out.max).toBe(24_999);
    expect(out.arrays).toBe(true);
    expect(out.batches).toBeGreaterThan(1);
  });
});

describe("CoralError", () => {
  it("not_found for an unknown service, from every function that takes one", async () => {
    const out = await probe<Record<string, [boolean, string, string]>>(`
      const calls = {
        "services.get": () => coral.services.get("no-such-service"),
        "metrics.getPercentile": () => coral.metrics.getPercentile("no-such-service"),
        "metrics.getP99": () => coral.metrics.getP99("no-such-service"),
        "metrics.getErrorRate": () => coral.metrics.getErrorRate("no-such-service"),
        "traces.findSlow": () => coral.traces.findSlow("no-such-service"),
        "traces.findErrors": () => coral.traces.findErrors("no-such-service"),
        "system.getMetrics": () => coral.system.getMetrics("no-such-service"),
      };
      const out = {};
      for (const [name, f] of Object.entries(calls)) {
        try { await f(); out[name] = [false, "resolved", ""]; }
        catch (e) { out[name] = [e instanceof coral.CoralError, e.code, e.message]; }
      }
      return out;`);
    expect(Object.keys(out)).toHaveLength(7);
    for (const [name, [isCoralError, code, message]] of Object.entries(out)) {
      expect(isCoralError, name).toBe(true);
      expect(code, name).toBe("not_found");
      expect(message, name).toContain('"no-such-service"');
      expect(message, name).toContain(colony.addr);
    }
  });

  it("invalid_argument for a percentile outside (0, 1]", async () => {
    const out = await probe(`
      const out = [];
      for (const p of [1.5, 0, -0.5]) {
        try { await coral.metrics.getPercentile("payments", "http.server.duration", p); out.push("resolved"); }
        catch (e) { out.push([e.name, e.code, e.message]); }
      }
      return out;`);
    expect(out).toHaveLength(3);
    for (const [name, code, message] of out) {
      expect(name).toBe("CoralError");
      expect(code).toBe("invalid_argument");
      expect(message).toMatch(/percentile/);
    }
  });

  it("unavailable, naming the address, when nothing listens there", async () => {
    const addr = await closedPort();
    const out = await probe(`
      try { await coral.services.list(); return "resolved"; }
      catch (e) { return [e instanceof coral.CoralError, e.code, e.message]; }`, { colony: addr });
    expect(out[0]).toBe(true);
    expect(out[1]).toBe("unavailable");
    expect(out[2]).toContain(addr);
  });
});

describe("raw SQL is analysis, never administration", () => {
  const counts = `
    const n = async (t) => (await coral.db.query(\`SELECT COUNT(*) AS n FROM \${t} WHERE true\`)).rows[0].n;
    const counts = async () => ({ services: await n("services"), spans: await n("spans"), trace_summary: await n("trace_summary") });`;

  it("file reads and writes through db.query are refused with invalid_argument; nothing changes", async () => {
    const target = join(dir, "copied.csv");
    const out = await probe(`
      ${counts}
      const before = await counts();
      const attempts = {
        read_text: "SELECT * FROM read_text('/etc/passwd')",
        read_csv: "SELECT * FROM read_csv('/etc/passwd')",
        read_csv_auto: "SELECT * FROM read_csv_auto('/etc/hostname')",
        delete: "DELETE FROM services",
        delete_spans: "DELETE FROM spans WHERE true",
        copy_to: "COPY services TO '${target}'",
        copy_query_to: "COPY (SELECT * FROM spans) TO '${target}' (FORMAT csv)",
        drop: "DROP TABLE services",
        insert: "INSERT INTO services SELECT * FROM services",
        two_statements: "SELECT 1; DELETE FROM services",
      };
      const results = {};
      for (const [name, sql] of Object.entries(attempts)) {
        try { await coral.db.query(sql); results[name] = "succeeded"; }
        catch (e) { results[name] = e instanceof coral.CoralError ? e.code : String(e); }
      }
      return { before, results, after: await counts() };`);
    expect(Object.keys(out.results)).toHaveLength(10);
    for (const [name, result] of Object.entries(out.results)) expect(result, name).toBe("invalid_argument");
    expect(out.before.services).toBe(DEMO_SERVICES.length);
    expect(out.before.spans).toBeGreaterThan(0);
    expect(out.after).toEqual(out.before);
    expect(existsSync(target)).toBe(false);
  });

  it("the same refusals hold for db.stream", async () => {
    const out = await probe(`
      const results = {};
      for (const sql of ["SELECT * FROM read_text('/etc/passwd')", "DELETE FROM services"]) {
        try { for await (const _ of coral.db.stream(sql)) {} results[sql] = "succeeded"; }
        catch (e) { results[sql] = e.code; }
      }
      return results;`);
    expect(Object.values(out)).toEqual(["invalid_argument", "invalid_argument"]);
  });
});
