// One model of the Coral annotations, shared by every emitter (CLI, SDK, docs), so the
// three surfaces can never disagree about a flag name, a default or a unit.
import {
  ScalarType,
  getOption,
  hasOption,
  type AnyDesc,
  type DescField,
  type DescFile,
  type DescMethod,
  type DescService,
} from "@bufbuild/protobuf";
import { getComments } from "@bufbuild/protoplugin";
import {
  Encoding,
  Layout,
  Parse,
  ResultShape,
  Unit,
  field as fieldExt,
  method as methodExt,
  type Field as FieldOptions,
} from "../gen/coral/options/v1/options_pb.js";
import { outside } from "../surface/bounds.js";
import { boundValue, fieldValue } from "../surface/arguments.js";
import { ENCODINGS, PARSE, type ParseRule } from "../surface/vocabulary.js";

export { Encoding, Layout, Parse, ResultShape, Unit };

/** A request field as a parameter of the CLI and the SDK. */
export interface Param {
  field: DescField;
  /** Proto name, e.g. "time_range_ms": the SDK parameter name and JSON key. */
  name: string;
  /** protobuf-es property name, e.g. "timeRangeMs". */
  localName: string;
  doc: string;
  /** Required everywhere: a positional CLI argument and a leading SDK parameter. */
  positional: boolean;
  /** Required in the SDK and by the colony: positional, or the flag that selects its CLI variant. */
  required: boolean;
  /** CLI flag with dashes, e.g. "--window"; for positionals the metavar. */
  flag: string;
  metavar: string;
  parse: Parse;
  /** Default as written in the annotation ("1h"), or undefined. */
  defaultText?: string;
  /** The default converted to the field's value (number/string/boolean), or undefined. */
  defaultValue?: number | string | boolean;
  serviceRef: boolean;
  cliOnly: boolean;
  /** TypeScript type of the SDK parameter. */
  tsType: "string" | "number" | "boolean";
  int64: boolean;
  /** Bounds as written in the annotation ("1", "0s") and as field values (checked after defaults). */
  min?: { text: string; value: number; exclusive: boolean };
  max?: { text: string; value: number };
}

export interface Rpc {
  service: DescService;
  method: DescMethod;
  doc: string;
  /** First sentence of the doc, for one-line listings. */
  summary: string;
  streaming: boolean;
  params: Param[];
  cli?: {
    path: string[];
    variant?: string;
    defaultVariant: boolean;
    rows?: DescField;
    /** How the `rows` field carries its cells (UNSPECIFIED: messages or ListValues). */
    rowsEncoding: Encoding;
    columns?: DescField;
    show: string[];
    examples: string[];
    layout: Layout;
    /** The variant is selected by giving this parameter (`--by KEY`), not by a switch of its own. */
    variantParam?: Param;
    /** The integer field counting every matching row, of which `rows` holds the first. */
    total?: DescField;
    /** The bool field saying the rows were cut at a limit. */
    truncated?: DescField;
  };
  sdk?: {
    module: string;
    function: string;
    unwrap?: DescField;
    aliases: { function: string; fixed: Record<string, string>; doc: string; example: string }[];
    shape: ResultShape;
    /** Field of each result object that fills service_ref parameters. */
    bind?: string;
    /** Table shapes only: the fields holding the cells and the columns, and the cells' encoding. */
    table?: { rows: DescField; columns: DescField; encoding: Encoding };
    /** TypeScript calling the function, as a script would. */
    example: string;
    /** What the function returns, in the SDK's terms; undefined: the unwrapped field's doc. */
    returns?: string;
    /** Name of the result type of a function returning the whole response. */
    result?: string;
  };
}

/** A CLI command: one path, one or more RPC variants. */
export interface CliCommand {
  path: string[];
  rpcs: Rpc[];
  /** Union of the variants' parameters by flag; one entry per distinct flag. */
  params: Param[];
  defaultRpc?: Rpc;
}

export class ModelError extends Error {}

