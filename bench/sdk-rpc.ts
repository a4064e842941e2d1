// sdk_rpc: sequential SDK calls per second from a script under `coral run` (each call crosses the
// pipe to `coral run`, which asks the colony) against plain fetch of the same Connect endpoint from an
// unsandboxed `deno run --allow-net` (hand-encoded protobuf, no library; and Connect JSON). A script
// has no network, so the two run in separate processes, alternating round by round; each times its
// calls after a warm-up, so process start-up is not in the rates.
//
// Beside it, the parent's own share: CPU per unary call of the colony client (cli/runtime/client.ts)
// in this process, over node:http (post + readUnary, the path before lean-http.ts) and over the lean
// path (unary), alternating, on the same colony and request as the script's.
import { join } from "node:path";
import { ColonyClient } from "../cli/runtime/client.js";
import { readUnary } from "../cli/runtime/connect-wire.js";
import { cleanEnv, coralBin, denoBin, lastJson, median, mustSucceed, round, runProcess, type BenchContext, type BenchResult, type Benchmark } from "./lib.js";
import { benchColony } from "./percentile.js";

const scripts = new URL("./scripts/", import.meta.url).pathname;

export const sdkRpc: Benchmark = {
  name: "sdk_rpc",
  async run(ctx: BenchContext): Promise<BenchResult> {
    const rounds = ctx.quick ? 1 : 9;
    const calls = ctx.quick ? 10 : 300;
    const colony = await benchColony(ctx, ctx.quick ? 2_000 : 100_000, "sdk-rpc");
    try {
      const rates: Record<"sdk" | "fetch_proto" | "fetch_json", number[]> = { sdk: [], fetch_proto: [], fetch_json: [] };
      const values = new Set<number>();
      for (let r = 0; r < rounds; r++) {
        const sdk = async () => {
          const out = lastJson<{ value: number; rate: number }>(
            mustSucceed(
              "coral run rpc-loop.ts",
              await runProcess(process.execPath, [coralBin, "run", "--timeout", "600", "--colony", colony.addr, "--param", `calls=${calls}`, join(scripts, "rpc-loop.ts")]),
            ).stdout,
          );
          rates.sdk.push(out.rate);
          values.add(out.value);
        };
        const fetched = async () => {
          const out = lastJson<{ values: Record<string, number>; rates: Record<string, number> }>(
            mustSucceed(
              "deno run fetch-loop.ts",
              await runProcess(denoBin, ["run", "--no-config", "--no-lock", `--allow-net=${colony.addr}`, join(scripts, "fetch-loop.ts"), colony.addr, String(calls)], {
                env: cleanEnv({ DENO_NO_UPDATE_CHECK: "1" }),
              }),
            ).stdout,
          );
          rates.fetch_proto.push(out.rates.fetch_proto!);
          rates.fetch_json.push(out.rates.fetch_json!);
          for (const v of Object.values(out.values)) values.add(v);
        };
        // Alternate which goes first, so neither always meets a colony warmed by the other.
        for (const f of r % 2 ? [fetched, sdk] : [sdk, fetched]) await f();
      }
      const cpu = await clientCpu(colony.addr, rounds, calls);
      const v = [...values];
      if (!(v[0]! > 0) || v.some((x) => Math.abs(x - v[0]!) > 1e-6 * v[0]!)) throw new Error(`clients disagree: ${JSON.stringify(v)}`);
      const med = Object.fromEntries(Object.entries(rates).map(([k, xs]) => [k, round(median(xs), 0)])) as Record<string, number>;
      const ratio = round(med.sdk! / med.fetch_proto!, 2);
      ctx.log(`  sdk_rpc: SDK ${med.sdk}/s, fetch (protobuf) ${med.fetch_proto}/s, fetch (JSON) ${med.fetch_json}/s → ${ratio}; client CPU/call node:http ${cpu.nodeHttp} µs, lean ${cpu.lean} µs`);
      return {
        fields: {
          sdk_calls_per_s: med.sdk,
          fetch_calls_per_s: med.fetch_proto,
          fetch_json_calls_per_s: med.fetch_json,
          ratio_vs_fetch: ratio,
          ratio_vs_fetch_json: round(med.sdk! / med.fetch_json!, 2),
          client_cpu_us_per_call_node_http: cpu.nodeHttp,
          client_cpu_us_per_call_lean: cpu.lean,
          rounds,
          calls_per_round: calls,
        },
        goals: [{ field: "sdk_rpc.ratio_vs_fetch", value: ratio, goal: "≥ 0.8 (SDK calls/s through the pipe ÷ plain fetch calls/s)", met: ratio >= 0.8 }],
        notes: [
          `GetPercentile p99, sequential, ${calls} calls × ${rounds} rounds per client: SDK through coral run ${med.sdk}/s · unsandboxed fetch + hand-encoded protobuf ${med.fetch_proto}/s · fetch + JSON ${med.fetch_json}/s`,
          `the parent's colony client, CPU per call in-process: node:http ${cpu.nodeHttp} µs · lean HTTP/1.1 ${cpu.lean} µs`,
        ],
      };
    } finally {
      await colony.stop();
    }
  },
};

/** Median CPU µs per call (user + system) of each unary path of ColonyClient, `calls` per round. */
async function clientCpu(addr: string, rounds: number, calls: number): Promise<{ nodeHttp: number; lean: number }> {
  const client = new ColonyClient({ baseUrl: `http://${addr}`, display: addr }, undefined);
  const path = "/coral.colony.v1.QueryService/GetPercentile";
  const body = () => Buffer.from(JSON.stringify({ service: "checkout", percentile: 0.99, timeRangeMs: "3600000" }));
  const paths = {
    nodeHttp: async () => readUnary(await client.post(path, "application/json", body()), "application/json", client.limits),
    lean: () => client.unary(path, "application/json", body()),
  };
  const us: Record<keyof typeof paths, number[]> = { nodeHttp: [], lean: [] };
  try {
    for (const call of Object.values(paths)) for (let i = 0; i < 20; i++) await call(); // warm-up: JIT, connections
    for (let r = 0; r < rounds; r++) {
      const order = (r % 2 ? ["lean", "nodeHttp"] : ["nodeHttp", "lean"]) as (keyof typeof paths)[];
      for (const name of order) {
        const t0 = process.cpuUsage();
        for (let i = 0; i < calls; i++) await paths[name]();
        const t = process.cpuUsage(t0);
        us[name].push((t.user + t.system) / calls);
      }
    }
  } finally {
    client.close();
  }
  return { nodeHttp: round(median(us.nodeHttp), 0), lean: round(median(us.lean), 0) };
}
