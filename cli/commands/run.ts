import { openSync } from "node:fs";
import { Command, Option, UsageError } from "clipanion";
import { DEFAULT_BUDGET, formatBudget, parseBudget } from "../run/broker-budget.js";
import { runScript, type RunOptions } from "../run/launcher.js";
import { SCRIPT_MEMORY_MB } from "../run/memory-limit.js";
import { watchScript } from "../run/watch.js";
import { resolveColony } from "../runtime/colony-address.js";
import { CoralCommand } from "../runtime/command.js";
import { numberFlag } from "../runtime/number-flag.js";
import { resolveToken } from "../runtime/token.js";

const DEFAULT_TIMEOUT_SEC = 60;

export class RunCommand extends CoralCommand {
  static paths = [["run"]];

  static usage = Command.Usage({
    category: "Scripting",
    description: "run a TypeScript analysis script in a sandboxed Deno",
    details: `
      Runs SCRIPT (or, with \`-\`, the source read from stdin) in Deno with \`@coral/sdk\` available as an import. coral's flags may come before or after the script; arguments after \`--\` are passed to the script as \`Deno.args\`.

      The script has no network access at all: its \`@coral/sdk\` calls go to coral run over a private channel, and coral run asks the colony. It cannot write files, start processes, load native code, read system information, or read environment variables other than CORAL_PARAMS and CORAL_MODE (\`cli\`). It reads no files unless \`--allow-read DIR\` grants one directory (by its real path; symlinks inside it that lead elsewhere stay closed). Before it runs, every module it imports is checked: only \`@coral/sdk\`, \`node:\` built-ins and its own module files (.ts, .mts, .tsx, .js, .mjs, .jsx, .json, none of them dot-named) inside the script's directory are allowed — no http(s):, jsr: or npm: imports, and \`text\` or \`bytes\` imports only inside \`--allow-read\`. It writes nothing to disk: no files, no Cache API, no localStorage.

      Limits: \`--timeout\` (default $CORAL_SCRIPT_TIMEOUT, else ${DEFAULT_TIMEOUT_SEC} s; 0 = none) stops the script with SIGTERM, then SIGKILL 2 s later, exit code 124. \`--memory\` (default $CORAL_SCRIPT_MEMORY, else ${SCRIPT_MEMORY_MB.default} MB) caps the JavaScript heap and, on Linux, the process's data segment; running out ends the script with exit code 137.

      The colony's bearer token, if it needs one, comes from \`--token-file FILE\` or \`$CORAL_TOKEN\`; coral run keeps it and the script cannot read it (nor the colony's address). \`--token TOKEN\` works too, but every local user can read it in \`ps\`.

      Budgets bound the script's calls per run: \`--budget rpcs=N,rows=N,bytes=SIZE,time=DURATION\` (repeatable; \`none\` lifts one; defaults ${formatBudget(DEFAULT_BUDGET)}). Rows count table rows and list items, bytes what coral run sends the script, time the calls' durations summed. A call over a budget fails with code resource_exhausted, naming the budget; the run's end says what was used. \`--audit FILE\` appends one JSON line per call: time, method, request, rows, bytes, ms and outcome.

      \`--param key=value\` (repeatable; the value may contain \`=\`) reaches the script as the JSON object in CORAL_PARAMS, 128 KiB in all; a parameter named like a reader (\`has\`, \`string\`, …) is read through one: \`coral.params.string("has")\`. \`--watch\` re-runs the script whenever it or a local module it imports changes. SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the script (SIGTERM, then SIGKILL 2 s later), remove its temp directory and exit 128+N (130, 143, 129); Deno also dies with coral run if it is killed outright. \`--check\` type-checks first and does not run on errors.

      Exit codes: the script's own; 1 when refused before running, when \`--check\` fails or when the script broke the SDK's protocol; 2 for a bad command line; 124 timeout; 129/130/143 stopped by SIGHUP/SIGINT/SIGTERM; 137 memory limit; 153 the script made Deno cache too much code (SIGXFSZ).
    `,
    examples: [
      ["Run an analysis script against the local colony", "coral run analysis.ts"],
      ["Pass parameters and arguments", "coral run latency-check.ts --param service=payments --param threshold=500ms -- --verbose"],
      ["Re-run on every save, type-checking first", "coral run --watch --check analysis.ts"],
      ["Allow a longer run and more memory", "coral run --timeout 120 --memory 1024 long-analysis.ts"],
      ["Let the script read one data directory", "coral run --allow-read ./baselines compare.ts"],
      ["Run a script piped in on stdin", "cat analysis.ts | coral run -"],
      ["Talk to a remote colony", "coral run --colony colony.internal:9090 --token-file ~/.coral-token analysis.ts"],
      ["Bound an untrusted script and keep a record of its calls", "coral run --budget rpcs=100,rows=100000 --audit calls.jsonl untrusted.ts"],
    ],
  });