/** The leading comment of a declaration in the proto source: the documentation. */
export function docComment(desc: Exclude<AnyDesc, DescFile>): string {
  return clean(getComments(desc).leading);
}

export function clean(comment: string | undefined): string {
  return (comment ?? "")
    .split("\n")
    .map((l) => l.replace(/^ /, ""))
    .join("\n")
    .trim();
}

export function firstSentence(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  const m = /^(.*?[.!?])(\s|$)/.exec(flat);
  return m ? m[1] : flat;
}

const kebab = (s: string) => s.replace(/_/g, "-");

function tsTypeOf(f: DescField): Param["tsType"] {
  if (f.fieldKind !== "scalar") throw new ModelError(`${f.parent.typeName}.${f.name}: only scalar request fields are supported`);
  switch (f.scalar) {
    case ScalarType.STRING:
      return "string";
    case ScalarType.BOOL:
      return "boolean";
    case ScalarType.BYTES:
      throw new ModelError(`${f.parent.typeName}.${f.name}: bytes request fields are not supported`);
    default:
      return "number";
  }
}

export function isInt64(f: DescField): boolean {
  return (
    f.fieldKind === "scalar" &&
    [ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64].includes(f.scalar)
  );
}

function isInteger(f: DescField): boolean {
  return (
    f.fieldKind === "scalar" &&
    ![ScalarType.DOUBLE, ScalarType.FLOAT, ScalarType.STRING, ScalarType.BOOL, ScalarType.BYTES].includes(f.scalar)
  );
}

/**
 * A parameter's doc as the CLI shows it. A flag that reads a duration (`5m`, `500ms`) takes no
 * unit, so the field's "in milliseconds" / "in nanoseconds", true of the API, is left out.
 */
export function cliDoc(p: Pick<Param, "doc" | "parse">): string {
  const doc = p.doc.replace(/\s+/g, " ").trim();
  if (p.parse !== Parse.DURATION_MS && p.parse !== Parse.DURATION_NS) return doc;
  return doc.replace(/,? in (milli|nano)seconds\b/g, "");
}

/** The runtime's parse rule of a parameter: the annotation's, else the field's type decides. */
export function parseRule(p: Pick<Param, "parse" | "tsType" | "int64" | "field">): ParseRule {
  const rule = PARSE[p.parse].rule;
  if (rule) return rule;
  if (p.tsType !== "number") return p.tsType === "boolean" ? "bool" : "string";
  if (p.int64) return "int64";
  return isInteger(p.field) ? "int" : "double";
}

/** A default as the field's value, numbers as numbers (the model compares them with the bounds). */
function defaultValue(p: Param, text: string): number | string | boolean {
  const v = fieldValue(parseRule(p), text);
  return typeof v === "bigint" ? Number(v) : v;
}

