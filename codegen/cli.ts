// Emits one command spec per CLI path — its flags, help text and the table of RPC variants — as
// plain data typed by surface/cli.ts; cli/runtime/query-command.ts turns each into a command.
import type { DescField, DescMessage } from "@bufbuild/protobuf";
import type { GeneratedFile, Schema } from "@bufbuild/protoplugin";
import { LAYOUTS, PARSE, UNITS } from "../surface/vocabulary.js";
import { camel, cellEncodingName, cliCommands, cliDoc, parseRule, rangeText, unitOf, type CliCommand, type Param, type Rpc } from "./model.js";

const runtimePath = "./../surface/cli.js";

/** The message whose fields are the table's columns. */
function rowMessage(rpc: Rpc): DescMessage | undefined {
  const rows = rpc.cli!.rows;
  if (!rows) return rpc.method.output;
  return rows.fieldKind === "list" && rows.listKind === "message" ? rows.message : undefined;
}

const isCell = (f: DescField) =>
  f.fieldKind === "scalar" || f.fieldKind === "enum" || (f.fieldKind === "message" && f.message.typeName === "google.protobuf.Timestamp");

/**
 * Columns of a row message, as dotted paths: a nested message (GetServiceResponse.service)
 * contributes its own cells ("service.name"), so a table never hides them.
 */
function cellPaths(m: DescMessage, prefix = "", depth = 0): { path: string; field: DescField }[] {
  return m.fields.flatMap((f) => {
    if (isCell(f)) return [{ path: prefix + f.name, field: f }];
    if (f.fieldKind === "message" && depth === 0) return cellPaths(f.message, `${prefix}${f.name}.`, depth + 1);
    return [];
  });
}

export function columnsOf(rpc: Rpc): { show: string[]; wide: string[]; units: Record<string, string> } {
  const m = rowMessage(rpc);
  if (!m) return { show: [], wide: [], units: {} };
  const cells = cellPaths(m);
  const units: Record<string, string> = {};
  for (const c of cells) {
    const u = UNITS[unitOf(c.field)].name;
    if (u) units[c.path] = u;
  }
  const wide = cells.map((c) => c.path);
  return { show: rpc.cli!.show.length ? rpc.cli!.show : wide, wide, units };
}

/** The property name a flag's value lives in on the command class. */
export function propOf(p: Param): string {
  return camel(p.positional ? p.name : p.flag.replace(/^--/, ""));
}

function flagHelp(p: Param): string {
  const range = rangeText(p, "cli");
  const parts = [
    cliDoc(p),
    PARSE[p.parse].hint,
    range ? `Range: ${range}.` : undefined,
    p.defaultText !== undefined ? `(default: ${p.defaultText})` : undefined,
  ];
  return parts.filter(Boolean).join(" ");
}

function details(c: CliCommand): string {
  const parts: string[] = [];
  if (c.rpcs.length === 1) {
    parts.push(c.rpcs[0].doc);
  } else {
    for (const r of c.rpcs) {
      const how = r.cli!.variant ? `With --${r.cli!.variant}${r.cli!.defaultVariant ? " (the default)" : ""}` : "By default";
      parts.push(`${how}: ${r.doc}`);
    }
  }
  parts.push(
    "Output: --output table (main columns, human units, fits the terminal), wide (every column), json (raw values, proto field names) or csv. " +
      "Exit codes: 0 ok, 1 error (colony unreachable, not found, wrong token), 2 usage error (including values the colony refuses).",
  );
  return parts.join("\n\n");
}

