// A warm start for Deno without shared state between runs.
//
// Every run gets a fresh DENO_DIR (see childEnv in sandbox.ts): that is what keeps localStorage and
// anything else Deno stores per origin from reaching the next run. A fresh DENO_DIR also means cold
// caches: `deno info` re-parses the SDK bundle to find its imports, and `deno run` compiles the
// bundle and the runtime modules the SDK pulls in lazily (fetch, streams, timers) from source.
// Measured here (Deno 2.9.6): ~25 ms of a one-call script's ~100 ms, and a third of `deno info`.
//
// So the build leaves a template beside the SDK bundle (<sdk dir>/deno-cache/) holding Deno's
// compilation caches only — the V8 code cache and the module analysis caches, SQLite files keyed by
// module URL and source hash — produced by a warm-up script that imports the SDK. Each run copies
// them into its own fresh DENO_DIR; Deno updates the copies, never the template. Only the names in
// CACHE_FILES are copied: no origin storage (location_data/), no emitted or downloaded modules. A
// template that does not match (another Deno, a rebuilt bundle) is simply a cache miss.
import { execFile } from "node:child_process";
import { realpathSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { denoPath } from "./paths.js";
import { childEnv, runFlags } from "./sandbox.js";

/**
 * The files copied from the template into a run's DENO_DIR: Deno's SQLite caches and their
 * write-ahead logs (SQLite rebuilds the -shm index itself).
 */
export const CACHE_FILES = [
  "v8_code_cache_v2",
  "v8_code_cache_v2-wal",
  "dep_analysis_cache_v2",
  "dep_analysis_cache_v2-wal",
  "node_analysis_cache_v2",
  "node_analysis_cache_v2-wal",
] as const;

/** Where the template for an SDK bundle lives: a directory beside it, as trusted as the bundle. */
export function cacheTemplateDir(sdkModule: string): string {
  return join(dirname(realpathSync(sdkModule)), "deno-cache");
}

/**
 * Creates `denoDir` holding copies of the template's cache files. A missing template (or file)
 * leaves the directory empty: the run is only slower.
 */
export async function seedDenoDir(denoDir: string, templateDir: string): Promise<void> {
  await mkdir(denoDir);
  await Promise.all(
    CACHE_FILES.map((name) =>
      copyFile(join(templateDir, name), join(denoDir, name)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "ENOENT") throw e;
      }),
    ),
  );
}

/**
 * The warm-up: imports the SDK and touches what an SDK call loads lazily in Deno (timers, fetch
 * and its streams), so their compiled code lands in the cache. Nothing listens on port 1.
 */
const WARM_UP = `import * as sdk from "@coral/sdk";
void sdk;
clearTimeout(setTimeout(() => {}, 0));
try { await (await fetch("http://127.0.0.1:1/")).arrayBuffer(); } catch { /* nothing listens there */ }
`;

/**
 * Builds the template for `sdkModule` with the Deno at `deno`, replacing any previous one. Run by
 * the build (scripts/build.mjs) after the SDK bundle; the warm-up runs under the same flags as a
 * script (no read, no write, network to a closed port only).
 */
export async function buildCacheTemplate(sdkModule: string, deno = denoPath(), memoryMb = 512): Promise<string> {
  const target = cacheTemplateDir(sdkModule);
  const work = await mkdtemp(join(dirname(target), ".deno-cache-"));
  try {
    const denoDir = join(work, "deno_dir");
    await mkdir(denoDir);
    const importMap = join(work, "import_map.json");
    await writeFile(importMap, JSON.stringify({ imports: { "@coral/sdk": pathToFileURL(realpathSync(sdkModule)).href } }));
    const script = join(work, "warm-up.ts");
    await writeFile(script, WARM_UP);
    const colony = "127.0.0.1:1";
    const flags = runFlags({ importMap, colony, location: "http://warm-up.coral.invalid/", memoryMb, denyRead: [] });
    await new Promise<void>((resolve, reject) =>
      execFile(deno, [...flags, script], { env: childEnv({ denoDir, colony, params: {} }) }, (err, _out, stderr) =>
        err ? reject(new Error(`warming Deno's cache failed: ${stderr || err.message}`)) : resolve(),
      ),
    );
    const staged = join(work, "template");
    await seedDenoDir(staged, denoDir);
    await rm(target, { recursive: true, force: true });
    await rename(staged, target);
    return target;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
