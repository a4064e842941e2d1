// Emits the @coral/sdk functions (`coral.metrics.getPercentile(...)` …) with TSDoc from
// the proto comments, the plain result interfaces, and the bound helpers on services.
import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import type { GeneratedFile, Printable, Schema } from "@bufbuild/protoplugin";
import { ModelError, Parse, ResultShape, cellEncodingName, clean, docComment, firstSentence, rangeText, sdkModules, sdkReturns, sdkParams, type Param, type Rpc } from "./model.js";

const runtimePath = "./../sdk/runtime.js";
const tablePath = "./../surface/table.js";
// The generated SDK lives in gen/ and the markdown reference in docs/reference/ (buf.gen.yaml);
// a doc comment links from one to the other through the repository root.
const referenceDir = "docs/reference";

/** TypeScript type of a response field in its plain form (see surface/plain.ts). */
function plainType(f: DescField, named: Set<DescMessage>): string {
  const base = (kind: "scalar" | "enum" | "message", d: DescField): string => {
    if (kind === "message") {
      const m = (d as DescField & { message: DescMessage }).message;
      switch (m.typeName) {
        case "google.protobuf.Timestamp":
          return "Date";
        case "google.protobuf.Value":
          return "unknown";
        case "google.protobuf.ListValue":
          return "unknown[]";
        case "google.protobuf.Struct":
          return "Record<string, unknown>";
      }
      named.add(m);
      return m.name;
    }
    if (kind === "enum") return "string";
    switch (d.scalar) {
      case ScalarType.STRING:
        return "string";
      case ScalarType.BOOL:
        return "boolean";
      case ScalarType.BYTES:
        return "number[]";
      default:
        return "number";
    }
  };
  switch (f.fieldKind) {
    case "scalar":
    case "enum":
      // A field with presence (proto3 `optional`) left unset is null: no data (surface/plain.ts).
      return f.presence === FeatureSet_FieldPresence.EXPLICIT ? `${base(f.fieldKind, f)} | null` : base(f.fieldKind, f);
    case "message":
      return `${base("message", f)} | null`;
    case "list":
      return `${base(f.listKind, f)}[]`;
    case "map":
      return `Record<string, ${base(f.mapKind, f)}>`;
  }
}

function tsdocLines(text: string): string[] {
  return clean(text).split("\n");
}

/**
 * Plain interfaces for every message reachable from the SDK's results, each under the name scripts
 * know it by: `sdk.result` for a whole response, the message name otherwise.
 */
function printInterfaces(f: GeneratedFile, roots: DescMessage[], results: Map<DescMessage, Rpc>): void {
  const done = new Set<DescMessage>();
  const names = new Map<string, DescMessage>();
  const queue = [...roots];
  while (queue.length) {
    const m = queue.shift()!;
    if (done.has(m)) continue;
    done.add(m);
    const rpc = results.get(m);
    const name = rpc?.sdk?.result ?? m.name;
    const clash = names.get(name);
    if (clash) throw new ModelError(`${rpc?.method.name ?? m.typeName}: the SDK type ${name} would stand for both ${clash.typeName} and ${m.typeName}`);
    names.set(name, m);
    const named = new Set<DescMessage>();
    const fields = m.fields.map((fd) => ({ fd, type: plainType(fd, named) }));
    const doc = docComment(m) || (rpc ? `What ${sdkName(rpc)} returns.` : "");
    f.print(f.jsDoc(doc));
    f.print(f.export("interface", name), " {");
    for (const { fd, type } of fields) {
      const doc = clean(docComment(fd));
      if (doc) f.print(f.jsDoc(doc, "  "));
      f.print("  ", fd.name, ": ", type, ";");
    }
    f.print("}");
    f.print();
    queue.push(...named);
  }
}

function paramList(params: Param[]): string {
  return params.map((p) => `${p.name}${p.required ? "" : "?"}: ${p.tsType}`).join(", ");
}

/**
 * The request in proto3 JSON (keys are the fields' JSON names): defaults from the annotations,
 * int64 through int64(). `coral run` turns it into the message; the SDK carries no descriptors.
 */
