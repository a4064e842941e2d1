// The SDK as scripts see it: one self-contained ES module (Connect over fetch, no imports
// left) plus its type declarations, which `coral run` maps to `@coral/sdk`.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export async function buildSdk(root) {
  const out = `${root}/dist/sdk`;
  await build({
    absWorkingDir: root,
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
  rmSync(`${out}/types`, { recursive: true, force: true });
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
  return readFileSync(`${out}/coral-sdk.js`).length;
}
