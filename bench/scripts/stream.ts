// stream_sql: read a large result with db.stream; rows/s and the script's resident memory as it goes.
// Params: sql, rows (expected count). Prints one JSON line.
import * as coral from "@coral/sdk";

const D = (globalThis as unknown as { Deno: { env: { get(k: string): string | undefined }; memoryUsage(): { rss: number } } }).Deno;
const params = JSON.parse(D.env.get("CORAL_PARAMS") ?? "{}") as Record<string, string>;
const expected = Number(params.rows);
const mb = () => D.memoryUsage().rss / 2 ** 20;

const startRss = mb();
let rows = 0;
let peak = startRss;
let checksum = 0;
const samples: [number, number][] = [];
let nextSample = expected / 10;
const t0 = performance.now();
for await (const batch of coral.db.stream<{ duration_ns: number }>(params.sql!, expected)) {
  for (const row of batch) checksum += row.duration_ns;
  rows += batch.length;
  const rss = mb();
  if (rss > peak) peak = rss;
  if (rows >= nextSample) {
    samples.push([rows, Math.round(rss)]);
    nextSample += expected / 10;
  }
}
const ms = performance.now() - t0;
console.log(JSON.stringify({ rows, ms, start_rss_mb: startRss, peak_rss_mb: peak, samples, checksum }));
