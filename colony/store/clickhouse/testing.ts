// A ClickHouse client on embedded chdb for tests: one session per process and directory (chdb's
// rule), in a fresh temp directory unless given one.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import { openClickHouse } from "./connection.js";

export async function chdbClient(dir = mkdtempSync(join(tmpdir(), "coral-chdb-")), database = "coral"): Promise<{ client: ClickHouseClient; database: string; dir: string }> {
  const { client } = await openClickHouse({ kind: "chdb", path: dir, database });
  return { client, database, dir };
}
