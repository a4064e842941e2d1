// Run as a child process by writer.test.ts: commits demo spans whose rollup contributions are
// still waiting in memory, then dies the way `kill -9` kills a colony.
import { DemoTraffic } from "../../demo/demo.js";
import { Store } from "../../store/store.js";
import { Writer } from "../writer.js";
import type { SpanRecord } from "../records.js";

const [path, startMs] = [process.argv[2]!, Number(process.argv[3])];
const store = await Store.open(path);
const writer = new Writer(store, { rollupDelayMs: Infinity, rollupMaxSpans: Infinity });
const traffic = new DemoTraffic(5);
const spans: SpanRecord[] = [];
for (let i = 0; i < 300; i++) spans.push(...traffic.trace(startMs + i * 700));
for (let i = 0; i < spans.length; i += 500) await writer.writeSpans(spans.slice(i, i + 500));
process.stdout.write(`${spans.length}\n`);
process.kill(process.pid, "SIGKILL");
