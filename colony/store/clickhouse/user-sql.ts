import type { ClickHouseClient } from "@clickhouse/client";
import { Slots, withDefaults } from "../../admission.js";
import type { UserSql } from "../engine.js";
import { admitWithin, heldWithin, refusals } from "../deadline.js";
import { SQL_DEFAULTS, SQL_WORDS, SqlRejected, type SqlBatch, type SqlColumn, type SqlLimits, type SqlResult, type SqlValue } from "../readonly-sql.js";
import { functionRefusal, relationRefusal, tableFunctionRefusal, type NamePolicy } from "../sql-policy.js";
import { ident } from "./schema.js";
import { queryBounds, settingLiteral } from "./query-bounds.js";

// Users' read-only SQL on ClickHouse, with the guard DuckDB's SqlRunner gives (readonly-sql.ts):
// one SELECT, only the colony's tables, limits on time, memory, rows read and bytes returned, and
// refusals with the same codes and words.
//
// How a query is judged, before it runs:
// 1. `formatQuery(q)` with the text as a bound parameter: ClickHouse parses it as exactly one
//    statement (several are refused) and returns it re-printed, without comments. The text is never
//    sent as SQL before this: chdb runs every statement of a multi-statement text.
// 2. The re-printed statement must be a SELECT (or WITH … SELECT).
// 3. `EXPLAIN AST` of `SELECT * FROM (<it>)` lists every node of the parse tree, one per line.
//    Names are printed raw, so a quoted name holding a newline can add lines of its own: every
//    rule below looks at one line at a time, never at where a line sits in the tree, so an added
//    line can only cause a refusal, never hide a real node. A FORMAT or INTO OUTFILE clause is a
//    syntax error inside the subquery; a SETTINGS clause is a `Set` node, refused.
// 4. The same wrapped statement runs with the limits in its own SETTINGS clause (per query on an
//    HTTP server and on chdb alike: chdb would turn the client's per-query settings into SETs that
//    stay on the session) and LIMIT maxRows + 1, which stops the server as soon as truncation is
//    certain.
//
// On a real server the colony's query user should also be the read-only user of readOnlyUserDdl
// (below): that profile holds when this code has a bug.

export interface ClickHouseSqlLimits extends SqlLimits {
  /** ClickHouse's max_memory_usage for one query (--query-memory). */
  maxMemoryBytes?: number;
  /** ClickHouse's max_rows_to_read: rows a query may scan (tables and generators alike). */
  maxRowsToRead?: number;
}

export const CLICKHOUSE_SQL_DEFAULTS = {
  ...SQL_DEFAULTS,
  maxMemoryBytes: 2 * 2 ** 30,
  maxRowsToRead: 10_000_000_000,
} as const;

/**
 * How much more than the response cap the server may produce (in its own block bytes) before it
 * stops the query: a bound on what reaches the colony at all, while the cap itself is counted on
 * the wire size of the values (as on DuckDB). Block bytes exceed wire bytes by up to ~9× (an empty
 * string: 9 bytes in a block, 2 on the wire), so 16× never stops a result the cap would allow.
 */
const SERVER_BYTES_FACTOR = 16;

/** Table functions that only generate rows (or wrap a subquery, judged like any other). */
const CH_TABLE_FUNCTIONS = new Set(["numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values", "null", "view", "format", "primes"]);

/** Scalar functions that reveal the server's configuration, or read files and other tables by name. */
const CH_DENIED_FUNCTIONS = [
  "file",
  "getsetting",
  "getsettingordefault",
  "getserversetting",
  "getmergetreesetting",
  "getmacro",
  "getclienthttpheader",
  "getserverport",
  "tcpport",
  "filesystemavailable",
  "filesystemcapacity",
  "filesystemunreserved",
  "currentprofiles",
  "enabledprofiles",
  "defaultprofiles",
  "currentroles",
  "enabledroles",
  "defaultroles",
  "hascolumnintable",
  "catboostevaluate",
  "serveruuid",
];

/** Views of the server's catalog that describe the schema and nothing of the server. */
const CH_SYSTEM_VIEWS = [
  "information_schema.tables",
  "information_schema.columns",
  "information_schema.schemata",
  "information_schema.views",
  "system.one",
  "system.numbers",
  "system.numbers_mt",
  "system.zeros",
  "system.zeros_mt",
];

