#!/usr/bin/env node
// The published entry: the esbuild bundle starts ~10x faster than TypeScript sources.
// `npm ci` builds it through the `prepare` script; `npm run build` rebuilds it.
import { existsSync } from "node:fs";

const bundle = new URL("../dist/cli/coral.mjs", import.meta.url);
if (!existsSync(bundle)) {
  process.stderr.write("coral: dist/cli/coral.mjs is missing — run `npm run build` in the coral checkout\n");
  process.exit(1);
}
await import(bundle.href);
