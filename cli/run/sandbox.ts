import { existsSync } from "node:fs";
import { lstat, opendir, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { isInside } from "./graph.js";

/** The only environment variables a script can read. */
export const SCRIPT_ENV = ["CORAL_COLONY_ADDR", "CORAL_TOKEN", "CORAL_PARAMS"] as const;

/**
 * Flags shared by `deno info`, `deno check` and `deno run`, so the graph we vet is the graph that
 * runs: no deno.json/package.json discovery (a config could add imports or permissions), no
 * lockfile writes, and no remote, jsr: or npm: resolution at all.
 */
export function resolutionFlags(importMap: string): string[] {
  return ["--no-config", "--no-lock", "--no-remote", "--no-npm", `--import-map=${importMap}`];
}

export interface RunFlagsInput {
  importMap: string;
  colony: string;
  location: string;
  memoryMb: number;
  allowRead?: string;
  denyRead: string[];
}

export function runFlags(i: RunFlagsInput): string[] {
  const flags = [
    "run",
    // Without --no-prompt a script could ask the user's terminal for any permission.
    "--no-prompt",
    ...resolutionFlags(i.importMap),
    `--allow-net=${i.colony}`,
    "--deny-write",
    "--deny-run",
    "--deny-ffi",
    "--deny-sys",
    `--allow-env=${SCRIPT_ENV.join(",")}`,
    `--location=${i.location}`,
    `--v8-flags=--max-old-space-size=${i.memoryMb}`,
  ];
  if (i.allowRead) flags.push(`--allow-read=${i.allowRead}`);
  if (i.denyRead.length > 0) flags.push(`--deny-read=${i.denyRead.join(",")}`);
  return flags;
}

/**
 * The child's whole environment. Deno starts from a cleared one so that nothing of the user's
 * (cloud credentials, SSH agent, tokens) is even present in the process.
 *
 * - DENO_DIR: a directory of this run only. Deno keeps origin storage (localStorage) under
 *   DENO_DIR/location_data, so a shared DENO_DIR would let one run leave data for the next. A
 *   fresh one starts with cold compile caches (~40 ms of `deno info` + `deno run` here), so the
 *   launcher seeds it with copies of a build-time template holding only those caches
 *   (deno-cache.ts). With DENO_DIR set, Deno needs no HOME, so HOME is not passed.
 * - DENO_NO_UPDATE_CHECK: the update check would otherwise contact dl.deno.land from our process.
 * - NO_COLOR, TZ, LANG, LC_ALL: presentation only, copied when the user has them; the script
 *   cannot read them (only the CORAL_* names are granted) and they change no permission.
 */
export function childEnv(o: {
  denoDir: string;
  colony: string;
  token?: string;
  params: Record<string, string>;
}): Record<string, string> {
  const env: Record<string, string> = {
    DENO_DIR: o.denoDir,
    DENO_NO_UPDATE_CHECK: "1",
    DENO_NO_PACKAGE_JSON: "1",
    CORAL_COLONY_ADDR: o.colony,
    CORAL_PARAMS: JSON.stringify(o.params),
  };
  if (o.token !== undefined) env.CORAL_TOKEN = o.token;
  for (const name of ["NO_COLOR", "TZ", "LANG", "LC_ALL"]) {
    const v = process.env[name];
    if (v !== undefined) env[name] = v;
  }
  return env;
}

/** `host:port` with a numeric port; IPv6 hosts in brackets. */
export function parseColony(colony: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(colony);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new SandboxError(`colony address must be HOST:PORT, got "${colony}"`);
  }
  return { host: m[1], port };
}

export class SandboxError extends Error {}

/** Entries we are willing to walk when vetting an --allow-read directory for symlinks. */
const MAX_SCAN_ENTRIES = 100_000;

/**
 * Resolves the --allow-read directory and lists the symlinks inside it that lead outside it.
 *
 * Deno checks read permission on the path as written, not on its target, so `DIR/link -> /etc`
 * would open /etc to a script granted DIR. Each such link is passed to --deny-read, which wins over
 * --allow-read for the link and everything below it (Deno normalises `a/../link` first).
 * Hard links cannot be told from ordinary files and are not covered.
 */
export async function vetReadDir(dir: string): Promise<{ root: string; denyRead: string[] }> {
  let root: string;
  try {
    root = await realpath(dir);
  } catch {
    throw new SandboxError(`--allow-read: no such directory: ${dir}`);
  }
  if (!(await stat(root)).isDirectory()) throw new SandboxError(`--allow-read: not a directory: ${dir}`);
  if (root.includes(",")) throw new SandboxError(`--allow-read: Deno cannot take a path containing ",": ${root}`);

  const denyRead: string[] = [];
  let seen = 0;
  const walk = async (d: string): Promise<void> => {
    const handle = await opendir(d).catch(() => undefined);
    if (!handle) return; // Unreadable for us means unreadable for Deno too.
    for await (const entry of handle) {
      if (++seen > MAX_SCAN_ENTRIES) {
        throw new SandboxError(
          `--allow-read: ${root} has more than ${MAX_SCAN_ENTRIES} entries to vet for symlinks; grant a smaller directory`,
        );
      }
      const path = join(d, entry.name);
      if (entry.isSymbolicLink()) {
        const target = await realpath(path).catch(() => undefined);
        // A dangling link is denied too: its target could be created later.
        if (target === undefined || !isInside(target, root)) {
          if (path.includes(",")) {
            throw new SandboxError(`--allow-read: symlink ${path} leaves ${root} and its name contains ","`);
          }
          denyRead.push(path);
        }
      } else if (entry.isDirectory()) {
        await walk(path);
      }
    }
  };
  if ((await lstat(root)).isDirectory()) await walk(root);
  return { root, denyRead };
}

/**
 * The OS ceiling on the child's data segment (RLIMIT_DATA), in bytes.
 *
 * --max-old-space-size bounds only the V8 heap; ArrayBuffer backing stores are malloc'd outside it.
 * RLIMIT_DATA bounds both. Deno needs address space before the script allocates anything: measured
 * here (Deno 2.9.6, x64) it fails to start below ~552 MiB whatever the heap size, and each Worker
 * needs ~517 MiB more (V8 reserves a code range per isolate). 768 MiB of base leaves room for the
 * runtime's threads and one Worker at the default 512 MB; the script's own allowance comes on top.
 * So ArrayBuffers are stopped at roughly memoryMb plus the part of the base the runtime does not
 * actually use (~250 MiB measured), not at exactly memoryMb.
 */
export function dataLimitBytes(memoryMb: number): number {
  return (RUNTIME_BASE_MIB + memoryMb) * 1024 * 1024;
}

export const RUNTIME_BASE_MIB = 768;

/**
 * The command that starts `argv` under the data ceiling. prlimit(1) and `ulimit -d` both set the
 * limit and then exec, so the pid we signal on timeout is Deno's own. Other platforms (macOS does
 * not enforce RLIMIT_DATA) run without the OS ceiling; the V8 heap limit still applies.
 */
export function withDataLimit(argv: string[], bytes: number): string[] {
  if (process.platform !== "linux") return argv;
  for (const prlimit of ["/usr/bin/prlimit", "/bin/prlimit"]) {
    if (existsSync(prlimit)) return [prlimit, `--data=${bytes}`, "--", ...argv];
  }
  const kib = Math.floor(bytes / 1024);
  return ["/bin/sh", "-c", `ulimit -d ${kib} && exec "$@"`, "coral-run", ...argv];
}
