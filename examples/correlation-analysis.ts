// Cross-service correlation: which services are failing right now, is it several at once
// (a cascade), and does each one's error rate move with its hosts' CPU?
//
// For each service it prints the error rate over the window, CPU and memory of its hosts,
// and the Pearson correlation between errors per minute and CPU per minute (from raw SQL
// over `service_summary` and `system_metrics_rollup`). Two or more unhealthy services at
// once are reported as a possible cascading failure, and the script exits with code 3.
//
//   coral colony start --demo                      # in another terminal
//   coral run examples/correlation-analysis.ts
//   coral run --param window=30m --param max-error-rate=1% --param services=payments,orders \
//     examples/correlation-analysis.ts
//
// Parameters (all optional):
//   window          look-back window, e.g. 5m, 30m, 1h (default 30m)
//   max-error-rate  a service above this error rate is unhealthy, e.g. 1% or 0.01 (default 1%)
//   services        comma-separated service names (default: every service)
//
// coral run's flags (--param, --colony, …) go before or after the script path.
import * as coral from "@coral/sdk";

const windowMs = coral.params.durationMs("window", "30m");
const maxErrorRate = ratio(coral.params.string("max-error-rate", "1%"));
const wanted = coral.params.has("services") ? coral.params.services.split(",").map((s) => s.trim()) : undefined;

/** "1%" → 0.01, "0.01" → 0.01. */
function ratio(text: string): number {
  const v = text.endsWith("%") ? Number(text.slice(0, -1)) / 100 : Number(text);
  if (!(v >= 0 && v <= 1)) throw new coral.CoralError("invalid_argument", `max-error-rate: "${text}" is not a rate like 1% or 0.01`);
  return v;
}

interface Row {
  service: string;
  /** null: no data in the window (no requests, no host metrics), not a 0. */
  errorRate: number | null;
  cpuPercent: number | null;
  memoryPercent: number | null;
  /** Correlation of errors/minute with CPU/minute; null when it cannot be computed. */
  errorsVsCpu: number | null;
}

const all = await coral.services.list();
const services = wanted ? all.filter((s) => wanted.includes(s.name)) : all;
for (const name of wanted ?? []) {
  if (!all.some((s) => s.name === name)) console.error(`note: no service named "${name}" — skipped`);
}

// One query for every service's per-minute errors next to its hosts' average CPU.
const minutes = await coral.db.query<{ service_name: string; errors: number; cpu: number }>(`
  SELECT s.service_name, s.error_count AS errors, AVG(m.cpu_percent) AS cpu
  FROM service_summary s
  JOIN system_metrics_rollup m ON m.service_name = s.service_name AND m.timestamp = s.timestamp
  WHERE s.timestamp > now() - INTERVAL '${Math.ceil(windowMs / 1000)} seconds'
    AND s.metric = 'http.server.duration'
  GROUP BY s.service_name, s.timestamp, s.error_count
`);

function pearson(xs: number[], ys: number[]): number | null {
  const n = xs.length;
  if (n < 3) return null;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  return sxx === 0 || syy === 0 ? null : sxy / Math.sqrt(sxx * syy);
}

const rows: Row[] = [];
for (const svc of services) {
  const errorRate = await svc.metrics.getErrorRate(windowMs);
  const system = await svc.system.getMetrics(windowMs);
  const mine = minutes.rows.filter((r) => r.service_name === svc.name);
  rows.push({
    service: svc.name,
    errorRate,
    cpuPercent: system.cpu_percent,
    memoryPercent: system.memory_percent,
    errorsVsCpu: pearson(mine.map((r) => r.errors), mine.map((r) => r.cpu)),
  });
}

const pct = (r: number | null) => (r === null ? "-" : `${(r * 100).toFixed(2)}%`);
const pctOf = (p: number | null) => (p === null ? "-" : `${p.toFixed(1)}%`);
const unhealthyRate = (r: Row) => r.errorRate !== null && r.errorRate > maxErrorRate;
console.log(`Cross-service correlation, last ${windowMs / 60_000} min (unhealthy above ${pct(maxErrorRate)} errors)\n`);
console.log(`${"SERVICE".padEnd(12)} ${"ERRORS".padStart(7)} ${"CPU".padStart(6)} ${"MEMORY".padStart(7)}  ERRORS~CPU`);
for (const r of rows) {
  const corr = r.errorsVsCpu === null ? "n/a" : r.errorsVsCpu.toFixed(2);
  const flag = unhealthyRate(r) ? "  ⚠️  unhealthy" : "";
  console.log(
    `${r.service.padEnd(12)} ${pct(r.errorRate).padStart(7)} ${pctOf(r.cpuPercent).padStart(6)} ${pctOf(r.memoryPercent).padStart(7)}  ${corr.padStart(10)}${flag}`,
  );
}

const unhealthy = rows.filter(unhealthyRate);
console.log();
if (unhealthy.length >= 2) {
  console.log(`⚠️  Cascading failure suspected: ${unhealthy.map((r) => r.service).join(", ")} are failing together.`);
  Deno.exitCode = 3;
} else if (unhealthy.length === 1) {
  console.log(`One unhealthy service: ${unhealthy[0].service}.`);
} else {
  console.log("No service above the error threshold.");
}
