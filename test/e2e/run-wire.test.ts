// The SDK's channel to `coral run`, end to end (real colony, real Deno, the real CLI): budgets,
// the audit log, CORAL_MODE, and scripts that abuse the channel with `process.send` — which must
// end their own run cleanly and never grow the `coral run` process.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_SERVICES, runCoral, spawnColony, type RunResult, type SpawnedColony } from "../helpers/colony.js";
import { storeServices } from "../helpers/otlp-span.js";

const dir = mkdtempSync(join(tmpdir(), "coral-run-wire-"));
let colony: SpawnedColony;
beforeAll(async () => {
  // The demo's six services, a span each: what the scripts list and ask a p99 of.
  colony = await spawnColony();
  await storeServices(colony, DEMO_SERVICES);
});
afterAll(async () => {
  await colony?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let count = 0;
function script(source: string): string {
  const file = join(dir, `script-${++count}.ts`);
  writeFileSync(file, source);
  return file;
}

const SDK = 'import * as coral from "@coral/sdk";\n';
const run = (file: string, flags: string[] = []): Promise<RunResult> => runCoral(["run", "--colony", colony.addr, ...flags, file]);

describe("CORAL_MODE", () => {
  it("is cli under coral run", async () => {
    const r = await run(script('console.log(Deno.env.get("CORAL_MODE"));\n'));
    expect(r.stdout).toBe("cli\n");
  });
});

describe("budgets", () => {
  it("rpcs: the call past the budget fails with resource_exhausted, naming the budget and how to raise it", async () => {
    const file = script(`${SDK}
for (let i = 1; i <= 4; i++) {
  try { await coral.services.list(); console.log(i, "ok"); }
  catch (e) { console.log(i, e.code, e.message); }
}
`);
    const r = await run(file, ["--budget", "rpcs=3"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines.slice(0, 3)).toEqual(["1 ok", "2 ok", "3 ok"]);
    expect(lines[3]).toMatch(
      /^4 resource_exhausted this run's rpcs budget \(3 RPCs\) is used up: 3 RPCs, 18 rows, \d+ bytes, [\d.]+ s of colony time so far — raise it with: coral run --budget rpcs=N$/,
    );
    expect(r.stderr).toMatch(/^coral run: budget exceeded \(rpcs\): used 3 RPCs, 18 rows, \d+ bytes, [\d.]+ s of colony time; budget rpcs=3,rows=10000000,bytes=1073741824,time=300s\n$/);
  });

  it("an uncaught refusal ends the script with one line and exit 1", async () => {
    const r = await run(script(`${SDK}await coral.services.list();\nawait coral.services.list();\nconsole.log("not reached");\n`), ["--budget", "rpcs=1"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    const [first, second] = r.stderr.trimEnd().split("\n");
    expect(first).toMatch(/^error: this run's rpcs budget \(1 RPCs\) is used up: .* — raise it with: coral run --budget rpcs=N \[resource_exhausted\]$/);
    expect(second).toMatch(/^coral run: budget exceeded \(rpcs\)/);
  });

  it("rows: a stream stops at the budget, with the rows delivered up to it", async () => {
    const file = script(`${SDK}
let rows = 0;
try {
  for await (const batch of coral.db.stream("SELECT range AS i FROM range(100000)")) rows += batch.length;
  console.log("complete", rows);
} catch (e) { console.log(e.code, rows, e.message.split(":")[0]); }
`);
    const r = await run(file, ["--budget", "rows=20000"]);
    expect(r.code).toBe(0);
    const [code, rows, what] = r.stdout.trim().split(" ", 3);
    expect(code).toBe("resource_exhausted");
    expect(Number(rows)).toBeGreaterThan(0);
    expect(Number(rows)).toBeLessThanOrEqual(20_000);
    expect(r.stdout).toContain("this run's rows budget (20000 rows) is used up");
    expect(what).toBe("this");
    expect(r.stderr).toMatch(/^coral run: budget exceeded \(rows\)/);
  });

  it("bytes: a response that would pass the budget is refused", async () => {
    const file = script(`${SDK}
try { const r = await coral.db.query("SELECT range AS i, repeat('x', 100) AS pad FROM range(5000)"); console.log("got", r.rows.length); }
catch (e) { console.log(e.code, e.message); }
`);
    const r = await run(file, ["--budget", "bytes=100KB"]);
    expect(r.stdout).toMatch(/^resource_exhausted this run's bytes budget \(100000 bytes\) is used up: 1 RPCs, 0 rows, 0 bytes, .* — raise it with: coral run --budget bytes=SIZE\n$/);
  });

  it("time: colony time past the budget stops the call in progress", async () => {
    const file = script(`${SDK}
for (const sql of ["SELECT count(*) FROM range(100000000000)", "SELECT 1"]) {
  try { await coral.db.query(sql); console.log("ok"); } catch (e) { console.log(e.code, e.message.split(" is used up")[0]); }
}
`);
    const r = await run(file, ["--budget", "time=1ms"]);
    expect(r.stdout).toBe("resource_exhausted this run's time budget (0.001 s)\n".repeat(2));
    expect(r.stderr).toMatch(/^coral run: budget exceeded \(time\)/);
  });

  it("a time budget beyond Node's timer range (2^31 ms) still lets calls through", async () => {
    const r = await run(script(`${SDK}console.log((await coral.services.list()).length);\n`), ["--budget", "time=1000h"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("6\n");
  });

  it("a malformed --budget is a usage error and the script does not run", async () => {
    for (const [flag, message] of [
      ["rpcs=lots", '--budget rpcs: "lots" is not a whole number'],
      ["calls=3", '--budget: expected rpcs=N, rows=N, bytes=SIZE or time=DURATION, got "calls=3"'],
    ]) {
      const r = await run(script('console.log("ran");\n'), ["--budget", flag]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(message);
    }
  });
});

describe("--audit", () => {
  it("appends one JSON line per call: time, method, request as sent, rows, bytes, ms, outcome", async () => {
    const audit = join(dir, "audit.jsonl");
    const file = script(`${SDK}
await coral.metrics.getP99("payments", "http.server.duration", 86_400_000);
try { await coral.services.get("nope"); } catch {}
let n = 0;
for await (const b of coral.db.stream("SELECT range AS i FROM range(30000)")) n += b.length;
console.log(n);
`);
    const r = await run(file, ["--audit", audit]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("30000\n");
    const lines = readFileSync(audit, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l));
    expect(lines).toHaveLength(3);
    for (const l of lines) {
      expect(Object.keys(l)).toEqual(["time", "method", "request", "rows", "bytes", "ms", "outcome"]);
      expect(new Date(l.time).toISOString()).toBe(l.time);
      expect(typeof l.ms).toBe("number");
    }
    expect(lines[0]).toMatchObject({
      method: "GetPercentile",
      request: { service: "payments", metric: "http.server.duration", percentile: 0.99, timeRangeMs: 86_400_000 },
      rows: 1,
      outcome: "ok",
    });
    expect(lines[0].bytes).toBeGreaterThan(0);
    expect(lines[1]).toMatchObject({ method: "GetService", request: { service: "nope" }, rows: 0, bytes: 0, outcome: "not_found" });
    expect(lines[2]).toMatchObject({ method: "StreamQuery", rows: 30_000, outcome: "ok" });
    // Appends: a second run adds its lines after the first run's.
    await run(file, ["--audit", audit]);
    expect(readFileSync(audit, "utf8").trimEnd().split("\n")).toHaveLength(6);
  });

  it("a path that cannot be written is a usage error before the script runs", async () => {
    for (const [path, why] of [
      [join(dir, "no-such-dir", "audit.jsonl"), "its directory does not exist"],
      [dir, "it is a directory"],
    ]) {
      const r = await run(script('console.log("ran");\n'), ["--audit", path]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(`--audit: cannot write ${path} (${why})`);
    }
    expect(existsSync(join(dir, "no-such-dir"))).toBe(false);
  });
});

describe("a script abusing the channel", () => {
  const stopped = /^coral run: the script broke the SDK protocol \((.*)\); the run was stopped\n$/;

  for (const [what, send, reason] of [
    ["a message that is not an object", 'process.send("hello")', "sent a message that is not an object"],
    ["an oversize message", 'process.send({ id: 1, method: "ExecuteQuery", request: { sql: "x".repeat(2 * 1024 * 1024) } })', "sent a message longer than 1048576 bytes"],
    ["a message of unknown shape", 'process.send({ id: 1, token: "please" })', "sent a message that is neither a call, a credit nor a cancel"],
    ["an id reused while in flight", 'for (let i = 0; i < 2; i++) process.send({ id: 5, method: "StreamQuery", request: { sql: "SELECT 1" } })', "reused the id 5 of a call in flight"],
  ] as const) {
    it(`${what}: the run ends with one line and exit 1`, async () => {
      const r = await run(script(`${send};\nsetInterval(() => {}, 1000);\n`));
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(stopped);
      expect(stopped.exec(r.stderr)![1]).toBe(reason);
    });
  }

  it("an SDK call after the script closed the channel fails with one line (unavailable), not a stack trace", async () => {
    const file = join(dir, "disconnect.ts");
    writeFileSync(
      file,
      `import process from "node:process";\nimport * as coral from "@coral/sdk";\nconsole.log((await coral.services.list()).length);\nprocess.disconnect();\nawait coral.services.list();\n`,
    );
    const r = await run(file);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("6\n");
    expect(r.stderr).toBe("error: the SDK's channel to coral run is closed (did the script call process.disconnect()?); no further calls can be made [unavailable]\n");
  });

  it("an unknown method is an invalid_argument answer, not the end of the run", async () => {
    const r = await run(
      script(`process.on("message", (m) => { console.log(JSON.stringify(m)); process.channel.unref(); });\nprocess.send({ id: 1, method: "DropTables", request: {} });\n`),
    );
    expect(r.code).toBe(0);
    const reply = JSON.parse(r.stdout);
    expect(reply).toMatchObject({ id: 1, error: { code: "invalid_argument" } });
    expect(reply.error.message).toMatch(/^unknown method "DropTables"; the API has ListServices, GetService, .*StreamQuery\b/);
  });

  it("a request that does not fit the method is invalid_argument, naming the method", async () => {
    const r = await run(
      script(`process.on("message", (m) => { console.log(JSON.stringify(m)); process.channel.unref(); });\nprocess.send({ id: 1, method: "GetPercentile", request: { service: "payments", percentile: "high" } });\n`),
    );
    expect(JSON.parse(r.stdout)).toMatchObject({ id: 1, error: { code: "invalid_argument" } });
    expect(JSON.parse(r.stdout).error.message).toMatch(/^GetPercentile: /);
  });

  it("a flood of calls that never reads its answers stays in the script; coral run's memory does not grow", async () => {
    // 200,000 calls of 2 KiB each (~400 MiB) sent as fast as Deno takes them, answers never read.
    const file = script(`
const pad = "x".repeat(2048);
for (let id = 1; id <= 200_000; id++) process.send({ id, method: "ListServices", request: { namespace: pad } });
console.log("queued");
setTimeout(() => Deno.exit(0), 3000);
`);
    const { code, stdout, stderr, peakRssMiB: peak = 0 } = await runCoral(["run", "--colony", colony.addr, "--memory", "4096", file], { sampleRss: true });
    expect(stderr).toBe("");
    expect(stdout).toBe("queued\n");
    expect(code).toBe(0);
    expect(peak).toBeGreaterThan(0);
    // coral run itself is ~60-90 MB here; a buffered flood would be hundreds more.
    expect(peak).toBeLessThan(200);
  }, 120_000);
});