interface Catalog {
  policy: NamePolicy;
  tables: Set<string>;
  /** Table function names the server knows (lower case): a `Function` node of one of these is judged as a table function. */
  tableFunctions: Set<string>;
  /** Databases other than the colony's (lower case): `x IN db.table` names a table there. */
  otherDatabases: Set<string>;
  /** Whether the session is read-only already (a profile): then the query must not set `readonly` itself. */
  readonlyAlready: boolean;
}

type Convert = (v: unknown) => SqlValue;

/**
 * ISO-8601 in UTC as DuckDB's results print it: milliseconds always, and the rest of the type's
 * precision (µs or ns) only when it is not zero.
 */
function isoFromText(text: string, scale: number): SqlValue {
  const m = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:\.(\d+))?/.exec(text);
  if (!m) return text;
  const frac = (m[3] ?? "").padEnd(9, "0");
  const rest = frac.slice(3, scale <= 6 ? 6 : 9);
  return `${m[1]}T${m[2]}.${frac.slice(0, 3)}${/^0*$/.test(rest) ? "" : rest}Z`;
}

/**
 * How a column's JSON values become SqlValues (readonly-sql.ts's wire form): integers beyond a
 * double's and wide decimals as strings, instants as ISO-8601, nested values as JSON text.
 */
