// A tool call's arguments → the request message's fields. Arguments are JSON written as on the
// command line (durations as text, percentiles as percentages); every refusal names the argument
// and says what it takes, so the model can fix its call without reading the schema again.
import { checkBounds, fieldValue } from "../surface/arguments.js";
import { UnitParseError, parseBoolean, parseNumber } from "../surface/units.js";
import type { McpArg, McpTool } from "../surface/mcp.js";
import { closest } from "../cli/runtime/suggest.js";

/** A bad argument: shown to the model as a tool error, the argument's name first. */
export class ArgumentError extends Error {}

export type OutputMode = "table" | "json";

export interface ToolRequest {
  /** protobuf-es init of the request message. */
  init: Record<string, unknown>;
  output: OutputMode;
  /** Remarks about the arguments worth the model's attention (a percentile of 0.99). */
  notes: string[];
}

const show = (v: unknown) => (typeof v === "string" ? JSON.stringify(v) : String(JSON.stringify(v) ?? v));

/** A number from a JSON number or numeric text (models sometimes quote numbers). */
function numberOf(a: McpArg, v: unknown, integer: boolean): number {
  if (typeof v === "number") {
    if (!Number.isFinite(v) || (integer && !Number.isInteger(v))) throw new ArgumentError(`${a.name}: expected ${integer ? "an integer" : "a number"}, got ${show(v)}`);
    return v;
  }
  if (typeof v === "string") {
    try {
      return parseNumber(v, integer);
    } catch {
      // Worded below, as for any other type.
    }
  }
  throw new ArgumentError(`${a.name}: expected ${integer ? "an integer" : "a number"}, got ${show(v)}`);
}

function durationText(a: McpArg, v: unknown): string {
  if (typeof v !== "string") throw new ArgumentError(`${a.name}: a duration is text like "500ms", "5m" or "1h", got ${show(v)}`);
  return v;
}

/**
 * The argument's value as the request field holds it (int64 as bigint). JSON types are checked
 * here; the value itself goes through the same conversion as a CLI flag's text.
 */
function convert(a: McpArg, v: unknown): unknown {
  return named(a, () => {
    switch (a.parse) {
      case "durationMs":
      case "durationNs":
        return fieldValue(a.parse, durationText(a, v));
      case "percent":
      case "double":
        return fieldValue(a.parse, String(numberOf(a, v, false)));
      case "int":
      case "int64":
        return fieldValue(a.parse, String(numberOf(a, v, true)));
      case "bool":
        if (typeof v === "boolean") return v;
        if (typeof v === "string") return parseBoolean(v);
        throw new ArgumentError(`${a.name}: expected true or false, got ${show(v)}`);
      case "string":
        if (typeof v !== "string") throw new ArgumentError(`${a.name}: expected text, got ${show(v)}`);
        return v;
    }
  });
}

/** Runs `f`, a value's conversion or check, with its refusal worded as the argument's. */
function named<T>(a: McpArg, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof UnitParseError) throw new ArgumentError(`${a.name}: ${e.message}`);
    throw e;
  }
}

/** Checks and converts a call's arguments; throws ArgumentError naming the first bad one. */
export function toolRequest(tool: McpTool, args: unknown): ToolRequest {
  const given = (args ?? {}) as Record<string, unknown>;
  if (typeof given !== "object" || Array.isArray(given)) throw new ArgumentError("arguments: expected an object of named arguments");
  const names = [...tool.args.map((a) => a.name), "output"];
  for (const key of Object.keys(given)) {
    if (names.includes(key)) continue;
    const guess = closest(key, names);
    throw new ArgumentError(`${key}: not an argument of ${tool.name}${guess ? ` (did you mean ${guess}?)` : ""}; it takes ${names.join(", ")}`);
  }
  const output = given.output ?? "table";
  if (output !== "table" && output !== "json") throw new ArgumentError(`output: expected "table" or "json", got ${show(output)}`);
  const init: Record<string, unknown> = {};
  const notes: string[] = [];
  for (const a of tool.args) {
    const raw = given[a.name] ?? undefined;
    if (raw === undefined || raw === null || (a.required && typeof raw === "string" && raw.trim() === "")) {
      if (a.required) throw new ArgumentError(`${a.name}: required`);
      if (a.default === undefined) continue;
      // Defaults are written as on the command line, which every rule also reads from text.
      init[a.field] = convert(a, a.default);
      continue;
    }
    const value = convert(a, raw);
    named(a, () => checkBounds(a, value, show(raw)));
    init[a.field] = value;
    if (a.parse === "percent" && Number(raw) < 1) {
      const p = Number((Number(raw) * 100).toPrecision(12));
      notes.push(`${a.name} ${raw} is the ${raw}th percentile; for p${p} write ${p}`);
    }
  }
  return { init, output, notes };
}
