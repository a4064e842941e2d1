// A tool's answer as text sized for a model's context: the CLI's table (human units) or raw JSON,
// at most `rowCap` rows and MAX_CHARS characters, and a line saying how many more there were and
// how to narrow the question. Tools that flood the context are what agents' users complain about.
import type { Plain } from "../surface/plain.js";
import { tableRows } from "../surface/table.js";
import type { McpTool } from "../surface/mcp.js";
import { cellOf, formatTable, humanCell } from "../cli/runtime/render.js";
import type { OutputMode } from "./arguments.js";

type Row = Record<string, Plain>;

/** About a thousand tokens; a table this long is rarely read, and costs every later turn. */
export const MAX_CHARS = 6000;

/** Longest text cell shown: one long SQL cell (a span's attributes) must not flood the answer. */
const MAX_CELL_CHARS = 80;

export interface Answer {
  /** The answer: a table or record in human units, or JSON. */
  text: string;
  /** Remarks beside it (rows withheld, a limit hit), one per line; kept apart so JSON stays parseable. */
  notes: string;
  /** Rows withheld by the caps, when the answer is a table. */
  more: number;
}

/** How the model can ask for fewer rows: the tool's optional arguments, or SQL's own means. */
function narrowHint(tool: McpTool): string {
  if (tool.output.columns) return "add a WHERE or LIMIT, or aggregate (GROUP BY)";
  const optional = tool.args.filter((a) => !a.required).map((a) => a.name);
  return optional.length ? `narrow the query (${optional.join(", ")})` : "narrow the query";
}

/** The response's rows, when it has any: list items, or SQL cells decoded into row objects. */
export function rowsOf(tool: McpTool, res: Row, names = columnNames(tool, res)): Row[] | undefined {
  const o = tool.output;
  if (!o.rows) return undefined;
  if (o.columns) return tableRows(names, res[o.rows], o.encoding ?? "list_values") as Row[];
  return (res[o.rows] ?? []) as Row[];
}

/** Column names of a table answer: the view's, or the SQL result's own. */
export function columnNames(tool: McpTool, res: Row): string[] {
  if (tool.output.columns) return ((res[tool.output.columns] ?? []) as Row[]).map((c) => String(c.name));
  return tool.output.show;
}

/** Facts about the whole result a table has no column for: matches beyond those returned, a cut. */
function resultNotes(res: Row, returned: number): string[] {
  const notes: string[] = [];
  if (typeof res.total_count === "number" && res.total_count > returned) notes.push(`${res.total_count} matched in all, ${returned} returned (limit)`);
  if (res.truncated === true) notes.push("the colony cut the result at its row limit");
  return notes;
}

/** The most rows of `rows` whose rendering fits MAX_CHARS, at most `cap`. */
function fitting(rows: Row[], cap: number, render: (rows: Row[]) => string): { shown: Row[]; text: string } {
  let n = Math.min(rows.length, cap);
  let text = render(rows.slice(0, n));
  while (text.length > MAX_CHARS && n > 1) {
    n = Math.max(1, Math.floor((n * MAX_CHARS) / text.length));
    text = render(rows.slice(0, n));
  }
  return { shown: rows.slice(0, n), text };
}

function cutCell(v: Plain): Plain {
  return typeof v === "string" && v.length > MAX_CELL_CHARS ? `${v.slice(0, MAX_CELL_CHARS - 1)}…` : v;
}

/** A one-record answer as `name: value` lines, units made human. */
function recordText(tool: McpTool, res: Row): string {
  return tool.output.show.map((c) => `${c}: ${humanCell(cellOf(res, c), tool.output.units[c])}`).join("\n") + "\n";
}

/**
 * Renders one response. `o.rows` are its rows when the caller decoded them already (a stream's
 * batches); `o.more` says more rows exist beyond them (a stream read no further); `o.notes` are
 * lines to append (remarks about the arguments).
 */
export function answer(
  tool: McpTool,
  res: Row,
  mode: OutputMode,
  rowCap: number,
  o: { rows?: Row[]; columns?: string[]; more?: boolean; notes?: string[] } = {},
): Answer {
  const rows = o.rows ?? rowsOf(tool, res);
  const notes = [...(o.notes ?? [])];
  if (!rows) {
    const text = mode === "json" ? JSON.stringify(res) + "\n" : recordText(tool, res);
    return { text, notes: notes.map((n) => `(${n})\n`).join(""), more: 0 };
  }
  notes.unshift(...resultNotes(res, rows.length));
  const columns = o.columns ?? columnNames(tool, res);
  const sql = tool.output.columns !== undefined;
  const render =
    mode === "json"
      ? (shown: Row[]) => JSON.stringify({ ...res, [tool.output.rows!]: shown }) + "\n"
      : (shown: Row[]) =>
          shown.length === 0
            ? "(no rows)\n"
            : formatTable(
                shown.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, cutCell(v)]))),
                { columns, units: tool.output.units, rawHeaders: sql },
              ).text;
  const { shown, text } = fitting(rows, rowCap, render);
  const more = rows.length - shown.length;
  if (more > 0 || o.more) notes.unshift(`${o.more ? "at least " : ""}${more} more rows not shown — ${narrowHint(tool)}`);
  return { text, notes: notes.map((n) => `(${n})\n`).join(""), more };
}
