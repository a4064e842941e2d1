#!/usr/bin/env node
// The published entry: the esbuild bundle starts ~10x faster than TypeScript sources.
// `npm ci` builds it through the `prepare` script; `npm run build` rebuilds it.
//
// CommonJS on purpose: libuv sizes its thread pool once, at its first use, from
// UV_THREADPOOL_SIZE — and an ES module entry has already used it (to load itself) when its first
// line runs. Every DuckDB call holds one of those threads while it works, so the colony wants more
// than the default 4: four SQL queries stuck in an operator DuckDB cannot interrupt would otherwise
// leave nothing for ingestion and the other RPCs.
"use strict";
const argv = process.argv.slice(2);
// `coral run` uses no DuckDB, and each pool thread is one more to start and to join at exit.
if (argv[0] !== "run") process.env.UV_THREADPOOL_SIZE = process.env.UV_THREADPOOL_SIZE || "16";

const { existsSync } = require("node:fs");
const { join } = require("node:path");

const dist = join(__dirname, "../dist/cli");

// `coral run` has a bundle of its own, loaded through V8's code cache (scripts/build.mjs says why).
if (argv[0] === "run" && existsSync(join(dist, "run.cjs"))) {
  // Deno starts first and waits at its gate while the rest of `coral run` loads (cli/run/early-start.ts).
  const early = existsSync(join(dist, "run-early.cjs")) ? require(join(dist, "run-early.cjs")).startEarly(argv) : undefined;
  const { loadCached } = require("./code-cache.cjs");
  const run = loadCached(join(dist, "run.cjs"));
  run.exports.main(argv, early).then((code) => {
    run.done();
    // The run is over and its directory removed; Node's own teardown would only add time. Output
    // still queued (pipes are asynchronous on some platforms) is written before a natural exit.
    if (process.stdout.writableLength === 0 && process.stderr.writableLength === 0) process.exit(code);
    process.exitCode = code;
  });
} else {
  const bundle = join(dist, "coral.mjs");
  if (!existsSync(bundle)) {
    process.stderr.write("coral: dist/cli/coral.mjs is missing — run `npm run build` in the coral checkout\n");
    process.exit(1);
  }
  import(require("node:url").pathToFileURL(bundle).href);
}
