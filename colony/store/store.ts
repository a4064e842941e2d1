import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { Kysely } from "kysely";
import { DuckDBDialect } from "./dialect.js";
import { upgradeData } from "./migrations.js";
import { migrate, type Database } from "./schema.js";

/** The colony's one DuckDB database file: schema, the shared kysely handle, and raw connections. */
export class Store {
  private closed = false;

  private constructor(
    readonly instance: DuckDBInstance,
    readonly db: Kysely<Database>,
  ) {}

  /**
   * Opens (creating if needed) the database at `path` (":memory:" works too), brings the schema and
   * the data up to date (a file of an older version is rewritten once: migrations.ts), then locks the
   * instance down. From then on no connection — including the ones handed to
   * user SQL — can touch files or the network, attach databases, load extensions or change settings.
   */
  static async open(path: string, o: { memoryLimitBytes?: number; log?: (line: string) => void } = {}): Promise<Store> {
    // DuckDB checkpoints (compresses the WAL into the database file) at the commit that takes the WAL
    // past this size. Appending 1M demo spans in 8k-span commits, final checkpoint included, cost
    // 9.3 µs of CPU per span at the default 16 MB and 5.7 µs at 64 MB (fewer, larger checkpoints).
    // The price is a longer WAL replay after a crash; durability is unchanged (commits are in the WAL).
    //
    // memory_limit bounds what DuckDB's buffer manager hands out (hash tables, sorts, cached blocks):
    // a heavy query then fails with "Out of Memory" (or spills) instead of growing the colony until
    // the kernel kills it. User SQL is the only thing that can grow it much; ingestion needs little.
    const instance = await DuckDBInstance.create(path, {
      checkpoint_threshold: "64MB",
      ...(o.memoryLimitBytes ? { memory_limit: `${Math.floor(o.memoryLimitBytes / 1024)}KiB` } : {}),
    });
    if (path !== ":memory:" && !(await backedByFile(instance))) {
      instance.closeSync();
      throw new InMemoryDatabaseError(path);
    }
    const db = new Kysely<Database>({ dialect: new DuckDBDialect(await instance.connect()) });
    try {
      const { fresh } = await migrate(db);
      await upgradeData(db, fresh, { log: o.log });
      const hardening = await instance.connect();
      try {
        // Order matters: once the configuration is locked, nothing (not even we) can turn access back on.
        await hardening.run("SET autoinstall_known_extensions = false");
        await hardening.run("SET autoload_known_extensions = false");
        await hardening.run("SET enable_external_access = false");
        await hardening.run("SET lock_configuration = true");
      } finally {
        hardening.closeSync();
      }
    } catch (err) {
      await db.destroy();
      instance.closeSync();
      throw err;
    }
    return new Store(instance, db);
  }

  /** A fresh connection of its own (for the SQL runner and the writer's appenders); the caller closes it. */
  connect(): Promise<DuckDBConnection> {
    return this.instance.connect();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.destroy();
    this.instance.closeSync();
  }
}

/**
 * DuckDB opens an empty path, or a data file such as `x.json` or `x.csv`, as an in-memory database
 * (the file becomes a view): a colony there would lose everything it stores when it stops.
 */
export class InMemoryDatabaseError extends Error {
  constructor(readonly path: string) {
    super(`${path === "" ? "an empty path" : path} opens as an in-memory database in DuckDB`);
  }
}

async function backedByFile(instance: DuckDBInstance): Promise<boolean> {
  const conn = await instance.connect();
  try {
    const r = await conn.runAndReadAll("SELECT path FROM duckdb_databases() WHERE database_name = current_database()");
    return r.getRows()[0]?.[0] != null;
  } finally {
    conn.closeSync();
  }
}
