// SDK demo monitor: a small live dashboard that touches every part of @coral/sdk once per
// refresh — services, metrics (P50/P95/P99, error rate), traces (slow and failed), system
// metrics, raw SQL with db.query, a streamed scan with db.stream — and shows how to handle
// CoralError. Read it as a tour; copy the parts you need.
//
//   coral colony start --demo                      # in another terminal
//   coral run examples/sdk-demo-monitor.ts
//   coral run --param interval=2s --param iterations=5 --param namespace=shop examples/sdk-demo-monitor.ts
//
// Parameters (all optional):
//   interval    time between refreshes (default 5s)
//   iterations  refreshes before exiting (default 3)
//   window      look-back window of every query (default 1h)
//   namespace   only services of this namespace (default: all)
//   slow        a trace at least this long counts as slow (default 500ms)
//
// coral run's flags (--param, --colony, …) go before or after the script path; keep
// iterations × interval under coral run's --timeout (60 s by default).
import * as coral from "@coral/sdk";

const intervalMs = coral.params.durationMs("interval", "5s");
const iterations = coral.params.number("iterations", 3);
const windowMs = coral.params.durationMs("window", "1h");
const namespace = coral.params.has("namespace") ? coral.params.string("namespace") : undefined;
const slowNs = coral.params.durationNs("slow", "500ms");

// Units: durations from the SDK are nanoseconds, windows are milliseconds, rates are 0..1.
// null is "no data in the window", shown as "-" rather than as a 0.
const ms = (ns: number | null) => (ns === null ? "-" : `${(ns / 1_000_000).toFixed(1)}ms`);
const pct = (r: number | null) => (r === null ? "-" : `${(r * 100).toFixed(2)}%`);
const pctOf = (p: number | null) => (p === null ? "-" : `${p.toFixed(1)}%`);
const col = (s: string | number, w: number) => String(s).padStart(w);

async function refresh(n: number): Promise<void> {
  // services.list() → plain objects { name, namespace, region, instance_count } that also
  // carry bound helpers: svc.metrics.*, svc.traces.*, svc.system.*, svc.services.get().
  const services = await coral.services.list(namespace);
  console.log(`── refresh ${n}/${iterations} · ${new Date().toISOString()} · ${services.length} services · window ${windowMs / 60_000} min`);
  console.log(`${"SERVICE".padEnd(11)} ${col("INST", 4)} ${col("REQS", 6)} ${col("P50", 9)} ${col("P95", 9)} ${col("P99", 9)} ${col("ERRORS", 7)} ${col("CPU", 6)} ${col("MEM", 6)} ${col("SLOW", 5)}`);
  for (const svc of services) {
    const [info, p50, p95, p99, errorRate, system, slow] = await Promise.all([
      svc.services.get(windowMs),
      svc.metrics.getP50("http.server.duration", windowMs),
      svc.metrics.getP95("http.server.duration", windowMs),
      svc.metrics.getP99("http.server.duration", windowMs),
      svc.metrics.getErrorRate(windowMs),
      svc.system.getMetrics(windowMs),
      svc.traces.findSlow(slowNs, windowMs, 1000),
    ]);
    console.log(
      `${svc.name.padEnd(11)} ${col(svc.instance_count, 4)} ${col(info.request_count, 6)} ${col(ms(p50), 9)} ${col(ms(p95), 9)} ${col(ms(p99), 9)} ` +
        `${col(pct(errorRate), 7)} ${col(pctOf(system.cpu_percent), 6)} ${col(pctOf(system.memory_percent), 6)} ${col(slow.length, 5)}`,
    );
  }

  // The most recent failure anywhere: traces are { trace_id, duration_ns, timestamp: Date, … }.
  const failures = (await Promise.all(services.map((s) => s.traces.findErrors(windowMs, 1)))).flat();
  failures.sort((a, b) => (b.timestamp?.getTime() ?? 0) - (a.timestamp?.getTime() ?? 0));
  if (failures[0]) {
    const f = failures[0];
    console.log(`latest failure: ${f.service} ${f.root_name} ${ms(f.duration_ns)} at ${f.timestamp?.toISOString()} (trace ${f.trace_id})`);
  }

  // Raw SQL for what the helpers do not ask: the slowest endpoint by average latency.
  // Rows are objects keyed by column name; BIGINT columns arrive as numbers.
  const since = `now() - INTERVAL '${Math.ceil(windowMs / 1000)} seconds'`;
  const slowest = await coral.db.query<{ service_name: string; root_name: string; calls: number; avg_ns: number }>(`
    SELECT service_name, root_name, COUNT(*) AS calls, AVG(duration_ns) AS avg_ns
    FROM trace_summary
    WHERE timestamp > ${since}
    GROUP BY service_name, root_name
    ORDER BY avg_ns DESC
    LIMIT 1`);
  for (const row of slowest) {
    console.log(`slowest endpoint: ${row.service_name} ${row.root_name}, ${row.calls} calls, avg ${ms(row.avg_ns)}`);
  }

  // db.stream for a scan larger than db.query's 10,000-row cap: count spans per kind.
  const kinds = new Map<string, number>();
  let spans = 0;
  for await (const batch of coral.db.stream<{ kind: string }>(`SELECT kind FROM spans WHERE start_time > ${since}`)) {
    for (const row of batch) kinds.set(row.kind, (kinds.get(row.kind) ?? 0) + 1);
    spans += batch.length;
  }
  console.log(`spans streamed: ${spans} (${[...kinds].map(([k, c]) => `${k} ${c}`).join(", ")})`);
}

// Errors: every SDK failure is a CoralError with a `code`. Here, an unknown service:
try {
  await coral.metrics.getP99("no-such-service");
} catch (e) {
  if (!(e instanceof coral.CoralError)) throw e;
  console.log(`(CoralError demo: code=${e.code}: ${e.message})\n`);
}

for (let n = 1; n <= iterations; n++) {
  try {
    await refresh(n);
  } catch (e) {
    // The colony going away is worth waiting out; other errors end the script.
    if (e instanceof coral.CoralError && e.code === "unavailable") console.error(e.message);
    else throw e;
  }
  if (n < iterations) {
    console.log();
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
