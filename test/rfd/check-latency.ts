// check-latency.ts
import * as coral from "@coral/sdk";

const services = await coral.services.list();
const threshold = 500_000_000;  // 500ms

console.log("Services with high latency (>500ms):\n");

for (const svc of services) {
    const p99 = await coral.metrics.getPercentile(svc.name, "http.server.duration", 0.99);

    if (p99 > threshold) {
        console.log(`${svc.name}: ${(p99 / 1_000_000).toFixed(1)}ms`);
    }
}
