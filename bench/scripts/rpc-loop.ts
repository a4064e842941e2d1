// sdk_rpc, subject: sequential GetPercentile calls through the SDK (and so through `coral run`'s
// pipe), one timed round after a warm-up. Prints one JSON line. Params: calls.
import * as coral from "@coral/sdk";

const calls = coral.params.number("calls", 100);
let value: number | null = 0;
for (let i = 0; i < 20; i++) value = await coral.metrics.getPercentile("checkout"); // warm-up: JIT, the parent's connection
const t0 = performance.now();
for (let i = 0; i < calls; i++) value = await coral.metrics.getPercentile("checkout");
console.log(JSON.stringify({ value, rate: calls / ((performance.now() - t0) / 1000) }));
