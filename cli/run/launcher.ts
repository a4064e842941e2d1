import { spawn } from "node:child_process";
import type { Socket } from "node:net";
import { existsSync, realpathSync, rmSync, statSync } from "node:fs";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Broker, preloadColony } from "./broker.js";
import { DEFAULT_BUDGET, type Budget } from "./broker-budget.js";
import { denoSpec, hasExited, isRegularFile, launch, preparedKey, prepareRunDir, runPaths, sameSpec, type DenoSpec, type Launched } from "./deno-start.js";
import { claimEarlyStart, type EarlyStart } from "./early-start.js";
import { judgeGraph, sdkDirOf, type DenoInfo, type GraphVerdict } from "./graph.js";
import { importsOnlySdk } from "./graph-fast.js";
import { makeRunDir, sweepStaleRunDirs } from "./run-dir.js";
import { defaultSdkModule, denoPath } from "./paths.js";
import { childEnv, FILE_SIZE_LIMIT_MIB, GO_MESSAGE, parseColony, resolutionFlags, SandboxError, tiedToParent, vetReadDir } from "./sandbox.js";
import { StderrFilter } from "./stderr-filter.js";

export { denoPath } from "./paths.js";

export interface RunOptions {
  /** Path of the script, or "-" to read its source from stdin. */
  script: string;
  /** Passed to the script as Deno.args. */
  args: string[];
  /** "host:port" of the colony, which `coral run` asks on the script's behalf. */
  colony: string;
  /** Bearer token for the colony; stays in `coral run`, never reaches the script. */
  token?: string;
  /** Limits on the script's calls; default DEFAULT_BUDGET. */
  budget?: Budget;
  /** Open file descriptor of the audit log: one JSON line per call. */
  auditFd?: number;
  /** Passed to the script as CORAL_PARAMS (JSON). */
  params: Record<string, string>;
  /** Wall-clock limit of one run; 0 disables it. Default 60. */
  timeoutSec: number;
  /** V8 heap limit; the OS data ceiling is derived from it. Default 512. */
  memoryMb: number;
  /** One directory the script may read, granted by its realpath. */
  allowRead?: string;
  /** Type-check with `deno check` before running. */
  check?: boolean;
  /** Path of the SDK bundle mapped to "@coral/sdk"; default <repo>/dist/sdk/coral-sdk.js. */
  sdkModule?: string;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  stdin?: NodeJS.ReadableStream;
}

/**
 * Exit codes, beyond the script's own:
 * - 1   refused before running (module graph, --allow-read, missing SDK) or `--check` failed
 * - 124 the run hit its timeout
 * - 130 aborted (watch mode stopped, Ctrl-C)
 * - 137 the script exceeded its memory limit
 * - 128+N the script died by signal N
 */
export const EXIT = { refused: 1, timeout: 124, aborted: 130, outOfMemory: 137 } as const;

/**
 * The exit code of a run stopped through `signal`: 128+N when it was aborted because `coral run`
 * received signal N (the command passes the signal's name as the abort reason), else 130.
 */
export function abortedCode(signal: AbortSignal | undefined): number {
  const n = typeof signal?.reason === "string" ? osConstants.signals[signal.reason as NodeJS.Signals] : undefined;
  return n ? 128 + n : EXIT.aborted;
}

/** Time a script gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 2000;

/** Runs one script in the sandbox and resolves to the exit code coral should exit with. */
export async function runScript(o: RunOptions, signal?: AbortSignal): Promise<number> {
  return (await runOnce(o, signal)).code;
}

export interface RunOutcome {
  code: number;
  /** Local modules of the script's graph (realpaths), known once the graph check ran. */
  localFiles: string[];
}

/** One run with its own temp dir; shared by runScript and watchScript. */
export async function runOnce(o: RunOptions, signal?: AbortSignal, stdinSource?: string): Promise<RunOutcome> {
  const stderr = o.stderr ?? process.stderr;
  // The Deno bin/coral.cjs started from the command line, if any (early-start.ts): its directory is
  // this run's from here on, and its process is adopted or discarded by runIn.
  const early = claimEarlyStart();
  // Runs that were SIGKILLed could not remove their directories; this one removes them.
  const sweeping = sweepStaleRunDirs();
  const work = early?.work ?? (await makeRunDir());
  try {
    return await runIn(work, o, stderr, signal, stdinSource, early);
  } catch (e) {
    if (e instanceof SandboxError) {
      stderr.write(`coral: ${e.message}\n`);
      return { code: EXIT.refused, localFiles: [] };
    }
    throw e;
  } finally {
    await early?.discard();
    // Synchronously: the run is over and nothing waits on the event loop, while the asynchronous rm
    // takes a thread-pool round trip per entry, each a wake-up that waits for the scheduler.
    rmSync(work, { recursive: true, force: true });
    await sweeping;
  }
}

