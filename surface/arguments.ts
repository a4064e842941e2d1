// A request field's value from the text a person or a model writes for it ("5m", "99", "1000"),
// and its bounds, checked and worded once for every surface: the CLI's flags, MCP's tool arguments
// and codegen's checks of the proto's own defaults and bounds.
import { boundsPhrase, outside } from "./bounds.js";
import { UnitParseError, parseBoolean, parseDurationMs, parseDurationNs, parseNumber, parsePercent } from "./units.js";
import type { ParseRule } from "./vocabulary.js";

const INT32_MAX = 2 ** 31 - 1;
/** Exact as a number, and far inside int64. */
const INT64_SAFE = Number.MAX_SAFE_INTEGER;

/** The field's integer type bounds what text may say; beyond them the request cannot be encoded. */
function inRange(v: number, max: number, text: string, what = `out of range (at most ${max.toLocaleString("en-US")})`): number {
  if (Math.abs(v) > max) throw new UnitParseError(`"${text}" is ${what}`);
  return v;
}

/**
 * The request field's value (protobuf-es form: int64 and durations as bigint) of `text` under
 * `rule`; throws UnitParseError saying what is wrong with the text (the caller names the field).
 */
export function fieldValue(rule: ParseRule, text: string): number | bigint | boolean | string {
  switch (rule) {
    case "durationMs":
      return BigInt(Math.round(inRange(parseDurationMs(text), INT64_SAFE, text, "too long a duration")));
    case "durationNs":
      return BigInt(Math.round(inRange(parseDurationNs(text), INT64_SAFE, text, "too long a duration")));
    case "percent":
      return parsePercent(text);
    case "int":
      return inRange(parseNumber(text, true), INT32_MAX, text);
    case "int64":
      return BigInt(inRange(parseNumber(text, true), INT64_SAFE, text));
    case "double":
      return parseNumber(text);
    case "bool":
      return parseBoolean(text);
    case "string":
      return text;
  }
}

/**
 * A bound in the field's own values. Written like a value but not range-checked as one: a
 * percentile's bound "0" is 0, though nobody may ask for the 0th percentile.
 */
export function boundValue(rule: ParseRule, text: string): number {
  return rule === "percent" ? parseNumber(text) / 100 : Number(fieldValue(rule, text));
}

/** A field's parse rule and bounds, written as on the command line (the proto's `min`/`max`). */
export interface BoundedField {
  parse: ParseRule;
  min?: string;
  minExclusive?: boolean;
  max?: string;
}

/**
 * Throws UnitParseError when `value` (the field's value) lies outside the field's bounds; the
 * message says them as the user writes values ("must be in 1..1000; got 1001").
 */
export function checkBounds(f: BoundedField, value: unknown, shown: string): void {
  if (f.min === undefined && f.max === undefined) return;
  const bounds = {
    min: f.min === undefined ? undefined : boundValue(f.parse, f.min),
    max: f.max === undefined ? undefined : boundValue(f.parse, f.max),
    minExclusive: f.minExclusive,
  };
  if (outside(Number(value), bounds)) throw new UnitParseError(`must be ${boundsPhrase(f)}; got ${shown}`);
}
