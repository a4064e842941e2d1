// A warm start for Deno without shared state between runs.
//
// Every run gets a fresh DENO_DIR (see childEnv in sandbox.ts), so that nothing Deno caches while
// one script runs reaches the next (origin storage is shut altogether: closeStorage). It also means cold
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
import { spawn } from "node:child_process";
import type { Socket } from "node:net";
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
 * The warm-up: imports the SDK and makes one call, so that what a call loads lazily in Deno (the
 * Node-compatible process object and its IPC channel, timers) lands in the cache. The builder
 * answers the call with an error.
 */
const WARM_UP = `import * as sdk from "@coral/sdk";
clearTimeout(setTimeout(() => {}, 0));
await sdk.services?.list().catch(() => {}); // a bundle without it (a test's stub) warms its import only
`;

/**
 * Builds the template for `sdkModule` with the Deno at `deno`, replacing any previous one. Run by
 * the build (scripts/build.mjs) after the SDK bundle; the warm-up runs under the same flags and
 * environment as a script.
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
    const flags = runFlags({ importMap, memoryMb, denyRead: [] });
    await new Promise<void>((resolve, reject) => {
      const child = spawn(deno, [...flags, script], {
        env: childEnv({ denoDir, params: {}, channel: true }),
        stdio: ["ignore", "ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
      const channel = child.stdio[3] as Socket;
      channel.on("error", () => {});
      channel.on("data", (c: Buffer) => {
        for (const line of c.toString().split("\n").filter(Boolean)) {
          const { id } = JSON.parse(line) as { id: number };
          channel.write(`${JSON.stringify({ id, error: { code: "unavailable", message: "warm-up" } })}\n`);
        }
      });
      child.on("error", reject);
      child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`warming Deno's cache failed: ${stderr || `exit ${code}`}`))));
    });
    const staged = join(work, "template");
    await seedDenoDir(staged, denoDir);
    await rm(target, { recursive: true, force: true });
    await rename(staged, target);
    return target;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
