// Parsing and formatting of the units people type and read: durations ("500ms", "5m"),
// percentages ("99.9") and byte sizes. Shared by the CLI, the SDK (script parameters)
// and the code generator (annotation defaults), so "1h" means the same everywhere.
// Portable: no Node or Deno APIs.

const durationUnitsNs: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
  d: 86400e9,
};

/** Thrown for text that is not a valid value; the caller names the flag or parameter. */
export class UnitParseError extends Error {}

/**
 * "500ms", "1.5s", "5m", "1h30m", "2d" → nanoseconds. A bare number is rejected: the
 * unit is never guessed.
 */
export function parseDurationNs(text: string): number {
  const s = text.trim();
  const part = /(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h|d)/y;
  let total = 0;
  let at = 0;
  while (at < s.length) {
    part.lastIndex = at;
    const m = part.exec(s);
    if (!m) break;
    total += Number(m[1]) * durationUnitsNs[m[2]];
    at = part.lastIndex;
  }
  if (s.length === 0 || at !== s.length) {
    throw new UnitParseError(`"${text}" is not a duration; write it like 500ms, 30s, 5m, 1h or 1h30m`);
  }
  return Math.round(total);
}

/** Like parseDurationNs, in whole milliseconds. */
export function parseDurationMs(text: string): number {
  return Math.round(parseDurationNs(text) / 1e6);
}

/** "99" or "99.9" (a percentage in (0, 100]) → 0.99 / 0.999. */
export function parsePercent(text: string): number {
  const s = text.trim().replace(/%$/, "");
  const v = /^(\d+(\.\d+)?|\.\d+)$/.test(s) ? Number(s) : NaN;
  if (!(v > 0 && v <= 100)) {
    throw new UnitParseError(`"${text}" is not a percentage in (0, 100]; write it like 50, 99 or 99.9`);
  }
  // Round away binary noise: 99.9 / 100 must be exactly 0.999.
  return Number((v / 100).toPrecision(12));
}

/** A finite number (integer when `integer`), with the same error style as the units. */
export function parseNumber(text: string, integer = false): number {
  const s = text.trim();
  const v = s === "" ? NaN : Number(s.replaceAll("_", ""));
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new UnitParseError(`"${text}" is not ${integer ? "an integer" : "a number"}`);
  }
  return v;
}

/** "true/false/yes/no/1/0/on/off" → boolean. */
export function parseBoolean(text: string): boolean {
  const s = text.trim().toLowerCase();
  if (["true", "yes", "1", "on"].includes(s)) return true;
  if (["false", "no", "0", "off"].includes(s)) return false;
  throw new UnitParseError(`"${text}" is not a boolean; write true or false`);
}

/** 892_100_000 → "892.1ms"; picks the largest unit that keeps the value ≥ 1. */
export function formatDurationNs(ns: number): string {
  const a = Math.abs(ns);
  if (a >= 60e9) return `${(ns / 60e9).toFixed(1)}m`;
  if (a >= 1e9) return `${(ns / 1e9).toFixed(2)}s`;
  if (a >= 1e6) return `${(ns / 1e6).toFixed(1)}ms`;
  if (a >= 1e3) return `${(ns / 1e3).toFixed(1)}µs`;
  return `${Math.round(ns)}ns`;
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** 0.0012 → "0.12%". */
export function formatRatio(r: number): string {
  return `${(r * 100).toFixed(2)}%`;
}

/** 37.54 → "37.5%". */
export function formatPercent(p: number): string {
  return `${p.toFixed(1)}%`;
}
