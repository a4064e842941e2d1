// run_overhead: wall time of `coral run` on a script making one SDK call, against the Deno binary running
// the same request with plain fetch. Rounds interleave the variants; medians; the ratio is the goal.
//
// Breakdown variants explain where the difference goes: the CLI's own start-up (`coral --version` loads
// every command; `coral run --help` only what `coral run` loads),
// the module-graph check (`deno info --json`, which coral run does before every run), and the SDK script
// run by Deno directly with the import map coral run would generate (the SDK bundle's cost).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { cleanEnv, coralBin, denoBin, lastJson, median, mustSucceed, round, runProcess, sdkBundle, type BenchContext, type BenchResult, type Benchmark } from "./lib.js";
import { benchColony } from "./percentile.js";

const scripts = new URL("./scripts/", import.meta.url).pathname;

export const runOverhead: Benchmark = {
  name: "run_overhead",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const rounds = ctx.quick ? 3 : 15;
    const colony = await benchColony(ctx, ctx.quick ? 10_000 : 100_000, "run-overhead");
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
          mustSucceed(
            "deno (SDK script)",
            await runProcess(
              denoBin,
              ["run", "--no-config", "--no-lock", `--import-map=${importMap}`, `--allow-net=${addr}`, "--allow-env=CORAL_COLONY_ADDR", sdkScript],
              { env: { ...denoEnv, CORAL_COLONY_ADDR: addr } },
            ),
          ).ms,
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
      const ratio = round(med.coral_run! / med.bare_deno!, 2);
      ctx.log(`  run_overhead: coral run ${med.coral_run} ms, bare deno ${med.bare_deno} ms (×${ratio})`);
      return {
        fields: {
          coral_run_ms: med.coral_run,
          bare_deno_ms: med.bare_deno,
          ratio,
          runs: rounds,
          breakdown_ms: {
            node_startup: med.node_startup,
            coral_cli_startup: med.coral_cli_startup,
            coral_run_startup: med.coral_run_startup,
            deno_info: med.deno_info,
            deno_sdk_script: med.deno_sdk_script,
          },
        },
        goals: [{ field: "run_overhead.ratio", value: ratio, goal: "≤ 1.3 (coral run / bare deno)", met: ratio <= 1.3 }],
        notes: [
          `coral run ${med.coral_run} ms vs deno + fetch ${med.bare_deno} ms (median of ${rounds})`,
          `breakdown: node start-up ${med.node_startup} ms · coral CLI start-up (--version, every command) ${med.coral_cli_startup} ms · \`coral run --help\` (what coral run loads) ${med.coral_run_startup} ms · deno info (graph check) ${med.deno_info} ms · deno running the SDK script directly ${med.deno_sdk_script} ms`,
        ],
      };
    } finally {
      await colony.stop();
    }
  },
};
