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
process.env.UV_THREADPOOL_SIZE = process.env.UV_THREADPOOL_SIZE || "16";

const { existsSync } = require("node:fs");
const { join } = require("node:path");
const { pathToFileURL } = require("node:url");

const bundle = join(__dirname, "../dist/cli/coral.mjs");
if (!existsSync(bundle)) {
  process.stderr.write("coral: dist/cli/coral.mjs is missing — run `npm run build` in the coral checkout\n");
  process.exit(1);
}
import(pathToFileURL(bundle).href);
