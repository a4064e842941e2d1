// The SDK as scripts see it: one self-contained ES module (Connect over fetch, no imports
// left) plus its type declarations, which `coral run` maps to `@coral/sdk`.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";

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
  writeFileSync(`${out}/coral-sdk.d.ts`, 'export * from "./types/sdk/mod.js";\n');
  return readFileSync(`${out}/coral-sdk.js`).length;
}