async function runIn(
  work: string,
  o: RunOptions,
  stderr: NodeJS.WritableStream,
  signal: AbortSignal | undefined,
  stdinSource: string | undefined,
  early: EarlyStart | undefined,
): Promise<RunOutcome> {
  parseColony(o.colony);
  const deno = denoPath();
  const sdkModule = resolve(o.sdkModule ?? defaultSdkModule());
  if (!existsSync(sdkModule)) {
    throw new SandboxError(`the @coral/sdk bundle is missing at ${sdkModule} (run \`npm run build\`)`);
  }

  let script: string;
  if (o.script === "-") {
    // Source from stdin gets a directory of its own, so "the script's directory" contains nothing
    // else and relative imports from it have nowhere to go.
    const dir = join(work, "stdin");
    await mkdir(dir);
    script = join(dir, "stdin.ts");
    await writeFile(script, stdinSource ?? (await readAll(o.stdin ?? process.stdin)));
  } else {
    script = resolve(o.script);
    const stat = statSync(script, { throwIfNoEntry: false });
    if (!stat) throw new SandboxError(`script not found: ${o.script}`);
    if (!stat.isFile()) throw new SandboxError(`not a script file: ${o.script}`);
  }
  script = realpathSync(script);
  const scriptDir = dirname(script);

  // The run's own DENO_DIR, seeded with the SDK's compilation caches (deno-cache.ts).
  const { denoDir, importMap } = runPaths(work);
  const env = childEnv({ denoDir, params: o.params });
  // Deno starts at the gate while the graph is judged (GATE_MODULE), except with --check, whose
  // type check can take seconds that would count against the script's --timeout. Deno reads
  // --preload as a comma-separated list, so a temp dir with a comma in its path goes without.
  const gated = !o.check && !work.includes(",");
  const reading = readScript(script);
  reading.catch(() => {}); // Awaited below; a failure of the preparation comes first.
  if (early?.prepared !== preparedKey(sdkModule, gated)) {
    // An early start that prepared something else (another SDK bundle) cannot be adopted; its
    // directory is filled anew (prepareRunDir overwrites what it wrote before).
    await early?.discard();
    early = undefined;
    prepareRunDir(work, sdkModule, gated);
  }
  const source = await reading;

  // The --allow-read directory is vetted while Deno resolves the graph; both must pass.
  const vetting = o.allowRead ? vetReadDir(o.allowRead) : undefined;
  vetting?.catch(() => {}); // Awaited below, after the graph verdict, so that its error comes second.
  // A script importing only the SDK and node: built-ins has an obvious graph (graph-fast.ts).
  const judging = source && importsOnlySdk(script, source)
    ? Promise.resolve({ code: 0, stdout: "", stderr: "" })
    : captureDeno(deno, ["info", "--json", ...resolutionFlags(importMap), script], env, signal);
  // Deno's flags name the vetted directory, so with --allow-read it starts once that is known; an
  // unusable directory starts nothing (its error is reported after the graph's).
  const start = (read: { root: string; denyRead: string[] } | undefined, gate: boolean) => {
    const spec = denoSpec({
      deno,
      work,
      gated: gate,
      read,
      script,
      args: o.args,
      params: o.params,
      memoryMb: o.memoryMb,
      stdin: o.script === "-" ? "ignore" : o.stdin === undefined || o.stdin === process.stdin ? "inherit" : "pipe",
      // RLIMIT_FSIZE (withLimits) would also cap a stdout redirected to a file; through a pipe it cannot.
      stdout: (o.stdout === undefined || o.stdout === process.stdout) && !isRegularFile(1) ? "inherit" : "pipe",
    });
    const adopted = early && sameSpec(early.spec, spec) ? early.launched : undefined;
    // An early Deno started for another command line dies at its gate (runOnce waits for it).
    if (!adopted) void early?.discard();
    early = undefined;
    return startScript(spec, adopted, gate, o, stderr, signal);
  };
  let started: Started | undefined;
  if (gated) {
    const read = vetting ? await vetting.catch(() => null) : undefined;
    if (read !== null) started = start(read, true);
  }
  // protobuf-es, the API's descriptors and the HTTP clients load while Deno starts (and after the
  // spawns: evaluating them would otherwise delay them).
  void preloadColony();
  const refuse = async (localFiles: string[]): Promise<RunOutcome> => {
    await started?.discard();
    return { code: EXIT.refused, localFiles };
  };

  const info = await judging;
  if (signal?.aborted) {
    await started?.discard();
    return { code: abortedCode(signal), localFiles: [] };
  }
  if (info.code !== 0) {
    stderr.write(info.stderr);
    return refuse([script]);
  }
  // An unusable --allow-read directory grants nothing here; its own error is reported below.
  const readRoot = (await vetting?.catch(() => undefined))?.root;
  const verdict: GraphVerdict = info.stdout
    ? judgeGraph(JSON.parse(info.stdout) as DenoInfo, { scriptDir, sdkDir: sdkDirOf(sdkModule), readRoot })
    : { ok: true, localFiles: [script] };
  const localFiles = verdict.localFiles.length > 0 ? verdict.localFiles : [script];
  if (!verdict.ok) {
    stderr.write(`coral: ${verdict.message}\n`);
    return refuse(localFiles);
  }

  const read = await vetting;

  if (o.check) {
    const code = await checkTypes(deno, work, sdkModule, script, env, o, signal);
    if (signal?.aborted) return { code: abortedCode(signal), localFiles };
    if (code !== 0) return { code: EXIT.refused, localFiles };
  }

  started ??= start(read, false);
  started.go();
  const code = await started.exited;
  const broker = started.broker;
  const report = broker?.report();
  if (report) started.filter.ownLine(report);
  if (broker?.violation) {
    started.filter.ownLine(broker.violation);
    return { code: EXIT.refused, localFiles };
  }
  return { code, localFiles };
}

