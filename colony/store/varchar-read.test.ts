import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readVarChar } from "./varchar-read.js";

// readVarChar must give exactly what @duckdb/node-api's own per-item reader gives, for every shape
// of string DuckDB hands out: inlined (≤ 12 bytes) and not, NULL, empty, multi-byte, and strings
// that lie back to back in memory (a table) as well as ones that do not (computed per row).
describe("readVarChar", () => {
  let conn: DuckDBConnection;
  beforeAll(async () => {
    conn = await (await DuckDBInstance.create(":memory:")).connect();
    await conn.run(`CREATE TABLE t AS SELECT
      i,
      CASE WHEN i % 7 = 0 THEN NULL
           WHEN i % 11 = 0 THEN ''
           WHEN i % 13 = 0 THEN 'short-' || (i % 100)
           WHEN i % 17 = 0 THEN 'exactly12byt'
           WHEN i % 19 = 0 THEN 'thirteen-byte'
           WHEN i % 23 = 0 THEN 'naïve café ' || i || ' 日本語 🙂'
           ELSE md5(i::VARCHAR) END AS s
      FROM range(10000) r(i)`);
  });
  afterAll(() => conn.closeSync());

  const check = async (sql: string) => {
    const result = await conn.stream(sql);
    let rows = 0;
    for (let chunk = await result.fetchChunk(); chunk && chunk.rowCount > 0; chunk = await result.fetchChunk()) {
      const v = chunk.getColumnVector(0);
      expect(readVarChar(v)).toEqual(v.toArray());
      // Slices, as the stream cuts chunks into batches.
      for (const [from, len] of [
        [0, 1],
        [1, 100],
        [500, Math.max(0, chunk.rowCount - 500)],
      ] as const) {
        if (from + len > chunk.rowCount) continue;
        const part = v.slice(from, len);
        expect(readVarChar(part)).toEqual(part.toArray());
      }
      rows += chunk.rowCount;
    }
    return rows;
  };

  it("strings of a table: inlined, out of line, NULL, empty, multi-byte", async () => {
    expect(await check("SELECT s FROM t")).toBe(10000);
  });

  it("strings computed per row (not adjacent in memory), and all-NULL", async () => {
    expect(await check("SELECT repeat(s, 2) || i FROM t")).toBe(10000);
    expect(await check("SELECT NULL::VARCHAR FROM range(3000)")).toBe(3000);
  });

  it("strings filtered out of order", async () => {
    expect(await check("SELECT s FROM t WHERE i % 3 <> 0 ORDER BY i DESC")).toBeGreaterThan(6000);
  });
});
