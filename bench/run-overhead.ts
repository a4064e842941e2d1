// run_overhead: wall time of `coral run` on a script making one SDK call, against Deno running the same
// SDK script directly (the goal's ratio) and against Deno making the same request with plain fetch.
// Rounds interleave the variants; medians.
//
// The SDK script needs a parent on its channel: for "Deno directly" this process is that parent (the
// same Broker `coral run` uses, already loaded), so the difference to `coral run` is what coral run
// adds: Node and CLI start-up, the module-graph check, the run directory, the OS limits.
// Breakdown variants explain where the difference goes: the CLI's own start-up (`coral --version`
// loads every command; `coral run --help` only what `coral run` loads) and the module-graph check
// (`deno info --json`, which coral run does for scripts importing more than the SDK and node:
// built-ins, while Deno starts at its gate: cli/run/graph-fast.ts, GATE_MODULE in sandbox.ts).
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Broker } from "../cli/run/broker.js";
import { DEFAULT_BUDGET } from "../cli/run/broker-budget.js";
import { CHANNEL_ENV } from "../cli/run/sandbox.js";
import { cleanEnv, coralBin, denoBin, lastJson, median, mustSucceed, round, runProcess, sdkBundle, type BenchContext, type BenchResult, type Benchmark, type ProcResult } from "./lib.js";
import { benchColony } from "./percentile.js";

const scripts = new URL("./scripts/", import.meta.url).pathname;

/** Runs Deno with this process answering the SDK's channel, as `coral run` would. */
function runWithBroker(args: string[], env: Record<string, string>, colony: string): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(denoBin, args, { env: { ...env, ...CHANNEL_ENV }, stdio: ["ignore", "pipe", "pipe", "pipe"] });
    const broker = new Broker(child.stdio[3] as Socket, { colony, budget: DEFAULT_BUDGET, onViolation: () => child.kill("SIGKILL") });
    child.once("exit", () => broker.close());
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr, ms: performance.now() - t0 }));
  });
}

export const runOverhead: Benchmark = {
  name: "run_overhead",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const rounds = ctx.quick ? 1 : 15;
    const colony = await benchColony(ctx, ctx.quick ? 2_000 : 100_000, "run-overhead");
    try {
      const addr = colony.addr;
      const importMap = join(ctx.tmp, "run-overhead-import-map.json");
      writeFileSync(importMap, JSON.stringify({ imports: { "@coral/sdk": pathToFileURL(sdkBundle).href } }));
      const sdkScript = join(scripts, "one-call-sdk.ts");
      const denoEnv = cleanEnv({ DENO_NO_UPDATE_CHECK: "1" });
      const variants: Record<string, () => Promise<number>> = {
        coral_run: async () =>
          mustSucceed("coral run", await runProcess(process.execPath, [coralBin, "run", "--colony", addr, sdkScript])).ms,
        bare_deno: async () =>
          mustSucceed(
            "deno (fetch)",
            await runProcess(denoBin, ["run", "--no-config", "--no-lock", `--allow-net=${addr}`, join(scripts, "one-call-fetch.ts"), addr], { env: denoEnv }),
          ).ms,
        deno_sdk_script: async () =>
          mustSucceed("deno (SDK script)", await runWithBroker(["run", "--no-config", "--no-lock", `--import-map=${importMap}`, sdkScript], denoEnv, addr)).ms,
        deno_info: async () =>
          mustSucceed("deno info", await runProcess(denoBin, ["info", "--json", "--no-config", "--no-lock", `--import-map=${importMap}`, sdkScript], { env: denoEnv })).ms,
        coral_cli_startup: async () => mustSucceed("coral --version", await runProcess(process.execPath, [coralBin, "--version"])).ms,
        // What `coral run` itself loads (commands are loaded per group; --version loads them all).
        coral_run_startup: async () => mustSucceed("coral run --help", await runProcess(process.execPath, [coralBin, "run", "--help"])).ms,
        node_startup: async () => mustSucceed("node -e 0", await runProcess(process.execPath, ["-e", "0"])).ms,
      };
      // The scripts must agree before their times mean anything.
      const sdkOut = lastJson<{ p99: number }>(mustSucceed("coral run", await runProcess(process.execPath, [coralBin, "run", "--colony", addr, sdkScript])).stdout);
      const fetchOut = lastJson<{ p99: number }>(
        (await runProcess(denoBin, ["run", "--no-config", "--no-lock", `--allow-net=${addr}`, join(scripts, "one-call-fetch.ts"), addr], { env: denoEnv })).stdout,
      );
      if (!(sdkOut.p99 > 0) || Math.abs(sdkOut.p99 - fetchOut.p99) > 1e-6 * sdkOut.p99) {
        throw new Error(`the SDK script and the fetch script disagree: ${sdkOut.p99} vs ${fetchOut.p99}`);
      }

      const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
      const names = Object.keys(variants);
      for (let r = 0; r < rounds; r++) {
        for (let k = 0; k < names.length; k++) {
          const name = names[(k + r) % names.length]!;
          times[name]!.push(await variants[name]!());
        }
      }
      const med = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, round(median(v), 1)])) as Record<string, number>;
      const ratio = round(med.coral_run! / med.deno_sdk_script!, 2);
      const ratioBare = round(med.coral_run! / med.bare_deno!, 2);
      ctx.log(`  run_overhead: coral run ${med.coral_run} ms, deno + SDK script ${med.deno_sdk_script} ms (×${ratio}), deno + fetch ${med.bare_deno} ms (×${ratioBare})`);
      return {
        fields: {
          coral_run_ms: med.coral_run,
          deno_sdk_script_ms: med.deno_sdk_script,
          bare_deno_ms: med.bare_deno,
          ratio,
          ratio_vs_bare_deno: ratioBare,
          runs: rounds,
          breakdown_ms: {
            node_startup: med.node_startup,
            coral_cli_startup: med.coral_cli_startup,
            coral_run_startup: med.coral_run_startup,
            deno_info: med.deno_info,
            deno_sdk_script: med.deno_sdk_script,
          },
        },
        goals: [
          { field: "run_overhead.ratio", value: ratio, goal: "≤ 2.0 (coral run / deno run of the same SDK script)", met: ratio <= 2.0 },
          { field: "run_overhead.ratio_vs_bare_deno", value: ratioBare, goal: "reported; lower is better (coral run / deno run + fetch)", met: true },
        ],
        notes: [
          `coral run ${med.coral_run} ms vs deno running the SDK script ${med.deno_sdk_script} ms vs deno + fetch ${med.bare_deno} ms (median of ${rounds})`,
          `breakdown: node start-up ${med.node_startup} ms · coral CLI start-up (--version, every command) ${med.coral_cli_startup} ms · \`coral run --help\` (what coral run loads) ${med.coral_run_startup} ms · deno info (graph check of multi-file scripts) ${med.deno_info} ms`,
        ],
      };
    } finally {
      await colony.stop();
    }
  },
};
