import {
  DuckDBTimestampTZValue,
  DuckDBTypeId,
  JSDuckDBValueConverter,
  ResultReturnType,
  type DuckDBConnection,
  type DuckDBResultReader,
  type DuckDBType,
  type DuckDBValue,
  type DuckDBValueConverter,
  type JS,
} from "@duckdb/node-api";
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
} from "kysely";

/**
 * Values as the colony's code sees them. Integers arrive as `number` because every BIGINT we store
 * is a duration in ns or a count, both far below 2^53; a `bigint` leaking into handlers would break
 * arithmetic and JSON. TIMESTAMPTZ is already an instant, so it maps to `Date` without any zone math.
 */
export const colonyValueConverter: DuckDBValueConverter<JS> = (value, type, converter) => {
  if (value === null) return null;
  switch (type.typeId) {
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
      return Number(value as bigint);
    default:
      // Passing our converter down keeps nested LIST/STRUCT members consistent with top-level ones.
      return JSDuckDBValueConverter(value, type, converter);
  }
};

/** JS → DuckDB parameter. A `Date` is an instant, so it binds as TIMESTAMPTZ, never a local TIMESTAMP. */
export function toDuckDBParam(value: unknown): DuckDBValue {
  if (value === undefined || value === null) return null;
  if (value instanceof Date) return new DuckDBTimestampTZValue(BigInt(value.getTime()) * 1000n);
  if (typeof value === "number" || typeof value === "string" || typeof value === "boolean" || typeof value === "bigint") {
    return value;
  }
  return JSON.stringify(value);
}

function convertRows(rows: readonly (readonly DuckDBValue[])[], names: string[], types: DuckDBType[]): Record<string, JS>[] {
  return rows.map((row) => {
    const out: Record<string, JS> = {};
    for (let i = 0; i < names.length; i++) out[names[i]!] = colonyValueConverter(row[i]!, types[i]!, colonyValueConverter);
    return out;
  });
}

/** Every DuckDB call of a kysely query goes through it (a deadline's guard: deadline.ts). */
export type CallThrough = <T>(p: Promise<T>) => Promise<T>;

class DuckDBKyselyConnection implements DatabaseConnection {
  constructor(
    private readonly conn: DuckDBConnection,
    private readonly through: CallThrough,
  ) {}

  /**
   * Two trips to DuckDB's threads (prepare, execute; the materialised result is then read without
   * one) where runAndReadAll makes five (extract, prepare, execute, two fetches): on a busy machine
   * each trip waits for a thread to be scheduled, and a small read such as GetPercentile's spent
   * more time in them than in DuckDB. Prepared afresh every time: a kept plan carries the table
   * statistics of its first run, and DuckDB does not re-plan when the data changes (a perfect-hash
   * GROUP BY then fails on a bucket it has not seen, or a compressed column reads wrong values).
   */
  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const params = query.parameters.map(toDuckDBParam);
    // Settles either way, so a refusal of `through` (a deadline) is told apart from DuckDB's.
    const prepared = await this.through(this.conn.prepare(query.sql).then((statement) => ({ statement }), () => undefined));
    // Several statements in one text, or an error: runAndReadAll runs them, or words it as before.
    if (!prepared) return this.read(await this.through(this.conn.runAndReadAll(query.sql, params)));
    const { statement } = prepared;
    let running: Promise<unknown> = Promise.resolve();
    try {
      statement.bind(params);
      const run = statement.run();
      running = run;
      const result = await this.through(run);
      const rows: DuckDBValue[][] = [];
      for (let i = 0; i < result.chunkCount; i++) result.getChunk(i).appendToRows(rows);
      return this.read({
        returnType: result.returnType,
        rowsChanged: result.rowsChanged,
        getRows: () => rows,
        deduplicatedColumnNames: () => result.deduplicatedColumnNames(),
        columnTypes: () => result.columnTypes(),
      });
    } finally {
      // Not while DuckDB may still be executing it (a caller answered at its deadline).
      const destroy = () => statement.destroySync();
      void running.then(destroy, destroy);
    }
  }

  private read<R>(reader: Pick<DuckDBResultReader, "returnType" | "rowsChanged" | "getRows" | "deduplicatedColumnNames" | "columnTypes">): QueryResult<R> {
    if (reader.returnType === ResultReturnType.CHANGED_ROWS) {
      return { rows: [], numAffectedRows: BigInt(reader.rowsChanged) };
    }
    return { rows: convertRows(reader.getRows(), reader.deduplicatedColumnNames(), reader.columnTypes()) as R[] };
  }

  async *streamQuery<R>(query: CompiledQuery, chunkSize = 2048): AsyncIterableIterator<QueryResult<R>> {
    const result = await this.through(this.conn.stream(query.sql, query.parameters.map(toDuckDBParam)));
    const names = result.deduplicatedColumnNames();
    const types = result.columnTypes();
    let pending: Record<string, JS>[] = [];
    for await (const chunk of result) {
      pending.push(...convertRows(chunk.getRows(), names, types));
      if (pending.length >= chunkSize) {
        yield { rows: pending as R[] };
        pending = [];
      }
    }
    if (pending.length > 0) yield { rows: pending as R[] };
  }
}

/**
 * One DuckDB connection shared by every kysely query, serialised by a lock: DuckDB connections are
 * not safe for interleaved transactions, and a transaction must keep the connection to itself.
 */
class DuckDBDriver implements Driver {
  private readonly connection: DuckDBKyselyConnection;
  private tail: Promise<void> = Promise.resolve();
  private release: (() => void) | undefined;

  constructor(
    private readonly raw: DuckDBConnection,
    through: CallThrough,
  ) {
    this.connection = new DuckDBKyselyConnection(raw, through);
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => (release = resolve));
    await previous;
    this.release = release;
    return this.connection;
  }

  async releaseConnection(): Promise<void> {
    const release = this.release;
    this.release = undefined;
    release?.();
  }

  async beginTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw("BEGIN TRANSACTION"));
  }
  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw("COMMIT"));
  }
  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw("ROLLBACK"));
  }

  async destroy(): Promise<void> {
    this.raw.closeSync();
  }
}

/** kysely's Postgres adapter takes pg advisory locks for migrations; DuckDB has none and we do not use the migrator. */
class DuckDBAdapter extends PostgresAdapter {
  override async acquireMigrationLock(): Promise<void> {}
  override async releaseMigrationLock(): Promise<void> {}
}

/** DuckDB speaks PostgreSQL-flavoured SQL with `$n` parameters, so kysely's Postgres compiler fits. */
export class DuckDBDialect implements Dialect {
  constructor(
    private readonly connection: DuckDBConnection,
    private readonly through: CallThrough = (p) => p,
  ) {}
  createDriver(): Driver {
    return new DuckDBDriver(this.connection, this.through);
  }
  createQueryCompiler(): PostgresQueryCompiler {
    return new PostgresQueryCompiler();
  }
  createAdapter(): DuckDBAdapter {
    return new DuckDBAdapter();
  }
  createIntrospector(db: Kysely<any>): PostgresIntrospector {
    return new PostgresIntrospector(db);
  }
}