function paramOf(f: DescField): Param {
  const o: FieldOptions | undefined = hasOption(f, fieldExt) ? getOption(f, fieldExt) : undefined;
  const tsType = tsTypeOf(f);
  const metavar = o?.metavar || f.name.toUpperCase();
  const p: Param = {
    field: f,
    name: f.name,
    localName: f.localName,
    doc: clean(docComment(f)),
    positional: o?.positional ?? false,
    required: o?.positional ?? false,
    flag: o?.positional ? metavar : `--${o?.flag || kebab(f.name)}`,
    metavar,
    parse: o?.parse ?? Parse.UNSPECIFIED,
    defaultText: o?.default || undefined,
    serviceRef: o?.serviceRef ?? false,
    cliOnly: o?.cliOnly ?? false,
    tsType,
    int64: isInt64(f),
  };
  if (p.defaultText !== undefined) {
    try {
      p.defaultValue = defaultValue(p, p.defaultText);
    } catch (e) {
      throw new ModelError(`${f.parent.typeName}.${f.name}: bad default "${p.defaultText}": ${(e as Error).message}`);
    }
  }
  if (p.parse !== Parse.UNSPECIFIED && tsType !== "number") {
    throw new ModelError(`${f.parent.typeName}.${f.name}: parse rules apply to numeric fields only`);
  }
  const bound = (text: string, which: string): number => {
    if (tsType !== "number") throw new ModelError(`${f.parent.typeName}.${f.name}: ${which} applies to numeric fields only`);
    try {
      return boundValue(parseRule(p), text);
    } catch (e) {
      throw new ModelError(`${f.parent.typeName}.${f.name}: bad ${which} "${text}": ${(e as Error).message}`);
    }
  };
  if (o?.min) p.min = { text: o.min, value: bound(o.min, "min"), exclusive: o.minExclusive };
  else if (o?.minExclusive) throw new ModelError(`${f.parent.typeName}.${f.name}: min_exclusive without a min`);
  if (o?.max) p.max = { text: o.max, value: bound(o.max, "max") };
  if (p.min && p.max && !(p.min.exclusive ? p.min.value < p.max.value : p.min.value <= p.max.value)) {
    throw new ModelError(`${f.parent.typeName}.${f.name}: min ${p.min.text} is above max ${p.max.text}`);
  }
  if (typeof p.defaultValue === "number" && outOfBounds(p, p.defaultValue)) {
    throw new ModelError(`${f.parent.typeName}.${f.name}: default "${p.defaultText}" is outside its bounds`);
  }
  return p;
}

/**
 * The bounds as docs and help state them: in the API's terms ("1..1000", "(0, 1]") or as
 * written on the command line ("(0, 100]"). Empty without bounds.
 */
export function rangeText(p: Pick<Param, "min" | "max" | "parse">, as: "api" | "cli"): string {
  // A duration's lower bound of 0 goes without saying: nobody can write a negative one.
  const duration = p.parse === Parse.DURATION_MS || p.parse === Parse.DURATION_NS;
  if (duration && !p.max && p.min?.value === 0 && !p.min.exclusive) return "";
  const v = (b: { text: string; value: number }) => (as === "cli" ? b.text : String(b.value));
  if (p.min && p.max) return p.min.exclusive ? `(${v(p.min)}, ${v(p.max)}]` : `${v(p.min)}..${v(p.max)}`;
  if (p.min) return `${p.min.exclusive ? ">" : "≥"} ${v(p.min)}`;
  if (p.max) return `≤ ${v(p.max)}`;
  return "";
}

/** Whether `v` lies outside the parameter's bounds. */
export function outOfBounds(p: Pick<Param, "min" | "max">, v: number): boolean {
  return outside(v, { min: p.min?.value, max: p.max?.value, minExclusive: p.min?.exclusive });
}

/** A response-level fact about the rows (their total, whether they were cut): needs rows, and its type. */
function rowFact(m: DescMethod, rows: DescField | undefined, name: string, what: string, type: "integer" | "bool"): DescField {
  if (!rows) throw new ModelError(`${m.parent.name}.${m.name}: ${what} needs cli.rows: it describes the rows`);
  const f = responseField(m, name, what);
  const ok = f.fieldKind === "scalar" && (type === "bool" ? f.scalar === ScalarType.BOOL : isInteger(f));
  if (!ok) throw new ModelError(`${m.parent.name}.${m.name}: ${what} "${name}" must be a single ${type} field`);
  return f;
}

function responseField(m: DescMethod, name: string, what: string): DescField {
  const f = m.output.fields.find((x) => x.name === name);
  if (!f) throw new ModelError(`${m.parent.name}.${m.name}: ${what} "${name}" is not a field of ${m.output.typeName}`);
  return f;
}

export function encodingOf(f: DescField): Encoding {
  return hasOption(f, fieldExt) ? getOption(f, fieldExt).encoding : Encoding.UNSPECIFIED;
}

const isListValues = (f: DescField) => f.fieldKind === "list" && f.listKind === "message" && f.message.typeName === "google.protobuf.ListValue";

