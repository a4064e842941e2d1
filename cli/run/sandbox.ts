import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { lstat, opendir, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { isInside } from "./graph.js";

/**
 * The only environment variables a script can read. The colony's address and token are not among
 * them, nor in the process at all: the SDK asks `coral run` over its channel (broker.ts).
 */
export const SCRIPT_ENV = ["CORAL_PARAMS", "CORAL_MODE"] as const;

/**
 * How Deno finds the SDK's channel to `coral run`: the Node IPC convention, which Deno implements
 * without any permission. fd 3 is a socketpair the launcher opens; the script cannot read these
 * variables, and reaches the channel only through `process.send` / `process.on("message")`.
 */
export const CHANNEL_ENV = { NODE_CHANNEL_FD: "3", NODE_CHANNEL_SERIALIZATION_MODE: "json" } as const;

/**
 * The gate: a module `deno run --preload`s before the script. Deno evaluates preloads before it
 * even reads the main module (measured, Deno 2.9.6: the script's files are opened only after the
 * preload's top-level await settles), so Deno can start, set up its Node-compatible process and
 * IPC channel (~60 ms) and evaluate the SDK while `deno info` is still judging the graph; the
 * script's own files are read only after `coral run` has sent GO_MESSAGE on the channel, i.e. after
 * the verdict. A refused script's Deno is killed at the gate. The gate is coral's own file in the
 * run directory, outside the script's reach (not in its graph; dynamic imports need --allow-read),
 * and the script still runs as the main module (`import.meta.main`, `Deno.mainModule`).
 */
export const GATE_MODULE = `import "@coral/sdk";
const p = globalThis.process;
await new Promise((resolve) => {
  const onMessage = (m) => {
    if (m !== null && typeof m === "object" && m.go === true) {
      p.off("message", onMessage);
      resolve();
    }
  };
  p.on("message", onMessage);
});
`;

/** What opens the gate; the first and only message of coral run that carries no id. */
export const GO_MESSAGE = `${JSON.stringify({ go: true })}\n`;

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
  memoryMb: number;
  allowRead?: string;
  denyRead: string[];
  /** Path of the gate module (GATE_MODULE), when the script waits for the graph's verdict. */
  gate?: string;
}

export function runFlags(i: RunFlagsInput): string[] {
  const flags = [
    "run",
    // Without --no-prompt a script could ask the user's terminal for any permission.
    "--no-prompt",
    ...resolutionFlags(i.importMap),
    // No network at all: the SDK's calls go through `coral run` (broker.ts).
    "--deny-net",
    "--deny-write",
    "--deny-run",
    "--deny-ffi",
    "--deny-sys",
    `--allow-env=${SCRIPT_ENV.join(",")}`,
    `--v8-flags=--max-old-space-size=${i.memoryMb}`,
  ];
  if (i.allowRead) flags.push(`--allow-read=${i.allowRead}`);
  if (i.denyRead.length > 0) flags.push(`--deny-read=${i.denyRead.join(",")}`);
  if (i.gate) flags.push(`--preload=${i.gate}`);
  return flags;
}

/**
 * The child's whole environment. Deno starts from a cleared one so that nothing of the user's
 * (cloud credentials, SSH agent, tokens) is even present in the process.
 *
 * - DENO_DIR: a directory of this run only, so that nothing Deno caches in it reaches the next run
 *   (and closeStorage can shut what a script could fill). A fresh one starts with cold compile caches (~40 ms of `deno info` + `deno run` here), so the
 *   launcher seeds it with copies of a build-time template holding only those caches
 *   (deno-cache.ts). With DENO_DIR set, Deno needs no HOME, so HOME is not passed.
 * - DENO_NO_UPDATE_CHECK: the update check would otherwise contact dl.deno.land from our process.
 * - CORAL_PARAMS, CORAL_MODE=cli: what the script may read (SCRIPT_ENV); the mode tells a script it
 *   runs under `coral run` (RFD 076). With `channel`, CHANNEL_ENV for the SDK's channel.
 * - NO_COLOR, TZ, LANG, LC_ALL: presentation only, copied when the user has them; the script
 *   cannot read them (only the CORAL_* names are granted) and they change no permission.
 */
