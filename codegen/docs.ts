// Emits the markdown reference: one page per RPC (API, CLI and SDK side by side) and
// one page for the whole `coral query` CLI.
import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import type { Schema } from "@bufbuild/protoplugin";
import { columnsOf } from "./cli.js";
import { LAYOUTS, UNITS } from "../surface/vocabulary.js";
import { Encoding, ResultShape, cellEncodingName, cliCommands, cliDoc, docComment, encodingOf, rangeText, sdkParams, sdkReturns, unitOf, type CliCommand, type Param, type Rpc } from "./model.js";

const cell = (s: string) => s.replace(/\s+/g, " ").replaceAll("|", "\\|").trim();

function protoType(f: DescField): string {
  const base = (): string => {
    switch (f.fieldKind) {
      case "scalar":
        return ScalarType[f.scalar].toLowerCase();
      case "enum":
        return f.enum.name;
      case "message":
        return f.message.typeName.startsWith("google.protobuf.") ? f.message.typeName : f.message.name;
      case "list":
        return f.listKind === "scalar" ? ScalarType[f.scalar].toLowerCase() : f.listKind === "enum" ? f.enum.name : f.message.name.startsWith("ListValue") ? f.message.typeName : f.message.name;
      case "map":
        return `map<${ScalarType[f.mapKey].toLowerCase()}, …>`;
    }
  };
  const encoding = encodingOf(f);
  if (encoding !== Encoding.UNSPECIFIED) return `${base()} (${cellEncodingName(encoding)})`;
  return f.fieldKind === "list" ? `repeated ${base()}` : base();
}

function sdkSignature(rpc: Rpc, fnName = rpc.sdk!.function, params = sdkParams(rpc)): string {
  const args = params.map((p) => `${p.name}${p.required ? "" : "?"}`).join(", ");
  return `coral.${rpc.sdk!.module}.${fnName}(${args})`;
}

function cliUsage(c: CliCommand, rpc?: Rpc): string {
  const params = rpc ? c.params.filter((p) => rpc.params.some((q) => q.flag === p.flag)) : c.params;
  const parts = [`coral ${c.path.join(" ")}`];
  const selecting = rpc?.cli?.variantParam?.flag;
  if (rpc?.cli?.variant && !selecting) parts.push(rpc.cli.defaultVariant ? `[--${rpc.cli.variant}]` : `--${rpc.cli.variant}`);
  for (const p of params) parts.push(p.positional ? `<${p.metavar}>` : p.flag === selecting ? `${p.flag} ${p.metavar}` : `[${p.flag} ${p.metavar}]`);
  parts.push("[--output table|wide|json|csv] [--colony HOST:PORT] [--token-file FILE]");
  return parts.join(" ");
}

function fieldsTable(m: DescMessage, request: Map<string, Param> | undefined): string[] {
  const lines = request
    ? ["| Field | Type | CLI | Default | Description |", "|---|---|---|---|---|"]
    : ["| Field | Type | Unit | Description |", "|---|---|---|---|"];
  for (const f of m.fields) {
    const doc = cell(docComment(f) ?? "");
    if (request) {
      const p = request.get(f.name)!;
      const range = rangeText(p, "api");
      const described = range ? `${doc} Range: \`${range}\`.` : doc;
      lines.push(`| \`${f.name}\` | ${protoType(f)} | ${p.positional ? `\`<${p.metavar}>\`` : `\`${p.flag}\``} | ${p.defaultText !== undefined ? `\`${p.defaultText}\`` : ""} | ${described} |`);
    } else {
      lines.push(`| \`${f.name}\` | ${protoType(f)} | ${UNITS[unitOf(f)].docs} | ${doc} |`);
    }
  }
  return lines;
}

function nestedMessages(m: DescMessage, seen = new Set<DescMessage>()): DescMessage[] {
  for (const f of m.fields) {
    const child = f.fieldKind === "message" ? f.message : f.fieldKind === "list" && f.listKind === "message" ? f.message : undefined;
    if (child && !child.typeName.startsWith("google.protobuf.") && !seen.has(child)) {
      seen.add(child);
      nestedMessages(child, seen);
    }
  }
  return [...seen];
}

