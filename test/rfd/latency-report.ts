// latency-report.ts
import * as coral from "@coral/sdk";

const services = await coral.services.list();

console.log("Service Latency Report\n");

for (const svc of services) {
    const p99 = await coral.metrics.getPercentile(svc.name, "http.server.duration", 0.99);
    const errorRate = await coral.metrics.getErrorRate(svc.name, 3600_000);  // last hour

    console.log(`${svc.name}:`);
    console.log(`  P99: ${(p99 / 1_000_000).toFixed(1)}ms`);
    console.log(`  Error Rate: ${(errorRate * 100).toFixed(2)}%`);

    if (p99 > 500_000_000) {
        console.log(`  ⚠️  High latency detected!`);
    }
}