interface Started {
  filter: StderrFilter;
  broker?: Broker;
  /** How the script ended, as coral's exit code. */
  exited: Promise<number>;
  /** Lets a gated script run (GO_MESSAGE); nothing for one started without the gate. */
  go(): void;
  /** Kills a script that must not run (still at its gate) and waits for it, saying nothing. */
  discard(): Promise<void>;
}

/** Starts the script's Deno (or takes over `adopted`, started early for the same spec), with the broker on its channel. */
function startScript(
  spec: DenoSpec,
  adopted: Launched | undefined,
  gate: boolean,
  o: RunOptions,
  stderr: NodeJS.WritableStream,
  signal: AbortSignal | undefined,
): Started {
  // Deno's stderr is a pipe to us either way; colour codes belong only on a terminal (NO_COLOR
  // for Deno would also take the colours off a script's stdout on a terminal).
  const filter = new StderrFilter(stderr, { plain: !(stderr as NodeJS.WriteStream).isTTY });
  let channel: Socket | undefined;
  let quiet = false;
  let launched: Launched | undefined;
  const started: Started = {
    filter,
    exited: Promise.resolve(0),
    go: () => {
      if (gate) channel?.write(GO_MESSAGE);
    },
    discard: async () => {
      quiet = true;
      if (launched && !hasExited(launched.child)) launched.child.kill("SIGKILL");
      await started.exited.catch(() => {});
    },
  };
  try {
    launched = adopted ?? launch(spec);
  } catch (e) {
    started.exited = Promise.reject(e);
    started.exited.catch(() => {});
    return started;
  }
  const c = launched.child;
  if (c.stdio[3]) {
    channel = c.stdio[3] as Socket;
    const b = new Broker(channel, {
      colony: o.colony,
      token: o.token,
      budget: o.budget ?? DEFAULT_BUDGET,
      auditFd: o.auditFd,
      onViolation: () => c.kill("SIGKILL"),
    });
    // A socket paused on a flood of calls would never see the end of the script, and the child's
    // "close" waits for every stdio stream.
    if (hasExited(c)) b.close();
    else c.once("exit", () => b.close());
    started.broker = b;
  }
  started.exited = supervise(launched, o, filter, stderr, signal, () => quiet);
  // A discarded script's failure to start is of no interest; runIn awaits `exited` otherwise.
  started.exited.catch(() => {});
  return started;
}

/**
 * Runs `deno check` with the run's resolution flags. When the SDK's .d.ts sits beside the bundle,
 * the check maps "@coral/sdk" to it directly, so types do not depend on the bundle carrying a
 * @ts-self-types comment.
 */