/** Checks that a field named as holding table cells can: ListValues, or an encoded string. */
function cellsField(m: DescMethod, f: DescField, what: string): Encoding {
  const encoding = encodingOf(f);
  if (encoding !== Encoding.UNSPECIFIED) {
    if (f.fieldKind !== "scalar" || f.scalar !== ScalarType.STRING) {
      throw new ModelError(`${m.parent.name}.${m.name}: ${what} "${f.name}" has an encoding but is not a string field`);
    }
    return encoding;
  }
  if (!isListValues(f)) {
    throw new ModelError(`${m.parent.name}.${m.name}: ${what} "${f.name}" must be a repeated google.protobuf.ListValue or an encoded string`);
  }
  return encoding;
}

/** The runtime's name of a cell encoding (surface/table.ts CellEncoding): "list_values", "json_columns". */
export function cellEncodingName(e: Encoding): string {
  return ENCODINGS[e];
}

export function rpcOf(method: DescMethod): Rpc {
  const o = hasOption(method, methodExt) ? getOption(method, methodExt) : undefined;
  const doc = clean(docComment(method));
  const rpc: Rpc = {
    service: method.parent,
    method,
    doc,
    summary: firstSentence(doc),
    streaming: method.methodKind === "server_streaming",
    params: method.input.fields.map(paramOf),
  };
  if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") {
    throw new ModelError(`${method.parent.name}.${method.name}: only unary and server-streaming RPCs are supported`);
  }
  if (o?.cli) {
    const c = o.cli;
    const path = c.path.trim().split(/\s+/).filter(Boolean);
    if (path.length === 0) throw new ModelError(`${method.name}: cli.path is empty`);
    const rows = c.rows ? responseField(method, c.rows, "cli.rows") : undefined;
    const columns = c.columns ? responseField(method, c.columns, "cli.columns") : undefined;
    let rowsEncoding = Encoding.UNSPECIFIED;
    if (rows && columns) rowsEncoding = cellsField(method, rows, "cli.rows");
    else if (rows && encodingOf(rows) !== Encoding.UNSPECIFIED) {
      throw new ModelError(`${method.name}: cli.rows "${rows.name}" is encoded cells; name the column list with cli.columns`);
    }
    rpc.cli = {
      path,
      variant: c.variant || undefined,
      defaultVariant: c.defaultVariant,
      rows,
      rowsEncoding,
      columns,
      show: c.show,
      examples: c.examples,
      layout: c.layout,
      variantParam: variantParam(method, rpc.params, c.variant, c.defaultVariant),
      total: c.total ? rowFact(method, rows, c.total, "cli.total", "integer") : undefined,
      truncated: c.truncated ? rowFact(method, rows, c.truncated, "cli.truncated", "bool") : undefined,
    };
    if (c.layout === Layout.WATERFALL) checkWaterfall(method, rows);
  }
  if (o?.sdk) {
    const s = o.sdk;
    if (!s.module || !s.function) throw new ModelError(`${method.name}: sdk.module and sdk.function are required`);
    rpc.sdk = {
      module: s.module,
      function: s.function,
      unwrap: s.unwrap ? responseField(method, s.unwrap, "sdk.unwrap") : undefined,
      aliases: s.aliases.map((a) => ({ function: a.function, fixed: { ...a.fixed }, doc: a.doc, example: a.example })),
      shape: s.shape,
      bind: s.bind || undefined,
      example: s.example,
      returns: s.returns || undefined,
      result: s.result || undefined,
    };
    if (s.shape !== ResultShape.UNSPECIFIED) {
      const rows = responseField(method, s.rows || "rows", "sdk.rows");
      const columns = responseField(method, s.columns || "columns", "sdk.columns");
      rpc.sdk.table = { rows, columns, encoding: cellsField(method, rows, "sdk.rows") };
    } else if (s.rows || s.columns) {
      throw new ModelError(`${method.name}: sdk.rows and sdk.columns apply to the table shapes only`);
    }
    for (const a of rpc.sdk.aliases) {
      for (const k of Object.keys(a.fixed)) {
        if (!rpc.params.some((p) => p.name === k)) throw new ModelError(`${method.name}: alias ${a.function} fixes unknown field "${k}"`);
      }
    }
    const params = sdkParams(rpc);
    const firstOptional = params.findIndex((p) => !p.required);
    if (firstOptional >= 0 && params.slice(firstOptional).some((p) => p.required)) {
      throw new ModelError(`${method.name}: a positional (required) field follows an optional one in field-number order`);
    }
    checkResult(method, rpc.sdk);
    checkExample(method, s.module, s.function, s.example, "sdk.example");
    for (const a of s.aliases) checkExample(method, s.module, a.function, a.example, `the example of alias ${a.function}`);
  }
  return rpc;
}

