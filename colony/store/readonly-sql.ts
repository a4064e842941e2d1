import {
  DuckDBTypeId,
  JsonDuckDBValueConverter,
  StatementType,
  type DuckDBConnection,
  type DuckDBDataChunk,
  type DuckDBPreparedStatement,
  type DuckDBResult,
  type DuckDBType,
  type DuckDBValue,
  type DuckDBDecimalValue,
} from "@duckdb/node-api";
import { endianness } from "node:os";
import { withDefaults } from "../admission.js";
import { rowWireSizes } from "./cell-size.js";
import { heldWithin, limitError, QueryGuard, SqlRejected, type GuardedQuery, type GuardWords } from "./deadline.js";
import { judgeParseTree } from "./sql-policy.js";
import { readVarChar } from "./varchar-read.js";
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

/** One batch of a streamed result, column-major: `values[c][r]` is column c of row r. */
export interface SqlBatch {
  /** The result's columns on the first batch; empty on the others. */
  columns: SqlColumn[];
  values: SqlValue[][];
  rowCount: number;
  /** Set on the last batch when the result was cut at the row limit. */
  truncated: boolean;
}

// Its callers know the refusal as user SQL's; typed reads share it (deadline.ts).
export { SqlRejected, type SqlRejectionCode } from "./deadline.js";

export interface SqlLimits {
  maxRows?: number;
  timeoutMs?: number;
  maxBytes?: number;
  /** User queries running at once; more wait (within their deadline) in a bounded queue. */
  maxConcurrent?: number;
  /** Queries that may wait for a slot; beyond, resource_exhausted at once. */
  maxQueued?: number;
  /**
   * After the deadline's interrupt, how long DuckDB gets to stop before the query is abandoned:
   * the caller is answered, and the connection is closed whenever DuckDB returns.
   */
  abandonAfterMs?: number;
}

export const SQL_DEFAULTS = {
  maxRows: 10_000,
  timeoutMs: 30_000,
  maxBytes: 16 * 1024 * 1024,
  // Each running query holds one libuv thread while DuckDB computes; the colony raises the pool to
  // 16 (bin/coral.cjs), so even four queries stuck in an operator DuckDB cannot interrupt leave
  // twelve for ingestion and the other RPCs.
  maxConcurrent: 4,
  maxQueued: 32,
  abandonAfterMs: 2_000,
} as const;

/**
 * Runs users' analysis SQL. The store's instance already refuses file/network access, extensions and
 * configuration changes; this adds what is per query: one statement, SELECT only (as DuckDB itself
 * classifies it), a read-only transaction, a row limit, a deadline that interrupts DuckDB, and a cap
 * on the bytes a response may carry. Each query gets its own connection so an interrupt hits only it.
 */
/** How users' SQL is named in refusals, on either engine. */
export const SQL_WORDS: GuardWords = { queries: "SQL queries", slots: "SQL slots", timeout: "statement timeout" };

export class SqlRunner {
  private readonly limits: Required<SqlLimits>;
  /** Admission, the deadline, interrupts and runaways, shared with the typed reads (deadline.ts). */
  private readonly guard: QueryGuard;
  /** The colony's tables and the database's name, for the policy (read once). */
  private catalog: Promise<{ tables: Set<string>; database: string }> | undefined;

  constructor(store: Store, limits: SqlLimits = {}) {
    this.limits = withDefaults<Required<SqlLimits>>(SQL_DEFAULTS, limits);
    this.guard = new QueryGuard(() => store.connect(), this.limits, SQL_WORDS);
  }

  get runaways(): number {
    return this.guard.runaways;
  }

  /** When the longest-running of the runaways was abandoned (ms since the epoch), if any runs. */
  get oldestRunawaySince(): number | undefined {
    return this.guard.oldestRunawaySince;
  }

  /** Called when a query is abandoned while DuckDB is still inside it (see oldestRunawaySince). */
  get onRunaway(): (() => void) | undefined {
    return this.guard.onRunaway;
  }
  set onRunaway(f: (() => void) | undefined) {
    this.guard.onRunaway = f;
  }

  /** See QueryGuard.stopAll. */
  stopAll(why: SqlRejected, graceMs = 500): Promise<number> {
    return this.guard.stopAll(why, graceMs);
  }

  /** See QueryGuard.close: false while DuckDB is still inside a query it cannot interrupt. */
  close(graceMs = 1_000): Promise<boolean> {
    return this.guard.close(graceMs);
  }