export function childEnv(o: { denoDir: string; params: Record<string, string>; channel?: boolean }): Record<string, string> {
  const env: Record<string, string> = {
    DENO_DIR: o.denoDir,
    DENO_NO_UPDATE_CHECK: "1",
    DENO_NO_PACKAGE_JSON: "1",
    CORAL_PARAMS: JSON.stringify(o.params),
    CORAL_MODE: "cli",
    ...(o.channel ? CHANNEL_ENV : {}),
  };
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
 * The largest file the script's Deno may grow (RLIMIT_FSIZE), in MiB. A script cannot write files,
 * and closeStorage shuts origin storage, but every module it creates at run time
 * (`import("data:…")`, blob: URLs) is added to Deno's compile caches in DENO_DIR: three SQLite
 * files and their write-ahead logs, 680 MB for 2,000 such imports (measured). This caps each of
 * them; the seeded caches hold about 1 MiB. A Deno that reaches it dies of SIGXFSZ.
 */
export const FILE_SIZE_LIMIT_MIB = 32;

/**
 * The command that starts the script's `argv` under the OS limits: the data ceiling, the file-size
 * cap, no core dump (a crashing Deno would otherwise write its whole memory into the current
 * directory), and tied to our life (tiedToParent). prlimit(1) and `ulimit` set the limits and then
 * exec, so the pid we signal on timeout is Deno's own. Other platforms (macOS does not enforce
 * RLIMIT_DATA) run without the OS limits; the V8 heap limit still applies.
 */
export function withLimits(argv: string[], memoryMb: number, prlimit: string | false = firstExisting(["/usr/bin/prlimit", "/bin/prlimit"]) ?? false): string[] {
  if (process.platform !== "linux") return argv;
  const data = dataLimitBytes(memoryMb);
  const fsize = FILE_SIZE_LIMIT_MIB * 1024 * 1024;
  if (prlimit) return tiedToParent([prlimit, `--data=${data}`, `--fsize=${fsize}`, "--core=0", "--", ...argv]);
  // POSIX sh counts -d in KiB and -f in 512-byte blocks; dash takes one limit per `ulimit`.
  const limits = `ulimit -d ${Math.floor(data / 1024)} && ulimit -f ${fsize / 512} && ulimit -c 0`;
  return tiedToParent(["/bin/sh", "-c", `${limits} && exec "$@"`, "coral-run", ...argv]);
}

/**
 * `argv` made to die with us: setpriv(1) sets the parent-death signal to SIGKILL and execs, and the
 * setting survives the further execs into Deno. So a `coral run` that is itself SIGKILLed (and
 * cannot stop Deno) takes Deno with it. setpriv is in util-linux, like prlimit; where it is missing
 * the child runs untied.
 */
export function tiedToParent(argv: string[]): string[] {
  if (process.platform !== "linux") return argv;
  const setpriv = firstExisting(["/usr/bin/setpriv", "/bin/setpriv"]);
  return setpriv ? [setpriv, "--pdeathsig=KILL", "--", ...argv] : argv;
}

function firstExisting(paths: string[]): string | undefined {
  return paths.find((p) => existsSync(p));
}

/**
 * Makes the places where Deno would store what a script puts into the Cache API, localStorage and
 * the emit cache of data:/blob: modules plain empty files. Deno creates directories there on
 * demand; a file in the way makes every such write fail (ENOTDIR), whatever the user's privileges
 * (root included, unlike a read-only mode). `caches.open` then throws and localStorage throws on
 * use; sessionStorage stays in memory. Emits of the script's own files (gen/file/) still work: they
 * are bounded by the module graph.
 */
export function closeStorage(denoDir: string): void {
  mkdirSync(join(denoDir, "gen"), { recursive: true });
  for (const p of ["location_data", "gen/data", "gen/blob"]) writeFileSync(join(denoDir, p), "");
}
