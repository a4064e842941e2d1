// The generated tools (gen/…/query_mcp.ts) as `coral mcp` serves them: each call's arguments are
// checked, sent to the colony as the CLI would send them, and the answer rendered for a model.
// Failures come back as tool errors (isError), worded by the CLI's translator, never as stacks.
import { create, type DescMessage } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";
import type { CallToolResult, Tool } from "@modelcontextprotocol/sdk/types.js";
import { rowCap, tools as generated } from "../gen/coral/colony/v1/query_mcp.js";
import { toPlain, type Plain } from "../surface/plain.js";
import type { McpTool } from "../surface/mcp.js";
import { rpcFailure } from "../cli/runtime/errors.js";
import { ArgumentError, toolRequest, type OutputMode } from "./arguments.js";
import { answer, columnNames, rowsOf, type Answer } from "./format.js";

type Row = Record<string, Plain>;

export { generated as queryTools };

/** Where tool calls go: the colony's transport and its address as messages name it. */
export interface Colony {
  transport: Transport;
  display: string;
}

/** A tool error: text the model reads, flagged so it knows the call failed. */
export function toolError(text: string): CallToolResult {
  return { content: [{ type: "text", text }], isError: true };
}

/** A table answer carries its remarks below it; a JSON one beside it, so that it stays parseable. */
function reply(a: Answer, mode: OutputMode): CallToolResult {
  if (mode === "table" || !a.notes) return { content: [{ type: "text", text: a.text + a.notes }] };
  return { content: [{ type: "text", text: a.text }, { type: "text", text: a.notes }] };
}

/**
 * The tool as tools/list shows it. SQL tools also name the tables (`sqlTables`, from colony/store/schema.ts
 * USER_TABLES), which a model cannot guess and would otherwise spend calls discovering.
 */
export function listing(tool: McpTool, sqlTables: string): Tool {
  const description = tool.output.columns ? `${tool.description}\n\nTables: ${sqlTables}` : tool.description;
  return {
    name: tool.name,
    title: tool.title,
    description,
    inputSchema: tool.inputSchema as Tool["inputSchema"],
    annotations: { readOnlyHint: true, openWorldHint: false },
  };
}

export async function callTool(tool: McpTool, args: unknown, colony: Colony, signal: AbortSignal): Promise<CallToolResult> {
  let req;
  try {
    req = toolRequest(tool, args);
  } catch (e) {
    if (e instanceof ArgumentError) return toolError(e.message);
    throw e;
  }
  const client = createClient(tool.method.parent, colony.transport) as unknown as Record<string, (req: unknown, o: { signal: AbortSignal }) => unknown>;
  const input = create(tool.method.input, req.init);
  const call = client[tool.method.localName]!;
  try {
    if (tool.method.methodKind === "server_streaming") {
      return reply(await readStream(tool, call, input, signal, req), req.output);
    }
    const res = toPlain(tool.method.output, (await call(input, { signal })) as never) as Row;
    return reply(answer(tool, res, req.output, rowCap, { notes: req.notes }), req.output);
  } catch (err) {
    const f = rpcFailure(err, colony.display);
    return toolError(f.fromColony ? `${f.message} (${f.code})` : f.message);
  }
}

/**
 * A streamed result read only as far as the answer shows: once more rows than the cap arrived the
 * stream is cancelled, so a million-row SELECT costs the colony one batch, not the whole result.
 */
async function readStream(
  tool: McpTool,
  call: (req: unknown, o: { signal: AbortSignal }) => unknown,
  input: unknown,
  signal: AbortSignal,
  req: ReturnType<typeof toolRequest>,
): Promise<Answer> {
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  const rows: Row[] = [];
  let first: Row | undefined;
  let names: string[] = [];
  let more = false;
  try {
    for await (const msg of call(input, { signal: stop.signal }) as AsyncIterable<unknown>) {
      const res = toPlain(tool.method.output as DescMessage, msg as never) as Row;
      if (!first) {
        first = res;
        names = columnNames(tool, res);
      }
      rows.push(...(rowsOf(tool, res, names) ?? []));
      if (res.truncated === true) first.truncated = true;
      if (rows.length > rowCap) {
        more = true;
        break;
      }
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    stop.abort();
  }
  const res: Row = { ...(first ?? {}) };
  const notes = more ? [...req.notes, "to read every row, use run_script with coral.db.stream"] : req.notes;
  return answer(tool, res, req.output, rowCap, { rows, columns: names, more, notes });
}
