// The `run_script` tool: code mode. The model writes one TypeScript script against @coral/sdk and
// it runs exactly as `coral run -` would run it — same launcher, sandbox, budgets and audit — with
// its output captured instead of printed, and bounded before it reaches the model.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { CallToolResult, Tool } from "@modelcontextprotocol/sdk/types.js";
import { formatBudget, type Budget } from "../cli/run/broker-budget.js";
import { EXIT, runOnce } from "../cli/run/launcher.js";
import { formatBytes } from "../surface/units.js";
import { toolError } from "./tools.js";

export const SCRIPT_TOOL = "run_script";

export interface ScriptSettings {
  /** "host:port" of the colony. */
  colony: string;
  token?: string;
  budget: Budget;
  /** The operator's audit log (`coral mcp --audit FILE`): every script's calls are appended. */
  auditFd?: number;
  memoryMb: number;
  /** Timeout of a run that names none, and the most one may ask for (seconds). */
  timeoutSec: number;
  maxTimeoutSec: number;
  /** The SDK bundle; default dist/sdk/coral-sdk.js. */
  sdkModule?: string;
}

/** What comes back of a script's output: enough for an answer, not enough to flood the context. */
const STDOUT_MAX_CHARS = 8000;
const STDERR_HEAD_CHARS = 1500;
const STDERR_TAIL_CHARS = 1500;
/** What is kept of each stream in memory while the script runs; the rest is only counted. */
const KEEP_BYTES = 256 * 1024;
/** Source and parameters travel through a temp file and the environment (CORAL_PARAMS, 128 KiB). */
const MAX_SOURCE_BYTES = 1024 * 1024;
const MAX_PARAMS_BYTES = 64 * 1024;

/** Output of the script, kept up to KEEP_BYTES and counted beyond. */
class Capture extends Writable {
  private chunks: Buffer[] = [];
  private kept = 0;
  total = 0;
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.total += chunk.length;
    if (this.kept < KEEP_BYTES) {
      const part = chunk.subarray(0, KEEP_BYTES - this.kept);
      this.chunks.push(part);
      this.kept += part.length;
    }
    done();
  }
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

/** What the sandbox allows, for refusals: the model should rewrite the script, not retry it. */
export function sandboxRules(s: Pick<ScriptSettings, "budget" | "memoryMb" | "maxTimeoutSec">): string {
  return (
    "Scripts may import only @coral/sdk and node: built-ins, call the SDK, read coral.params and print (console.log). " +
    "They have no network (no fetch, no WebSocket), no environment variables, no files, no subprocesses and no other imports (http:, npm:, jsr:, relative files): " +
    "ask the colony through the SDK instead (coral.db.query for SQL). " +
    `Limits: timeout_sec up to ${s.maxTimeoutSec}, ${s.memoryMb} MB of memory, budget ${formatBudget(s.budget)}.`
  );
}

