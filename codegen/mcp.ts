// Emits the MCP tools of `coral mcp`: one per annotated RPC with a CLI view, its input JSON Schema
// from the request fields (types, defaults, bounds, descriptions from the proto comments) and the
// table view its answer is rendered with. Arguments are written as on the command line ("5m",
// percentile 99), so an agent and a person ask the colony the same way and get the same answer.
import type { GeneratedFile, Schema } from "@bufbuild/protoplugin";
import type { JsonSchema, McpArg } from "../surface/mcp.js";
import { PARSE, type ParseRule } from "../surface/vocabulary.js";
import { columnsOf } from "./cli.js";
import { cellEncodingName, parseRule, cliDoc, firstSentence, ModelError, rangeText, type Param, type Rpc } from "./model.js";

const runtimePath = "./../surface/mcp.js";

/** The argument every tool adds to its request fields: how the answer is rendered. */
export const OUTPUT_ARG = "output";

/** Rows a tool shows at most; the server says how many more there were (mcp/format.ts reads it). */
export const ROW_CAP = 25;

/** What a duration argument must look like (surface/units.ts parseDurationNs, whole string). */
const DURATION_PATTERN = "^\\s*((\\d+(\\.\\d+)?|\\.\\d+)(ns|us|µs|ms|s|m|h|d))+\\s*$";

/**
 * How each parse rule appears in a tool's schema. Exhaustive: a new rule is a compile error here
 * until it says what an agent writes for it.
 */
const RULES: Record<ParseRule, { type: "string" | "number" | "integer" | "boolean"; pattern?: string; note?: string }> = {
  string: { type: "string" },
  int: { type: "integer" },
  int64: { type: "integer" },
  double: { type: "number" },
  bool: { type: "boolean" },
  durationMs: { type: "string", pattern: DURATION_PATTERN },
  durationNs: { type: "string", pattern: DURATION_PATTERN },
  percent: { type: "number", note: "Here as on the CLI: a percentage, written like 99 or 99.9." },
};

/** The argument's name: the CLI flag in snake_case ("max_rows"), or the field for positionals. */
export function argName(p: Param): string {
  return p.positional ? p.name : p.flag.replace(/^--/, "").replace(/-/g, "_");
}

/** A default as a JSON value of the argument's type ("1h" stays text; "99" becomes 99). */
function jsonDefault(p: Param, type: string): string | number | boolean | undefined {
  if (p.defaultText === undefined) return undefined;
  if (type === "string") return p.defaultText;
  if (type === "boolean") return p.defaultValue as boolean;
  return Number(p.defaultText);
}

export function toolParams(rpc: Rpc): Param[] {
  return rpc.params.filter((p) => !p.cliOnly);
}

export function inputSchema(rpc: Rpc): JsonSchema {
  const properties: JsonSchema = {};
  const required: string[] = [];
  for (const p of toolParams(rpc)) {
    const name = argName(p);
    if (name === OUTPUT_ARG) throw new ModelError(`${rpc.method.name}: field "${p.name}" is named like the tools' own "${OUTPUT_ARG}" argument`);
    const rule = RULES[parseRule(p)];
    // A rule's own note replaces the CLI's hint where the CLI's words would mislead.
    const range = rangeText(p, "cli");
    const doc = [cliDoc(p), rule.note ?? PARSE[p.parse].hint, range && `Range: ${range}.`].filter(Boolean).join(" ");
    const prop: JsonSchema = { type: rule.type, description: doc };
    if (rule.pattern) prop.pattern = rule.pattern;
    // Numeric bounds the schema can state; a duration's ("0s") stays in the description.
    if (rule.type === "number" || rule.type === "integer") {
      if (p.min) prop[p.min.exclusive ? "exclusiveMinimum" : "minimum"] = Number(p.min.text);
      if (p.max) prop.maximum = Number(p.max.text);
    }
    if (p.positional && rule.type === "string") prop.minLength = 1;
    const def = jsonDefault(p, rule.type);
    if (def !== undefined) prop.default = def;
    properties[name] = prop;
    if (p.positional) required.push(name);
  }
  properties[OUTPUT_ARG] = {
    type: "string",
    enum: ["table", "json"],
    default: "table",
    description: "table: compact, human units (the default); json: raw values with proto field names (durations in nanoseconds)",
  };
  return { type: "object", properties, ...(required.length ? { required } : {}), additionalProperties: false };
}

