import { UsageError } from "clipanion";

/**
 * A numeric flag's value within its bounds, refused in one wording for every command:
 * `--batch: expected a whole number from 1 to 100000, got "x"`. `flag` names where the text came
 * from (a flag, or the variable standing in for it).
 */
export function numberFlag(flag: string, text: string, rule: { min: number; max?: number; integer?: boolean }): number {
  const s = text.trim();
  const n = s === "" ? NaN : Number(s.replaceAll("_", ""));
  const max = rule.max ?? Infinity;
  if (!Number.isFinite(n) || n < rule.min || n > max || (rule.integer && !Number.isInteger(n))) {
    const kind = rule.integer ? "a whole number" : "a number";
    const range = max === Infinity ? `of at least ${rule.min}` : `from ${rule.min} to ${max}`;
    throw new UsageError(`${flag}: expected ${kind} ${range}, got "${text}"`);
  }
  return n;
}