/** The tool's description: how to write the script, then the SDK's own declarations. */
export function scriptListing(settings: ScriptSettings, declarations: string | undefined, sqlTables: string): Tool {
  const description = [
    "Runs a TypeScript script against the colony in the sandbox of `coral run` and returns its exit code, stdout, stderr (bounded) and the budget it used. " +
      "Prefer one script over many tool calls when a question spans several services or needs arithmetic (ranking, ratios, correlation).",
    'The script imports the SDK with `import * as coral from "@coral/sdk";` and prints its answer with console.log — print a short summary, not raw data: ' +
      `only the first ${STDOUT_MAX_CHARS} characters of stdout come back. Results are plain objects with the API's field names; durations are nanoseconds ` +
      "(duration_ns, percentile values), windows milliseconds (time_range_ms), percentiles and rates fractions (0.99, 0.012). Unset values (no data) are null. " +
      "`params` reach the script as strings in coral.params, with typed readers: coral.params.durationMs(\"window\", \"1h\"). " +
      "A failed SDK call throws coral.CoralError (code, message); an uncaught one ends the script with exit code 1.",
    sandboxRules(settings),
    `SQL tables (coral.db.query): ${sqlTables}`,
    declarations ? `The SDK's type declarations:\n\`\`\`ts\n${declarations}\`\`\`` : "",
    'Example:\n```ts\nimport * as coral from "@coral/sdk";\nconst rows = [];\nfor (const s of await coral.services.list()) {\n  rows.push({ service: s.name, p99_ms: ((await s.metrics.getP99()) ?? NaN) / 1e6, errors: await s.metrics.getErrorRate() });\n}\nconsole.table(rows);\n```',
  ]
    .filter(Boolean)
    .join("\n\n");
  return {
    name: SCRIPT_TOOL,
    title: "Run a TypeScript analysis script (sandboxed)",
    description,
    inputSchema: {
      type: "object",
      properties: {
        source: { type: "string", minLength: 1, description: 'The script: TypeScript that imports "@coral/sdk".' },
        params: {
          type: "object",
          additionalProperties: { type: ["string", "number", "boolean"] },
          description: "Parameters, read in the script as coral.params (values become strings), e.g. {\"service\": \"payments\", \"window\": \"30m\"}.",
        },
        timeout_sec: {
          type: "integer",
          minimum: 1,
          maximum: settings.maxTimeoutSec,
          default: settings.timeoutSec,
          description: "Seconds before the script is stopped (exit code 124).",
        },
      },
      required: ["source"],
      additionalProperties: false,
    },
    annotations: { readOnlyHint: true, openWorldHint: false },
  };
}

interface ScriptArgs {
  source: string;
  params: Record<string, string>;
  timeoutSec: number;
}

class ScriptArgumentError extends Error {}

function scriptArgs(args: unknown, s: ScriptSettings): ScriptArgs {
  const a = (args ?? {}) as Record<string, unknown>;
  if (typeof a !== "object" || Array.isArray(a)) throw new ScriptArgumentError("arguments: expected an object with source, params, timeout_sec");
  for (const k of Object.keys(a)) {
    if (!["source", "params", "timeout_sec"].includes(k)) throw new ScriptArgumentError(`${k}: not an argument of ${SCRIPT_TOOL}; it takes source, params, timeout_sec`);
  }
  if (typeof a.source !== "string" || a.source.trim() === "") throw new ScriptArgumentError("source: required, the script's TypeScript text");
  if (Buffer.byteLength(a.source) > MAX_SOURCE_BYTES) throw new ScriptArgumentError(`source: ${formatBytes(Buffer.byteLength(a.source))}, over the ${formatBytes(MAX_SOURCE_BYTES)} a script may have`);
  const params: Record<string, string> = Object.create(null);
  if (a.params !== undefined && a.params !== null) {
    if (typeof a.params !== "object" || Array.isArray(a.params)) throw new ScriptArgumentError('params: expected an object like {"window": "30m"}');
    for (const [k, v] of Object.entries(a.params)) {
      if (!["string", "number", "boolean"].includes(typeof v)) throw new ScriptArgumentError(`params.${k}: expected text, a number or true/false, got ${JSON.stringify(v)}`);
      params[k] = String(v);
    }
    const size = Buffer.byteLength(JSON.stringify(params));
    if (size > MAX_PARAMS_BYTES) throw new ScriptArgumentError(`params: ${formatBytes(size)} as JSON, over the ${formatBytes(MAX_PARAMS_BYTES)} allowed`);
  }
  let timeoutSec = s.timeoutSec;
  if (a.timeout_sec !== undefined) {
    const t = a.timeout_sec;
    if (typeof t !== "number" || !Number.isInteger(t) || t < 1 || t > s.maxTimeoutSec) {
      throw new ScriptArgumentError(`timeout_sec: must be a whole number in 1..${s.maxTimeoutSec}; got ${JSON.stringify(t)}`);
    }
    timeoutSec = t;
  }
  return { source: a.source, params, timeoutSec };
}

/** The calls a run made, from its audit lines: what the budget was spent on. */
function usageOf(audit: string): string {
  let calls = 0;
  let rows = 0;
  let bytes = 0;
  let ms = 0;
  for (const line of audit.split("\n")) {
    if (!line) continue;
    const e = JSON.parse(line) as { rows: number; bytes: number; ms: number };
    calls++;
    rows += e.rows;
    bytes += e.bytes;
    ms += e.ms;
  }
  return `${calls} SDK call${calls === 1 ? "" : "s"}, ${rows} rows, ${formatBytes(bytes)}, ${(ms / 1000).toFixed(1)} s of colony time`;
}

