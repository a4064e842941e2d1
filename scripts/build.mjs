// Builds what users run: the CLI bundle (dist/cli/coral.mjs) and the SDK bundle that
// `coral run` maps to `@coral/sdk` (dist/sdk/). Run by `npm ci` (prepare), `npm run build`
// and the test suite's global setup.
import { build } from "esbuild";
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const root = new URL("..", import.meta.url).pathname;

// Built beside the old bundle and swapped in with renames: a colony or CLI started meanwhile (by a
// test run in another terminal) never finds dist/cli half written.
const staging = `${root}/dist/cli.building-${process.pid}`;
rmSync(staging, { recursive: true, force: true });
// The query API's shape for coral run's broker (cli/run/api-shape.ts), computed from the
// descriptors here and inlined, so that a run loads no protobuf runtime to answer unary calls.
const define = { __CORAL_API_SHAPE__: JSON.stringify(await apiShape()) };
await build({
  define,
  absWorkingDir: root,
  // deno-cache: for this script, to warm Deno's caches for the SDK bundle below.
  // otlp-decode-worker: the thread that decodes large OTLP bodies (colony/ingest/otlp/decoder.ts).
  entryPoints: { coral: "cli/main.ts", "deno-cache": "cli/run/deno-cache.ts", "otlp-decode-worker": "colony/ingest/otlp/decode-worker.ts" },
  outdir: staging,
  outExtension: { ".js": ".mjs" },
  // Commands import their heavy parts (DuckDB, the server) lazily; splitting keeps those in
  // chunks that only `coral colony start` and friends load, so `coral query` starts fast.
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  // Native addon and the Deno binary package must stay on disk where npm put them.
  external: ["@duckdb/node-api", "@duckdb/node-bindings", "deno", "chdb"],
  // CommonJS dependencies bundled into ESM still call require().
  banner: { js: "import { createRequire as __coralRequire } from 'node:module'; const require = __coralRequire(import.meta.url);" },
  sourcemap: "linked",
  logLevel: "warning",
});

// `coral run` on its own, as one CommonJS file (cli/run/entry.ts): bin/coral.cjs starts it through
// V8's code cache (bin/code-cache.cjs), which Node 20 offers for scripts, not for ES modules; and
// one file means no module loader resolving a dozen chunks before Deno can start. What only some
// runs need (streams: Connect and protobuf-es) is in the file but evaluated only when first used.
await build({
  define: { ...define, "import.meta.url": "__coralImportMetaUrl" },
  absWorkingDir: root,
  // run-early: what bin/coral.cjs loads first to start Deno early (cli/run/early-start.ts); small
  // enough that compiling it costs less than reading a code cache for it would.
  entryPoints: { run: "cli/run/entry.ts", "run-early": "cli/run/early-start.ts" },
  outdir: staging,
  outExtension: { ".js": ".cjs" },
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  external: ["@duckdb/node-api", "@duckdb/node-bindings", "deno", "chdb"],
  banner: { js: "const __coralImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  // A third less to read, scan and checksum at every start; names stay, for stack traces.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: "linked",
  logLevel: "warning",
});

const retired = `${root}/dist/cli.old-${process.pid}`;
if (existsSync(`${root}/dist/cli`)) renameSync(`${root}/dist/cli`, retired);
renameSync(staging, `${root}/dist/cli`);
rmSync(retired, { recursive: true, force: true });

if (existsSync(`${root}/sdk/mod.ts`)) {
  const { buildSdk } = await import("./build-sdk.mjs");
  await buildSdk(root);
  // Compiled-code caches for the bundle, copied into each `coral run`'s fresh DENO_DIR
  // (cli/run/deno-cache.ts). Only an optimisation: without them runs are ~30 ms slower.
  const { buildCacheTemplate } = await import(`${root}/dist/cli/deno-cache.mjs`);
  await buildCacheTemplate(`${root}/dist/sdk/coral-sdk.js`).catch((e) =>
    console.warn(`build: no Deno cache for the SDK (coral run starts slower): ${e.message}`),
  );
  await warmRunCodeCache().catch((e) => console.warn(`build: no code cache for coral run (its first run writes one): ${e.message}`));
}

/**
 * V8's code cache for `coral run`'s bundle (bin/code-cache.cjs), written by one real `coral run` of
 * a script that makes a call, so that an install nobody may write to (a global npm install) starts
 * from it too: otherwise the first run after a build writes it, and a read-only install never does.
 * The call goes to a throwaway HTTP server that answers it with an empty message, so the cache holds
 * the code of a successful call (an error answer compiled half as much again, mostly error paths a
 * run rarely takes). The cache is validated as always (it names this bundle's size, mtime, inode).
 */
async function warmRunCodeCache() {
  const { spawn } = await import("node:child_process");
  const { createServer } = await import("node:http");
  const { mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const server = createServer((req, res) => {
    req.resume();
    // An empty answer is a valid one for every unary method (Connect JSON: all fields default).
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const dir = mkdtempSync(`${tmpdir()}/coral-build-warm-up-`);
  try {
    writeFileSync(`${dir}/warm-up.ts`, 'import * as coral from "@coral/sdk";\nawait coral.services.list().catch(() => {});\n');
    const env = { NO_COLOR: "1" };
    for (const k of ["PATH", "HOME", "TMPDIR", "LANG"]) if (process.env[k] !== undefined) env[k] = process.env[k];
    const args = [`${root}/bin/coral.cjs`, "run", "--colony", `127.0.0.1:${server.address().port}`, `${dir}/warm-up.ts`];
    const { code, stderr } = await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, args, { env, stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (c) => (stderr += c));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stderr }));
    });
    if (code !== 0) throw new Error(`the warm-up run failed (exit ${code}): ${stderr.trim()}`);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bundles and evaluates cli/run/api-shape-source.ts: the shape of the API as generated in gen/. */
async function apiShape() {
  const out = await build({
    absWorkingDir: root,
    entryPoints: ["cli/run/api-shape-source.ts"],
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    write: false,
    logLevel: "warning",
  });
  const dir = `${root}/dist/.api-shape-${process.pid}`;
  mkdirSync(dir, { recursive: true });
  try {
    writeFileSync(`${dir}/shape.mjs`, out.outputFiles[0].text);
    return (await import(pathToFileURL(`${dir}/shape.mjs`).href)).apiShape;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
