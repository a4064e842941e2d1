// Shared helpers for the benchmarks: timing, statistics, processes, and the result shape run.ts prints.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("..", import.meta.url));
export const coralBin = join(root, "bin/coral.cjs");
export const denoBin = join(root, "node_modules/@deno/linux-x64-glibc/deno");
export const sdkBundle = join(root, "dist/sdk/coral-sdk.js");

/** What every benchmark receives. */
export interface BenchContext {
  quick: boolean;
  /** Progress for humans, on stderr. */
  log(line: string): void;
  /** A scratch directory removed after the run. */
  tmp: string;
}

/** One goal from the issue: the measured value, the target, and whether it is met. */
export interface Goal {
  field: string;
  value: number | string | boolean;
  goal: string;
  met: boolean;
}

export interface BenchResult {
  /** The fields written to results.json under the benchmark's name. */
  fields: Record<string, unknown>;
  goals: Goal[];
  /** Lines for the human table beyond the goals (baselines, breakdowns). */
  notes?: string[];
}

export interface Benchmark {
  name: string;
  run(ctx: BenchContext): Promise<BenchResult>;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export async function timeMs<T>(f: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await f();
  return { ms: performance.now() - t0, value };
}

export interface ProcResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a process to completion; wall time from spawn to exit. `onSpawn` gets its pid. */
export function runProcess(
  cmd: string,
  args: string[],
  o: { env?: Record<string, string>; cwd?: string; onSpawn?: (pid: number) => void } = {},
): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: o.cwd ?? root, env: o.env ?? cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
    if (child.pid !== undefined) o.onSpawn?.(child.pid);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr, ms: performance.now() - t0 }));
  });
}

/** Resident memory of a live process in MB (Linux), or undefined once it has exited. */
export function rssMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export function mustSucceed(what: string, r: ProcResult): ProcResult {
  if (r.code !== 0) throw new Error(`${what} exited with ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return r;
}

/** The environment children see: nothing from the developer's shell that could change their behaviour. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const k of ["PATH", "HOME", "TMPDIR", "LANG"]) {
    if (process.env[k] !== undefined) env[k] = process.env[k]!;
  }
  return { ...env, ...extra };
}

/** The last line of a process's stdout that parses as JSON (scripts report their measurements that way). */
export function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split("\n").reverse();
  for (const line of lines) {
    if (line.startsWith("{")) return JSON.parse(line) as T;
  }
  throw new Error(`no JSON line in output:\n${stdout}`);
}

export function machine(): Record<string, unknown> {
  const c = cpus();
  let deno = "?";
  try {
    const pkg = JSON.parse(readFileSync(join(root, "node_modules/deno/package.json"), "utf8")) as { version: string };
    deno = pkg.version;
  } catch {
    /* not installed */
  }
  let duckdb = "?";
  try {
    duckdb = (JSON.parse(readFileSync(join(root, "node_modules/@duckdb/node-api/package.json"), "utf8")) as { version: string }).version;
  } catch {
    /* not installed */
  }
  return {
    cpu: c[0]?.model ?? "?",
    cores: c.length,
    memory_gb: round(totalmem() / 2 ** 30, 1),
    platform: `${process.platform}-${process.arch}`,
    node: process.version,
    deno,
    duckdb_node_api: duckdb,
  };
}

export function assertBuilt(): void {
  for (const f of [join(root, "dist/cli/coral.mjs"), sdkBundle]) {
    if (!existsSync(f)) throw new Error(`${f} is missing — run \`npm run build\` first`);
  }
}

/** Human-readable numbers for the table. */
export function fmt(v: unknown): string {
  if (typeof v === "number") {
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    const abs = Math.abs(v);
    return abs >= 100 ? v.toFixed(0) : abs >= 10 ? v.toFixed(1) : abs >= 1 ? v.toFixed(2) : v.toPrecision(3);
  }
  if (Array.isArray(v)) return v.map(fmt).join(" / ");
  if (v && typeof v === "object") return JSON.stringify(v);
  return String(v);
}
