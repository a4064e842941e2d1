// The early start: `coral run` spawns the script's Deno from the bare command line, before the rest
// of the CLI (clipanion, the command, the launcher, the broker) is even loaded, so that Deno's own
// start (~100 ms quiet, the channel's set-up included) overlaps Node's loading and parsing instead
// of following them. Deno waits at its gate (GATE_MODULE in sandbox.ts) until the launcher has
// judged the script, so nothing of the script runs on the early start's word.
//
// It is a guess: bundled alone as dist/cli/run-early.cjs, which bin/coral.cjs loads first, it reads
// only plain command lines (quick-parse.ts) and only the cases it can compute like the launcher (no
// --watch, --check, --allow-read or stdin script). The launcher adopts the Deno only when its own
// computation of the command line, environment and stdio (deno-start.ts) is identical; any
// disagreement — a flag read differently, a usage error, a refused graph, an unreachable setting —
// kills it at the gate. Until the launcher claims it, the early start removes what it made on a
// stop signal and at exit; after, the launcher's own guarantees hold (Deno stopped, directory
// removed). A `coral run` killed outright takes Deno along (the parent-death signal, sandbox.ts).
import { existsSync, realpathSync, rmSync, statSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { resolve } from "node:path";
import { denoSpec, hasExited, isRegularFile, launch, prepareRunDir, type DenoSpec, type Launched } from "./deno-start.js";
import { defaultSdkModule, denoPath } from "./paths.js";
import { quickParse } from "./quick-parse.js";
import { SCRIPT_MEMORY_MB } from "./memory-limit.js";
import { makeRunDirSync } from "./run-dir.js";

export interface EarlyStart {
  /** The run directory, filled by prepareRunDir. */
  work: string;
  /** What prepareRunDir returned. */
  prepared: string;
  spec: DenoSpec;
  launched: Launched;
  /** Kills the Deno (still at its gate) unless it has ended, and waits for its end. Never throws. */
  discard(): Promise<void>;
  /** Gives the directory and the process to the caller: the early start's clean-up stops. */
  release(): void;
}

/** Beyond these the command's own checks decide (usage errors); the early start stays out of it. */
const MAX_EARLY_PARAM_BYTES = 64 * 1024;
const MAX_EARLY_ARG_BYTES = 256 * 1024;
const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** Starts Deno for `argv` (which starts with "run") when the command line is plain enough; never throws. */
export function startEarly(argv: readonly string[]): EarlyStart | undefined {
  // The clean-up is in place before the directory exists: a stop signal in between would otherwise
  // end the process by default and leave the directory to the next run's sweep.
  const state: { work?: string; launched?: Launched } = {};
  const cleanUp = cleaner(state);
  try {
    const f = quickParse(argv);
    if (!f || f.watch || f.check || f.allowRead !== undefined || f.script === undefined || f.script === "-") return cleanUp.none();
    const memoryMb = memoryOf(f.memory);
    const params = paramsOf(f.params);
    if (memoryMb === undefined || params === undefined) return cleanUp.none();
    if (f.rest.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0) > MAX_EARLY_ARG_BYTES) return cleanUp.none();
    const stat = statSync(resolve(f.script), { throwIfNoEntry: false });
    if (!stat?.isFile()) return cleanUp.none();
    const script = realpathSync(resolve(f.script));
    const sdkModule = resolve(defaultSdkModule());
    if (!existsSync(sdkModule)) return cleanUp.none();
    const deno = denoPath();
    const work = (state.work = makeRunDirSync());
    // Deno reads --preload as a comma-separated list; the launcher starts such a run without the gate.
    if (work.includes(",")) return cleanUp.none();
    const prepared = prepareRunDir(work, sdkModule, true);
    const spec = denoSpec({
      deno,
      work,
      gated: true,
      script,
      args: f.rest,
      params,
      memoryMb,
      stdin: "inherit",
      stdout: isRegularFile(1) ? "pipe" : "inherit",
    });
    // Node makes a pipe non-blocking when it first touches process.stdin/stdout, on the open file
    // that Deno shares; libuv makes the child's fds 0-2 blocking again at the spawn. So they are
    // touched before it, as the CLI did before the early start: touched after, Deno's writes to a
    // piped stdout would fail with EAGAIN ("WouldBlock").
    void process.stdin;
    void process.stdout;
    const launched = (state.launched = launch(spec));
    return { work, prepared, spec, launched, discard: () => discard(launched), release: cleanUp.release };
  } catch {
    return cleanUp.none();
  }
}

async function discard(launched: Launched): Promise<void> {
  if (!hasExited(launched.child)) launched.child.kill("SIGKILL");
  await launched.closed.catch(() => {});
}

/**
 * Removes what the early start made when the process is stopped or exits before a run claims it.
 * none(): nothing was started (what exists is removed now); release(): a run took it all over.
 */
function cleaner(state: { work?: string; launched?: Launched }) {
  let released = false;
  const remove = () => {
    if (state.work) rmSync(state.work, { recursive: true, force: true, maxRetries: 2 });
  };
  const onSignal = (name: NodeJS.Signals) => {
    void (state.launched ? discard(state.launched) : Promise.resolve()).then(() => {
      remove();
      process.exit(128 + (osConstants.signals[name] ?? 0));
    });
  };
  // Last resort for an exit nobody planned (an uncaught error): Deno dies with us anyway (parent-death
  // signal); the directory goes now, or with the next run's sweep (run-dir.ts) if Deno still writes to it.
  const onExit = () => {
    if (state.launched && !hasExited(state.launched.child)) state.launched.child.kill("SIGKILL");
    remove();
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);
  process.on("exit", onExit);
  const release = () => {
    if (released) return;
    released = true;
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
    process.off("exit", onExit);
  };
  return {
    release,
    none(): undefined {
      release();
      if (state.launched) void discard(state.launched);
      remove();
      return undefined;
    },
  };
}

/** --memory or $CORAL_SCRIPT_MEMORY as RunCommand reads them, when plainly valid. */
function memoryOf(flag: string | undefined): number | undefined {
  const env = process.env.CORAL_SCRIPT_MEMORY;
  const text = flag ?? (env === undefined || env.trim() === "" ? undefined : env);
  if (text === undefined) return SCRIPT_MEMORY_MB.default;
  const s = text.trim();
  if (!/^\d{1,7}$/.test(s)) return undefined;
  const n = Number(s);
  return n >= SCRIPT_MEMORY_MB.min && n <= SCRIPT_MEMORY_MB.max ? n : undefined;
}

/** The --param values as RunCommand builds them, when plainly valid. */
function paramsOf(list: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = Object.create(null);
  for (const p of list) {
    const eq = p.indexOf("=");
    if (eq <= 0) return undefined;
    params[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return Buffer.byteLength(JSON.stringify(params)) > MAX_EARLY_PARAM_BYTES ? undefined : params;
}

// The hand-over inside the main bundle: entry.ts offers what bin/coral.cjs started, the launcher claims it.
let offered: EarlyStart | undefined;

export function offerEarlyStart(e: EarlyStart | undefined): void {
  offered = e;
}

/** The early start, once: the first run of the process takes it over (release()). */
export function claimEarlyStart(): EarlyStart | undefined {
  const e = offered;
  offered = undefined;
  e?.release();
  return e;
}

/** Kills and removes an early start that no run claimed (the command failed before running). */
export async function disposeUnclaimed(): Promise<void> {
  const e = claimEarlyStart();
  if (!e) return;
  await e.discard();
  rmSync(e.work, { recursive: true, force: true });
}