  watch = Option.Boolean("--watch", false, { description: "Re-run when the script or its local imports change" });
  check = Option.Boolean("--check", false, { description: "Type-check with `deno check` before running" });
  timeout = Option.String("--timeout", { description: "Seconds before the script is stopped (0 = no limit)" });
  memory = Option.String("--memory", { description: "Memory limit in MB" });
  allowRead = Option.String("--allow-read", { description: "One directory the script may read" });
  params = Option.Array("--param", [], { description: "key=value passed in CORAL_PARAMS (repeatable)" });
  budget = Option.Array("--budget", [], { description: "Limits on the script's calls: rpcs=N,rows=N,bytes=SIZE,time=DURATION (repeatable)" });
  audit = Option.String("--audit", { description: "Append one JSON line per call of the script to FILE" });
  colony = Option.String("--colony", { description: "Colony address HOST:PORT (default $CORAL_COLONY_ADDR, else 127.0.0.1:9090)" });
  token = Option.String("--token", {
    description: "Bearer token for the colony (the script never sees it); visible to other users in `ps`, prefer --token-file or $CORAL_TOKEN",
  });
  tokenFile = Option.String("--token-file", { description: "File holding the bearer token for the colony (default $CORAL_TOKEN)" });
  script = Option.String({ name: "script|-" });
  // coral's own flags may come before or after the script (the RFD writes
  // `coral run latency-check.ts --param threshold=500ms`); the script's arguments follow `--`.
  rest = Option.Rest({ name: "args" });

  async run(): Promise<number> {
    const options = this.options();
    if (!this.watch) return withInterrupt((signal) => runScript(options, signal));
    if (options.script === "-") throw new UsageError("--watch: needs a script file, not `-` (stdin)");
    return withInterrupt((signal) => watchScript(options, signal));
  }

