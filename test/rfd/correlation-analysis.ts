// correlation-analysis.ts
import * as coral from "@coral/sdk";

const services = ["payments", "orders", "inventory"];
const results = [];

for (const svc of services) {
    const errorRate = await coral.metrics.getErrorRate(svc, 300_000);  // 5 min
    const systemMetrics = await coral.system.getMetrics(svc);

    results.push({
        service: svc,
        errorRate,
        memoryPercent: systemMetrics.memory_percent,
        cpuPercent: systemMetrics.cpu_percent
    });
}

// Detect potential correlations
const unhealthy = results.filter(r => r.errorRate > 0.01);

if (unhealthy.length >= 2) {
    console.log("⚠️  Cascading failure detected!");
    for (const svc of unhealthy) {
        console.log(`  ${svc.service}: ${(svc.errorRate * 100).toFixed(2)}% errors, CPU: ${svc.cpuPercent}%, Memory: ${svc.memoryPercent}%`);
    }
}
