// High-latency alert: every `interval`, check each service's P99 latency and error rate
// against thresholds and print an alert, with the slowest traces as evidence and the
// hosts' memory, for each service that crosses them. Ends after `iterations` checks; exits
// with code 3 if the last check raised an alert (so cron or CI can act on it), else 0.
//
//   coral colony start --demo                      # in another terminal
//   coral run examples/high-latency-alert.ts       # one check
//   coral run --timeout 600 --param interval=30s --param iterations=10 --param p99=300ms \
//     examples/high-latency-alert.ts
//
// Parameters (all optional):
//   p99         alert when a service's P99 latency is above this (default 500ms)
//   error-rate  …or when its error rate is above this percentage (default 1, meaning 1%)
//   window      look-back window of each check (default 1h)
//   interval    time between checks (default 30s)
//   iterations  number of checks, then exit (default 1)
//   service     check only this service (default: every service)
//
// coral run's flags (--param, --colony, …) go before or after the script path. With many iterations,
// raise coral run's --timeout (60 s by default) above iterations × interval.
import * as coral from "@coral/sdk";

const p99LimitNs = coral.params.durationNs("p99", "500ms");
const errorRateLimit = coral.params.number("error-rate", 1) / 100;
const windowMs = coral.params.durationMs("window", "1h");
const intervalMs = coral.params.durationMs("interval", "30s");
const iterations = coral.params.number("iterations", 1);
const only = coral.params.has("service") ? coral.params.string("service") : undefined;

// null is "no data in the window": shown as such, never as a 0 that would look healthy.
const ms = (ns: number | null) => (ns === null ? "no data" : `${(ns / 1_000_000).toFixed(1)}ms`);
const pct = (r: number | null) => (r === null ? "no data" : `${(r * 100).toFixed(2)}%`);
const pctOf = (p: number | null) => (p === null ? "no data" : `${p.toFixed(1)}%`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One pass over the services; resolves to the number of alerts raised. */
async function check(): Promise<number> {
  const services = await coral.services.list();
  const targets = only ? services.filter((s) => s.name === only) : services;
  if (only && targets.length === 0) {
    // The same error the SDK raises for an unknown service, with its message.
    await coral.services.get(only);
  }
  let alerts = 0;
  for (const svc of targets) {
    const p99 = await svc.metrics.getP99("http.server.duration", windowMs);
    const errorRate = await svc.metrics.getErrorRate(windowMs);
    const reasons: string[] = [];
    // A service that stopped reporting is an alert too, not a quiet pass.
    if (p99 === null) reasons.push("no latency data in the window");
    else if (p99 > p99LimitNs) reasons.push(`P99 ${ms(p99)} > ${ms(p99LimitNs)}`);
    if (errorRate !== null && errorRate > errorRateLimit) reasons.push(`errors ${pct(errorRate)} > ${pct(errorRateLimit)}`);
    if (reasons.length === 0) continue;

    alerts++;
    const system = await svc.system.getMetrics(windowMs);
    console.log(`🚨 ${svc.name}: ${reasons.join(", ")} (memory ${pctOf(system.memory_percent)}, CPU ${pctOf(system.cpu_percent)})`);
    for (const t of await svc.traces.findSlow(p99LimitNs, windowMs, 3)) {
      console.log(`     slow  ${t.trace_id}  ${ms(t.duration_ns).padStart(9)}  ${t.root_name}  ${t.timestamp?.toISOString()}`);
    }
    for (const t of await svc.traces.findErrors(windowMs, 2)) {
      console.log(`     error ${t.trace_id}  ${ms(t.duration_ns).padStart(9)}  ${t.root_name}  ${t.timestamp?.toISOString()}`);
    }
  }
  return alerts;
}

let lastAlerts = 0;
for (let i = 1; i <= iterations; i++) {
  const at = new Date().toISOString().slice(11, 19);
  try {
    lastAlerts = await check();
    console.log(`[${at}] check ${i}/${iterations}: ${lastAlerts === 0 ? "all clear" : `${lastAlerts} alert(s)`}`);
  } catch (e) {
    // A monitor should survive the colony restarting; anything else is a real problem.
    if (!(e instanceof coral.CoralError) || e.code !== "unavailable") throw e;
    console.error(`[${at}] check ${i}/${iterations}: ${e.message}`);
  }
  if (i < iterations) await sleep(intervalMs);
}
Deno.exitCode = lastAlerts > 0 ? 3 : 0;
