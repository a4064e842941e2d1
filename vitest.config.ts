import { defineConfig } from "vitest/config";

/**
 * The suites that run again with the colony on ClickHouse (embedded chdb, CORAL_STORE=clickhouse,
 * see test/helpers/colony.ts): the four #13 names — queries, the SDK, the RFD's scripts, OTLP
 * ingestion. The drill-down suites (trace, explain, group-by, exemplars) run on DuckDB only: they
 * cost ~6 min of CI on chdb and test/e2e/dual-engine.test.ts already compares those answers between
 * the engines byte for byte (they passed on ClickHouse too, in the fresh-clone run of 9cbad14;
 * add them here to run them again).
 */
const CLICKHOUSE_SUITES = [
  "test/e2e/query-cli.test.ts",
  "test/e2e/sdk.test.ts",
  "test/e2e/run-examples.test.ts",
  "test/e2e/otlp.test.ts",
];

const common = {
  exclude: ["node_modules/**", "dist/**", ".tmp/**"],
  testTimeout: 60_000,
  hookTimeout: 120_000,
  // Prints the logs of the colonies a failing test talked to (test/helpers/colony.ts spawnColony).
  setupFiles: ["test/setup/colony-logs.ts"],
  // Tests spawn real colonies and Deno processes; two cores do not gain from more. Both projects
  // say the same, so they share the two workers.
  maxWorkers: 2,
  // clipanion's ESM entry imports a directory, which Node's loader refuses; let Vite load it.
  server: { deps: { inline: ["clipanion"] } },
};

export default defineConfig({
  test: {
    // The root's global setup runs once for every project (it builds dist/).
    globalSetup: ["test/global-setup.ts"],
    maxWorkers: 2,
    projects: [
      { test: { ...common, name: "default", include: ["**/*.test.ts"] } },
      // `npm test` (CI) sets CORAL_TEST_CLICKHOUSE; a targeted `npx vitest run FILE` stays on DuckDB
      // unless it is set (then `--project clickhouse` runs that engine alone).
      ...(process.env.CORAL_TEST_CLICKHOUSE
        ? [
            {
              test: {
                ...common,
                name: "clickhouse",
                include: CLICKHOUSE_SUITES,
                env: { CORAL_STORE: "clickhouse" },
                // Ingest into embedded chdb (demo seeding, OTLP batches) is several times slower than
                // into DuckDB today (docs/scale-out.md); the tests assert answers, not speed.
                testTimeout: 180_000,
                hookTimeout: 300_000,
              },
            },
          ]
        : []),
    ],
    // CI reads the totals from this file (.ci/run prints "N passed, N failed").
    reporters: process.env.CORAL_TEST_REPORT ? ["default", ["json", { outputFile: process.env.CORAL_TEST_REPORT }]] : ["default"],
  },
});
