// The settings a caller's query runs under on ClickHouse, shared by the typed-read guard and the user-SQL guard.
/**
 * The time and memory bounds of every query the colony runs for a caller, typed read or user SQL:
 * ClickHouse stops the query itself at the caller's deadline, or when it would pass the memory.
 */
export function queryBounds(secondsLeft: number, maxMemoryBytes: number): { max_execution_time: number; timeout_overflow_mode: "throw"; max_memory_usage: number } {
  return {
    // At least a millisecond: 0 would mean no limit.
    max_execution_time: Number(Math.max(0.001, secondsLeft).toFixed(3)),
    timeout_overflow_mode: "throw",
    max_memory_usage: Math.floor(maxMemoryBytes),
  };
}

/** A setting's value as a ClickHouse literal (strings quoted, quotes and backslashes doubled). */
export function settingLiteral(v: string | number | boolean): string {
  if (typeof v === "boolean") return v ? "1" : "0";
  return typeof v === "number" ? String(v) : `'${v.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}
