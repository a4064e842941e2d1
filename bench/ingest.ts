import type { Benchmark } from "./lib.js";
export const ingest: Benchmark = { name: "ingest", async run() { throw new Error("not written yet"); } };
