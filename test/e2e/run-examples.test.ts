// The scripts in examples/, run as their header comments say, with `coral run` against a demo
// colony. Windows of 24 h cover all of the demo's history so the numbers compared with
// `coral query` do not move while the tests run; loops get interval=0s so they end at once.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_SERVICES, runCoral, spawnColony, type RunResult, type SpawnedColony } from "../helpers/colony.js";

const examples = fileURLToPath(new URL("../../examples/", import.meta.url));

let colony: SpawnedColony;
beforeAll(async () => {
  colony = await spawnColony({ demo: true });
});
afterAll(async () => {
  await colony?.stop();
});

/**
 * `coral run --colony <demo> --param k=v … examples/NAME`; with `check`, `--check` first
 * type-checks the example with Deno against the SDK's published types (a type error fails the
 * run with exit 1 and the error on stderr, which the tests' stderr checks catch).
 */
function example(name: string, params: Record<string, string> = {}, o: { check?: boolean } = {}): Promise<RunResult> {
  const flags = Object.entries(params).flatMap(([k, v]) => ["--param", `${k}=${v}`]);
  return runCoral(["run", "--colony", colony.addr, ...(o.check ? ["--check"] : []), ...flags, join(examples, name)]);
}

async function cli(args: string[]): Promise<any> {
  const r = await runCoral(["query", ...args, "--colony", colony.addr, "-o", "json"]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe.concurrent("examples/latency-report.ts", () => {
  it("reports P50, P99 and errors for every service, flagging those above the threshold", async () => {
    const r = await example("latency-report.ts", { window: "24h", threshold: "300ms" }, { check: true });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const block = /([\w-]+):\n {2}P50: (\d+\.\d)ms\n {2}P99: (\d+\.\d)ms\n {2}Errors: (\d+\.\d\d)%\n( {2}⚠️ {2}High latency detected!\n)?\n/g;
    const body = r.stdout.replace(/^Service Latency Report\n\n/, "");
    expect(body.replace(block, "")).toBe("");
    const seen = [...body.matchAll(block)];
    expect(seen.map((m) => m[1])).toEqual(DEMO_SERVICES);
    for (const [, name, p50, p99, , flag] of seen) {
      expect(Number(p50), name).toBeLessThan(Number(p99));
      // Flagged on the unrounded value: a p99 printed as exactly 300.0 may be either side.
      if (Number(p99) !== 300) expect(flag !== undefined, name).toBe(Number(p99) > 300);
    }
    const p99 = await cli(["metrics", "payments", "--percentile", "99", "--window", "24h"]);
    expect(seen.find((m) => m[1] === "payments")![3]).toBe((p99.value / 1e6).toFixed(1));
  });
});

describe.concurrent("examples/correlation-analysis.ts", () => {
  it("tabulates every service with its error rate (as `coral query` has it), CPU, memory and correlation", async () => {
    const r = await example("correlation-analysis.ts", { window: "24h", "max-error-rate": "100%" }, { check: true });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const rows = r.stdout.split("\n").filter((l) => /^[\w-]+ +\d+\.\d\d% /.test(l));
    expect(rows.map((l) => l.split(/\s+/)[0])).toEqual(DEMO_SERVICES);
    const rates = await Promise.all(DEMO_SERVICES.map(async (s) => (await cli(["metrics", s, "--error-rate", "--window", "24h"])).rate));
    for (const [i, row] of rows.entries()) {
      const [name, errors, cpu, mem, corr] = row.trim().split(/\s+/);
      expect(errors, name).toBe(`${(rates[i] * 100).toFixed(2)}%`);
      expect(cpu).toMatch(/^\d+\.\d%$/);
      expect(mem).toMatch(/^\d+\.\d%$/);
      expect(corr).toMatch(/^(-?[01]\.\d\d|n\/a)$/);
    }
    expect(r.stdout).toContain("No service above the error threshold.");
  });

  it("two or more services over the threshold are reported as a cascade, exit 3", async () => {
    const r = await example("correlation-analysis.ts", { window: "24h", "max-error-rate": "0%", services: "payments,legacy-api,nope" });
    expect(r.code).toBe(3);
    expect(r.stderr).toBe('note: no service named "nope" — skipped\n');
    expect(r.stdout).toMatch(/⚠️ {2}Cascading failure suspected: legacy-api, payments are failing together\./);
  });

  it("a malformed rate is one clear error", async () => {
    const r = await example("correlation-analysis.ts", { "max-error-rate": "lots" });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error: max-error-rate: "lots" is not a rate like 1% or 0.01 [invalid_argument]\n');
  });
});

describe.concurrent("examples/high-latency-alert.ts", () => {
  it("runs `iterations` checks, alerts on the slow services with trace evidence, exit 3", async () => {
    const r = await example("high-latency-alert.ts", { window: "24h", iterations: "2", interval: "0s" }, { check: true });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(3);
    const checks = r.stdout.split("\n").filter((l) => / check \d\/2: /.test(l));
    expect(checks).toHaveLength(2);
    expect(checks[1]).toMatch(/check 2\/2: \d+ alert\(s\)$/);
    expect(r.stdout).toMatch(/🚨 legacy-api: P99 \d+\.\dms > 500\.0ms/);
    expect(r.stdout).not.toMatch(/🚨 auth:/);
    expect(r.stdout).toMatch(/ {5}slow {2}[0-9a-f]{32} +\d+\.\dms {2}(GET|POST) \//);
  });

  it("all clear when nothing crosses the thresholds, exit 0", async () => {
    const r = await example("high-latency-alert.ts", { window: "24h", service: "auth", p99: "10s", "error-rate": "100" });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\[\d\d:\d\d:\d\d\] check 1\/1: all clear\n$/);
  });

  it("an unknown service ends with the SDK's not_found error", async () => {
    const r = await example("high-latency-alert.ts", { service: "nope" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: service "nope" not found .*\[not_found\]\n$/);
  });
});

describe.concurrent("examples/service-activity.ts", () => {
  it("shows a service's requests (as `coral query service` counts them), sparkline and busiest endpoints", async () => {
    const r = await example("service-activity.ts", { window: "24h", service: "payments", top: "2" }, { check: true });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const info = await cli(["service", "payments", "--window", "24h"]);
    expect(r.stdout).toContain(`payments  (shop, us-east-1, 3 instances)\n  requests: ${info.request_count}  errors: ${info.error_count}`);
    expect(r.stdout).toMatch(/ {2}per min: {2}[▁▂▃▄▅▆▇█]+\n/);
    const endpoints = r.stdout.split("\n").filter((l) => /^ +\d+ {2}(GET|POST) /.test(l));
    expect(endpoints).toHaveLength(2);
    expect(endpoints[0]).toMatch(/POST \/charge/);
  });

  it("every service when none is named", async () => {
    const r = await example("service-activity.ts", { window: "24h" });
    expect(r.code).toBe(0);
    const headers = r.stdout.split("\n").filter((l) => /^[\w-]+ {2}\(/.test(l));
    expect(headers.map((l) => l.split(" ")[0])).toEqual(DEMO_SERVICES);
  });

  it("an unknown service lists the known ones, exit 1", async () => {
    const r = await example("service-activity.ts", { service: "nope" });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`no service named "nope"; the colony knows: ${DEMO_SERVICES.join(", ")}\n`);
  });
});

describe.concurrent("examples/sdk-demo-monitor.ts", () => {
  it("refreshes `iterations` times, touching every SDK module, then ends", async () => {
    const r = await example("sdk-demo-monitor.ts", { window: "24h", iterations: "2", interval: "0s" }, { check: true });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\(CoralError demo: code=not_found: service "no-such-service" not found/);
    const refreshes = r.stdout.split("── refresh ").slice(1);
    expect(refreshes).toHaveLength(2);
    for (const text of refreshes) {
      expect(text).toMatch(/^\d\/2 · /);
      const rows = text.split("\n").filter((l) => /^[\w-]+ +\d+ +\d+ +\d+\.\dms/.test(l));
      expect(rows.map((l) => l.split(/\s+/)[0])).toEqual(DEMO_SERVICES);
      expect(text).toMatch(/latest failure: [\w-]+ (GET|POST) \S+ \d+\.\dms at \d{4}-/);
      expect(text).toMatch(/slowest endpoint: legacy-api /);
      // More spans than db.query's 10,000-row cap: only db.stream sees them all.
      const spans = Number(/spans streamed: (\d+)/.exec(text)![1]);
      expect(spans).toBeGreaterThan(10_000);
    }
  });

  it("namespace narrows the services", async () => {
    const r = await example("sdk-demo-monitor.ts", { window: "24h", iterations: "1", namespace: "shop" });
    expect(r.code).toBe(0);
    const rows = r.stdout.split("\n").filter((l) => /^[\w-]+ +\d+ +\d+ +\d+\.\dms/.test(l));
    expect(rows.map((l) => l.split(/\s+/)[0])).toEqual(["inventory", "orders", "payments"]);
  });
});
