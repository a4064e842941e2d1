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
