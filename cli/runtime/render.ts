// Every `coral` result is printed here, in one of three formats:
// table (people: aligned, human units), json (jq: raw values, proto field names),
// csv (spreadsheets: header row, raw values).
import type { Plain } from "../../surface/plain.js";
import { UNIT_FORMAT, type UnitName } from "../../surface/vocabulary.js";

export const outputFormats = ["table", "wide", "json", "csv"] as const;
export type OutputFormat = (typeof outputFormats)[number];

export type { UnitName };

export interface TableView {
  columns: string[];
  units: Record<string, UnitName>;
  /** Timestamps as their age ("3m ago") measured from this instant, instead of ISO text. */
  agesFrom?: Date;
  /** Shrink text columns (never ids) with "…" until a line fits this many columns. */
  maxWidth?: number;
  /** Headers exactly as the columns are named (a SQL result's own names), only upper-cased. */
  rawHeaders?: boolean;
}

type Row = Record<string, Plain>;

function isoSeconds(d: Date): string {
  return Number.isNaN(d.getTime()) ? "-" : d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** How long ago `d` was, as kubectl and gh print ages: "45s ago", "12m ago", "1h11m ago", "3d4h ago". */
export function formatAge(d: Date, now: Date): string {
  const s = Math.round((now.getTime() - d.getTime()) / 1000);
  if (Number.isNaN(s)) return "-";
  const a = Math.abs(s);
  const text =
    a < 60 ? `${a}s` : a < 3600 ? `${Math.floor(a / 60)}m` : a < 86_400 ? `${Math.floor(a / 3600)}h${Math.floor((a % 3600) / 60)}m` : `${Math.floor(a / 86_400)}d${Math.floor((a % 86_400) / 3600)}h`;
  // A clock ahead of ours (the sender's) is not "negative ago".
  return s < 0 ? `in ${text}` : `${text} ago`;
}

/** A cell as people read it. */
export function humanCell(v: Plain | undefined, unit?: UnitName, agesFrom?: Date): string {
  if (v === null || v === undefined) return "-";
  if (v instanceof Date) return agesFrom ? formatAge(v, agesFrom) : isoSeconds(v);
  if (typeof v === "number" && unit) return UNIT_FORMAT[unit](v);
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toFixed(6)));
  if (typeof v === "object") return JSON.stringify(v);
  return visible(String(v));
}

/**
 * Control characters shown as escapes: a value from telemetry (a service name sent over OTLP) must
 * not break a table's lines or send escape sequences to the user's terminal.
 */
function visible(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

/** A cell as machines read it (csv). */
function rawCell(v: Plain | undefined): string {
  if (v === null || v === undefined) return "";
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function csvEscape(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** A column's value; columns are proto field names or dotted paths into nested messages. */
export function cellOf(row: Row, column: string): Plain | undefined {
  if (column in row) return row[column];
  let v: Plain | undefined = row;
  for (const key of column.split(".")) {
    v = v !== null && typeof v === "object" && !(v instanceof Date) && !Array.isArray(v) ? v[key] : undefined;
  }
  return v;
}

/** Suffixes a table drops from a header because its cells carry the unit ("DURATION" shows "2.07s"). */
const UNIT_SUFFIX: Record<UnitName, RegExp> = { ns: /_ns$/, bytes: /_bytes$/, percent: /_percent$/, ratio: /$^/ };

/**
 * A column's header: the last part of a dotted path (SERVICE.NAME → NAME), without a unit suffix
 * its cells already show, and `_count` as a plural (SPAN_COUNT → SPANS; TOTAL_COUNT → TOTAL).
 * Raw names stay in json and csv, where programs read them.
 */
export function headerOf(column: string, unit?: UnitName): string {
  let h = column.slice(column.lastIndexOf(".") + 1);
  if (unit) h = h.replace(UNIT_SUFFIX[unit], "");
  h = h.replace(/^total_count$/, "total").replace(/_count$/, "s");
  return h.toUpperCase();
}

/** Shortens `s` to `n` columns, the cut marked. */
function cut(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, Math.max(0, n - 1))}…`;
}

/** Narrowest a text column is shrunk to before the table gives up fitting. */
const MIN_TEXT_WIDTH = 8;

/**
 * Widths that fit `maxWidth`: the widest shrinkable column gives up a column at a time. Ids and
 * numbers are never shrunk: a cut trace id is useless, a cut number is wrong.
 */
function fit(widths: number[], shrinkable: boolean[], maxWidth: number): number[] {
  const w = [...widths];
  const total = () => w.reduce((a, b) => a + b, 0) + 2 * (w.length - 1);
  while (total() > maxWidth) {
    let widest = -1;
    for (let i = 0; i < w.length; i++) if (shrinkable[i] && w[i]! > MIN_TEXT_WIDTH && (widest < 0 || w[i]! > w[widest]!)) widest = i;
    if (widest < 0) break;
    w[widest]!--;
  }
  return w;
}

/** Aligned columns; numbers (and human durations) right-aligned. */
export function formatTable(rows: Row[], view: TableView, widths?: number[]): { text: string; widths: number[] } {
  const header = view.columns.map((c) => (view.rawHeaders ? c.toUpperCase() : headerOf(c, view.units[c])));
  const cells = rows.map((r) => view.columns.map((c) => humanCell(cellOf(r, c), view.units[c], view.agesFrom)));
  const rightAligned = view.columns.map((c) => rows.some((r) => typeof cellOf(r, c) === "number"));
  let w = widths;
  if (!w) {
    w = header.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
    if (view.maxWidth) {
      const shrinkable = view.columns.map((c, i) => !rightAligned[i] && !/(^|[._])id$/.test(c) && rows.some((r) => typeof cellOf(r, c) === "string"));
      w = fit(w, shrinkable, view.maxWidth);
    }
  }
  const width = w;
  const line = (row: string[]) =>
    row
      .map((cell, i) => (rightAligned[i] ? cut(cell, width[i]!).padStart(width[i]!) : cut(cell, width[i]!).padEnd(width[i]!)))
      .join("  ")
      .trimEnd();
  const lines = widths ? cells.map(line) : [line(header), ...cells.map(line)];
  return { text: lines.length ? lines.join("\n") + "\n" : "", widths: width };
}

export function formatCsv(rows: Row[], columns: string[], header = true): string {
  const lines = rows.map((r) => columns.map((c) => csvEscape(rawCell(cellOf(r, c)))).join(","));
  if (header) lines.unshift(columns.map(csvEscape).join(","));
  return lines.length ? lines.join("\r\n") + "\r\n" : "";
}

export function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + "\n";
}