function requestInit(f: GeneratedFile, params: Param[]): Printable[] {
  const int64 = f.import("int64", runtimePath);
  const out: Printable[] = ["{ "];
  for (const p of [...params].sort((a, b) => a.field.number - b.field.number)) {
    const value = p.defaultValue !== undefined ? `${p.name} ?? ${JSON.stringify(p.defaultValue)}` : p.name;
    out.push(`${p.field.jsonName}: `);
    if (p.int64) {
      if (p.defaultValue === undefined) out.push(`${p.name} === undefined ? undefined : `);
      out.push(int64, `(${JSON.stringify(p.name)}, ${value})`);
    } else {
      out.push(value);
    }
    out.push(", ");
  }
  out.push("}");
  return out;
}

function resultType(rpc: Rpc, named: Set<DescMessage>): string {
  const s = rpc.sdk!;
  if (s.shape === ResultShape.TABLE) return "QueryResult<Row>";
  if (s.shape === ResultShape.TABLE_STREAM) return "AsyncGenerator<Row[]>";
  if (s.unwrap) {
    const t = plainType(s.unwrap, named);
    return s.bind ? t.replace(/^(\w+)(\[\])?$/, "Bound<$1>$2") : t;
  }
  named.add(rpc.method.output);
  return s.result!;
}

const sdkName = (rpc: Rpc, fn = rpc.sdk!.function) => `\`coral.${rpc.sdk!.module}.${fn}\``;

/** A parameter's doc with what the signature cannot say: its range and its default, with the unit as written on the CLI. */
function paramDoc(p: Param): string {
  const parts = [p.doc.replace(/\s+/g, " ").trim()];
  const range = rangeText(p, "api");
  if (range) parts.push(`Range: ${range}.`);
  if (p.defaultValue !== undefined) {
    const duration = p.parse === Parse.DURATION_MS || p.parse === Parse.DURATION_NS;
    parts.push(`Default: ${JSON.stringify(p.defaultValue)}${duration ? ` (${p.defaultText})` : ""}.`);
  }
  return parts.join(" ");
}

/** TSDoc of the function: the RPC's doc (or the alias's own), parameters, result, errors, example, and where the API is described. */
type Alias = NonNullable<Rpc["sdk"]>["aliases"][number];

function docFor(rpc: Rpc, params: Param[], alias?: Alias): string {
  const s = rpc.sdk!;
  const lines: string[] = [];
  if (alias) {
    const fixed = Object.entries(alias.fixed).map(([k, v]) => `\`${k}\` = ${v}`);
    lines.push(alias.doc, "", `Shorthand for {@link ${s.module}.${s.function}} with ${fixed.join(", ")}.`, "");
  } else {
    lines.push(...tsdocLines(rpc.doc), "");
  }
  for (const p of params) lines.push(`@param ${p.name} ${paramDoc(p)}`);
  lines.push(`@returns ${sdkReturns(rpc).replace(/\s+/g, " ")}`);
  const codes = [...(rpc.params.some((p) => p.serviceRef) ? ['"not_found"'] : []), '"invalid_argument"', '"unavailable"'];
  lines.push(`@throws CoralError with a code such as ${codes.slice(0, -1).join(", ")} or ${codes.at(-1)}.`);
  lines.push("@example", "```ts", ...(alias ? alias.example : s.example).trimEnd().split("\n"), "```");
  const depth = rpc.method.parent.file.name.split("/").length;
  const page = `${"../".repeat(depth)}${referenceDir}/rpc/${rpc.method.name}.md`;
  const cli = rpc.cli ? `, with its command \`coral ${rpc.cli.path.join(" ")}\`` : "";
  lines.push(`@see [${rpc.method.name}](${page}): the colony API call behind it${cli}.`);
  return lines.join("\n");
}


