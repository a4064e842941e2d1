// Service latency report: P50, P99 and error rate of every service over the last hour,
// flagging services whose P99 is above a threshold.
//
//   coral colony start --demo                      # in another terminal
//   coral run examples/latency-report.ts
//   coral run --param window=15m --param threshold=300ms examples/latency-report.ts
//
// Parameters (all optional):
//   window     look-back window (default 1h)
//   threshold  flag services whose P99 is above this (default 500ms)
//
// coral run's flags (--param, --colony, …) go before or after the script path; arguments after
// `--` are passed to the script itself (Deno.args).
import * as coral from "@coral/sdk";

const windowMs = coral.params.durationMs("window", "1h");
const thresholdNs = coral.params.durationNs("threshold", "500ms");
// null is "no data in the window", shown as such rather than as 0.
const ms = (ns: number | null) => (ns === null ? "no data" : `${(ns / 1_000_000).toFixed(1)}ms`);

const services = await coral.services.list();

console.log("Service Latency Report\n");

for (const svc of services) {
  const p50 = await svc.metrics.getP50("http.server.duration", windowMs);
  const p99 = await svc.metrics.getP99("http.server.duration", windowMs);
  const errorRate = await svc.metrics.getErrorRate(windowMs);

  console.log(`${svc.name}:`);
  console.log(`  P50: ${ms(p50)}`);
  console.log(`  P99: ${ms(p99)}`);
  console.log(`  Errors: ${errorRate === null ? "no requests" : `${(errorRate * 100).toFixed(2)}%`}`);
  if (p99 !== null && p99 > thresholdNs) {
    console.log(`  ⚠️  High latency detected!`);
  }
  console.log();
}
