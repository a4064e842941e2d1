// stream_sql: read a large result with db.stream; rows/s and the script's resident memory as it goes.
// Params: sql, rows (expected count). Prints one JSON line.
//
// Beside RSS, each sample records the sizes of V8's young and old generations (node:v8, which
// needs no permission): RSS that grows while the old generation stays put is V8 sizing its young
// generation to the allocation rate, not rows kept alive — those would be promoted and grow it.
import * as coral from "@coral/sdk";
import { getHeapSpaceStatistics } from "node:v8";

const D = (globalThis as unknown as { Deno: { env: { get(k: string): string | undefined }; memoryUsage(): { rss: number; heapUsed: number } } }).Deno;
const params = JSON.parse(D.env.get("CORAL_PARAMS") ?? "{}") as Record<string, string>;
const expected = Number(params.rows);
const MB = 2 ** 20;
const mb = () => D.memoryUsage().rss / MB;

/** [young generation MB, old generation MB, heap used MB]; sizes are what V8 holds, used or not. */
function heap(): [number, number, number] {
  let young = 0;
  let old = 0;
  for (const s of getHeapSpaceStatistics()) {
    if (s.space_name === "new_space" || s.space_name === "new_large_object_space") young += s.space_size;
    else if (s.space_name === "old_space" || s.space_name === "large_object_space") old += s.space_size;
  }
  return [Math.round(young / MB), Math.round(old / MB), Math.round(D.memoryUsage().heapUsed / MB)];
}

const startRss = mb();
let rows = 0;
let peak = startRss;
let checksum = 0;
const samples: [number, number][] = [];
const heapSamples: [number, number, number, number][] = [];
// Wall-clock times of the samples, so that the bench can line up coral run's RSS with the rows.
const sampleTimes: number[] = [];
let nextSample = expected / 10;
const t0 = performance.now();
for await (const batch of coral.db.stream<{ duration_ns: number }>(params.sql!, expected)) {
  for (const row of batch) checksum += row.duration_ns;
  rows += batch.length;
  const rss = mb();
  if (rss > peak) peak = rss;
  if (rows >= nextSample) {
    samples.push([rows, Math.round(rss)]);
    heapSamples.push([rows, ...heap()]);
    sampleTimes.push(Date.now());
    nextSample += expected / 10;
  }
}
const ms = performance.now() - t0;
console.log(JSON.stringify({ rows, ms, start_rss_mb: startRss, peak_rss_mb: peak, samples, heap_samples: heapSamples, sample_times: sampleTimes, checksum }));