async function checkTypes(
  deno: string,
  work: string,
  sdkModule: string,
  script: string,
  env: Record<string, string>,
  o: RunOptions,
  signal: AbortSignal | undefined,
): Promise<number> {
  const dts = sdkModule.replace(/\.m?js$/, ".d.ts");
  const target = existsSync(dts) ? dts : sdkModule;
  const checkMap = join(work, "check_import_map.json");
  await writeFile(checkMap, JSON.stringify({ imports: { "@coral/sdk": pathToFileURL(realpathSync(target)).href } }));
  const r = await captureDeno(deno, ["check", ...resolutionFlags(checkMap), script], { ...env, NO_COLOR: "1" }, signal);
  if (r.code !== 0) {
    const err = o.stderr ?? process.stderr;
    err.write(r.stdout);
    err.write(r.stderr);
  }
  return r.code;
}

/** Streams the started Deno's output and maps how it ended to our exit code. */
function supervise(
  { child, closed }: Launched,
  o: RunOptions,
  filter: StderrFilter,
  stderr: NodeJS.WritableStream,
  signal: AbortSignal | undefined,
  discarded: () => boolean,
): Promise<number> {
  child.stderr!.on("data", (c: Buffer) => {
    // A slow reader of our stderr slows the script down instead of growing our memory.
    if (!filter.write(c)) {
      child.stderr!.pause();
      stderr.once("drain", () => child.stderr!.resume());
    }
  });
  if (child.stdout) child.stdout.pipe(o.stdout ?? process.stdout, { end: false });
  if (child.stdin) {
    // The script may exit without reading its input; that is not our error.
    child.stdin.on("error", () => {});
    o.stdin!.pipe(child.stdin);
  }

  let ending: "timeout" | "aborted" | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const stop = (why: "timeout" | "aborted") => {
    if (ending) return;
    ending = why;
    child.kill("SIGTERM");
    // Scripts can ignore SIGTERM (Deno.addSignalListener); SIGKILL cannot be ignored.
    killTimer = setTimeout(() => child.kill("SIGKILL"), KILL_GRACE_MS);
  };
  const timer = o.timeoutSec > 0 ? setTimeout(() => stop("timeout"), o.timeoutSec * 1000) : undefined;
  const onAbort = () => stop("aborted");
  if (signal?.aborted) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });
  const cleanUp = () => {
    clearTimeout(timer);
    clearTimeout(killTimer);
    signal?.removeEventListener("abort", onAbort);
    if (child.stdin && o.stdin) o.stdin.unpipe(child.stdin);
  };

  return closed.then(
    ({ code: exitCode, signal: exitSignal }) => {
      cleanUp();
      // Killed at its gate: the refusal has been reported, and nothing of the script ran.
      if (discarded()) return EXIT.refused;
      const failed = exitCode !== 0 || exitSignal !== null;
      const oom = filter.finish(failed && ending === undefined);
      if (ending === "timeout") {
        filter.ownLine(`script timed out after ${o.timeoutSec} s`);
        return EXIT.timeout;
      }
      if (ending === "aborted") return abortedCode(signal);
      if (oom) {
        filter.ownLine(`script exceeded its memory limit (${o.memoryMb} MB)`);
        return EXIT.outOfMemory;
      }
      if (exitSignal === "SIGXFSZ") {
        filter.ownLine(
          `script stopped: it made Deno cache more than ${FILE_SIZE_LIMIT_MIB} MiB of compiled code (modules created at run time); scripts cannot write to disk`,
        );
        return 128 + osConstants.signals.SIGXFSZ;
      }
      if (exitSignal) return 128 + (osConstants.signals[exitSignal] ?? 0);
      return exitCode ?? 1;
    },
    (e: unknown) => {
      cleanUp();
      throw e;
    },
  );
}

/** Runs a short Deno subcommand (info, check) to completion, collecting its output. */
function captureDeno(
  deno: string,
  args: string[],
  env: Record<string, string>,
  signal: AbortSignal | undefined,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const [command, ...rest] = tiedToParent([deno, ...args]);
    const child = spawn(command, rest, { env, stdio: ["ignore", "pipe", "pipe"], signal });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", (e) => {
      if (e.name === "AbortError") return; // "close" still follows and reports the kill.
      reject(e);
    });
    child.on("close", (code) =>
      resolvePromise({
        code: code ?? 1,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      }),
    );
  });
}

/** The script's bytes for the quick graph check, unless it is too large to be worth reading twice. */
async function readScript(path: string): Promise<Buffer | undefined> {
  const st = await stat(path);
  return st.size <= 1024 * 1024 ? readFile(path) : undefined;
}

export async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === "string" ? Buffer.from(c) : c);
  return Buffer.concat(chunks).toString();
}
