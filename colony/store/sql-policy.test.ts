import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqlRejected, SqlRunner } from "./readonly-sql.js";
import { Store } from "./store.js";

let dir: string;
let dbPath: string;
let store: Store;
let runner: SqlRunner;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "coral-policy-"));
  dbPath = join(dir, "coral.duckdb");
  store = await Store.open(dbPath);
  runner = new SqlRunner(store);
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function refusal(sql: string): Promise<SqlRejected> {
  try {
    await runner.run(sql);
  } catch (err) {
    expect(err).toBeInstanceOf(SqlRejected);
    return err as SqlRejected;
  }
  throw new Error(`expected ${sql} to be refused`);
}

describe("what user SQL may name", () => {
  // Each of these worked with file access disabled and the configuration locked: DuckDB exempts
  // the database's own files and lets settings be read.
  const refused: [string, RegExp][] = [
    [`SELECT * FROM read_blob('${"DB"}')`, /table function read_blob\(\)/],
    [`SELECT content FROM read_text('${"DB"}.wal')`, /table function read_text\(\)/],
    [`SELECT * FROM ReAd_BlOb('${"DB"}')`, /table function read_blob\(\)/],
    [`SELECT * FROM (SELECT * FROM (SELECT size FROM read_blob('${"DB"}')))`, /read_blob/],
    [`WITH x AS (SELECT * FROM read_blob('${"DB"}')) SELECT * FROM x`, /read_blob/],
    [`SELECT (SELECT count(*) FROM read_blob('${"DB"}'))`, /read_blob/],
    [`SELECT * FROM range(1) r, LATERAL (SELECT * FROM read_blob('${"DB"}'))`, /read_blob/],
    ["SELECT * FROM checkpoint()", /checkpoint\(\)/],
    ["SELECT * FROM force_checkpoint()", /force_checkpoint\(\)/],
    ["SELECT current_setting('temp_directory')", /current_setting\(\) is not available/],
    ["SELECT upper(CURRENT_SETTING('memory_limit'))", /current_setting/],
    ["SELECT * FROM duckdb_settings()", /duckdb_settings\(\)/],
    ["SELECT path FROM duckdb_databases()", /duckdb_databases\(\)/],
    ["SELECT path FROM duckdb_databases", /table "duckdb_databases" is not available/],
    ["SELECT * FROM pg_settings", /pg_settings/],
    ["SELECT * FROM pg_catalog.pg_settings", /pg_settings/],
    ["SELECT * FROM duckdb_temporary_files()", /duckdb_temporary_files/],
    ["SELECT * FROM duckdb_extensions()", /duckdb_extensions/],
    ["SELECT * FROM pragma_database_size()", /pragma_database_size/],
    ["SELECT * FROM query('SELECT * FROM duckdb_settings()')", /table function query\(\)/],
    ["SELECT * FROM query_table('pg_settings')", /query_table/],
    ["SELECT * FROM system.main.duckdb_settings()", /duckdb_settings/],
    ["SELECT * FROM temp.main.anything", /not a database queries can read|not available/],
    [`SELECT * FROM '${"DB"}'`, /looks like a file/],
    ["SELECT * FROM 'spans.csv'", /looks like a file/],
    // The path is not echoed, whatever its case (the policy compares lowercased names).
    ["SELECT * FROM '/srv/private/colony.duckdb'", /^"colony\.duckdb" looks like a file/],
    ["SELECT * FROM glob('/etc/*')", /glob\(\)/],
    ["SELECT * FROM read_csv('/etc/passwd')", /read_csv\(\)/],
  ];
  for (const [sql, why] of refused) {
    it(`refuses ${sql}`, async () => {
      const e = await refusal(sql.replaceAll("DB", dbPath));
      expect(e.code).toBe("invalid_argument");
      expect(e.message).toMatch(why);
      // The refusal never echoes the server's file paths back.
      expect(e.message).not.toContain(dir);
    });
  }

  const allowed = [
    "SELECT count(*) FROM spans",
    "SELECT count(*) FROM main.spans",
    "WITH recent AS (SELECT * FROM spans) SELECT count(*) FROM recent",
    "WITH a AS (SELECT 1 AS x), b AS (SELECT x FROM a) SELECT * FROM b",
    "SELECT * FROM range(3)",
    "SELECT * FROM generate_series(1, 3)",
    "SELECT unnest([1, 2, 3])",
    "SELECT * FROM unnest([1, 2])",
    "SELECT table_name FROM information_schema.tables",
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'spans'",
    "SELECT table_name FROM duckdb_tables()",
    "SELECT table_name FROM duckdb_tables",
    "SELECT column_name FROM duckdb_columns() WHERE table_name = 'services'",
    "DESCRIBE spans",
    "SELECT s.service_name FROM spans s JOIN trace_summary t USING (trace_id)",
    "SELECT current_database(), version()",
  ];
  for (const sql of allowed) {
    it(`allows ${sql}`, async () => {
      await expect(runner.run(sql)).resolves.toBeDefined();
    });
  }
});