function rpcPage(rpc: Rpc, commands: CliCommand[]): string {
  const out: string[] = [`# ${rpc.method.name}`, "", rpc.doc, ""];
  out.push(`\`rpc ${rpc.method.name}(${rpc.method.input.name}) returns (${rpc.streaming ? "stream " : ""}${rpc.method.output.name})\` — service \`${rpc.service.typeName}\``, "");
  const c = commands.find((x) => x.rpcs.includes(rpc));
  if (c) {
    out.push("## CLI", "", "```", cliUsage(c, rpc), "```", "");
    for (const e of rpc.cli!.examples) out.push("```sh", `coral ${e}`, "```", "");
    const cols = columnsOf(rpc);
    if (LAYOUTS[rpc.cli!.layout] === "waterfall") {
      out.push(
        "`--output table` (80 columns, fewer on a narrower terminal) and `wide` (span ids, names whole) draw the spans as a waterfall: the tree indented by depth, a bar per span on the trace's time line, `█` on the critical path, `!` on failed spans. `json` gives the spans as the API returns them; `csv` one row per span.",
        "",
      );
    } else if (cols.show.length) out.push(`Table columns: ${cols.show.map((s) => `\`${s}\``).join(", ")}.`, "");
  }
  if (rpc.sdk) {
    out.push("## SDK", "", "```ts", `import * as coral from "@coral/sdk";`, "", sdkSignature(rpc));
    for (const a of rpc.sdk.aliases) out.push(`${sdkSignature(rpc, a.function, sdkParams(rpc, a.fixed))} // ${a.doc}`);
    out.push("```", "");
    const s = rpc.sdk;
    let shape: string;
    if (s.shape === ResultShape.TABLE) shape = "`{ columns, rows, truncated }` with rows as objects keyed by column name; the result is iterable over its rows";
    else if (s.shape === ResultShape.TABLE_STREAM) shape = "an async iterator over batches of row objects";
    else if (s.unwrap) shape = `the response's \`${s.unwrap.name}\` field${s.bind ? "; each object also carries the service helpers (`svc.metrics.getP99()` …)" : ""}`;
    else shape = `the whole response as a plain object, typed \`${s.result}\``;
    out.push(`Resolves to ${shape}. ${cell(sdkReturns(rpc))}`, "");
    const refs = sdkParams(rpc).filter((p) => p.serviceRef);
    if (refs.length) out.push(`Also bound on service objects: \`svc.${s.module}.${s.function}(${sdkParams(rpc).filter((p) => !p.serviceRef).map((p) => `${p.name}${p.required ? "" : "?"}`).join(", ")})\`.`, "");
    out.push("Example:", "", "```ts", `import * as coral from "@coral/sdk";`, "", s.example.trimEnd());
    for (const a of s.aliases) out.push("", a.example.trimEnd());
    out.push("```", "");
  }
  const byName = new Map(rpc.params.map((p) => [p.name, p]));
  out.push(`## Request: ${rpc.method.input.name}`, "", ...fieldsTable(rpc.method.input, byName), "");
  out.push(`## Response: ${rpc.method.output.name}`, "", ...fieldsTable(rpc.method.output, undefined), "");
  for (const m of nestedMessages(rpc.method.output)) {
    out.push(`### ${m.name}`, "", cell(docComment(m) ?? ""), "", ...fieldsTable(m, undefined), "");
  }
  return out.join("\n").replace(/\n{3,}/g, "\n\n").trimEnd() + "\n";
}

