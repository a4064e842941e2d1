// Every `coral` result is printed here, in one of three formats:
// table (people: aligned, human units), json (jq: raw values, proto field names),
// csv (spreadsheets: header row, raw values).
import { formatBytes, formatDurationNs, formatPercent, formatRatio } from "../../sdk/units.js";
import type { Plain } from "../../sdk/plain.js";

export const outputFormats = ["table", "json", "csv"] as const;
export type OutputFormat = (typeof outputFormats)[number];

/** Human units of a column, from the proto's `unit` annotation. */
export type UnitName = "ns" | "ratio" | "bytes" | "percent";

export interface TableView {
  columns: string[];
  units: Record<string, UnitName>;
}

type Row = Record<string, Plain>;

function isoSeconds(d: Date): string {
  return Number.isNaN(d.getTime()) ? "-" : d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A cell as people read it. */
export function humanCell(v: Plain | undefined, unit?: UnitName): string {
  if (v === null || v === undefined) return "-";
  if (v instanceof Date) return isoSeconds(v);
  if (typeof v === "number" && unit) {
    switch (unit) {
      case "ns":
        return formatDurationNs(v);
      case "ratio":
        return formatRatio(v);
      case "bytes":
        return formatBytes(v);
      case "percent":
        return formatPercent(v);
    }
  }
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

/** Aligned columns; numbers (and human durations) right-aligned. */
export function formatTable(rows: Row[], view: TableView, widths?: number[]): { text: string; widths: number[] } {
  const header = view.columns.map((c) => c.toUpperCase());
  const cells = rows.map((r) => view.columns.map((c) => humanCell(cellOf(r, c), view.units[c])));
  const rightAligned = view.columns.map((c) => rows.some((r) => typeof cellOf(r, c) === "number"));
  const w = widths ?? header.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i].length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => (rightAligned[i] ? cell.padStart(w[i]) : cell.padEnd(w[i])))
      .join("  ")
      .trimEnd();
  const lines = widths ? cells.map(line) : [line(header), ...cells.map(line)];
  return { text: lines.length ? lines.join("\n") + "\n" : "", widths: w };
}

export function formatCsv(rows: Row[], columns: string[], header = true): string {
  const lines = rows.map((r) => columns.map((c) => csvEscape(rawCell(cellOf(r, c)))).join(","));
  if (header) lines.unshift(columns.map(csvEscape).join(","));
  return lines.length ? lines.join("\r\n") + "\r\n" : "";
}

export function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + "\n";
}
