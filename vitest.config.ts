import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", "dist/**", ".tmp/**"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests spawn real colonies and Deno processes; two cores do not gain from more.
    maxWorkers: 2,
    // clipanion's ESM entry imports a directory, which Node's loader refuses; let Vite load it.
    server: { deps: { inline: ["clipanion"] } },
    // CI reads the totals from this file (.ci/run prints "N passed, N failed").
    reporters: process.env.CORAL_TEST_REPORT ? ["default", ["json", { outputFile: process.env.CORAL_TEST_REPORT }]] : ["default"],
  },
});
