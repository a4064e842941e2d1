import type { ClickHouseClient } from "@clickhouse/client";
import {
  CompiledQuery,
  DefaultQueryCompiler,
  PostgresAdapter,
  PostgresIntrospector,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
} from "kysely";

/**
 * A kysely dialect for ClickHouse over `@clickhouse/client` that never puts a value into the SQL
 * text: every value becomes a server-side parameter `{pN:Type}`, its type inferred from the JS
 * value, and travels in `query_params`, where the server parses it as that type. (The published
 * kysely ClickHouse dialect inlines values with a naive quote escape.)
 *
 * What travels is chosen so that both transports carry it unchanged: a scalar goes as the text of
 * its type (the HTTP client and chdb each escape a top-level string for the wire, and the server
 * undoes exactly that); an array goes as a JS array, which both format as a literal themselves —
 * with Dates inside it turned into text first, because the two format a Date differently (unix
 * seconds vs. whole seconds without milliseconds).
 */

/** DateTime64's range (ClickHouse docs: [1900-01-01, 2299-12-31 23:59:59.99999999]). */
const MIN_DATETIME64_MS = Date.UTC(1900, 0, 1);
const MAX_DATETIME64_MS = Date.UTC(2300, 0, 1) - 1;
export const DATETIME64 = "DateTime64(6, 'UTC')";

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const INT128_MIN = -(2n ** 127n);
const INT128_MAX = 2n ** 127n - 1n;
const INT256_MIN = -(2n ** 255n);
const INT256_MAX = 2n ** 255n - 1n;

/** A value kysely handed over that cannot become a parameter. Thrown before anything is sent. */
export class ParameterError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = "ParameterError";
  }
}

/** What a parameter is sent as: the text of a scalar, or an array the transport formats. */
export type ParamValue = string | ParamArray;
interface ParamArray extends ReadonlyArray<string | number | bigint | boolean | null | ParamArray> {}

export interface TypedParam {
  type: string;
  value: ParamValue;
}

function describe(v: unknown): string {
  return typeof v === "number" || typeof v === "bigint" ? String(v) : typeof v;
}

/** `YYYY-MM-DD hh:mm:ss.ffffff` in UTC: DateTime64(6, 'UTC')'s text form. */
export function dateTimeText(d: Date): string {
  const ms = d.getTime();
  if (Number.isNaN(ms)) throw new ParameterError("an invalid Date cannot be a query parameter");
  if (ms < MIN_DATETIME64_MS || ms > MAX_DATETIME64_MS) {
    throw new ParameterError(`${d.toISOString()} is outside ClickHouse's DateTime64 range (1900-01-01 to 2299-12-31)`);
  }
  const iso = d.toISOString(); // YYYY-MM-DDTHH:mm:ss.sssZ: years 1900..2299 have four digits
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}000`;
}

function numberParam(v: number): TypedParam {
  if (!Number.isFinite(v)) throw new ParameterError(`${v} cannot be a query parameter (ClickHouse would store it, but no Coral query means it)`);
  if (Number.isSafeInteger(v)) return { type: "Int64", value: String(v === 0 ? 0 : v) };
  // Fractions, and integers beyond 2^53 (already rounded by JS): Float64 holds them as they are.
  return { type: "Float64", value: String(v) };
}

function bigintParam(v: bigint): TypedParam {
  const type =
    v >= INT64_MIN && v <= INT64_MAX ? "Int64" : v >= 0n && v <= UINT64_MAX ? "UInt64" : v >= INT128_MIN && v <= INT128_MAX ? "Int128" : v >= INT256_MIN && v <= INT256_MAX ? "Int256" : undefined;
  if (!type) throw new ParameterError(`${v} does not fit ClickHouse's widest integer (Int256)`);
  return { type, value: v.toString() };
}

/** Element type and transport value of one array element (null: the element is NULL). */
function element(v: unknown): { type: string | null; value: string | number | bigint | boolean | null | ParamArray } {
  if (v === null || v === undefined) return { type: null, value: null };
  if (typeof v === "string") return { type: "String", value: v };
  if (typeof v === "boolean") return { type: "Bool", value: v };
  if (typeof v === "number") {
    const p = numberParam(v);
    // An integer beyond 2^53 goes as its exact digits: chdb refuses such numbers (they may have been rounded).
    return { type: p.type, value: v === 0 ? 0 : Number.isInteger(v) && !Number.isSafeInteger(v) ? BigInt(v) : v };
  }
  if (typeof v === "bigint") return { type: bigintParam(v).type, value: v };
  if (v instanceof Date) return { type: DATETIME64, value: dateTimeText(v) };
  if (Array.isArray(v)) {
    const p = arrayParam(v);
    return { type: p.type, value: p.value as ParamArray };
  }
  throw new ParameterError(`a ${describe(v)} cannot be a query parameter`);
}

