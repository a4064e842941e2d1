// Builds what users run: the CLI bundle (dist/coral.mjs) and the SDK bundle that
// `coral run` maps to `@coral/sdk` (dist/sdk/). Run by `npm ci` (prepare), `npm run build`
// and the test suite's global setup.
import { build } from "esbuild";
import { existsSync } from "node:fs";

const root = new URL("..", import.meta.url).pathname;

await build({
  absWorkingDir: root,
  entryPoints: ["cli/main.ts"],
  outfile: "dist/coral.mjs",
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  // Native addon and the Deno binary package must stay on disk where npm put them.
  external: ["@duckdb/node-api", "deno"],
  // CommonJS dependencies bundled into ESM still call require().
  banner: { js: "import { createRequire as __coralRequire } from 'node:module'; const require = __coralRequire(import.meta.url);" },
  sourcemap: "linked",
  logLevel: "warning",
});

if (existsSync(`${root}/sdk/mod.ts`)) {
  const { buildSdk } = await import("./build-sdk.mjs");
  await buildSdk(root);
}