function bounded(text: string, max: number, what: string): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}\n… ${text.length - max} more characters of ${what} cut — print less (aggregate in the script)\n`;
}

function headAndTail(text: string): string {
  if (text.length <= STDERR_HEAD_CHARS + STDERR_TAIL_CHARS) return text;
  const cut = text.length - STDERR_HEAD_CHARS - STDERR_TAIL_CHARS;
  return `${text.slice(0, STDERR_HEAD_CHARS)}\n… ${cut} characters cut …\n${text.slice(-STDERR_TAIL_CHARS)}`;
}

/** Whether the run ended because the sandbox or a budget refused something the script tried. */
function refused(code: number, stderr: string): boolean {
  if (/NotCapable|Requires \w+ access|PermissionDenied|Requests to port \d+ are blocked|resource_exhausted|budget exceeded/.test(stderr)) return true;
  // The launcher's own refusals (module graph, SDK protocol) are its lines, prefixed "coral".
  return code === EXIT.refused && /^coral( run)?: /m.test(stderr) && !/^error: Uncaught/m.test(stderr);
}

export async function runScriptTool(args: unknown, s: ScriptSettings, signal: AbortSignal): Promise<CallToolResult> {
  let a: ScriptArgs;
  try {
    a = scriptArgs(args, s);
  } catch (e) {
    if (e instanceof ScriptArgumentError) return toolError(e.message);
    throw e;
  }
  const stdout = new Capture();
  const stderr = new Capture();
  // Every call lands in the run's own audit file, which says what the budget was spent on.
  const auditDir = mkdtempSync(join(tmpdir(), "coral-mcp-audit-"));
  const auditPath = join(auditDir, "audit.jsonl");
  const auditFd = openSync(auditPath, "a", 0o600);
  const started = performance.now();
  let code: number;
  let audit = "";
  try {
    code = (
      await runOnce(
        {
          script: "-",
          args: [],
          colony: s.colony,
          token: s.token,
          budget: s.budget,
          auditFd,
          params: a.params,
          timeoutSec: a.timeoutSec,
          memoryMb: s.memoryMb,
          sdkModule: s.sdkModule,
          stdout,
          stderr,
        },
        signal,
        a.source,
      )
    ).code;
  } finally {
    closeSync(auditFd);
    audit = readFileSync(auditPath, "utf8");
    rmSync(auditDir, { recursive: true, force: true });
    if (s.auditFd !== undefined && audit) writeSync(s.auditFd, audit);
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  // Deno's own frames (ext:…) say nothing about the script and cost the model's context.
  const err = stderr.text().replace(/^\s+at .*\bext:.*\n/gm, "");
  const lines = [`exit code ${code} after ${seconds} s; used ${usageOf(audit)}`];
  if (code === EXIT.timeout) lines.push(`the script hit its timeout (${a.timeoutSec} s) and was stopped: make it do less, or raise timeout_sec (at most ${s.maxTimeoutSec})`);
  if (code === EXIT.outOfMemory) lines.push(`the script ran out of memory (${s.memoryMb} MB): hold less data (aggregate in SQL, stream with coral.db.stream)`);
  if (code !== 0 && refused(code, err)) lines.push(`refused by the sandbox: ${sandboxRules(s)}`);
  const out = stdout.text();
  lines.push(`stdout (${stdout.total} bytes):`, out ? bounded(out, STDOUT_MAX_CHARS, "stdout").trimEnd() : "(empty)");
  if (err) lines.push(`stderr (${stderr.total} bytes):`, headAndTail(err).trimEnd());
  // Exit codes 2..123 are the script's own verdict (examples exit 3 for "alert"), not a failed call;
  // 1 (uncaught error, refusal) and 124+ (timeout, memory, signals) are.
  return { content: [{ type: "text", text: lines.join("\n") + "\n" }], isError: code === 1 || code >= 124 };
}
