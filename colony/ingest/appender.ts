// DuckDB's appender, the fast way raw rows and rollup deltas get into tables: rows laid out in
// data chunks (which can be built outside the writer's serial section), appended, and the
// transaction helper the Writer's lanes run their batches in.
import { DuckDBDataChunk, DuckDBTimestampTZValue, type DuckDBConnection, type DuckDBType, type DuckDBValue } from "@duckdb/node-api";

const CHUNK_ROWS = 2048;

export function tstz(ms: number): DuckDBTimestampTZValue {
  return new DuckDBTimestampTZValue(BigInt(Math.round(ms * 1000)));
}


export function buildChunks<T>(types: DuckDBType[], rows: readonly T[], columns: (part: readonly T[]) => DuckDBValue[][]): DuckDBDataChunk[] {
  const chunks: DuckDBDataChunk[] = [];
  for (let off = 0; off < rows.length; off += CHUNK_ROWS) {
    const part = rows.slice(off, off + CHUNK_ROWS);
    const chunk = DuckDBDataChunk.create(types, part.length);
    chunk.setColumns(columns(part));
    chunks.push(chunk);
  }
  return chunks;
}

export async function appendPrepared(conn: DuckDBConnection, table: string, schema: "main" | "temp", chunks: readonly DuckDBDataChunk[]): Promise<void> {
  if (chunks.length === 0) return;
  const appender = await conn.createAppender(table, schema === "temp" ? "main" : null, schema === "temp" ? "temp" : null);
  try {
    for (const chunk of chunks) appender.appendDataChunk(chunk);
    appender.flushSync();
  } finally {
    appender.closeSync();
  }
}

export function appendChunks<T>(
  conn: DuckDBConnection,
  table: string,
  schema: "main" | "temp",
  types: DuckDBType[],
  rows: readonly T[],
  columns: (part: readonly T[]) => DuckDBValue[][],
): Promise<void> {
  return appendPrepared(conn, table, schema, buildChunks(types, rows, columns));
}


/**
 * Runs `body` (appenders and statements on `conn`) in one transaction; the SQL it returns runs
 * together with the COMMIT. Any failure rolls everything back.
 */
export async function inTransaction(conn: DuckDBConnection, body: () => Promise<string>): Promise<void> {
  await conn.run("BEGIN TRANSACTION");
  try {
    const tail = await body();
    await conn.run(`${tail}\nCOMMIT;`);
  } catch (err) {
    await conn.run("ROLLBACK").catch(() => {});
    throw err;
  }
}

export function tsLiteral(ms: number): string {
  return `make_timestamptz(${Math.round(ms * 1000)})`;
}