  /** Validates the command line into launcher options; every problem names its flag. */
  options(): RunOptions {
    const [timeoutFrom, timeoutText] = flagOrEnv("--timeout", this.timeout, "CORAL_SCRIPT_TIMEOUT");
    // Node's timers stop at 2^31 ms (~24.8 days).
    const timeoutSec = timeoutText === undefined ? DEFAULT_TIMEOUT_SEC : numberFlag(timeoutFrom, timeoutText, { min: 0, max: 2_147_483 });
    const [memoryFrom, memoryText] = flagOrEnv("--memory", this.memory, "CORAL_SCRIPT_MEMORY");
    // 1 TiB at most; far beyond it V8's heap flag overflows and Deno crashes.
    const memoryMb = memoryText === undefined ? SCRIPT_MEMORY_MB.default : numberFlag(memoryFrom, memoryText, { min: SCRIPT_MEMORY_MB.min, max: SCRIPT_MEMORY_MB.max, integer: true });
    const params: Record<string, string> = Object.create(null);
    for (const p of this.params) {
      const eq = p.indexOf("=");
      if (eq <= 0) throw new UsageError(`--param: expected key=value, got "${p}"`);
      params[p.slice(0, eq)] = p.slice(eq + 1);
    }
    checkArgSizes(params, this.rest);
    let budget;
    try {
      budget = parseBudget(this.budget);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    return {
      script: this.script,
      args: this.rest,
      colony: colonyHostPort(this.colony),
      token: resolveToken({ token: this.token, tokenFile: this.tokenFile }, this.context.stderr),
      budget,
      auditFd: this.audit === undefined ? undefined : openAudit(this.audit),
      params,
      timeoutSec,
      memoryMb,
      allowRead: this.allowRead,
      check: this.check,
      stdout: this.context.stdout,
      stderr: this.context.stderr,
      stdin: this.context.stdin,
    };
  }
}

/** The audit log, opened before the script runs so that a bad path is a usage error, not a lost record. */
function openAudit(path: string): number {
  try {
    return openSync(path, "a", 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "its directory does not exist" : code === "EISDIR" ? "it is a directory" : code === "EACCES" ? "permission denied" : (code ?? (e as Error).message);
    throw new UsageError(`--audit: cannot write ${path} (${why})`);
  }
}

/**
 * Signals that end a run. Killed by one of them (`kill PID` reaches us alone, not Deno), we would
 * leave Deno running and the run's temp directory behind; so each one aborts instead: Deno is stopped (SIGTERM, then SIGKILL), the directory removed, and the exit code
 * is 128+N for signal N (130 for Ctrl-C), as a shell reports a job killed by it.
 */
const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

async function withInterrupt(body: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const controller = new AbortController();
  const handlers = STOP_SIGNALS.map((name) => [name, () => controller.abort(name)] as const);
  for (const [name, handler] of handlers) process.on(name, handler);
  try {
    return await body(controller.signal);
  } finally {
    for (const [name, handler] of handlers) process.off(name, handler);
  }
}

/**
 * Linux refuses to start a process with an environment string or argument over MAX_ARG_STRLEN
 * (128 KiB), or with all of them over ARG_MAX (a quarter of the stack limit, 2 MiB by default);
 * spawn would fail with E2BIG. All parameters travel in one variable, CORAL_PARAMS, so they share
 * its 128 KiB; the script's arguments must fit 128 KiB each and 1 MiB together, which leaves
 * Deno's own arguments and environment room under 2 MiB.
 */
const MAX_ARG_BYTES = 128 * 1024;
const MAX_ARGS_TOTAL_BYTES = 1024 * 1024;

function checkArgSizes(params: Record<string, string>, args: string[]): void {
  // The variable's string is "CORAL_PARAMS=<json>" plus its terminating NUL.
  const paramBytes = Buffer.byteLength(`CORAL_PARAMS=${JSON.stringify(params)}`) + 1;
  if (paramBytes > MAX_ARG_BYTES) {
    const largest = Object.entries(params).sort((a, b) => b[1].length - a[1].length)[0];
    throw new UsageError(
      `--param: the parameters take ${kib(paramBytes)} KiB as JSON, over the ${kib(MAX_ARG_BYTES)} KiB the OS allows ` +
        `(largest: "${largest[0]}", ${kib(Buffer.byteLength(largest[1]))} KiB); pass bulk data in a file with --allow-read DIR`,
    );
  }
  let total = 0;
  for (const [i, arg] of args.entries()) {
    const bytes = Buffer.byteLength(arg) + 1;
    total += bytes;
    if (bytes > MAX_ARG_BYTES) {
      throw new UsageError(`script argument ${i + 1} is ${kib(bytes)} KiB, over the ${kib(MAX_ARG_BYTES)} KiB the OS allows per argument`);
    }
  }
  if (total > MAX_ARGS_TOTAL_BYTES) {
    throw new UsageError(`the script's arguments take ${kib(total)} KiB, over the ${kib(MAX_ARGS_TOTAL_BYTES)} KiB allowed together`);
  }
}

function kib(bytes: number): string {
  return (bytes / 1024).toFixed(bytes < 10 * 1024 ? 1 : 0);
}

/** The value and the name to blame if it is malformed: the flag, or the variable it came from. */
function flagOrEnv(flag: string, value: string | undefined, env: string): [string, string | undefined] {
  if (value !== undefined) return [flag, value];
  const fromEnv = envOrUndefined(env);
  return fromEnv === undefined ? [flag, undefined] : [`$${env}`, fromEnv];
}

function envOrUndefined(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v.trim() === "" ? undefined : v;
}

/**
 * The colony as HOST:PORT, the form the launcher checks; the address syntax and its defaults are the
 * same as for every other command.
 */
function colonyHostPort(flag: string | undefined): string {
  const { baseUrl } = resolveColony(flag);
  const url = new URL(baseUrl);
  if (url.protocol !== "http:") {
    throw new UsageError(`--colony: scripts reach the colony over plain HTTP; write it as HOST:PORT`);
  }
  return `${url.hostname}:${url.port || "80"}`;
}
