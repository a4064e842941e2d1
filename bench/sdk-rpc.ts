// sdk_rpc: sequential SDK calls per second from a Deno script against plain fetch of the same Connect
// endpoint (hand-encoded protobuf, no library), in alternating rounds within one `coral run`.
import { join } from "node:path";
import { coralBin, lastJson, median, mustSucceed, round, runProcess, type BenchContext, type BenchResult, type Benchmark } from "./lib.js";
import { benchColony } from "./percentile.js";

const script = join(new URL("./scripts/", import.meta.url).pathname, "rpc-loop.ts");

interface LoopOutput {
  values: Record<string, number>;
  rates: Record<string, number[]>;
}

export const sdkRpc: Benchmark = {
  name: "sdk_rpc",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const rounds = ctx.quick ? 2 : 9;
    const calls = ctx.quick ? 30 : 200;
    const colony = await benchColony(ctx, ctx.quick ? 10_000 : 100_000, "sdk-rpc");
    try {
      const r = mustSucceed(
        "coral run rpc-loop.ts",
        await runProcess(process.execPath, [coralBin, "run", "--timeout", "600", "--colony", colony.addr, "--param", `rounds=${rounds}`, "--param", `calls=${calls}`, script]),
      );
      const out = lastJson<LoopOutput>(r.stdout);
      const v = Object.values(out.values);
      if (!(v[0]! > 0) || v.some((x) => Math.abs(x - v[0]!) > 1e-6 * v[0]!)) throw new Error(`clients disagree: ${JSON.stringify(out.values)}`);
      const med = Object.fromEntries(Object.entries(out.rates).map(([k, xs]) => [k, round(median(xs), 0)])) as Record<string, number>;
      const ratio = round(med.sdk! / med.fetch_proto!, 2);
      ctx.log(`  sdk_rpc: SDK ${med.sdk}/s, fetch (protobuf) ${med.fetch_proto}/s, fetch (JSON) ${med.fetch_json}/s → ${ratio}`);
      return {
        fields: {
          sdk_calls_per_s: med.sdk,
          fetch_calls_per_s: med.fetch_proto,
          fetch_json_calls_per_s: med.fetch_json,
          ratio_vs_fetch: ratio,
          ratio_vs_fetch_json: round(med.sdk! / med.fetch_json!, 2),
          rounds,
          calls_per_round: calls,
        },
        goals: [{ field: "sdk_rpc.ratio_vs_fetch", value: ratio, goal: "≥ 0.8 (SDK calls/s ÷ plain fetch calls/s)", met: ratio >= 0.8 }],
        notes: [
          `GetPercentile p99, sequential, ${calls} calls × ${rounds} rounds per client: SDK ${med.sdk}/s · fetch + hand-encoded protobuf ${med.fetch_proto}/s · fetch + JSON ${med.fetch_json}/s`,
        ],
      };
    } finally {
      await colony.stop();
    }
  },
};
