// run_overhead, baseline: the same request with plain fetch, run by the Deno binary directly.
// Usage: deno run --allow-net=HOST:PORT one-call-fetch.ts HOST:PORT
const addr = (globalThis as unknown as { Deno: { args: string[] } }).Deno.args[0];
const res = await fetch(`http://${addr}/coral.colony.v1.QueryService/GetPercentile`, {
  method: "POST",
  headers: { "content-type": "application/json", "connect-protocol-version": "1" },
  body: JSON.stringify({ service: "checkout", percentile: 0.99, timeRangeMs: "3600000" }),
});
if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
const body = (await res.json()) as { value: number };
console.log(JSON.stringify({ p99: body.value }));
