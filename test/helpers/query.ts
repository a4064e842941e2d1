// `coral query` as the e2e suites ask it: JSON answers from a real CLI process against a colony.
import { expect } from "vitest";
import { runCoral, type SpawnedColony } from "./colony.js";

/** `coral query … -o json` against `colony`, parsed; fails the test on any stderr or a non-zero exit. */
export async function queryJson(colony: SpawnedColony, ...args: string[]): Promise<any> {
  const r = await runCoral([...args, "-o", "json"], { env: { CORAL_COLONY_ADDR: colony.addr } });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

/** The rows of `coral query sql TEXT`, as objects keyed by column name. */
export async function sqlRows(colony: SpawnedColony, text: string): Promise<any[]> {
  return (await queryJson(colony, "query", "sql", text)).rows;
}

/** A SQL string literal. */
export const sqlQuote = (s: string) => `'${s.replaceAll("'", "''")}'`;
