// Prototype: does a stream that outlives the SQL runner's deadline end with an error, or just end?
// A slow consumer reads a 200k-row stream under a 300 ms deadline. npx tsx bench/prototypes/stream-deadline.ts
import { SqlRunner } from "../../colony/store/readonly-sql.js";
import { Store } from "../../colony/store/store.js";

const store = await Store.open(":memory:");
const runner = new SqlRunner(store, { timeoutMs: 300 });
let rows = 0;
try {
  for await (const b of runner.stream("SELECT range AS i FROM range(200000)", { maxRows: 200_000 })) {
    rows += b.rows.length;
    await new Promise((r) => setTimeout(r, 5));
  }
  console.log(`stream ended normally after ${rows} of 200000 rows (no error)`);
} catch (err) {
  console.log(`stream failed after ${rows} rows: ${(err as Error).message}`);
}
await store.close();
