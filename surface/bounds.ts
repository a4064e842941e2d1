// A request field's bounds (the proto's `min`/`max`/`min_exclusive`), checked and worded the same
// by the colony (in the field's own values), the CLI (as the user writes them) and codegen.

export interface Bounds<T> {
  min?: T;
  max?: T;
  minExclusive?: boolean;
}

/** Whether `v` lies outside the bounds. */
export function outside(v: number, b: Bounds<number>): boolean {
  // NaN compares false with every bound: without this a NaN percentile passed as one in (0, 1].
  if (Number.isNaN(v)) return b.min !== undefined || b.max !== undefined;
  if (b.min !== undefined && (b.minExclusive ? v <= b.min : v < b.min)) return true;
  return b.max !== undefined && v > b.max;
}

/** What a refusal says the value must be: "in 1..1000", "in (0, 1]", "above 0", "at least 0", "at most 10". */
export function boundsPhrase(b: Bounds<string | number>): string {
  if (b.min !== undefined && b.max !== undefined) return b.minExclusive ? `in (${b.min}, ${b.max}]` : `in ${b.min}..${b.max}`;
  if (b.min !== undefined) return `${b.minExclusive ? "above" : "at least"} ${b.min}`;
  return `at most ${b.max}`;
}