export function toolArgs(rpc: Rpc): McpArg[] {
  return toolParams(rpc).map((p) => ({
    name: argName(p),
    field: p.localName,
    parse: parseRule(p),
    ...(p.positional ? { required: true } : {}),
    ...(p.defaultText !== undefined ? { default: p.defaultText } : {}),
    ...(p.min ? { min: p.min.text, ...(p.min.exclusive ? { minExclusive: true } : {}) } : {}),
    ...(p.max ? { max: p.max.text } : {}),
  }));
}

/** snake_case of the RPC name: FindSlowTraces → find_slow_traces. */
export function toolName(rpc: Rpc): string {
  return rpc.method.name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

function outputNote(rpc: Rpc, show: string[]): string {
  const c = rpc.cli!;
  const what = c.columns
    ? `a table of the result's columns, at most ${ROW_CAP} rows`
    : c.rows
      ? `a table (${show.join(", ")}), at most ${ROW_CAP} rows`
      : `one record (${show.join(", ")})`;
  const units = Object.keys(columnsOf(rpc).units).length ? "; durations and sizes in human units" : "";
  return `Output: ${what}${units}. Same answer as \`coral ${c.path.join(" ")}${c.variant ? ` --${c.variant}` : ""}\`.`;
}

function description(rpc: Rpc, show: string[]): string {
  return `${rpc.doc.replace(/\s*\n\s*/g, " ")}\n\n${outputNote(rpc, show)}`;
}

/** The tools of one proto file: the RPCs with a CLI view (its table is what the tool shows). */
export function mcpRpcs(rpcs: Rpc[]): Rpc[] {
  const tools = rpcs.filter((r) => r.cli);
  const seen = new Set<string>();
  for (const r of tools) {
    const name = toolName(r);
    if (seen.has(name)) throw new ModelError(`${r.method.name}: a second MCP tool named "${name}"`);
    seen.add(name);
  }
  return tools;
}

/** A JSON value as TypeScript source, indented to sit at `indent`. */
function literal(value: unknown, indent: string): string {
  return JSON.stringify(value, null, 2).replace(/\n/g, `\n${indent}`);
}

function printTool(f: GeneratedFile, rpc: Rpc): void {
  const cols = columnsOf(rpc);
  const c = rpc.cli!;
  f.print("  {");
  f.print("    name: ", f.string(toolName(rpc)), ",");
  f.print("    title: ", f.string(firstSentence(rpc.doc).replace(/\.$/, "")), ",");
  f.print("    description: ", f.string(description(rpc, cols.show)), ",");
  f.print("    method: ", f.importSchema(rpc.service), ".method.", rpc.method.localName, ",");
  f.print("    inputSchema: ", literal(inputSchema(rpc), "    "), ",");
  f.print("    args: [");
  for (const a of toolArgs(rpc)) {
    const fields = Object.entries(a).map(([k, v]) => `${k}: ${JSON.stringify(v)}`);
    f.print("      { ", fields.join(", "), " },");
  }
  f.print("    ],");
  f.print("    output: {");
  if (c.rows) f.print("      rows: ", f.string(c.rows.name), ",");
  if (c.columns) {
    f.print("      columns: ", f.string(c.columns.name), ",");
    f.print("      encoding: ", f.string(cellEncodingName(c.rowsEncoding)), ",");
  }
  f.print("      show: ", f.array(cols.show.map((s) => f.string(s))), ",");
  f.print("      units: { ", Object.entries(cols.units).map(([k, v]) => `${JSON.stringify(k)}: "${v}"`).join(", "), " },");
  f.print("    },");
  f.print("  },");
}

/** Writes `<proto file>_mcp.ts` for every file with an RPC that has a CLI view. */
export function emitMcp(schema: Schema, rpcsByFile: Map<string, Rpc[]>): void {
  for (const file of schema.files) {
    const rpcs = mcpRpcs(rpcsByFile.get(file.name) ?? []);
    if (rpcs.length === 0) continue;
    const f = schema.generateFile(`${file.name}_mcp.ts`);
    f.preamble(file);
    f.print(f.jsDoc(`The MCP tools of \`coral mcp\`, one per RPC: ${rpcs.map((r) => r.method.name).join(", ")}.`));
    f.print(f.export("const", "tools"), ": ", f.import("McpTool", runtimePath, true), "[] = [");
    for (const r of rpcs) printTool(f, r);
    f.print("];");
    f.print();
    f.print(f.jsDoc("Rows a tool shows at most before it says how many more there were."));
    f.print(f.export("const", "rowCap"), " = ", String(ROW_CAP), ";");
  }
}