function cliPage(commands: CliCommand[]): string {
  const out: string[] = [
    "# `coral query` reference",
    "",
    "Generated from `proto/coral/colony/v1/query.proto`. Every command talks to one colony:",
    "",
    "| Flag | Meaning |",
    "|---|---|",
    "| `--colony HOST:PORT` | Colony address (default: `$CORAL_COLONY_ADDR`, then `127.0.0.1:9090`) |",
    "| `--token-file FILE` | File holding the bearer token: one token, surrounding whitespace ignored; keep it `chmod 600` (default: `$CORAL_TOKEN`) |",
    "| `--token TOKEN` | The bearer token itself: works, with a warning, since every local user can read it in `ps` |",
    "| `--output table\\|wide\\|json\\|csv`, `-o` | `table` (default): the main columns, aligned, human units such as `892.1ms`, times as ages (`5m ago`), text cut with `…` to fit the terminal; `wide`: every column, whole, times in ISO 8601; `json`: the response with proto field names and raw values (pipe to `jq`; a streamed query prints one JSON object per line); `csv`: header row, every column, raw values |",
    "",
    "Exit codes: `0` success, `1` error (colony unreachable, unknown service, wrong token), `2` usage error (unknown flag, malformed value such as `--threshold 5xs`, a value the colony refuses such as `--limit 1001` or SQL that is not one SELECT, a missing or unusable `--token-file`).",
    "",
    "Durations are written like `500ms`, `30s`, `5m`, `1h`, `1h30m`; percentiles as percentages (`--percentile 99.9`; a value below 1, such as the SDK-style `0.99`, is taken as written and answered with a note on stderr).",
    "",
  ];
  for (const c of commands) {
    out.push(`## coral ${c.path.join(" ")}`, "");
    for (const r of c.rpcs) {
      const how = c.rpcs.length > 1 ? (r.cli!.variant ? `\`--${r.cli!.variant}\`${r.cli!.defaultVariant ? " (default)" : ""}: ` : "Default: ") : "";
      out.push(`${how}${r.doc.replace(/\s+/g, " ")} ([${r.method.name}](rpc/${r.method.name}.md))`, "");
    }
    out.push("```", ...c.rpcs.map((r) => cliUsage(c, r)), "```", "");
    out.push("| Argument | Meaning | Default |", "|---|---|---|");
    for (const p of c.params) {
      const range = rangeText(p, "cli");
      const meaning = range ? `${cell(cliDoc(p))} Range: \`${range}\`.` : cell(cliDoc(p));
      out.push(`| \`${p.positional ? `<${p.metavar}>` : `${p.flag} ${p.metavar}`}\` | ${meaning} | ${p.defaultText !== undefined ? `\`${p.defaultText}\`` : ""} |`);
    }
    for (const r of c.rpcs) if (r.cli!.variant && !r.cli!.variantParam) out.push(`| \`--${r.cli!.variant}\` | ${cell(r.summary)} | |`);
    out.push("", "Examples:", "", "```sh", ...c.rpcs.flatMap((r) => r.cli!.examples.map((e) => `coral ${e}`)), "```", "");
  }
  return out.join("\n").trimEnd() + "\n";
}

function indexPage(rpcs: Rpc[]): string {
  const out = [
    "# API reference",
    "",
    "Generated from the annotated protos by `npm run gen`; do not edit. Each RPC is one page with its CLI command and SDK function.",
    "",
    "| RPC | CLI | SDK | Summary |",
    "|---|---|---|---|",
  ];
  for (const r of rpcs) {
    const cli = r.cli ? `\`coral ${r.cli.path.join(" ")}${r.cli.variant && !r.cli.defaultVariant ? ` --${r.cli.variant}` : ""}\`` : "";
    const sdk = r.sdk ? `\`coral.${r.sdk.module}.${r.sdk.function}()\`` : "";
    out.push(`| [${r.method.name}](rpc/${r.method.name}.md) | ${cli} | ${sdk} | ${cell(r.summary)} |`);
  }
  out.push("", "The whole CLI on one page: [cli.md](cli.md).", "");
  return out.join("\n");
}

export function emitDocs(schema: Schema, rpcsByFile: Map<string, Rpc[]>): void {
  const rpcs = schema.files.flatMap((f) => rpcsByFile.get(f.name) ?? []);
  if (rpcs.length === 0) return;
  const commands = cliCommands(rpcs);
  for (const r of rpcs) schema.generateFile(`rpc/${r.method.name}.md`).print(rpcPage(r, commands));
  schema.generateFile("cli.md").print(cliPage(commands));
  schema.generateFile("README.md").print(indexPage(rpcs));
}