export function cellConverter(type: string): Convert | undefined {
  const wrapped = /^(?:Nullable|LowCardinality)\((.*)\)$/.exec(type) ?? /^SimpleAggregateFunction\([^,]+, (.*)\)$/.exec(type);
  if (wrapped) {
    const inner = cellConverter(wrapped[1]!);
    return inner && ((v) => (v === null ? null : inner(v)));
  }
  if (/^U?Int(64|128|256)$/.test(type)) {
    return (v) => {
      const n = Number(v);
      return Number.isSafeInteger(n) ? n : String(v);
    };
  }
  const decimal = /^Decimal(?:\((\d+)|(32|64|128|256))/.exec(type);
  if (decimal) {
    const precision = decimal[1] ? Number(decimal[1]) : { 32: 9, 64: 18, 128: 38, 256: 76 }[decimal[2] as "32"]!;
    return (v) => (precision <= 15 ? Number(v) : String(v));
  }
  const dateTime = /^DateTime(?:64\((\d+))?/.exec(type);
  if (dateTime) {
    const scale = Number(dateTime[1] ?? 0);
    return (v) => isoFromText(v as string, scale);
  }
  if (/^(Array|Tuple|Map|Nested|JSON|Object|Variant|Dynamic)\b/.test(type)) return (v) => JSON.stringify(v);
  return undefined;
}

/** Wire bytes of a cell, as cell-size.ts counts them on DuckDB. */
function cellBytes(v: SqlValue): number {
  if (v === null) return 5;
  if (typeof v === "string") return Buffer.byteLength(v) + 3;
  return 25;
}

export class ClickHouseUserSql implements UserSql {
  private readonly limits: Required<ClickHouseSqlLimits>;
  private readonly slots: Slots;
  private catalog: Promise<Catalog> | undefined;
  /** Queries running now, to stop on stopAll/close. */
  private readonly open = new Set<{ stop(why: SqlRejected): void }>();
  /** chdb: one query at a time (the session runs them one by one anyway), see `serial`. */
  private tail: Promise<void> = Promise.resolve();

  onRunaway: (() => void) | undefined = undefined;
  /** ClickHouse stops its own queries at max_execution_time: none outlives the answer for long. */
  readonly oldestRunawaySince: number | undefined = undefined;
  readonly runaways = 0;

  /**
   * `client` is for user SQL alone: on chdb, a failed query leaves its partial output in the
   * session, where the next query's result would start with it, so `embedded` makes queries take
   * turns and a failed one is followed by a query that drains the session before the next runs.
   */
  constructor(
    private readonly client: ClickHouseClient,
    private readonly database: string,
    limits: ClickHouseSqlLimits = {},
    private readonly o: { embedded?: boolean } = {},
  ) {
    this.limits = withDefaults<Required<ClickHouseSqlLimits>>(CLICKHOUSE_SQL_DEFAULTS, limits);
    this.slots = new Slots(this.limits.maxConcurrent);
  }

  async run(sql: string, signal?: AbortSignal): Promise<SqlResult> {
    const out: SqlResult = { columns: [], rows: [], truncated: false };
    for await (const batch of this.execute(sql, this.limits.maxRows, Infinity, Infinity, "total", signal)) {
      if (batch.columns.length > 0) out.columns = batch.columns;
      for (let r = 0; r < batch.rowCount; r++) out.rows.push(batch.values.map((col) => col[r]!));
      out.truncated ||= batch.truncated;
    }
    return out;
  }

  stream(sql: string, o: { maxRows?: number; batchRows?: number; batchBytes?: number; signal?: AbortSignal } = {}): AsyncGenerator<SqlBatch> {
    const batches = this.execute(sql, o.maxRows ?? this.limits.maxRows, Math.max(1, o.batchRows ?? 8192), Math.max(1, o.batchBytes ?? 1 << 20), "batch", o.signal);
    return heldWithin(batches, this.limits, SQL_WORDS);
  }

  /** Stops every running query; its caller gets `why`. ClickHouse lets go of them itself. */
  async stopAll(why: SqlRejected): Promise<number> {
    for (const q of this.open) q.stop(why);
    return 0;
  }

  async close(): Promise<boolean> {
    await this.stopAll(refusals.cancelled());
    return true;
  }

  private async *execute(sql: string, maxRows: number, batchRows: number, batchBytes: number, byteScope: "total" | "batch", signal?: AbortSignal): AsyncGenerator<SqlBatch> {
    const { timeoutMs, abandonAfterMs, maxBytes } = this.limits;
    const deadline = Date.now() + timeoutMs;
    const release = await this.admit(deadline);
    const turn = this.o.embedded ? await this.takeTurn() : () => {};
    const abort = new AbortController();
    let why: SqlRejected | undefined;
    const stop = (reason: SqlRejected) => {
      why ??= reason;
      abort.abort();
    };
    const entry = { stop };
    this.open.add(entry);
    // ClickHouse stops the query at max_execution_time; this answers the caller shortly after even
    // if it does not (an operator that never checks the clock, a server that does not answer).
    const timer = setTimeout(() => stop(refusals.deadlineExceeded(timeoutMs, SQL_WORDS)), Math.max(0, deadline - Date.now()) + abandonAfterMs);
    const onAbort = () => stop(refusals.cancelled());
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) onAbort();
    let failed = false;
    try {
      const catalog = await this.readCatalog(abort.signal);
      const formatted = await this.judge(sql, catalog, abort.signal);
      const query = guardedStatement(formatted, maxRows, guardSettings(this.limits, (deadline - Date.now()) / 1000, catalog.readonlyAlready));
      const rs = await this.client.query({ query, format: "JSONCompactEachRowWithNamesAndTypes", abort_signal: abort.signal });
      let columns: SqlColumn[] = [];
      let converters: (Convert | undefined)[] = [];
      let header = 0;
      let names: string[] = [];
      let sentColumns = false;
      let pending: SqlValue[][] = [];
      let pendingRows = 0;
      let pendingBytes = 0;
      let totalBytes = 0;
      let rowCount = 0;
      let truncated = false;
      const take = (): SqlBatch => {
        const batch = { columns: sentColumns ? [] : columns, values: pending, rowCount: pendingRows, truncated: false };
        sentColumns = true;
        pending = columns.map(() => []);
        pendingRows = 0;
        pendingBytes = 0;
        return batch;
      };
      const tooLarge = () =>
        new SqlRejected("resource_exhausted", `the result exceeds the ${maxBytes}-byte response limit after ${rowCount} rows; select fewer columns or add a LIMIT`);
      rows: for await (const chunk of rs.stream()) {
        for (const line of chunk) {
          const values = line.json<unknown[]>();
          if (header === 0) {
            names = values as string[];
            header++;
            continue;
          }
          if (header === 1) {
            const types = values as string[];
            columns = names.map((name, i) => ({ name, type: types[i]! }));
            converters = types.map(cellConverter);
            pending = columns.map(() => []);
            header++;
            continue;
          }
          if (rowCount === maxRows) {
            truncated = true;
            break rows;
          }
          const cells = values.map((v, c) => (converters[c] ? converters[c]!(v) : (v as SqlValue)));
          const bytes = cells.reduce((n: number, v) => n + cellBytes(v), 2);
          if (pendingRows === batchRows || (pendingRows > 0 && pendingBytes + bytes > batchBytes)) yield take();
          pendingBytes += bytes;
          totalBytes += bytes;
          if ((byteScope === "total" ? totalBytes : pendingBytes) > maxBytes) throw tooLarge();
          for (let c = 0; c < cells.length; c++) pending[c]!.push(cells[c]!);
          pendingRows++;
          rowCount++;
        }
      }
      if (why) throw why;
      const last = take();
      last.truncated = truncated;
      yield last;
    } catch (err) {
      failed = true;
      if (why) throw why;
      if (err instanceof SqlRejected) throw err;
      throw classify(err, timeoutMs, maxBytes);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      this.open.delete(entry);
      // An abandoned stream (the consumer stopped early) must not leave output behind either.
      if (this.o.embedded && (failed || why)) await this.drain();
      turn();
      release();
    }
  }

  /** A slot to run in, as SqlRunner admits queries (same limits, same refusals). */
  private admit(deadline: number): Promise<() => void> {
    return admitWithin(this.slots, this.limits, SQL_WORDS, deadline);
  }

  private async takeTurn(): Promise<() => void> {
    const previous = this.tail;
    let done!: () => void;
    this.tail = new Promise<void>((resolve) => (done = resolve));
    await previous;
    return done;
  }

  /** Runs a query whose result takes up whatever a failed one left in the chdb session. */
  private async drain(): Promise<void> {
    await this.client.query({ query: "SELECT 1", format: "JSONCompactEachRow" }).then((rs) => rs.text()).catch(() => undefined);
  }

  /** The statement re-printed by ClickHouse, once it is known to be one SELECT naming only what the policy allows. */
  private async judge(sql: string, catalog: Catalog, signal: AbortSignal): Promise<string> {
    let formatted: string;
    try {
      const rs = await this.client.query({ query: "SELECT formatQuery({q:String}) AS f", query_params: { q: sql }, format: "JSONCompactEachRow", abort_signal: signal });
      formatted = ((await rs.json()) as [string][])[0]![0];
    } catch (err) {
      const e = err as { type?: string; message?: string };
      if (/Multi-statements are not allowed/.test(e.message ?? "")) throw new SqlRejected("invalid_argument", "exactly one SQL statement is allowed; got more than one");
      if (/Empty query/i.test(e.message ?? "") || sql.trim() === "") throw new SqlRejected("invalid_argument", "the query is empty; write one SELECT statement");
      throw err;
    }
    const kind = /^\(*\s*([A-Za-z]+)/.exec(formatted)?.[1]?.toUpperCase() ?? "";
    if (kind !== "SELECT" && kind !== "WITH") {
      throw new SqlRejected("invalid_argument", `only SELECT statements are allowed; got ${kind || "a statement of another kind"}`);
    }
    let lines: string[];
    try {
      const rs = await this.client.query({
        query: `SELECT explain FROM (EXPLAIN AST SELECT * FROM (\n${formatted}\n))`,
        format: "JSONCompactEachRow",
        abort_signal: signal,
      });
      lines = ((await rs.json()) as [string][]).map((r) => r[0]);
    } catch (err) {
      // The client names the error type after the message's last parenthesis, here the clause: the code tells.
      if ((err as { code?: string }).code === "62") {
        throw new SqlRejected("invalid_argument", "FORMAT and INTO OUTFILE clauses are not allowed: the colony returns the rows itself");
      }
      throw err;
    }
    const refusal = judgeAstLines(lines, catalog);
    if (refusal) throw new SqlRejected("invalid_argument", refusal);
    return formatted;
  }

  private readCatalog(signal: AbortSignal): Promise<Catalog> {
    this.catalog ??= (async () => {
      // chdb: the session's current database is where unqualified names resolve (a no-op over
      // HTTP, where the client's `database` decides; checked below either way).
      await this.client.command({ query: `USE ${ident(this.database)}` }).catch(() => undefined);
      const rs = await this.client.query({
        query: `SELECT currentDatabase() AS db, toUInt8(getSetting('readonly')) AS ro,
          (SELECT groupArray(name) FROM system.tables WHERE database = {db:String}) AS tables,
          (SELECT groupArray(lower(name)) FROM system.table_functions) AS table_functions,
          (SELECT groupArray(lower(name)) FROM system.functions WHERE name ILIKE 'dict%' OR name ILIKE 'joinGet%') AS dictionaries,
          (SELECT groupArray(lower(name)) FROM system.databases WHERE name != {db:String}) AS databases`,
        query_params: { db: this.database },
        format: "JSONEachRow",
        abort_signal: signal,
      });
      const row = ((await rs.json()) as { db: string; ro: number; tables: string[]; table_functions: string[]; dictionaries: string[]; databases: string[] }[])[0]!;
      if (row.db !== this.database) {
        throw new Error(`user SQL would resolve table names in database ${row.db}, not the colony's ${this.database}: open the query client with database ${this.database}`);
      }
      // The tables users are told about: the internal contribution tables (schema.ts) stay readable by
      // their bare names, but the views of DuckDB's names are what to query.
      const tables = new Set(row.tables.map((t) => t.toLowerCase()).filter((t) => !/_parts$|^coral_/.test(t)));
      const policy: NamePolicy = {
        ownSchemas: new Set(["", this.database.toLowerCase()]),
        bareViewSchemas: new Set([""]),
        tableFunctions: CH_TABLE_FUNCTIONS,
        systemViews: new Set(CH_SYSTEM_VIEWS),
        deniedFunctions: new Set([...CH_DENIED_FUNCTIONS, ...row.dictionaries]),
        describedBy: "information_schema.tables and information_schema.columns describe them",
      };
      return { policy, tables, tableFunctions: new Set(row.table_functions), otherDatabases: new Set(row.databases), readonlyAlready: Number(row.ro) !== 0 };
    })();
    this.catalog.catch(() => (this.catalog = undefined));
    return this.catalog;
  }
}

/**
 * The statement that runs: the judged one as a subquery, cut at maxRows + 1 rows (the server stops
 * as soon as truncation is certain), under `settings`.
 */
export function guardedStatement(formatted: string, maxRows: number, settings: string[]): string {
  return `SELECT * FROM (\n${formatted}\n) LIMIT ${maxRows + 1}\nSETTINGS ${settings.join(", ")}`;
}

/**
 * The limits every user query runs under, in its own SETTINGS clause. On their own — were the
 * checks before them to let something through — they refuse table functions (file, url, s3,
 * remote, executable: ClickHouse allows none in readonly mode), writes and settings changes by
 * statement, and bound time, memory, rows read and result size. They do not keep a query from
 * system tables, getSetting() or a nested SETTINGS clause: the checks do that on chdb, and a
 * server's read-only profile (readOnlyUserDdl: CONST/MAX constraints, SELECT on one database) too.
 * `readonlyAlready`: the session's profile set readonly, which a query may then not set again.
 */
export function guardSettings(l: Required<ClickHouseSqlLimits>, secondsLeft: number, readonlyAlready: boolean): string[] {
  return [
    ...(readonlyAlready ? [] : ["readonly = 1"]),
    ...Object.entries(queryBounds(secondsLeft, l.maxMemoryBytes)).map(([k, v]) => `${k} = ${settingLiteral(v)}`),
    `max_result_bytes = ${Math.floor(l.maxBytes * SERVER_BYTES_FACTOR)}`,
    "result_overflow_mode = 'throw'",
    `max_rows_to_read = ${Math.floor(l.maxRowsToRead)}`,
    "read_overflow_mode = 'throw'",
    // On an HTTP server, a client that goes away (an abort) cancels its query.
    "cancel_http_readonly_queries_on_client_close = 1",
    // Exact integers and decimals (as text when a double cannot hold them), and NaN/Inf as text.
    "output_format_json_quote_64bit_integers = 1",
    "output_format_json_quote_decimals = 1",
    "output_format_json_quote_denormals = 1",
  ];
}

/**
 * Judges the lines of `EXPLAIN AST`, one at a time (see the top of this file): every function
 * call, every table named in a FROM or JOIN, and every qualified name (`x IN db.table` names a
 * table); a SETTINGS clause is refused outright.
 */
export function judgeAstLines(lines: readonly string[], c: Catalog): string | undefined {
  // Unqualified names resolve in the colony's own database (or are the query's CTEs): allowed.
  const bare = new Set<string>();
  for (const line of lines) {
    const t = /^\s*TableIdentifier (.*?)(?: \(alias .*\))?(?: \(children \d+\))?$/.exec(line);
    if (t && !t[1]!.includes(".")) bare.add(t[1]!.toLowerCase());
  }
  for (const line of lines) {
    if (/^\s*Set\b/.test(line)) return "settings cannot be changed by a query (a SETTINGS clause); the colony's limits apply to every query";
    const fn = /^\s*Function (\S+)/.exec(line);
    if (fn) {
      const name = fn[1]!.toLowerCase();
      const refusal = c.tableFunctions.has(name) ? tableFunctionRefusal(name, c.tables, c.policy) : functionRefusal(name, c.policy);
      if (refusal) return refusal;
      continue;
    }
    const table = /^\s*TableIdentifier (.*?)(?: \(alias .*\))?(?: \(children \d+\))?$/.exec(line);
    if (table) {
      const name = table[1]!;
      const dot = name.indexOf(".");
      const r = dot < 0 ? { schema: "", table: name } : { schema: name.slice(0, dot), table: name.slice(dot + 1) };
      const refusal = relationRefusal(r, c.tables, bare, c.policy);
      if (refusal) return refusal;
      continue;
    }
    const id = /^\s*Identifier (\S+)/.exec(line);
    if (id) {
      const parts = id[1]!.split(".");
      if (parts.length > 1 && c.otherDatabases.has(parts[0]!.toLowerCase())) {
        const refusal = relationRefusal({ schema: parts[0]!, table: parts.slice(1).join(".") }, c.tables, bare, c.policy);
        if (refusal) return refusal;
      }
    }
  }
  return undefined;
}

/**
 * ClickHouse error codes (ErrorCodes.cpp) by what they mean here. The client's `type` is parsed
 * from the message's last parenthesis, which a syntax error fills with the user's own text, so the
 * numeric code decides.
 */
const CODES: Record<string, "timeout" | "memory" | "result" | "exhausted" | "parameter" | "cancelled" | "internal"> = {
  159: "timeout", // TIMEOUT_EXCEEDED
  160: "timeout", // TOO_SLOW: the estimated time already exceeds max_execution_time
  241: "memory", // MEMORY_LIMIT_EXCEEDED
  396: "result", // TOO_MANY_ROWS_OR_BYTES (max_result_*)
  158: "exhausted", // TOO_MANY_ROWS (max_rows_to_read)
  307: "exhausted", // TOO_MANY_BYTES
  128: "exhausted", // TOO_LARGE_ARRAY_SIZE
  131: "exhausted", // TOO_LARGE_STRING_SIZE
  456: "parameter", // UNKNOWN_QUERY_PARAMETER
  394: "cancelled", // QUERY_WAS_CANCELLED
  // The colony's or the server's fault, never the user's SQL:
  40: "internal", // CHECKSUM_DOESNT_MATCH
  49: "internal", // LOGICAL_ERROR
  81: "internal", // UNKNOWN_DATABASE (the colony's own)
  173: "internal", // CANNOT_ALLOCATE_MEMORY
  194: "internal", // REQUIRED_PASSWORD
  202: "internal", // TOO_MANY_SIMULTANEOUS_QUERIES
  209: "internal", // SOCKET_TIMEOUT
  210: "internal", // NETWORK_ERROR
  218: "internal", // TABLE_IS_DROPPED
  225: "internal", // NO_ZOOKEEPER
  236: "internal", // ABORTED
  243: "internal", // NOT_ENOUGH_SPACE
  246: "internal", // CORRUPTED_DATA
  279: "internal", // ALL_CONNECTION_TRIES_FAILED
  369: "internal", // ALL_REPLICAS_ARE_STALE
  516: "internal", // AUTHENTICATION_FAILED
  999: "internal", // KEEPER_EXCEPTION
};

/**
 * A ClickHouse error as SqlRunner words DuckDB's: the user's SQL is wrong (invalid_argument), asked
 * too much (resource_exhausted) or too long (deadline_exceeded); anything else is internal.
 */
function classify(err: unknown, timeoutMs: number, maxBytes: number): Error {
  const kind = errorKind(err);
  if (kind === "none") return err instanceof Error ? err : new Error(String(err));
  // The message may quote the statement as we wrapped it ("In scope SELECT * FROM (…) SETTINGS …"): not the user's text.
  const message = String((err as { message?: unknown }).message ?? "").replace(/\s*In scope [\s\S]*$/, "").replace(/[.\s]+$/, "");
  switch (kind) {
    case "timeout":
      return refusals.deadlineExceeded(timeoutMs, SQL_WORDS);
    case "result":
      return new SqlRejected("resource_exhausted", `the result exceeds the ${maxBytes}-byte response limit; select fewer columns or add a LIMIT`);
    case "memory":
      return refusals.outOfMemory(message.split("\n")[0]!);
    case "exhausted":
      return new SqlRejected("resource_exhausted", message.split("\n")[0]!);
    case "parameter":
      return new SqlRejected("invalid_argument", "the query has parameters ({name:Type}); inline the values instead");
    case "cancelled":
      return refusals.cancelled();
    case "internal":
      return new Error(message);
    default:
      return new SqlRejected("invalid_argument", message);
  }
}

/**
 * What a ClickHouse error means here, by its numeric code (CODES); "none" when it carries none (a
 * socket error, a closed client): a server error always does.
 */
export function errorKind(err: unknown): (typeof CODES)[string] | "other" | "none" {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== "string" || !/^\d+$/.test(code)) return "none";
  return CODES[code] ?? "other";
}

/**
 * The read-only user and settings profile for a real ClickHouse server: the server's own guard
 * under the colony's (docs/scale-out.md shows it). Limits are maxima (MAX) the colony's per-query
 * settings may only lower; readonly = 2 lets it send those settings, and nothing else can change.
 * The user may SELECT from the colony's database and nothing else: table functions need grants it
 * lacks (CREATE TEMPORARY TABLE, READ ON FILE/URL/S3/…), so file(), url(), s3(), remote() and the
 * like are refused by the server too. `passwordSha256Hex`: `printf %s "$PASSWORD" | sha256sum`.
 */
export function readOnlyUserDdl(o: {
  database: string;
  user?: string;
  profile?: string;
  cluster?: string;
  passwordSha256Hex: string;
  limits?: ClickHouseSqlLimits;
}): string[] {
  if (!/^[0-9a-f]{64}$/.test(o.passwordSha256Hex)) throw new Error("passwordSha256Hex must be 64 lower-case hex digits (the SHA-256 of the password)");
  const l = withDefaults<Required<ClickHouseSqlLimits>>(CLICKHOUSE_SQL_DEFAULTS, o.limits);
  const user = ident(o.user ?? "coral_query");
  const profile = ident(o.profile ?? "coral_query");
  const onCluster = o.cluster ? ` ON CLUSTER ${ident(o.cluster)}` : "";
  const seconds = Math.ceil(l.timeoutMs / 1000);
  return [
    [
      `CREATE SETTINGS PROFILE IF NOT EXISTS ${profile}${onCluster} SETTINGS`,
      "  readonly = 2 CONST,",
      "  allow_ddl = 0 CONST,",
      "  allow_introspection_functions = 0 CONST,",
      `  max_execution_time = ${seconds} MAX ${seconds},`,
      "  timeout_overflow_mode = 'throw' CONST,",
      `  max_memory_usage = ${l.maxMemoryBytes} MAX ${l.maxMemoryBytes},`,
      `  max_result_bytes = ${l.maxBytes * SERVER_BYTES_FACTOR} MAX ${l.maxBytes * SERVER_BYTES_FACTOR},`,
      "  result_overflow_mode = 'throw' CONST,",
      `  max_rows_to_read = ${l.maxRowsToRead} MAX ${l.maxRowsToRead},`,
      "  read_overflow_mode = 'throw' CONST,",
      "  cancel_http_readonly_queries_on_client_close = 1 CONST,",
      `  max_concurrent_queries_for_user = ${l.maxConcurrent} MAX ${l.maxConcurrent}`,
    ].join("\n"),
    `CREATE USER IF NOT EXISTS ${user}${onCluster} IDENTIFIED WITH sha256_hash BY '${o.passwordSha256Hex}' DEFAULT DATABASE ${ident(o.database)} SETTINGS PROFILE ${profile}`,
    `GRANT${onCluster} SELECT ON ${ident(o.database)}.* TO ${user}`,
  ];
}
