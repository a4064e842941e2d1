// The annotation vocabulary of query.proto, one exhaustive table per enum. Codegen, the CLI's
// rendering and the docs read these tables instead of keeping their own partial lists, so a new
// enum value in options.proto is a compile error here until it says what it means on every
// surface (a UNIT_MILLISECONDS added once was silently shown as a bare number).
import { Encoding, Layout, Parse, Unit } from "../gen/coral/options/v1/options_pb.js";
import { formatBytes, formatDurationNs, formatPercent, formatRatio } from "./units.js";

/** A unit as generated code and the table renderer name it. */
export type UnitName = "ns" | "ratio" | "bytes" | "percent";

export const UNITS: Record<Unit, { name?: UnitName; docs: string }> = {
  [Unit.UNSPECIFIED]: { docs: "" },
  [Unit.NANOSECONDS]: { name: "ns", docs: "nanoseconds" },
  [Unit.RATIO]: { name: "ratio", docs: "ratio 0..1" },
  [Unit.BYTES]: { name: "bytes", docs: "bytes" },
  [Unit.PERCENT]: { name: "percent", docs: "percent 0..100" },
};

/** How a table shows a number of each unit: 892.1ms, 0.12%, 1.5 KiB, 48.2%. */
export const UNIT_FORMAT: Record<UnitName, (v: number) => string> = {
  ns: formatDurationNs,
  ratio: formatRatio,
  bytes: formatBytes,
  percent: formatPercent,
};

/** How CLI text becomes a request field value (cli/runtime/query-command.ts converts). */
export type ParseRule = "string" | "int" | "int64" | "double" | "bool" | "durationMs" | "durationNs" | "percent";

/** The parse rules an annotation can name; without one, the field's type decides (see codegen). */
export const PARSE: Record<Parse, { rule?: ParseRule; hint?: string }> = {
  [Parse.UNSPECIFIED]: {},
  [Parse.DURATION_MS]: { rule: "durationMs", hint: "Written like 30s, 5m, 1h." },
  [Parse.DURATION_NS]: { rule: "durationNs", hint: "Written like 250us, 500ms, 2s." },
  [Parse.PERCENT]: { rule: "percent", hint: "Written like 99 or 99.9." },
};

/** The runtime's name of a cell encoding (surface/table.ts CellEncoding). */
export const ENCODINGS: Record<Encoding, "list_values" | "json_columns"> = {
  [Encoding.UNSPECIFIED]: "list_values",
  [Encoding.JSON_COLUMNS]: "json_columns",
};

/** A layout as generated code names it. */
export type LayoutName = "waterfall";

/** How the CLI draws rows for people (cli/runtime/query-command.ts); none: aligned columns. */
export const LAYOUTS: Record<Layout, LayoutName | undefined> = {
  [Layout.UNSPECIFIED]: undefined,
  [Layout.WATERFALL]: "waterfall",
};
