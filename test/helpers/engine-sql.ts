// The reference SQL the e2e suites check answers against, in the dialect of the engine they run on
// (CORAL_STORE): the few functions DuckDB and ClickHouse spell differently, each with the same
// meaning on both, so a suite asserts the same thing on either engine.
import { STORE_ENGINE } from "./colony.js";
import { sqlQuote } from "./query.js";

const onClickHouse = STORE_ENGINE === "clickhouse";

/**
 * The exact quantile `q` of `expr`, interpolated linearly between the two nearest ranks (R-7):
 * DuckDB's quantile_cont, ClickHouse's quantileExactInclusive.
 */
export function exactQuantile(expr: string, q: number): string {
  return onClickHouse ? `quantileExactInclusive(${q})(${expr})` : `quantile_cont(${expr}, ${q})`;
}

/**
 * The span attribute `key` of the JSON text `json` as text (a number as its digits), NULL when the
 * attribute is absent or null: DuckDB's json_extract_string with a quoted path, ClickHouse's
 * JSONExtract to Nullable(String), which takes the key itself rather than a path.
 */
export function jsonAttribute(json: string, key: string): string {
  return onClickHouse ? `JSONExtract(${json}, ${sqlQuote(key)}, 'Nullable(String)')` : `json_extract_string(${json}, ${sqlQuote(`$."${key}"`)})`;
}

/** Microseconds since the Unix epoch of the timestamp `expr` (spans keep microseconds on both engines). */
export function epochMicros(expr: string): string {
  return onClickHouse ? `toUnixTimestamp64Micro(${expr})` : `epoch_us(${expr})`;
}