/** Integers widen to Float64 beside fractions, and to the widest integer type beside each other. */
function unify(a: string, b: string): string | undefined {
  if (a === b) return a;
  // An empty array (Array(Nothing)) takes the type of its siblings.
  if (a === "Nothing") return b;
  if (b === "Nothing") return a;
  const [arrayA, arrayB] = [/^Array\((.*)\)$/.exec(a), /^Array\((.*)\)$/.exec(b)];
  if (arrayA && arrayB) {
    const inner = unify(arrayA[1]!, arrayB[1]!);
    return inner && `Array(${inner})`;
  }
  const order = ["Int64", "UInt64", "Int128", "Int256"];
  if (order.includes(a) && order.includes(b)) {
    // UInt64 beside a negative Int64 needs Int128.
    if ((a === "UInt64" && b === "Int64") || (a === "Int64" && b === "UInt64")) return "Int128";
    return order[Math.max(order.indexOf(a), order.indexOf(b))];
  }
  if ((a === "Float64" && b === "Int64") || (a === "Int64" && b === "Float64")) return "Float64";
  return undefined;
}

function arrayParam(values: readonly unknown[]): TypedParam {
  const elements = values.map(element);
  let type: string | undefined;
  let nullable = false;
  for (const e of elements) {
    if (e.type === null) {
      nullable = true;
      continue;
    }
    const next: string | undefined = type === undefined ? e.type : unify(type, e.type);
    if (next === undefined) throw new ParameterError(`an array mixing ${type} and ${e.type} cannot be a query parameter`);
    type = next;
  }
  // Float64 elements that are integers print as such ("1"), which Float64 parses; no conversion needed.
  const inner = type === undefined ? "Nothing" : type;
  // Arrays cannot be Nullable in ClickHouse, so an array with NULL beside arrays is refused.
  if (nullable && inner.startsWith("Array(")) throw new ParameterError("an array holding both arrays and NULL cannot be a query parameter");
  return { type: `Array(${nullable ? `Nullable(${inner})` : inner})`, value: elements.map((e) => e.value) };
}

/** The ClickHouse type and transport value of a JS value, or a ParameterError. null/undefined: see the compiler. */
export function toParam(v: unknown): TypedParam {
  if (typeof v === "string") return { type: "String", value: v };
  if (typeof v === "number") return numberParam(v);
  if (typeof v === "bigint") return bigintParam(v);
  if (typeof v === "boolean") return { type: "Bool", value: v ? "true" : "false" };
  if (v instanceof Date) return { type: DATETIME64, value: dateTimeText(v) };
  if (Array.isArray(v)) return arrayParam(v);
  throw new ParameterError(`a ${describe(v)} cannot be a query parameter`);
}

/** A ClickHouse identifier, back-quoted: a backslash escapes the quote and itself. */
export function quoteIdentifier(name: string): string {
  return `\`${name.replace(/[\\`]/g, (c) => `\\${c}`)}\``;
}