/** The TableFields literal telling surface/table.ts where a table response keeps its cells. */
function tableFields(rpc: Rpc): string {
  const t = rpc.sdk!.table!;
  const truncated = rpc.cli?.truncated ? `, truncated: ${JSON.stringify(rpc.cli.truncated.name)}` : "";
  return `{ rows: ${JSON.stringify(t.rows.name)}, columns: ${JSON.stringify(t.columns.name)}, encoding: ${JSON.stringify(cellEncodingName(t.encoding))}${truncated} }`;
}

function printFunction(f: GeneratedFile, rpc: Rpc, named: Set<DescMessage>): void {
  const s = rpc.sdk!;
  const params = sdkParams(rpc);
  const generic = s.shape === ResultShape.UNSPECIFIED ? "" : "<Row = Record<string, unknown>>";
  const ret = resultType(rpc, named);
  f.print(f.jsDoc(docFor(rpc, params), "  "));
  const init = requestInit(f, sdkParams(rpc));
  const method = JSON.stringify(rpc.method.name);
  if (s.shape === ResultShape.TABLE_STREAM) {
    f.print("  ", s.function, generic, "(", paramList(params), "): ", ret, " {");
    f.print("    return ", f.import("asTableStream", tablePath), "<Row>(", f.import("callStream", runtimePath), "(", method, ", ", ...init, "), ", tableFields(rpc), ");");
    f.print("  },");
    return;
  }
  f.print("  async ", s.function, generic, "(", paramList(params), "): Promise<", ret, "> {");
  f.print("    const res = await ", f.import("call", runtimePath), "(", method, ", ", ...init, ");");
  if (s.shape === ResultShape.TABLE) {
    f.print("    return ", f.import("asTable", tablePath), "<Row>(res, ", tableFields(rpc), ");");
  } else if (s.unwrap && s.bind) {
    f.print("    return (res.", s.unwrap.name, " as unknown as ", plainType(s.unwrap, named), ").map((x) => bind(x, x.", s.bind, "));");
  } else if (s.unwrap) {
    f.print("    return res.", s.unwrap.name, " as unknown as ", ret, ";");
  } else {
    f.print("    return res as unknown as ", ret, ";");
  }
  f.print("  },");
  for (const a of s.aliases) {
    const aparams = sdkParams(rpc, a.fixed);
    const args = sdkParams(rpc).map((p) => (p.name in a.fixed ? a.fixed[p.name] : p.name));
    f.print(f.jsDoc(docFor(rpc, aparams, a), "  "));
    f.print("  ", a.function, "(", paramList(aparams), "): Promise<", ret, "> {");
    f.print("    return ", s.module, ".", s.function, "(", args.join(", "), ");");
    f.print("  },");
  }
}

/** Functions that take a service_ref, as `svc.<module>.<fn>(...rest)`. */
function boundFunctions(rpcs: Rpc[]): { module: string; fn: string; params: Param[]; ret: string; ref: Param; all: Param[] }[] {
  const out: { module: string; fn: string; params: Param[]; ret: string; ref: Param; all: Param[] }[] = [];
  const named = new Set<DescMessage>();
  for (const r of rpcs) {
    if (!r.sdk) continue;
    const all = sdkParams(r);
    const ref = all.find((p) => p.serviceRef);
    if (!ref) continue;
    const ret = resultType(r, named);
    out.push({ module: r.sdk.module, fn: r.sdk.function, params: all.filter((p) => p !== ref), ret, ref, all });
    for (const a of r.sdk.aliases) {
      out.push({ module: r.sdk.module, fn: a.function, params: sdkParams(r, a.fixed).filter((p) => p !== ref), ret, ref, all: sdkParams(r, a.fixed) });
    }
  }
  return out;
}