  /** `signal`: the caller went away (or the colony is stopping): DuckDB is interrupted. */
  async run(sql: string, signal?: AbortSignal): Promise<SqlResult> {
    const out: SqlResult = { columns: [], rows: [], truncated: false };
    for await (const batch of this.execute(sql, this.limits.maxRows, Infinity, Infinity, "total", signal)) {
      if (batch.columns.length > 0) out.columns = batch.columns;
      const width = batch.values.length;
      for (let r = 0; r < batch.rowCount; r++) {
        const row = new Array<SqlValue>(width);
        for (let c = 0; c < width; c++) row[c] = batch.values[c]![r]!;
        out.rows.push(row);
      }
      out.truncated ||= batch.truncated;
    }
    return out;
  }

  /**
   * Yields the result in column-major batches of at most `batchRows` rows and, past the first
   * row, about `batchBytes` of cells; columns come with the first batch only, `truncated` with
   * the last. The byte cap bounds each batch, the deadline the whole stream.
   */
  stream(sql: string, o: { maxRows?: number; batchRows?: number; batchBytes?: number; signal?: AbortSignal } = {}): AsyncGenerator<SqlBatch> {
    const batches = this.execute(sql, o.maxRows ?? this.limits.maxRows, Math.max(1, o.batchRows ?? 8192), Math.max(1, o.batchBytes ?? 1 << 20), "batch", o.signal);
    return heldWithin(batches, this.limits, SQL_WORDS);
  }

  /**
   * Reads DuckDB's chunks column by column: one converter per column (none for values that are
   * already what the wire carries), no per-cell objects, and batches cut from the chunks' arrays.
   */
  private async *execute(
    sql: string,
    maxRows: number,
    batchRows: number,
    batchBytes: number,
    byteScope: "total" | "batch",
    signal?: AbortSignal,
  ): AsyncGenerator<SqlBatch> {
    const { maxBytes } = this.limits;
    const query = await this.guard.begin(signal);
    const { conn, call } = query;
    // The next chunk, asked for before the current one is converted: DuckDB computes it on its
    // own thread meanwhile. Never left behind unawaited (see finally).
    let prefetch: Promise<DuckDBDataChunk | null> | undefined;
    try {
      const result = await this.start(conn, sql, call);
      const types = result.columnTypes();
      const columns = result.columnNames().map((name, i) => ({ name, type: types[i]!.toString() }));
      const converters = types.map(converterFor);
      // VARCHAR columns are read a run of adjacent strings at a time (varchar-read.ts); its bit
      // arithmetic on the validity mask assumes a little-endian machine.
      const bulkVarChar = types.map((t) => t.typeId === DuckDBTypeId.VARCHAR && endianness() === "LE");
      const width = columns.length;
      let sentColumns = false;
      // Pieces of the batch being filled: column arrays of whole chunks or of slices of them.
      let pending: SqlValue[][][] = [];
      let pendingRows = 0;
      let pendingBytes = 0;
      let totalBytes = 0;
      let rowCount = 0;
      let truncated = false;
      const take = (): SqlBatch => {
        const values = pending.length === 1 ? pending[0]! : concatColumns(pending, width);
        const batch = { columns: sentColumns ? [] : columns, values, rowCount: pendingRows, truncated: false };
        sentColumns = true;
        pending = [];
        pendingRows = 0;
        pendingBytes = 0;
        return batch;
      };
      const tooLarge = () =>
        new SqlRejected(
          "resource_exhausted",
          `the result exceeds the ${maxBytes}-byte response limit after ${rowCount} rows; select fewer columns or add a LIMIT`,
        );

      const fetchNext = () => {
        const p = call(result.fetchChunk());
        // Handled here so a failure while the consumer holds a batch is not an unhandled
        // rejection; the loop (or finally) still awaits p and sees the error.
        p.catch(() => undefined);
        return p;
      };
      prefetch = fetchNext();
      let exhausted = false;
      for (;;) {
        const chunk = await prefetch;
        prefetch = undefined;
        if (!chunk || chunk.rowCount === 0) {
          exhausted = true;
          break;
        }
        if (rowCount === maxRows) {
          truncated = true;
          break;
        }
        const n = Math.min(chunk.rowCount, maxRows - rowCount);
        if (n < chunk.rowCount) truncated = true;
        // Sized before a single value is built: a cell too big for the response is refused as it
        // lies in DuckDB's memory, never copied into the colony's heap. A stream's chunk may hold
        // several batches, so it gets a few caps' worth; its rows are converted a batch at a time.
        const budget = byteScope === "total" ? maxBytes - totalBytes : 4 * maxBytes;
        const rowBytes = rowWireSizes(chunk, types, n, budget);
        if (!rowBytes) throw tooLarge();
        if (n === chunk.rowCount) prefetch = fetchNext();
        const vectors = types.map((_, c) => chunk.getColumnVector(c));
        const convertRows = (from: number, to: number): SqlValue[][] =>
          vectors.map((vector, c) => {
            const part = from === 0 && to === vector.itemCount ? vector : vector.slice(from, to - from);
            const col = (bulkVarChar[c] ? readVarChar(part) : part.toArray()) as SqlValue[];
            const convert = converters[c];
            if (convert) for (let r = 0; r < col.length; r++) col[r] = convert(col[r] as DuckDBValue);
            return col;
          });
        // Cut the chunk into the batch being filled. A full batch is sent only once another row
        // exists, so the last batch is always the one that can carry `truncated`.
        let from = 0;
        while (from < n) {
          if (pendingRows === batchRows || (pendingRows > 0 && pendingBytes + rowBytes[from]! > batchBytes)) yield take();
          let to = from;
          while (to < n && pendingRows < batchRows && (pendingRows === 0 || pendingBytes + rowBytes[to]! <= batchBytes)) {
            const b = rowBytes[to]!;
            pendingBytes += b;
            totalBytes += b;
            if ((byteScope === "total" ? totalBytes : pendingBytes) > maxBytes) throw tooLarge();
            pendingRows++;
            rowCount++;
            to++;
          }
          pending.push(convertRows(from, to));
          from = to;
        }
        if (truncated) break;
      }
      // An interrupted DuckDB result ends like a complete one (an empty chunk): without this
      // check a stream cut by the deadline would pass for the whole result.
      const cut = query.failure();
      if (cut) throw cut;
      if (exhausted) await this.checkCompleted(conn, sql, call, rowCount);
      const last = take();
      last.truncated = truncated;
      yield last;
    } catch (err) {
      if (err instanceof SqlRejected) throw err;
      throw query.failure() ?? classify(err);
    } finally {
      // A fetch still running (the consumer stopped early, or an error) must end before its
      // connection is closed.
      await query.end(prefetch);
    }
  }