function printCommand(f: GeneratedFile, c: CliCommand): void {
  f.print("  // `coral ", c.path.join(" "), "`: ", c.rpcs.map((r) => r.method.name).join(", "), ".");
  f.print("  {");
  f.print("    path: ", f.array(c.path.map((w) => f.string(w))), ",");
  f.print("    usage: {");
  f.print("      category: ", f.string("Query"), ",");
  f.print("      description: ", f.string(c.rpcs.length === 1 ? c.rpcs[0].summary : (c.defaultRpc ?? c.rpcs[0]).summary), ",");
  f.print("      details: ", f.string(details(c)), ",");
  const examples = c.rpcs.flatMap((r) => r.cli!.examples.map((e) => [r.summary, `coral ${e}`]));
  f.print("      examples: [");
  for (const [what, cmd] of examples) f.print("        [", f.string(what), ", ", f.string(cmd), "],");
  f.print("      ],");
  f.print("    },");
  f.print("    options: [");
  for (const p of c.params) {
    const prop = f.string(propOf(p));
    if (p.positional) {
      f.print("      { kind: \"positional\", prop: ", prop, ", metavar: ", f.string(p.metavar), " },");
    } else {
      const kind = f.string(p.tsType === "boolean" ? "boolean" : "string");
      f.print("      { kind: ", kind, ", prop: ", prop, ", flag: ", f.string(p.flag), ", description: ", f.string(flagHelp(p)), " },");
    }
  }
  for (const r of c.rpcs) {
    // A variant selected by one of its parameters (`--by KEY`) has that flag already.
    if (!r.cli!.variant || r.cli!.variantParam) continue;
    const help = `${r.summary}${r.cli!.defaultVariant ? " (the default)" : ""}`;
    f.print(
      "      { kind: \"boolean\", prop: ", f.string(camel(r.cli!.variant)), ", flag: ", f.string(`--${r.cli!.variant}`),
      ", description: ", f.string(help), ", initial: false },",
    );
  }
  f.print("    ],");
  f.print("    variants: [");
  for (const r of c.rpcs) {
    const cols = columnsOf(r);
    f.print("      {");
    if (r.cli!.defaultVariant) f.print("        isDefault: true,");
    if (r.cli!.variant) {
      f.print("        select: ", f.string(camel(r.cli!.variant)), ",");
      f.print("        selectFlag: ", f.string(`--${r.cli!.variant}`), ",");
    }
    f.print("        method: ", f.importSchema(r.service), ".method.", r.method.localName, ",");
    f.print("        params: [");
    for (const p of r.params) {
      const def = p.defaultText !== undefined ? [", default: ", f.string(p.defaultText)] : [];
      const min = p.min ? [", min: ", f.string(p.min.text), ...(p.min.exclusive ? [", minExclusive: true"] : [])] : [];
      const max = p.max ? [", max: ", f.string(p.max.text)] : [];
      f.print(
        "          { prop: ", f.string(propOf(p)), ", field: ", f.string(p.localName), ", flag: ", f.string(p.flag),
        ", parse: ", f.string(parseRule(p)), ...def, ...min, ...max, " },",
      );
    }
    f.print("        ],");
    if (r.cli!.rows) f.print("        rows: ", f.string(r.cli!.rows.name), ",");
    if (r.cli!.total) f.print("        total: ", f.string(r.cli!.total.name), ",");
    if (r.cli!.truncated) f.print("        truncated: ", f.string(r.cli!.truncated.name), ",");
    if (r.cli!.columns) {
      f.print("        columns: ", f.string(r.cli!.columns.name), ",");
      f.print("        encoding: ", f.string(cellEncodingName(r.cli!.rowsEncoding)), ",");
    }
    f.print("        show: ", f.array(cols.show.map((s) => f.string(s))), ",");
    f.print("        wide: ", f.array(cols.wide.map((s) => f.string(s))), ",");
    f.print("        units: { ", Object.entries(cols.units).map(([k, v]) => `${k}: "${v}"`).join(", "), " },");
    const layout = LAYOUTS[r.cli!.layout];
    if (layout) f.print("        layout: ", f.string(layout), ",");
    f.print("      },");
  }
  f.print("    ],");
  f.print("  },");
}

/** Writes `<proto file>_cli.ts` for every file with a service that has CLI annotations. */
export function emitCli(schema: Schema, rpcsByFile: Map<string, Rpc[]>): void {
  for (const file of schema.files) {
    const rpcs = rpcsByFile.get(file.name) ?? [];
    const commands = cliCommands(rpcs);
    if (commands.length === 0) continue;
    const f = schema.generateFile(`${file.name}_cli.ts`);
    f.preamble(file);
    f.print(f.jsDoc("Every command generated from this file, as data for the CLI to register (cli/runtime/query-command.ts)."));
    f.print(f.export("const", "commands"), ": ", f.import("CommandSpec", runtimePath, true), "[] = [");
    for (const c of commands) printCommand(f, c);
    f.print("];");
  }
}
