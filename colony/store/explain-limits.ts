// explain's bounds, in a module of their own: both engines' statements (queries.ts,
// clickhouse/reads.ts) and the answer they share (answers.ts) use them, and ClickHouse's reads must
// not load DuckDB's.

/** Attribute keys compared per explain (the most frequent), and values per key (the most frequent among the selected requests). */
export const EXPLAIN_MAX_KEYS = 64;
export const EXPLAIN_MAX_VALUES = 20;
/** Values are matched on this many leading characters plus their length. */
export const EXPLAIN_MATCH_CHARS = 4096;
/** Values are returned cut to this many characters. */
export const EXPLAIN_VALUE_CHARS = 256;
/** Trace ids per cause: the slowest (--slow) or newest (--errors) selected requests holding the value. */
export const EXPLAIN_EXEMPLARS = 3;
