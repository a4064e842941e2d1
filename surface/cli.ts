// The shape of the `coral query` commands protoc-gen-coral generates (gen/…/*_cli.ts): plain data
// — flags, help text and the RPC variants — that cli/runtime/query-command.ts turns into commands.
// Generated code imports only this runtime, never the CLI itself.
import type { DescMethodServerStreaming, DescMethodUnary } from "@bufbuild/protobuf";
import type { CellEncoding } from "./table.js";
import type { LayoutName, ParseRule, UnitName } from "./vocabulary.js";

export interface VariantParam {
  /** Property of the command holding the flag's text. */
  prop: string;
  /** protobuf-es property of the request message. */
  field: string;
  /** The flag as the user writes it ("--window") or the positional's metavar. */
  flag: string;
  parse: ParseRule;
  /** Default, written as on the command line. */
  default?: string;
  /** Bounds, written as on the command line (the proto's `min`/`max`). */
  min?: string;
  minExclusive?: boolean;
  max?: string;
}

export interface Variant {
  /** Runs when no selecting flag is given. */
  isDefault?: boolean;
  /** Property of the flag selecting this variant: a switch, or a parameter of its own (`--by`). */
  select?: string;
  /** The selecting flag as the user writes it ("--error-rate"). */
  selectFlag?: string;
  method: DescMethodUnary | DescMethodServerStreaming;
  params: VariantParam[];
  /** Response field (proto name) holding the rows; absent: the response is one row. */
  rows?: string;
  /** Response field (proto name) counting every matching row, of which `rows` holds the first. */
  total?: string;
  /** Response field (proto name), a bool: the rows were cut at a limit. */
  truncated?: string;
  /** Response field (proto name) naming the columns when `rows` holds cells. */
  columns?: string;
  /** How `rows` carries the cells (with `columns`). */
  encoding?: CellEncoding;
  /** Columns of the default table, proto names. */
  show: string[];
  /** Every column: `-o wide` and csv. */
  wide: string[];
  units: Record<string, UnitName>;
  /** How table and wide output draw the rows; absent: aligned columns. */
  layout?: LayoutName;
}

/** One flag or positional of a command, in the order help lists them. */
export type CommandOption =
  | { kind: "positional"; prop: string; metavar: string }
  | { kind: "string"; prop: string; flag: string; description: string }
  /** `initial`: a variant's switch is false unless given; a boolean request field is unset. */
  | { kind: "boolean"; prop: string; flag: string; description: string; initial?: boolean };

export interface CommandSpec {
  /** Command words after `coral`, e.g. ["query", "metrics"]. */
  path: string[];
  /** Help text: the one-line description, the details and example invocations. */
  usage: { category: string; description: string; details: string; examples: [what: string, command: string][] };
  options: CommandOption[];
  variants: Variant[];
}
