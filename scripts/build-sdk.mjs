// The SDK as scripts see it: one self-contained ES module (plain JSON messages to `coral run`,
// no protobuf or Connect runtime, no imports left) plus its type declarations, which `coral run`
// maps to `@coral/sdk`.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export async function buildSdk(root) {
  // Built beside the old one and swapped in with renames, as the CLI is (build.mjs): a `coral run
  // --check` meanwhile must not find the bundle without its declarations.
  const final = `${root}/dist/sdk`;
  const out = `${root}/dist/sdk.building-${process.pid}`;
  rmSync(out, { recursive: true, force: true });
  const { metafile } = await build({
    absWorkingDir: root,
    metafile: true,
    entryPoints: ["sdk/mod.ts"],
    outfile: `${out}/coral-sdk.js`,
    bundle: true,
    platform: "neutral",
    target: "es2022",
    format: "esm",
    minify: true,
    legalComments: "none",
    // Deno picks up these types for editors and `coral run --check`.
    banner: { js: '/// <reference types="./coral-sdk.d.ts" />' },
    logLevel: "warning",
  });
  // The SDK speaks plain JSON to `coral run`, which holds the API's descriptors: a dependency in
  // the bundle (protobuf-es, Connect) would bring back the start-up cost this design removed.
  const dependencies = Object.keys(metafile.inputs).filter((f) => f.includes("node_modules/"));
  if (dependencies.length) throw new Error(`the SDK bundle must not include dependencies: ${dependencies.join(", ")}`);
  execFileSync(
    process.execPath,
    [`${root}/node_modules/typescript/bin/tsc`, "-p", `${root}/sdk/tsconfig.json`, "--outDir", `${out}/types`],
    { stdio: "inherit" },
  );
  // Deno resolves declaration imports literally: point them at the .d.ts files.
  for (const entry of readdirSync(`${out}/types`, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".d.ts")) continue;
    const file = join(entry.parentPath, entry.name);
    writeFileSync(file, readFileSync(file, "utf8").replace(/(from\s+["']\.{1,2}\/[^"']+)\.js(["'])/g, "$1.d.ts$2"));
  }
  writeFileSync(`${out}/coral-sdk.d.ts`, 'export * from "./types/sdk/mod.d.ts";\n');
  const retired = `${root}/dist/sdk.old-${process.pid}`;
  if (existsSync(final)) renameSync(final, retired);
  renameSync(out, final);
  rmSync(retired, { recursive: true, force: true });
  return readFileSync(`${final}/coral-sdk.js`).length;
}
