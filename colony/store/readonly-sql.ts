import {
  DuckDBTypeId,
  JsonDuckDBValueConverter,
  StatementType,
  type DuckDBConnection,
  type DuckDBPreparedStatement,
  type DuckDBResult,
  type DuckDBType,
  type DuckDBValue,
  type DuckDBDecimalValue,
} from "@duckdb/node-api";
import type { Store } from "./store.js";

export interface SqlColumn {
  name: string;
  type: string;
}

/**
 * What a cell becomes on the wire. Integers that do not fit a double exactly and wide DECIMALs are
 * strings so nothing is silently rounded; instants are ISO-8601; nested values are JSON text.
 */
export type SqlValue = number | string | boolean | null;

export interface SqlResult {
  columns: SqlColumn[];
  rows: SqlValue[][];
  truncated: boolean;
}

export type SqlRejectionCode = "invalid_argument" | "deadline_exceeded" | "resource_exhausted";

/** A refusal or failure the caller can act on. Carries no stack: the message is the whole story. */
export class SqlRejected extends Error {
  constructor(
    readonly code: SqlRejectionCode,
    message: string,
  ) {
    super(message);
    this.name = "SqlRejected";
    this.stack = undefined;
  }
}

export interface SqlLimits {
  maxRows?: number;
  timeoutMs?: number;
  maxBytes?: number;
}

const DEFAULTS = { maxRows: 10_000, timeoutMs: 30_000, maxBytes: 16 * 1024 * 1024 };

/**
 * Runs users' analysis SQL. The store's instance already refuses file/network access, extensions and
 * configuration changes; this adds what is per query: one statement, SELECT only (as DuckDB itself
 * classifies it), a read-only transaction, a row limit, a deadline that interrupts DuckDB, and a cap
 * on the bytes a response may carry. Each query gets its own connection so an interrupt hits only it.
 */
export class SqlRunner {
  private readonly limits: Required<SqlLimits>;

  constructor(
    private readonly store: Store,
    limits: SqlLimits = {},
  ) {
    this.limits = {
      maxRows: limits.maxRows ?? DEFAULTS.maxRows,
      timeoutMs: limits.timeoutMs ?? DEFAULTS.timeoutMs,
      maxBytes: limits.maxBytes ?? DEFAULTS.maxBytes,
    };
  }

  async run(sql: string): Promise<SqlResult> {
    const out: SqlResult = { columns: [], rows: [], truncated: false };
    for await (const batch of this.execute(sql, this.limits.maxRows, Infinity, "total")) {
      if (batch.columns.length > 0) out.columns = batch.columns;
      for (const row of batch.rows) out.rows.push(row);
      out.truncated ||= batch.truncated;
    }
    return out;
  }

  /**
   * Yields the result in batches of `batchRows`; columns come with the first batch only, `truncated`
   * with the last. The byte cap bounds each batch, the deadline the whole stream.
   */
  stream(sql: string, o: { maxRows?: number; batchRows?: number } = {}): AsyncGenerator<SqlResult> {
    return this.execute(sql, o.maxRows ?? this.limits.maxRows, Math.max(1, o.batchRows ?? 1000), "batch");
  }

  private async *execute(sql: string, maxRows: number, batchRows: number, byteScope: "total" | "batch"): AsyncGenerator<SqlResult> {
    const conn = await this.store.connect();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      conn.interrupt();
    }, this.limits.timeoutMs);
    try {
      const result = await this.start(conn, sql);
      const types = result.columnTypes();
      const columns = result.columnNames().map((name, i) => ({ name, type: types[i]!.toString() }));
      let sentColumns = false;
      let pending: SqlValue[][] = [];
      let pendingBytes = 0;
      let totalBytes = 0;
      let rowCount = 0;
      let truncated = false;
      const take = (rows: SqlValue[][]): SqlResult => {
        const batch = { columns: sentColumns ? [] : columns, rows, truncated: false };
        sentColumns = true;
        return batch;
      };

      reading: for (;;) {
        const chunk = await result.fetchChunk();
        if (!chunk || chunk.rowCount === 0) break;
        const cells = chunk.getColumns();
        for (let r = 0; r < chunk.rowCount; r++) {
          if (rowCount === maxRows) {
            truncated = true;
            break reading;
          }
          const row = new Array<SqlValue>(cells.length);
          let bytes = 2;
          for (let c = 0; c < cells.length; c++) {
            const v = toSqlValue(cells[c]![r]!, types[c]!);
            row[c] = v;
            bytes += estimateBytes(v);
          }
          pendingBytes += bytes;
          totalBytes += bytes;
          if ((byteScope === "total" ? totalBytes : pendingBytes) > this.limits.maxBytes) {
            throw new SqlRejected(
              "resource_exhausted",
              `the result exceeds the ${this.limits.maxBytes}-byte response limit after ${rowCount} rows; select fewer columns or add a LIMIT`,
            );
          }
          pending.push(row);
          rowCount++;
          // Hold a full batch back until another row exists, so the last batch can carry `truncated`.
          if (pending.length > batchRows) {
            const rest = pending.splice(batchRows);
            yield take(pending);
            pending = rest;
            pendingBytes = bytes * rest.length;
          }
        }
      }
      // An interrupted DuckDB result ends like a complete one (an empty chunk): without this
      // check a stream cut by the deadline would pass for the whole result.
      if (timedOut) throw deadlineExceeded(this.limits.timeoutMs);
      const last = take(pending);
      last.truncated = truncated;
      yield last;
    } catch (err) {
      if (err instanceof SqlRejected) throw err;
      if (timedOut) throw deadlineExceeded(this.limits.timeoutMs);
      throw new SqlRejected("invalid_argument", messageOf(err));
    } finally {
      clearTimeout(timer);
      conn.closeSync();
    }
  }

  private async start(conn: DuckDBConnection, sql: string): Promise<DuckDBResult> {
    const extracted = await conn.extractStatements(sql);
    if (extracted.count !== 1) {
      throw new SqlRejected("invalid_argument", `exactly one SQL statement is allowed; got ${extracted.count}`);
    }
    // DuckDB's parser decides first: only a genuine SELECT can be serialised. This runs before binding,
    // so a COPY or ATTACH is refused as a statement kind rather than by the file access it would need.
    const parsed = await conn.runAndReadAll("SELECT json_serialize_sql($1::VARCHAR) ->> 'error' AS failed", [sql]);
    const parsedAsSelect = parsed.getRowsJS()[0]?.[0] !== "true";
    let prepared: DuckDBPreparedStatement;
    try {
      prepared = await extracted.prepare(0);
    } catch (err) {
      if (parsedAsSelect) throw err;
      throw new SqlRejected("invalid_argument", "only SELECT statements are allowed; got a statement of another kind");
    }
    const type = prepared.statementType;
    if (type !== StatementType.SELECT) {
      throw new SqlRejected("invalid_argument", `only SELECT statements are allowed; got ${StatementType[type] ?? type}`);
    }
    // PRAGMA is rewritten into a SELECT before it is prepared, so only the parser's verdict reveals it.
    if (!parsedAsSelect) {
      throw new SqlRejected("invalid_argument", "only SELECT statements are allowed; got PRAGMA");
    }
    if (prepared.parameterCount > 0) {
      throw new SqlRejected("invalid_argument", "the query has parameters ($1, ?); inline the values instead");
    }
    // Defence in depth: even a SELECT-typed statement with side effects cannot write.
    await conn.run("BEGIN TRANSACTION READ ONLY");
    return prepared.stream();
  }
}