/**
 * The parameter whose flag is the variant's own (`variant: "by"` and a field with flag `--by`):
 * giving it selects the variant, so it is required there.
 */
function variantParam(m: DescMethod, params: Param[], variant: string, isDefault: boolean): Param | undefined {
  const p = params.find((x) => variant && x.flag === `--${variant}`);
  if (!p) return undefined;
  if (p.tsType === "boolean" || p.defaultText !== undefined || isDefault) {
    throw new ModelError(`${m.name}: variant "${variant}" is selected by its field ${p.name}, which must be a non-boolean field without a default, of a variant that is not the default`);
  }
  p.required = true;
  return p;
}

/** The row fields the waterfall layout draws (cli/runtime/waterfall.ts), and their kinds. */
const WATERFALL_FIELDS: Record<string, "string" | "int64" | "bool"> = {
  span_id: "string",
  parent_span_id: "string",
  service: "string",
  name: "string",
  start_offset_ns: "int64",
  duration_ns: "int64",
  error: "bool",
};

function checkWaterfall(m: DescMethod, rows: DescField | undefined): void {
  const row = rows?.fieldKind === "list" && rows.listKind === "message" && !rows.message.typeName.startsWith("google.protobuf.") ? rows.message : undefined;
  if (!row) throw new ModelError(`${m.name}: the waterfall layout needs cli.rows naming a repeated message (the spans)`);
  for (const [name, kind] of Object.entries(WATERFALL_FIELDS)) {
    const f = row.fields.find((x) => x.name === name);
    const ok =
      f?.fieldKind === "scalar" &&
      (kind === "int64" ? isInt64(f) : f.scalar === (kind === "string" ? ScalarType.STRING : ScalarType.BOOL));
    if (!ok) throw new ModelError(`${m.name}: the waterfall layout needs a ${kind} field "${name}" in ${row.typeName}`);
  }
}

/**
 * Every SDK function has an example, and it calls that function (`coral.metrics.getP99(` or the
 * bound `svc.metrics.getP99(`): the docs show it next to the signature, and a test runs it.
 */
function checkExample(m: DescMethod, module: string, fn: string, example: string, what: string): void {
  if (!example.trim()) {
    throw new ModelError(`${m.name}: ${what} is required: TypeScript calling coral.${module}.${fn}(…) as a script would`);
  }
  // Type arguments may come between the name and the call: `coral.db.query<Row>(`.
  if (!new RegExp(`\\.${module}\\.${fn}(<[\\s\\S]*?>)?\\(`).test(example)) {
    throw new ModelError(`${m.name}: ${what} does not call ${module}.${fn}(…)`);
  }
}

/**
 * A function returning the whole response names its result type as scripts know it: the message
 * name (`GetServiceResponse`) is the wire's, and means nothing in a script.
 */
function checkResult(m: DescMethod, s: NonNullable<Rpc["sdk"]>): void {
  const whole = !s.unwrap && s.shape === ResultShape.UNSPECIFIED;
  if (whole && !s.result) {
    throw new ModelError(`${m.name}: sdk.result is required when the function returns the whole ${m.output.name}: the name scripts know it by, e.g. "${m.output.name.replace(/^Get|Response$/g, "")}Details"`);
  }
  if (!whole && s.result) throw new ModelError(`${m.name}: sdk.result applies only to a function returning the whole response (no unwrap, no shape)`);
  if (s.result && !/^[A-Z][A-Za-z0-9]*$/.test(s.result)) throw new ModelError(`${m.name}: sdk.result "${s.result}" is not a PascalCase type name`);
}