function printBinding(f: GeneratedFile, rpcs: Rpc[]): void {
  const fns = boundFunctions(rpcs);
  const modules = [...new Set(fns.map((b) => b.module))];
  f.print(f.jsDoc("The SDK functions that take a service, bound to one service (`svc.metrics.getP99()`)."));
  f.print(f.export("interface", "ServiceHelpers"), " {");
  for (const m of modules) {
    f.print("  ", m, ": {");
    for (const b of fns.filter((x) => x.module === m)) {
      f.print(`    /** {@link ${m}.${b.fn}} for this service. */`);
      f.print("    ", b.fn, "(", paramList(b.params), "): Promise<", b.ret, ">;");
    }
    f.print("  };");
  }
  f.print("}");
  f.print();
  f.print(f.jsDoc("A result object that is a service, with its helpers attached."));
  f.print(f.export("type", "Bound"), "<T> = T & ServiceHelpers;");
  f.print();
  // Non-enumerable, so JSON.stringify(svc) and console.log(svc) show only the data.
  f.print("function bind<T extends object>(obj: T, name: string): Bound<T> {");
  f.print("  return Object.defineProperties(obj, {");
  for (const m of modules) {
    f.print("    ", m, ": { enumerable: false, value: {");
    for (const b of fns.filter((x) => x.module === m)) {
      const args = b.all.map((p) => (p === b.ref ? "name" : p.name));
      f.print("      ", b.fn, ": (", paramList(b.params), ") => ", m, ".", b.fn, "(", args.join(", "), "),");
    }
    f.print("    } },");
  }
  f.print("  }) as Bound<T>;");
  f.print("}");
  f.print();
}

/**
 * A module's doc: its functions with what each answers, one line each. `@namespace` makes TypeDoc
 * show the object as what scripts use it as, a module of functions, not a constant of a type literal.
 */
function moduleDoc(module: string, rpcs: Rpc[], binder: Rpc | undefined): string {
  const lines = [`\`coral.${module}\`:`, ""];
  for (const r of rpcs) {
    lines.push(`- {@link ${module}.${r.sdk!.function} | ${r.sdk!.function}}: ${firstSentence(r.doc)}`);
    const aliases = r.sdk!.aliases.map((a) => `{@link ${module}.${a.function} | ${a.function}}`);
    if (aliases.length) lines.push(`- ${aliases.join(", ")}: ${aliases.length > 1 ? "shorthands" : "a shorthand"} for \`${r.sdk!.function}\`.`);
  }
  const bound = rpcs.find((r) => r.params.some((p) => p.serviceRef));
  if (binder && bound) {
    const ref = bound.params.find((p) => p.serviceRef)!.name;
    const u = binder.sdk!.unwrap;
    const item = u?.fieldKind === "list" && u.listKind === "message" ? u.message.name.replace(/^\w/, (c) => c.toLowerCase()) : "item";
    lines.push("", `The functions that take a \`${ref}\` are also on each ${item} \`coral.${binder.sdk!.module}.${binder.sdk!.function}()\` returns, for that ${item}: \`${item}.${module}.${bound.sdk!.function}()\`.`);
  }
  lines.push("", "@namespace");
  return lines.join("\n");
}

export function emitSdk(schema: Schema, rpcsByFile: Map<string, Rpc[]>): void {
  for (const file of schema.files) {
    const rpcs = (rpcsByFile.get(file.name) ?? []).filter((r) => r.sdk);
    if (rpcs.length === 0) continue;
    const f = schema.generateFile(`${file.name}_sdk.ts`);
    f.preamble(file);
    const named = new Set<DescMessage>();
    const binder = rpcs.find((r) => r.sdk!.bind);
    for (const { module, rpcs: mods } of sdkModules(rpcs)) {
      f.print(f.jsDoc(moduleDoc(module, mods, binder)));
      f.print(f.export("const", module), " = {");
      for (const r of mods) printFunction(f, r, named);
      f.print("};");
      f.print();
    }
    if (rpcs.some((r) => r.sdk!.bind)) printBinding(f, rpcs);
    if (rpcs.some((r) => r.sdk!.shape !== ResultShape.UNSPECIFIED)) {
      f.print("export type { ", f.import("QueryResult", tablePath, true), ", ", f.import("Column", tablePath, true), " };");
      f.print();
    }
    const results = new Map(rpcs.filter((r) => r.sdk!.result).map((r) => [r.method.output, r]));
    printInterfaces(f, [...named].sort((a, b) => a.name.localeCompare(b.name)), results);
  }
}
