// `npm run bench` — every benchmark at full size; writes bench/results.json and bench/percentile.svg.
// `npm run bench -- --quick` — the same code at small sizes (part of `npm test`); writes under .tmp/.
// `--only a,b` runs some benchmarks (merging into an existing results file); `--out FILE` picks the file.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { parseArgs } from "node:util";
import { explain } from "./explain.js";
import { ingest } from "./ingest.js";
import { assertBuilt, fmt, machine, root, type BenchResult, type Benchmark, type Goal } from "./lib.js";
import { percentile } from "./percentile.js";
import { writePlot } from "./plot.js";
import { runOverhead } from "./run-overhead.js";
import { sdkRpc } from "./sdk-rpc.js";
import { streamSql } from "./stream-sql.js";

const ALL: Benchmark[] = [percentile, runOverhead, sdkRpc, streamSql, ingest, explain];

const USAGE = `usage: npm run bench -- [--quick] [--only NAME,…] [--out FILE]
  --quick   small sizes, the same code (what npm test runs)
  --only    some benchmarks: ${ALL.map((b) => b.name).join(", ")}; merged into the results file
  --out     results file (default bench/results.json; .tmp/bench/results.quick.json with --quick)`;

function options() {
  try {
    return parseArgs({
      options: {
        quick: { type: "boolean", default: false },
        only: { type: "string" },
        out: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}
const values = options();
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const quick = values.quick!;
const only = values.only?.split(",").map((s) => s.trim());
const unknown = only?.filter((n) => !ALL.some((b) => b.name === n)) ?? [];
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(", ")}; known: ${ALL.map((b) => b.name).join(", ")}`);
  process.exit(2);
}
const selected = ALL.filter((b) => !only || only.includes(b.name));
const out = values.out ?? (quick ? join(root, ".tmp/bench/results.quick.json") : join(root, "bench/results.json"));

assertBuilt();
const log = (line: string) => process.stderr.write(`${line}\n`);
const tmp = mkdtempSync(join(tmpdir(), "coral-bench-"));

interface ResultsFile {
  mode: "full" | "quick";
  started: string;
  machine: Record<string, unknown>;
  benchmarks: Record<string, Record<string, unknown>>;
  goals: Goal[];
  notes: Record<string, string[]>;
  errors: Record<string, string>;
}

/**
 * On disk, each benchmark's fields sit at the top level (`.percentile.speedup`, as the goals name
 * them) and everything about the run under `meta`.
 */
function fromFile(text: string): ResultsFile {
  const { meta, ...benchmarks } = JSON.parse(text) as { meta: Omit<ResultsFile, "benchmarks"> } & Record<string, Record<string, unknown>>;
  return { ...meta, benchmarks };
}

function toFile(r: ResultsFile): string {
  const { benchmarks, ...meta } = r;
  return `${JSON.stringify({ ...benchmarks, meta }, null, 2)}\n`;
}

const previous: ResultsFile | undefined = only && existsSync(out) ? fromFile(readFileSync(out, "utf8")) : undefined;
const results: ResultsFile = {
  mode: quick ? "quick" : "full",
  started: new Date().toISOString(),
  machine: machine(),
  benchmarks: { ...(previous?.mode === (quick ? "quick" : "full") ? previous.benchmarks : {}) },
  goals: [],
  notes: { ...(previous?.notes ?? {}) },
  errors: {},
};
const goalsByBench = new Map<string, Goal[]>();
for (const g of previous?.goals ?? []) {
  const name = g.field.split(".")[0]!;
  goalsByBench.set(name, [...(goalsByBench.get(name) ?? []), g]);
}

const t0 = performance.now();
let failed = false;
try {
  for (const b of selected) {
    log(`▶ ${b.name}${quick ? " (quick)" : ""}`);
    const started = performance.now();
    let r: BenchResult;
    try {
      r = await b.run({ quick, log, tmp });
    } catch (err) {
      failed = true;
      const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
      log(`✗ ${b.name} failed: ${msg}`);
      results.errors[b.name] = msg.split("\n")[0]!;
      goalsByBench.delete(b.name);
      delete results.benchmarks[b.name];
      continue;
    }
    results.benchmarks[b.name] = { ...r.fields, seconds: Math.round((performance.now() - started) / 100) / 10 };
    goalsByBench.set(b.name, r.goals);
    results.notes[b.name] = r.notes ?? [];
    log(`✓ ${b.name} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
results.goals = ALL.flatMap((b) => goalsByBench.get(b.name) ?? []);

mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, toFile(results));
const plot = quick ? join(dirname(out), "percentile.svg") : join(root, "bench/percentile.svg");
if (results.benchmarks.percentile) writeFileSync(plot, writePlot(results.benchmarks.percentile));

// The table: one row per goal, then each benchmark's baselines and breakdowns.
const rows = [["goal", "measured", "target", "met"], ...results.goals.map((g) => [g.field, fmt(g.value), g.goal, g.met ? "yes" : "NO"])];
const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
const line = (r: string[]) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ");
console.log(`\nCoral benchmarks (${results.mode}) on ${results.machine.cores} × ${results.machine.cpu}, Node ${results.machine.node}, Deno ${results.machine.deno}\n`);
console.log(line(rows[0]!));
console.log(widths.map((w) => "─".repeat(w)).join("  "));
for (const r of rows.slice(1)) console.log(line(r));
for (const [name, notes] of Object.entries(results.notes)) {
  if (!notes.length || !goalsByBench.has(name)) continue;
  console.log(`\n${name}:`);
  for (const n of notes) console.log(`  ${n}`);
}
for (const [name, msg] of Object.entries(results.errors)) console.log(`\n${name}: FAILED — ${msg}`);
console.log(`\nwrote ${relative(root, out)}${results.benchmarks.percentile ? ` and ${relative(root, plot)}` : ""} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
process.exitCode = failed ? 1 : 0;
