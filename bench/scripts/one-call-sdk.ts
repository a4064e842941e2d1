// run_overhead, subject: one SDK call from a script started by `coral run`.
import * as coral from "@coral/sdk";

const p99 = await coral.metrics.getPercentile("checkout");
console.log(JSON.stringify({ p99 }));
