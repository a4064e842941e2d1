// Service activity: how busy each service has been — requests and errors over the window,
// when the colony first and last saw it, a per-minute request sparkline, and its busiest
// endpoints (root span names), counted by streaming every trace of the window.
//
//   coral colony start --demo                      # in another terminal
//   coral run examples/service-activity.ts
//   coral run --param window=3h --param service=payments --param top=5 examples/service-activity.ts
//
// Parameters (all optional):
//   window   look-back window (default 1h)
//   service  only this service (default: every service)
//   top      how many endpoints to list per service (default 3)
//
// coral run's flags (--param, --colony, …) go before or after the script path.
import * as coral from "@coral/sdk";

const windowMs = coral.params.durationMs("window", "1h");
const top = coral.params.number("top", 3);
const only = coral.params.has("service") ? coral.params.string("service") : undefined;
const since = `now() - INTERVAL '${Math.ceil(windowMs / 1000)} seconds'`;
const quote = (s: string) => `'${s.replaceAll("'", "''")}'`;

let services: string[];
if (only) {
  try {
    await coral.services.get(only);
  } catch (e) {
    if (e instanceof coral.CoralError && e.code === "not_found") {
      const known = (await coral.services.list()).map((s) => s.name).join(", ");
      console.error(`no service named "${only}"; the colony knows: ${known}`);
      Deno.exit(1);
    }
    throw e;
  }
  services = [only];
} else {
  services = (await coral.services.list()).map((s) => s.name);
}

// Endpoints: every trace of the window, streamed in batches (there can be far more than the
// 10,000 rows db.query returns), counted here.
const endpoints = new Map<string, Map<string, { count: number; errors: number }>>();
let traces = 0;
const filter = only ? `AND service_name = ${quote(only)}` : "";
for await (const batch of coral.db.stream<{ service_name: string; root_name: string; error: boolean }>(
  `SELECT service_name, root_name, error FROM trace_summary WHERE timestamp > ${since} ${filter}`,
)) {
  for (const t of batch) {
    traces++;
    let byName = endpoints.get(t.service_name);
    if (!byName) endpoints.set(t.service_name, (byName = new Map()));
    const e = byName.get(t.root_name) ?? { count: 0, errors: 0 };
    e.count++;
    if (t.error) e.errors++;
    byName.set(t.root_name, e);
  }
}

// Requests per minute, for the sparkline.
const perMinute = await coral.db.query<{ service_name: string; requests: number }>(`
  SELECT service_name, SUM(request_count) AS requests
  FROM service_summary
  WHERE timestamp > ${since} AND metric = 'http.server.duration' ${filter}
  GROUP BY service_name, timestamp
  ORDER BY service_name, timestamp`);

const BARS = "▁▂▃▄▅▆▇█";
function sparkline(values: number[], width = 60): string {
  if (values.length === 0) return "(no data)";
  // Squeeze into `width` columns by averaging neighbours.
  const cols = Math.min(width, values.length);
  const squeezed = Array.from({ length: cols }, (_, i) => {
    const part = values.slice(Math.floor((i * values.length) / cols), Math.floor(((i + 1) * values.length) / cols));
    return part.reduce((a, b) => a + b, 0) / part.length;
  });
  const max = Math.max(...squeezed);
  return squeezed.map((v) => BARS[max === 0 ? 0 : Math.min(BARS.length - 1, Math.floor((v / max) * BARS.length))]).join("");
}

console.log(`Service activity, last ${windowMs / 60_000} min (${traces} traces)\n`);
for (const name of services) {
  const info = await coral.services.get(name, windowMs);
  const minutes = perMinute.rows.filter((r) => r.service_name === name).map((r) => r.requests);
  const rpm = minutes.length ? info.request_count / minutes.length : 0;
  console.log(`${name}  (${info.service?.namespace}, ${info.service?.region}, ${info.service?.instance_count} instances)`);
  console.log(`  requests: ${info.request_count}  errors: ${info.error_count}  ~${rpm.toFixed(0)}/min`);
  console.log(`  seen:     ${info.first_seen?.toISOString()} … ${info.last_seen?.toISOString()}`);
  console.log(`  per min:  ${sparkline(minutes)}`);
  const busiest = [...(endpoints.get(name) ?? new Map()).entries()].sort((a, b) => b[1].count - a[1].count).slice(0, top);
  for (const [root, e] of busiest) {
    console.log(`  ${String(e.count).padStart(8)}  ${root}${e.errors ? `  (${e.errors} failed)` : ""}`);
  }
  console.log();
}