function deadlineExceeded(timeoutMs: number): SqlRejected {
  return new SqlRejected("deadline_exceeded", `the query ran longer than the ${timeoutMs} ms statement timeout and was cancelled`);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function estimateBytes(v: SqlValue): number {
  if (v === null) return 5;
  if (typeof v === "string") return v.length + 3;
  if (typeof v === "boolean") return 6;
  return 25;
}

function integerValue(v: bigint): SqlValue {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : v.toString();
}

/** ISO-8601 in UTC with as many fractional digits as the value carries (DuckDB has µs and ns). */
function isoFromUnits(units: bigint, unitsPerMs: bigint, fracDigits: number): string {
  let ms = units / unitsPerMs;
  let rem = units % unitsPerMs;
  if (rem < 0n) {
    ms -= 1n;
    rem += unitsPerMs;
  }
  const date = new Date(Number(ms));
  if (Number.isNaN(date.getTime())) return String(units);
  const iso = date.toISOString();
  return rem === 0n ? iso : `${iso.slice(0, -1)}${rem.toString().padStart(fracDigits, "0")}Z`;
}

function toSqlValue(value: DuckDBValue, type: DuckDBType): SqlValue {
  if (value === null) return null;
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
      return value as boolean;
    case DuckDBTypeId.TINYINT:
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.UTINYINT:
    case DuckDBTypeId.USMALLINT:
    case DuckDBTypeId.UINTEGER:
    case DuckDBTypeId.FLOAT:
    case DuckDBTypeId.DOUBLE:
      return value as number;
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
    case DuckDBTypeId.BIGNUM:
      return integerValue(value as bigint);
    case DuckDBTypeId.DECIMAL: {
      // Up to 15 significant digits a double holds the decimal exactly as written; beyond, keep the text.
      const d = value as DuckDBDecimalValue;
      return d.width <= 15 ? Number(d.toString()) : d.toString();
    }
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_TZ:
      return isFiniteTs(value) ? isoFromUnits((value as unknown as { micros: bigint }).micros, 1000n, 3) : String(value);
    case DuckDBTypeId.TIMESTAMP_MS:
      return isFiniteTs(value) ? isoFromUnits((value as unknown as { millis: bigint }).millis, 1n, 0) : String(value);
    case DuckDBTypeId.TIMESTAMP_S:
      return isFiniteTs(value) ? isoFromUnits((value as unknown as { seconds: bigint }).seconds * 1000n, 1n, 0) : String(value);
    case DuckDBTypeId.TIMESTAMP_NS:
      return isFiniteTs(value) ? isoFromUnits((value as unknown as { nanos: bigint }).nanos, 1_000_000n, 6) : String(value);
    case DuckDBTypeId.VARCHAR:
      return value as string;
    case DuckDBTypeId.LIST:
    case DuckDBTypeId.ARRAY:
    case DuckDBTypeId.STRUCT:
    case DuckDBTypeId.MAP:
    case DuckDBTypeId.UNION:
    case DuckDBTypeId.VARIANT:
      return JSON.stringify(JsonDuckDBValueConverter(value, type, JsonDuckDBValueConverter));
    default:
      // DATE, TIME, INTERVAL, UUID, ENUM, BLOB, …: DuckDB's own text form is what users expect to see.
      return String(value);
  }
}

function isFiniteTs(value: DuckDBValue): boolean {
  return (value as unknown as { isFinite?: boolean }).isFinite !== false;
}
