// The shape of the MCP tools protoc-gen-coral generates (gen/…/*_mcp.ts): what `coral mcp` needs
// to list a tool, check its arguments, build the request and render the answer. Generated code
// imports only this runtime, never the server in mcp/.
import type { DescMethodServerStreaming, DescMethodUnary } from "@bufbuild/protobuf";
import type { ParseRule, UnitName } from "./vocabulary.js";

/** A JSON Schema as MCP's tools/list carries it: plain data. */
export type JsonSchema = { [key: string]: JsonSchemaValue };
type JsonSchemaValue = string | number | boolean | null | JsonSchemaValue[] | { [key: string]: JsonSchemaValue };

/** One tool argument: a request field, written as on the command line. */
export interface McpArg {
  /** Argument name: the CLI flag without dashes ("window"), or the field name for positionals ("service"). */
  name: string;
  /** protobuf-es property of the request message. */
  field: string;
  /** How the value becomes the field's value; durations are text ("5m"), percentiles percentages (99). */
  parse: ParseRule;
  required?: boolean;
  /** Default, written as on the command line ("1h", "99"). */
  default?: string;
  /** Bounds, written as on the command line; checked after conversion, in the field's own values. */
  min?: string;
  minExclusive?: boolean;
  max?: string;
}

/** How a response becomes text: the rows, their columns and units (the CLI's table view). */
export interface McpOutput {
  /** Response field (proto name) holding the rows; absent: the response is one record. */
  rows?: string;
  /** Response field (proto name) naming the columns, when `rows` holds cells (SQL results). */
  columns?: string;
  /** How `rows` carries its cells, with `columns`. */
  encoding?: "list_values" | "json_columns";
  /** Columns shown, proto names or dotted paths ("service.name"). */
  show: string[];
  units: Record<string, UnitName>;
}

export interface McpTool {
  /** snake_case of the RPC name: "find_slow_traces". */
  name: string;
  /** A short human title: the RPC's first sentence. */
  title: string;
  /** The RPC's documentation, then what the output holds. */
  description: string;
  method: DescMethodUnary | DescMethodServerStreaming;
  inputSchema: JsonSchema;
  args: McpArg[];
  output: McpOutput;
}