  private async start(conn: DuckDBConnection, sql: string, call: GuardedQuery["call"]): Promise<DuckDBResult> {
    const extracted = await call(conn.extractStatements(sql));
    if (extracted.count !== 1) {
      throw new SqlRejected("invalid_argument", `exactly one SQL statement is allowed; got ${extracted.count}`);
    }
    // DuckDB's parser decides first: only a genuine SELECT can be serialised. This runs before binding,
    // so a COPY or ATTACH is refused as a statement kind rather than by the file access it would need.
    const parsed = await call(conn.runAndReadAll("SELECT json_serialize_sql($1::VARCHAR)", [sql]));
    const tree = JSON.parse(String(parsed.getRowsJS()[0]?.[0] ?? "{}")) as { error?: boolean };
    const parsedAsSelect = tree.error !== true;
    // Judged before binding: the binder itself would touch what the policy refuses (and its error
    // messages name server paths).
    if (parsedAsSelect) {
      const { tables, database } = await this.readCatalog(conn, call);
      const verdict = judgeParseTree(tree, tables, database);
      if (!verdict.ok) throw new SqlRejected("invalid_argument", verdict.reason!);
    }
    let prepared: DuckDBPreparedStatement;
    try {
      prepared = await call(extracted.prepare(0));
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
    await call(conn.run("BEGIN TRANSACTION READ ONLY"));
    return call(prepared.stream());
  }

  /**
   * A streamed DuckDB result that fails partway (a cast or `error()` on a later row) ends like a
   * complete one, and the node API does not expose the error (no duckdb_result_error): only the
   * transaction, now aborted, tells. Without this check a failed query would pass for its first
   * rows. The failing query is run once more as a count of every column (evaluated, not stored), to
   * learn DuckDB's reason; failure path only, under the same deadline.
   */
  private async checkCompleted(conn: DuckDBConnection, sql: string, call: GuardedQuery["call"], rows: number): Promise<void> {
    try {
      await call(conn.run("SELECT 1"));
      return;
    } catch {
      // The transaction was aborted: the result ended in an error.
    }
    const after = `after ${rows.toLocaleString("en-US")} row${rows === 1 ? "" : "s"} had been read`;
    await call(conn.run("ROLLBACK"));
    await call(conn.run("BEGIN TRANSACTION READ ONLY"));
    try {
      await call(conn.run(`SELECT count(COLUMNS(*)) FROM (\n${sql.replace(/[;\s]+$/, "")}\n) AS coral_failed_query`));
    } catch (err) {
      const why = classify(err);
      if (why instanceof SqlRejected) throw new SqlRejected(why.code, `${why.message} (the query failed ${after})`);
      throw new Error(`${messageOf(err)} (the query failed ${after})`);
    }
    throw new Error(`the query failed ${after}, and DuckDB did not say why; the rows read so far are incomplete`);
  }

  private readCatalog(conn: DuckDBConnection, call: GuardedQuery["call"]): Promise<{ tables: Set<string>; database: string }> {
    this.catalog ??= (async () => {
      const r = await call(
        conn.runAndReadAll(
          "SELECT current_database(), list(table_name) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' AND NOT temporary",
        ),
      );
      const [database, names] = r.getRowsJS()[0] as [string, string[] | null];
      return { database, tables: new Set((names ?? []).map((t) => t.toLowerCase())) };
    })();
    this.catalog.catch(() => (this.catalog = undefined));
    return this.catalog;
  }
}

/**
 * DuckDB's error classes that mean "your SQL is wrong" or "your SQL asked too much"; anything
 * else (an I/O error, a fatal error, a bug) is the colony's fault and is reported as internal.
 */
function classify(err: unknown): Error {
  const message = messageOf(err);
  // DuckDB's messages start with their class, sometimes behind the API call's own prefix.
  if (/^(?:[^:\n]*: )?(Parser|Binder|Catalog|Conversion|Invalid Input|Out of Range|Not implemented|Permission|Dependency|Constraint|Invalid type|Syntax|Type Mismatch) Error:/i.test(message)) {
    return new SqlRejected("invalid_argument", message);
  }
  return limitError(err) ?? (err instanceof Error ? err : new Error(message));
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function concatColumns(pieces: SqlValue[][][], width: number): SqlValue[][] {
  const out = new Array<SqlValue[]>(width);
  for (let c = 0; c < width; c++) out[c] = ([] as SqlValue[]).concat(...pieces.map((p) => p[c]!));
  return out;
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

type Converter = (value: DuckDBValue) => SqlValue;

/**
 * How a column's DuckDB values become SqlValues, chosen once per column; undefined when they
 * already are (booleans, strings, numbers that fit a double), so those columns cost nothing.
 */
function converterFor(type: DuckDBType): Converter | undefined {
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
    case DuckDBTypeId.TINYINT:
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.UTINYINT:
    case DuckDBTypeId.USMALLINT:
    case DuckDBTypeId.UINTEGER:
    case DuckDBTypeId.VARCHAR:
      return undefined;
    case DuckDBTypeId.FLOAT:
    case DuckDBTypeId.DOUBLE:
      // JSON (and google.protobuf.Value's JSON form) has no NaN or Infinity: they travel as the
      // strings DuckDB itself prints.
      return (v) => (v === null || Number.isFinite(v) ? (v as number | null) : Number.isNaN(v) ? "nan" : (v as number) > 0 ? "inf" : "-inf");
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
    case DuckDBTypeId.BIGNUM:
      return (v) => (v === null ? null : integerValue(v as bigint));
    case DuckDBTypeId.DECIMAL:
      // Up to 15 significant digits a double holds the decimal exactly as written; beyond, keep the text.
      return (v) => {
        if (v === null) return null;
        const d = v as DuckDBDecimalValue;
        return d.width <= 15 ? Number(d.toString()) : d.toString();
      };
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_TZ:
      return (v) => (v === null ? null : isFiniteTs(v) ? isoFromUnits((v as unknown as { micros: bigint }).micros, 1000n, 3) : String(v));
    case DuckDBTypeId.TIMESTAMP_MS:
      return (v) => (v === null ? null : isFiniteTs(v) ? isoFromUnits((v as unknown as { millis: bigint }).millis, 1n, 0) : String(v));
    case DuckDBTypeId.TIMESTAMP_S:
      return (v) => (v === null ? null : isFiniteTs(v) ? isoFromUnits((v as unknown as { seconds: bigint }).seconds * 1000n, 1n, 0) : String(v));
    case DuckDBTypeId.TIMESTAMP_NS:
      return (v) => (v === null ? null : isFiniteTs(v) ? isoFromUnits((v as unknown as { nanos: bigint }).nanos, 1_000_000n, 6) : String(v));
    case DuckDBTypeId.LIST:
    case DuckDBTypeId.ARRAY:
    case DuckDBTypeId.STRUCT:
    case DuckDBTypeId.MAP:
    case DuckDBTypeId.UNION:
    case DuckDBTypeId.VARIANT:
      return (v) => (v === null ? null : JSON.stringify(JsonDuckDBValueConverter(v, type, JsonDuckDBValueConverter)));
    default:
      // DATE, TIME, INTERVAL, UUID, ENUM, BLOB, …: DuckDB's own text form is what users expect to see.
      return (v) => (v === null ? null : String(v));
  }
}

function isFiniteTs(value: DuckDBValue): boolean {
  return (value as unknown as { isFinite?: boolean }).isFinite !== false;
}
