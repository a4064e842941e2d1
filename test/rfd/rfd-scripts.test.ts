// The RFD's example scripts, unmodified (see README.md in this directory), and every SDK example
// of the proto annotations, as written, run with `coral run` against `coral colony start --demo`
// (one demo colony for both: its seed is most of the cost).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rpcsOf } from "../../codegen/model.js";
import { file_coral_colony_v1_query } from "../../gen/coral/colony/v1/query_pb.js";
import { DEMO_SERVICES, runCoral, spawnColony, type RunResult, type SpawnedColony } from "../helpers/colony.js";

const here = fileURLToPath(new URL(".", import.meta.url));

let colony: SpawnedColony;
beforeAll(async () => {
  colony = await spawnColony({ demo: true });
});
afterAll(async () => {
  await colony?.stop();
});

/** `coral run SCRIPT` with the colony in $CORAL_COLONY_ADDR, as the RFD's CLI Configuration has it. */
const run = (name: string): Promise<RunResult> => runCoral(["run", join(here, name)], { env: { CORAL_COLONY_ADDR: colony.addr } });

const MS = String.raw`(\d+\.\d)ms`;

describe("RFD 076 scripts, verbatim", () => {
  it("Example 1, latency-report.ts: every demo service with its P99 and error rate", async () => {
    const r = await run("latency-report.ts");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith("Service Latency Report\n\n")).toBe(true);
    const body = r.stdout.slice("Service Latency Report\n\n".length);
    const block = new RegExp(String.raw`([\w-]+):\n  P99: ${MS}\n  Error Rate: (\d+\.\d\d)%\n(  ⚠️  High latency detected!\n)?`, "g");
    const seen: Record<string, { p99: number; rate: number; flagged: boolean }> = {};
    for (const m of body.matchAll(block)) seen[m[1]] = { p99: Number(m[2]), rate: Number(m[3]), flagged: m[4] !== undefined };
    expect(body.replace(block, ""), "nothing but service blocks").toBe("");
    expect(Object.keys(seen)).toEqual(DEMO_SERVICES);
    for (const [name, s] of Object.entries(seen)) {
      // Flagged on the unrounded value: a p99 printed as exactly 500.0 may be either side.
      if (s.p99 !== 500) expect(s.flagged, name).toBe(s.p99 > 500);
      expect(s.rate, name).toBeLessThan(100);
    }
    // The demo's shape: legacy-api is slow and flaky, auth is fast.
    expect(seen["legacy-api"].flagged).toBe(true);
    expect(seen["legacy-api"].rate).toBeGreaterThan(1);
    expect(seen.auth.flagged).toBe(false);
  });

  it("Example 2, correlation-analysis.ts: runs clean; whatever it reports is well-formed", async () => {
    const r = await run("correlation-analysis.ts");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    // The demo's last five minutes are healthy, so usually nothing is reported; if two of the
    // three services do cross 1%, the report must carry real numbers (not undefined/NaN).
    if (r.stdout !== "") {
      const lines = r.stdout.trimEnd().split("\n");
      expect(lines[0]).toBe("⚠️  Cascading failure detected!");
      expect(lines.length).toBeGreaterThanOrEqual(3);
      for (const line of lines.slice(1)) {
        expect(line).toMatch(/^ {2}(payments|orders|inventory): \d+\.\d\d% errors, CPU: \d+(\.\d+)?%, Memory: \d+(\.\d+)?%$/);
      }
    }
  });

  it("Appendix, check-latency.ts: lists legacy-api, and only services above 500ms", async () => {
    const r = await run("check-latency.ts");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const [header, blank, ...lines] = r.stdout.trimEnd().split("\n");
    expect(header).toBe("Services with high latency (>500ms):");
    expect(blank).toBe("");
    const listed = lines.map((l) => {
      const m = new RegExp(`^([\\w-]+): ${MS}$`).exec(l);
      expect(m, l).not.toBeNull();
      expect(Number(m![2]), l).toBeGreaterThan(500);
      return m![1];
    });
    expect(listed).toContain("legacy-api");
    expect(listed).not.toContain("auth");
    expect(listed).not.toContain("inventory");
    for (const name of listed) expect(DEMO_SERVICES).toContain(name);
  });

  it("the TypeScript SDK API tour runs end to end", async () => {
    const r = await run("sdk-api-tour.ts");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("Something went wrong\n");
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines.slice(0, DEMO_SERVICES.length)).toEqual([
      "auth (platform)",
      "frontend (web)",
      "inventory (shop)",
      "legacy-api (legacy)",
      "orders (shop)",
      "payments (shop)",
    ]);
    const rest = lines.slice(DEMO_SERVICES.length);
    expect(rest).toHaveLength(3);
    expect(rest[0]).toMatch(/^CPU: \d+(\.\d+)?%$/);
    expect(rest[1]).toMatch(/^Memory: \d+(\.\d+)?%$/);
    expect(rest[2]).toBe("Script started");
  });

  it("the 'same API, two interfaces' snippet runs silently", async () => {
    const r = await run("same-api.ts");
    expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
  });
});

// The examples editors show on hover, the SDK site and docs/reference/ print (`sdk.example`, each
// alias's `example`): type-checked against the SDK's published types and run.
describe("SDK examples of the proto annotations, as written", () => {
  const examples = rpcsOf(file_coral_colony_v1_query.services).flatMap((r) =>
    r.sdk ? [{ fn: `coral.${r.sdk.module}.${r.sdk.function}`, code: r.sdk.example }, ...r.sdk.aliases.map((a) => ({ fn: `coral.${r.sdk!.module}.${a.function}`, code: a.example }))] : [],
  );
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "coral-sdk-examples-"));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("every example in the SDK docs type-checks and runs against a demo colony", { timeout: 120_000 }, async () => {
    expect(examples.length).toBeGreaterThan(10);
    // One script, each example in a block of its own (they may reuse names), a marker before each so
    // a failure points at its example.
    const script = [`import * as coral from "@coral/sdk";`, ...examples.map((e) => `console.log(${JSON.stringify(`>>> ${e.fn}`)});\n{\n${e.code}\n}`)].join("\n");
    const path = join(dir, "examples.ts");
    writeFileSync(path, script + "\n");
    const r = await runCoral(["run", "--check", "--colony", colony.addr, path]);
    const last = [...r.stdout.matchAll(/^>>> (\S+)$/gm)].at(-1)?.[1];
    expect(r.stderr, `stopped in the example of ${last ?? "(none ran)"}`).toBe("");
    expect(r.code).toBe(0);
    expect([...r.stdout.matchAll(/^>>> (\S+)$/gm)].map((m) => m[1])).toEqual(examples.map((e) => e.fn));
  });
});
