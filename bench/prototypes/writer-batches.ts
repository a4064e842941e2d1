// Prototype: Writer throughput by batch size and by how many spans the store already holds.
// npx tsx bench/writer-batches.ts
import { Writer } from "../../colony/ingest/writer.js";
import { Store } from "../../colony/store/store.js";
import { syntheticSpans } from "../ingest.js";

for (const batch of [512, 4096, 32768]) {
  const store = await Store.open(":memory:");
  const writer = new Writer(store);
  const spans = syntheticSpans(262_144, Date.now() - 30 * 60_000);
  const marks: string[] = [];
  let t0 = performance.now();
  let done = 0;
  for (let off = 0; off < spans.length; off += batch) {
    await writer.writeSpans(spans.slice(off, off + batch));
    done += Math.min(batch, spans.length - off);
    if (done % 65_536 === 0) {
      marks.push(`${done / 1024}k: ${Math.round(65_536 / ((performance.now() - t0) / 1000))}/s`);
      t0 = performance.now();
    }
  }
  console.log(`batch ${batch}: ${marks.join(", ")}`);
  await writer.close();
  await store.close();
}
