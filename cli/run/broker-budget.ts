// Per-run budgets `coral run` enforces on a script's RPCs (`--budget rpcs=N,rows=N,bytes=SIZE,
// time=DURATION`): what an operator bounds before running a script nobody reviewed.
import { UnitParseError, parseDurationMs } from "../../surface/units.js";

export type BudgetName = "rpcs" | "rows" | "bytes" | "time";

/** Limits per run; Infinity = none. `time` is milliseconds of colony time (call durations summed). */
export type Budget = Record<BudgetName, number>;

/**
 * Generous enough for every example and RFD script (and a million-row db.stream), small enough
 * that a runaway loop stops long before it hurts the colony.
 */
export const DEFAULT_BUDGET: Budget = { rpcs: 10_000, rows: 10_000_000, bytes: 1024 ** 3, time: 5 * 60_000 };

const sizeUnits: Record<string, number> = { "": 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m ? sizeUnits[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UnitParseError(`"${text}" is not a size; write it like 500000, 100MB or 1GiB`);
  return Math.floor(Number(m[1]) * unit);
}

function parseCount(text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new UnitParseError(`"${text}" is not a whole number`);
  return Number(text.trim());
}

const parsers: Record<BudgetName, (text: string) => number> = {
  rpcs: parseCount,
  rows: parseCount,
  bytes: parseSize,
  time: parseDurationMs,
};

/**
 * The budget from `--budget` values, each a comma list of name=value (later ones win); `none`
 * lifts a limit. Throws an Error with the message to show as a usage error.
 */
export function parseBudget(values: string[], base: Budget = DEFAULT_BUDGET): Budget {
  const out = { ...base };
  for (const value of values) {
    for (const item of value.split(",")) {
      const eq = item.indexOf("=");
      const name = item.slice(0, eq).trim() as BudgetName;
      if (eq <= 0 || !Object.hasOwn(parsers, name)) {
        throw new Error(`--budget: expected rpcs=N, rows=N, bytes=SIZE or time=DURATION, got "${item}"`);
      }
      const text = item.slice(eq + 1).trim();
      try {
        out[name] = text === "none" ? Infinity : parsers[name](text);
      } catch (e) {
        if (e instanceof UnitParseError) throw new Error(`--budget ${name}: ${e.message}`);
        throw e;
      }
    }
  }
  return out;
}

/** A budget as --budget would spell it: rpcs=10000,rows=…; the hint in every refusal. */
export function formatBudget(b: Budget): string {
  const show = (name: BudgetName, v: number) => (v === Infinity ? "none" : name === "time" ? `${v / 1000}s` : String(v));
  return (Object.keys(b) as BudgetName[]).map((n) => `${n}=${show(n, b[n])}`).join(",");
}

export interface Usage {
  rpcs: number;
  rows: number;
  bytes: number;
  /** Milliseconds. */
  time: number;
}

function describeUsage(u: Usage): string {
  return `${u.rpcs} RPCs, ${u.rows} rows, ${u.bytes} bytes, ${(u.time / 1000).toFixed(1)} s of colony time`;
}

/** The line a refused call carries: which budget, what was used, how to raise it. */
export function exhaustedMessage(name: BudgetName, used: Usage, budget: Budget): string {
  const limit = name === "time" ? `${budget.time / 1000} s` : `${budget[name]} ${name === "rpcs" ? "RPCs" : name}`;
  return `this run's ${name} budget (${limit}) is used up: ${describeUsage(used)} so far — raise it with: coral run --budget ${name}=${name === "time" ? "DURATION" : name === "bytes" ? "SIZE" : "N"}`;
}

/** The end-of-run line when a budget refused something. */
export function reportLine(hit: BudgetName[], used: Usage, budget: Budget): string {
  return `coral run: budget exceeded (${hit.join(", ")}): used ${describeUsage(used)}; budget ${formatBudget(budget)}`;
}