export class ClickHouseQueryCompiler extends DefaultQueryCompiler {
  protected override getLeftIdentifierWrapper(): string {
    return "`";
  }
  protected override getRightIdentifierWrapper(): string {
    return "`";
  }
  protected override sanitizeIdentifier(identifier: string): string {
    return identifier.replace(/[\\`]/g, (c) => `\\${c}`);
  }

  protected override appendValue(value: unknown): void {
    // NULL carries no data, and has no type to infer: the keyword says it all.
    if (value === null || value === undefined) {
      this.append("NULL");
      return;
    }
    const p = toParam(value);
    this.addParameter(p.value);
    this.append(`{p${this.numParameters - 1}:${p.type}}`);
  }

  /** `sql.lit` and the like become parameters too: nothing a caller passes is spliced into the text. */
  protected override appendImmediateValue(value: unknown): void {
    this.appendValue(value);
  }
}

/** `query_params` for a compiled query: p0, p1, … as the compiler numbered them. */
export function queryParams(parameters: readonly unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  parameters.forEach((v, i) => (out[`p${i}`] = v));
  return out;
}

/** Time zones of the DateTime types we read are UTC (schema.ts declares every column so). */
function parseDateTime(text: string): Date {
  const m = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z?$/.exec(text);
  if (!m) return new Date(Number.NaN);
  const ms = m[7] ? Number(m[7].slice(0, 3).padEnd(3, "0")) : 0;
  return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), ms));
}

type Convert = (v: unknown) => unknown;

/**
 * How one column's JSON values become what the colony's code expects (as DuckDBDialect does):
 * 64-bit integers, which ClickHouse quotes in JSON, become numbers (every one we store is a count
 * or a duration in ns, far below 2^53); DateTime becomes Date.
 */
export function converterFor(type: string): Convert | undefined {
  // A view over SimpleAggregateFunction columns keeps that type on its results: the values are T's.
  const simple = /^SimpleAggregateFunction\([^,]+, (.*)\)$/.exec(type);
  if (simple) return converterFor(simple[1]!);
  const nullable = /^Nullable\((.*)\)$/.exec(type) ?? /^LowCardinality\((.*)\)$/.exec(type);
  if (nullable) {
    const inner = converterFor(nullable[1]!);
    return inner && ((v) => (v === null ? null : inner(v)));
  }
  const array = /^Array\((.*)\)$/.exec(type);
  if (array) {
    const inner = converterFor(array[1]!);
    return inner && ((v) => (v as unknown[]).map(inner));
  }
  if (/^U?Int(64|128|256)$/.test(type) || /^Decimal/.test(type)) return (v) => (typeof v === "string" ? Number(v) : v);
  if (/^DateTime(64)?\b/.test(type)) return (v) => parseDateTime(v as string);
  return undefined;
}

/** Rows from JSONCompactEachRowWithNamesAndTypes: names, types, then one array per row. */
export function rowsFromCompact(lines: unknown[][]): { names: string[]; types: string[]; rows: Record<string, unknown>[] } {
  const [names = [], types = [], ...data] = lines as string[][];
  const converters = types.map(converterFor);
  const rows = data.map((row) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < names.length; i++) {
      const convert = converters[i];
      out[names[i]!] = convert ? convert(row[i]) : row[i];
    }
    return out;
  });
  return { names, types, rows };
}

const FORMAT = "JSONCompactEachRowWithNamesAndTypes";

class ClickHouseConnection implements DatabaseConnection {
  constructor(private readonly client: ClickHouseClient) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const rs = await this.client.query({ query: query.sql, format: FORMAT, query_params: queryParams(query.parameters) });
    const lines = await rs.json<unknown[]>();
    return { rows: rowsFromCompact(lines).rows as R[] };
  }

  async *streamQuery<R>(query: CompiledQuery, chunkSize = 2048): AsyncIterableIterator<QueryResult<R>> {
    const rs = await this.client.query({ query: query.sql, format: FORMAT, query_params: queryParams(query.parameters) });
    let header: unknown[][] = [];
    let converters: (Convert | undefined)[] = [];
    let pending: Record<string, unknown>[] = [];
    for await (const batch of rs.stream()) {
      for (const row of batch) {
        const values = row.json<unknown[]>();
        if (header.length < 2) {
          header.push(values);
          if (header.length === 2) converters = (header[1] as string[]).map(converterFor);
          continue;
        }
        const names = header[0] as string[];
        const out: Record<string, unknown> = {};
        for (let i = 0; i < names.length; i++) out[names[i]!] = converters[i] ? converters[i]!(values[i]) : values[i];
        pending.push(out);
        if (pending.length >= chunkSize) {
          yield { rows: pending as R[] };
          pending = [];
        }
      }
    }
    if (pending.length > 0) yield { rows: pending as R[] };
  }
}

/** Every query is its own HTTP request (or chdb call): nothing to serialise, no transactions. */
class ClickHouseDriver implements Driver {
  private readonly connection: ClickHouseConnection;
  constructor(client: ClickHouseClient) {
    this.connection = new ClickHouseConnection(client);
  }
  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    return this.connection;
  }
  async releaseConnection(): Promise<void> {}
  async beginTransaction(): Promise<void> {
    throw new Error("ClickHouse has no transactions: the ClickHouse store never asks for one");
  }
  async commitTransaction(): Promise<void> {
    throw new Error("ClickHouse has no transactions");
  }
  async rollbackTransaction(): Promise<void> {
    throw new Error("ClickHouse has no transactions");
  }
  /** The client belongs to whoever made it (connection.ts), which closes it. */
  async destroy(): Promise<void> {}
}

/** kysely's Postgres adapter is the closest generic one; its migration lock is pg-only and unused. */
class ClickHouseAdapter extends PostgresAdapter {
  override get supportsTransactionalDdl(): boolean {
    return false;
  }
  override get supportsReturning(): boolean {
    return false;
  }
  override async acquireMigrationLock(): Promise<void> {}
  override async releaseMigrationLock(): Promise<void> {}
}

export class ClickHouseDialect implements Dialect {
  constructor(private readonly client: ClickHouseClient) {}
  createDriver(): Driver {
    return new ClickHouseDriver(this.client);
  }
  createQueryCompiler(): ClickHouseQueryCompiler {
    return new ClickHouseQueryCompiler();
  }
  createAdapter(): ClickHouseAdapter {
    return new ClickHouseAdapter();
  }
  createIntrospector(db: Kysely<any>): PostgresIntrospector {
    return new PostgresIntrospector(db);
  }
}
