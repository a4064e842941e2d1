// TypeScript SDK: Programmatic access to same API
import * as coral from "@coral/sdk";

const services = await coral.services.list();
// Same data as `coral query services`

const p99 = await coral.metrics.getPercentile("payments", "http.server.duration", 0.99);
// Same data as `coral query metrics payments --percentile 99`

const slowTraces = await coral.traces.findSlow("payments", 500_000_000, 3600_000);
// Same data as `coral query traces payments --slow`
