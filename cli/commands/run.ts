import { Command, Option, UsageError } from "clipanion";
import { runScript, watchScript, type RunOptions } from "../run/launcher.js";
import { resolveColony } from "../runtime/colony-address.js";
import { CoralCommand } from "../runtime/command.js";
import { resolveToken } from "../runtime/token.js";

const DEFAULT_TIMEOUT_SEC = 60;
const DEFAULT_MEMORY_MB = 512;

export class RunCommand extends CoralCommand {
  static paths = [["run"]];

  static usage = Command.Usage({
    category: "Scripting",
    description: "run a TypeScript analysis script in a sandboxed Deno",
    details: `
      Runs SCRIPT (or, with \`-\`, the source read from stdin) in Deno with \`@coral/sdk\` available as an import. coral's flags may come before or after the script; arguments after \`--\` are passed to the script as \`Deno.args\`.

      The script may connect to the colony's address and nothing else. It cannot write files, start processes, load native code, read system information, or read environment variables other than CORAL_COLONY_ADDR, CORAL_TOKEN and CORAL_PARAMS. It reads no files unless \`--allow-read DIR\` grants one directory (by its real path; symlinks inside it that lead elsewhere stay closed). Before it runs, every module it imports is checked: only \`@coral/sdk\`, \`node:\` built-ins and local files inside the script's own directory are allowed — no http(s):, jsr: or npm: imports.

      Limits: \`--timeout\` (default $CORAL_SCRIPT_TIMEOUT, else ${DEFAULT_TIMEOUT_SEC} s; 0 = none) stops the script with SIGTERM, then SIGKILL 2 s later, exit code 124. \`--memory\` (default $CORAL_SCRIPT_MEMORY, else ${DEFAULT_MEMORY_MB} MB) caps the JavaScript heap and, on Linux, the process's data segment; running out ends the script with exit code 137.

      The colony's bearer token, if it needs one, comes from \`--token-file FILE\` or \`$CORAL_TOKEN\` and reaches the script as CORAL_TOKEN; \`--token TOKEN\` works too, but every local user can read it in \`ps\`.

      \`--param key=value\` (repeatable; the value may contain \`=\`) reaches the script as the JSON object in CORAL_PARAMS. \`--watch\` re-runs the script whenever it or a local module it imports changes; Ctrl-C ends the session (exit 130). \`--check\` type-checks first and does not run on errors.

      Exit codes: the script's own; 1 when refused before running or \`--check\` fails; 2 for a bad command line; 124 timeout; 130 interrupted; 137 memory limit.
    `,
    examples: [
      ["Run an analysis script against the local colony", "coral run analysis.ts"],
      ["Pass parameters and arguments", "coral run latency-check.ts --param service=payments --param threshold=500ms -- --verbose"],
      ["Re-run on every save, type-checking first", "coral run --watch --check analysis.ts"],
      ["Allow a longer run and more memory", "coral run --timeout 120 --memory 1024 long-analysis.ts"],
      ["Let the script read one data directory", "coral run --allow-read ./baselines compare.ts"],
      ["Run a script piped in on stdin", "cat analysis.ts | coral run -"],
      ["Talk to a remote colony", "coral run --colony colony.internal:9090 --token-file ~/.coral-token analysis.ts"],
    ],
  });

  watch = Option.Boolean("--watch", false, { description: "Re-run when the script or its local imports change" });
  check = Option.Boolean("--check", false, { description: "Type-check with `deno check` before running" });
  timeout = Option.String("--timeout", { description: "Seconds before the script is stopped (0 = no limit)" });
  memory = Option.String("--memory", { description: "Memory limit in MB" });
  allowRead = Option.String("--allow-read", { description: "One directory the script may read" });
  params = Option.Array("--param", [], { description: "key=value passed in CORAL_PARAMS (repeatable)" });
  colony = Option.String("--colony", { description: "Colony address HOST:PORT (default $CORAL_COLONY_ADDR, else 127.0.0.1:9090)" });
  token = Option.String("--token", {
    description: "Bearer token, passed as CORAL_TOKEN; visible to other users in `ps`, prefer --token-file or $CORAL_TOKEN",
  });
  tokenFile = Option.String("--token-file", { description: "File holding the bearer token, passed as CORAL_TOKEN (default $CORAL_TOKEN)" });
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
    const timeoutSec = parseNumber(
      ...flagOrEnv("--timeout", this.timeout, "CORAL_SCRIPT_TIMEOUT"),
      DEFAULT_TIMEOUT_SEC,
      // Node's timers stop at 2^31 ms (~24.8 days).
      { min: 0, max: 2_147_483, integer: false },
    );
    const memoryMb = parseNumber(...flagOrEnv("--memory", this.memory, "CORAL_SCRIPT_MEMORY"), DEFAULT_MEMORY_MB, {
      min: 16,
      max: 1_048_576, // 1 TiB; far beyond it V8's heap flag overflows and Deno crashes
      integer: true,
    });
    const params: Record<string, string> = {};
    for (const p of this.params) {
      const eq = p.indexOf("=");
      if (eq <= 0) throw new UsageError(`--param: expected key=value, got "${p}"`);
      params[p.slice(0, eq)] = p.slice(eq + 1);
    }
    return {
      script: this.script,
      args: this.rest,
      colony: colonyHostPort(this.colony),
      token: resolveToken({ token: this.token, tokenFile: this.tokenFile }, this.context.stderr),
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

/**
 * Ctrl-C reaches Deno too (same process group), but we must still outlive it to remove the run's
 * temp directory and, in watch mode, to stop watching; so SIGINT aborts instead of killing us.
 */
async function withInterrupt(body: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.on("SIGINT", onSigint);
  try {
    return await body(controller.signal);
  } finally {
    process.off("SIGINT", onSigint);
  }
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

function parseNumber(
  flag: string,
  raw: string | undefined,
  fallback: number,
  rule: { min: number; max: number; integer: boolean },
): number {
  if (raw === undefined) return fallback;
  const n = Number(raw.trim());
  if (raw.trim() === "" || !Number.isFinite(n) || n < rule.min || n > rule.max || (rule.integer && !Number.isInteger(n))) {
    const what = `${rule.integer ? "a whole number" : "a number"} from ${rule.min} to ${rule.max}`;
    throw new UsageError(`${flag}: expected ${what}, got "${raw}"`);
  }
  return n;
}

/**
 * The sandbox grants network access to exactly one host:port, so the colony is reduced to that
 * form; the address syntax and its defaults are the same as for every other command.
 */
function colonyHostPort(flag: string | undefined): string {
  const { baseUrl } = resolveColony(flag);
  const url = new URL(baseUrl);
  if (url.protocol !== "http:") {
    throw new UsageError(`--colony: scripts reach the colony over plain HTTP; write it as HOST:PORT`);
  }
  return `${url.hostname}:${url.port || "80"}`;
}