/** What the SDK function resolves to, in the SDK's terms (its @returns). */
export function sdkReturns(rpc: Rpc): string {
  const s = rpc.sdk!;
  if (s.returns) return s.returns;
  if (s.unwrap) return docComment(s.unwrap);
  if (s.result) return `The ${s.result}.`;
  if (s.shape === ResultShape.TABLE_STREAM) return "Batches of row objects keyed by column name.";
  return "The rows as objects keyed by column name, with the columns and whether the result was cut.";
}

/** Parameters of the SDK function, in field-number order. */
export function sdkParams(rpc: Rpc, fixed: Record<string, string> = {}): Param[] {
  return rpc.params
    .filter((p) => !p.cliOnly && !(p.name in fixed))
    .sort((a, b) => a.field.number - b.field.number);
}

/** Every annotated RPC of the given services; RPCs without Coral annotations are not ours to surface. */
export function rpcsOf(services: DescService[]): Rpc[] {
  return services.flatMap((s) => s.methods.filter((m) => hasOption(m, methodExt)).map(rpcOf));
}

/** Groups RPCs by CLI path into commands and checks the variants fit together. */
export function cliCommands(rpcs: Rpc[]): CliCommand[] {
  const byPath = new Map<string, Rpc[]>();
  for (const r of rpcs) {
    if (!r.cli) continue;
    const key = r.cli.path.join(" ");
    byPath.set(key, [...(byPath.get(key) ?? []), r]);
  }
  return [...byPath.entries()].map(([key, group]) => {
    if (group.length > 1 && group.some((r) => !r.cli!.variant && !r.cli!.defaultVariant)) {
      throw new ModelError(`"${key}": every variant needs a variant flag or the default mark`);
    }
    // A lone RPC on its path needs neither a variant flag nor the default mark.
    if (group.length === 1 && !group[0]!.cli!.variant) group[0]!.cli!.defaultVariant = true;
    const defaults = group.filter((r) => r.cli!.defaultVariant);
    if (defaults.length > 1) throw new ModelError(`"${key}": more than one default variant`);
    const params = new Map<string, Param>();
    for (const r of group) {
      for (const p of r.params) {
        const prev = params.get(p.flag);
        if (prev && (prev.parse !== p.parse || prev.tsType !== p.tsType || prev.defaultText !== p.defaultText)) {
          throw new ModelError(`"${key}": ${p.flag} means different things in different variants`);
        }
        if (!prev) params.set(p.flag, p);
      }
    }
    const positionals = [...params.values()].filter((p) => p.positional);
    if (new Set(group.map((r) => r.params.filter((p) => p.positional).map((p) => p.flag).join())).size > 1) {
      throw new ModelError(`"${key}": variants must take the same positional arguments`);
    }
    return { path: group[0].cli!.path, rpcs: group, params: [...positionals, ...[...params.values()].filter((p) => !p.positional)], defaultRpc: defaults[0] };
  });
}

/** SDK modules in order of first appearance. */
export function sdkModules(rpcs: Rpc[]): { module: string; rpcs: Rpc[] }[] {
  const out: { module: string; rpcs: Rpc[] }[] = [];
  for (const r of rpcs) {
    if (!r.sdk) continue;
    let m = out.find((x) => x.module === r.sdk!.module);
    if (!m) out.push((m = { module: r.sdk.module, rpcs: [] }));
    m.rpcs.push(r);
  }
  return out;
}

export function unitOf(f: DescField): Unit {
  return hasOption(f, fieldExt) ? getOption(f, fieldExt).unit : Unit.UNSPECIFIED;
}

export const camel = (s: string) => s.replace(/[-_](\w)/g, (_, c: string) => c.toUpperCase());
export const pascal = (s: string) => camel(s).replace(/^\w/, (c) => c.toUpperCase());
