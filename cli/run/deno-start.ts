// How a script's Deno is started: its run directory's contents, its command line, environment and
// stdio. Computed by the launcher from the parsed options and, before the CLI is even loaded, by the
// early start (early-start.ts) from the bare command line; the launcher adopts an early Deno only
// when both computations agree to the byte, so the early start can guess but never decide anything.
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, fstatSync, mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { CACHE_FILES, cacheTemplateDir } from "./deno-cache.js";
import { childEnv, closeStorage, GATE_MODULE, runFlags, withLimits } from "./sandbox.js";

export function runPaths(work: string): { importMap: string; gate: string; denoDir: string } {
  return { importMap: join(work, "import_map.json"), gate: join(work, "gate.js"), denoDir: join(work, "deno_dir") };
}

/**
 * Fills the run directory: DENO_DIR seeded with the SDK's compile caches (deno-cache.ts) and its
 * storage closed, the import map, and the gate (GATE_MODULE) when `gated`. Synchronous because the
 * early start must not yield to the event loop before Deno is spawned (a yield waits for the rest of
 * the CLI to load); a dozen small syscalls. Safe to repeat on a directory it filled before. Returns
 * what it prepared (preparedKey).
 */
export function prepareRunDir(work: string, sdkModule: string, gated: boolean): string {
  const { importMap, gate, denoDir } = runPaths(work);
  const sdkUrl = sdkUrlOf(sdkModule);
  mkdirSync(denoDir, { recursive: true });
  const template = cacheTemplateDir(sdkModule);
  for (const name of CACHE_FILES) {
    try {
      copyFileSync(join(template, name), join(denoDir, name));
    } catch (e) {
      // A missing template only makes the run slower.
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
  }
  closeStorage(denoDir);
  writeFileSync(importMap, JSON.stringify({ imports: { "@coral/sdk": sdkUrl } }));
  if (gated) writeFileSync(gate, GATE_MODULE);
  return preparedKey(sdkModule, gated);
}

/** What prepareRunDir(…, sdkModule, gated) prepares, as it reports it. */
export function preparedKey(sdkModule: string, gated: boolean): string {
  return JSON.stringify([sdkUrlOf(sdkModule), gated]);
}

function sdkUrlOf(sdkModule: string): string {
  return pathToFileURL(realpathSync(sdkModule)).href;
}

export interface DenoSpecInput {
  deno: string;
  work: string;
  /** Start at the gate (prepareRunDir wrote it). */
  gated: boolean;
  /** The vetted --allow-read directory (sandbox.ts vetReadDir). */
  read?: { root: string; denyRead: string[] };
  script: string;
  args: string[];
  params: Record<string, string>;
  memoryMb: number;
  stdin: "inherit" | "ignore" | "pipe";
  stdout: "inherit" | "pipe";
}

export interface DenoSpec {
  argv: string[];
  env: Record<string, string>;
  stdio: ["inherit" | "ignore" | "pipe", "inherit" | "pipe"];
}

/** The script's Deno under the OS limits (sandbox.ts withLimits), with the SDK's channel on fd 3. */
export function denoSpec(i: DenoSpecInput): DenoSpec {
  const { importMap, gate, denoDir } = runPaths(i.work);
  const flags = runFlags({
    importMap,
    memoryMb: i.memoryMb,
    allowRead: i.read?.root,
    denyRead: i.read?.denyRead ?? [],
    gate: i.gated ? gate : undefined,
  });
  return {
    argv: withLimits([i.deno, ...flags, i.script, ...i.args], i.memoryMb),
    env: childEnv({ denoDir, params: i.params, channel: true }),
    stdio: [i.stdin, i.stdout],
  };
}

export function sameSpec(a: DenoSpec, b: DenoSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface Launched {
  child: ChildProcess;
  /** Settles once the process has ended and its stdio closed: how it ended, or the spawn's error. */
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Spawns `spec`. Its end is recorded from the start, so that whoever supervises the process later
 * (the early start hands it to the launcher) learns of an end that came first.
 */
export function launch(spec: DenoSpec): Launched {
  // fd 3, the SDK's channel (CHANNEL_ENV): a socketpair, read by broker.ts with its own limits.
  const child = spawn(spec.argv[0]!, spec.argv.slice(1), { env: spec.env, stdio: [...spec.stdio, "pipe", "pipe"] });
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  closed.catch(() => {});
  return { child, closed };
}

/** Whether the process has exited (its stdio may still be open). */
export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Whether `fd` is a regular file: the launcher and the early start choose Deno's stdout by it, alike. */
export function isRegularFile(fd: number): boolean {
  try {
    return fstatSync(fd).isFile();
  } catch {
    return false;
  }
}
