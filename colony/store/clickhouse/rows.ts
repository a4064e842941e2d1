// Values and rows as the ClickHouse tables take them (JSONCompactEachRow), shared by the writer
// and the schema steps that fill a table from stored data, so both produce the same rows.
import { isErrorSpan } from "../../ingest/deltas.js";
import { storedAttributes, type SpanRecord } from "../../ingest/records.js";

/** A row as JSONCompactEachRow sends it: values in the order of its table's columns (schema.ts columnsOf). */
export type Row = unknown[];

const INT64_MAX = 2n ** 63n - 1n;

/** Int64 values as decimal text: JSON numbers lose digits beyond 2^53, and ClickHouse reads quoted integers. */
export function int64(n: number | bigint): string {
  const v = typeof n === "bigint" ? n : BigInt(Math.round(n));
  return (v > INT64_MAX ? INT64_MAX : v < -INT64_MAX - 1n ? -INT64_MAX - 1n : v).toString();
}

/** UInt64 counts, saturated as DuckDB's are (a client may send counts up to 2^53 − 1 per point). */
export function count(n: number): string {
  return n >= 2 ** 64 ? (2n ** 64n - 1n).toString() : BigInt(Math.max(0, Math.round(n))).toString();
}

export const micros = (ms: number) => Math.round(ms * 1000);

/** The `span_attributes` rows of spans (which attributes: storedAttributes). */
export function attributeRows(spans: readonly SpanRecord[]): Row[] {
  const rows: Row[] = [];
  for (const s of spans) {
    const { own, resource: res } = storedAttributes(s);
    if (own.length === 0 && res.length === 0) continue;
    const at = micros(s.startTimeMs);
    const ns = int64(s.durationNs);
    const failed = isErrorSpan(s);
    for (let i = 0; i < own.length; i += 2) rows.push([s.serviceName, at, s.traceId, s.spanId, s.kind, ns, failed, own[i]!, own[i + 1]!, false]);
    for (let i = 0; i < res.length; i += 2) rows.push([s.serviceName, at, s.traceId, s.spanId, s.kind, ns, failed, res[i]!, res[i + 1]!, true]);
  }
  return rows;
}
