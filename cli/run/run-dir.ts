// The temp directory of one `coral run`: named after its owner, so that a later run can remove
// the directory of a run that was SIGKILLed and could not remove its own.
import { mkdtempSync, readlinkSync } from "node:fs";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * "coral-run-<pid namespace>-<pid>-": a pid means something only within its pid namespace, and
 * containers sharing a /tmp can each have a live pid 7. The namespace is the inode in
 * /proc/self/ns/pid ("pid:[4026531836]"); without /proc it is "0" and only pids are compared.
 */
function ownerTag(pid: number): string {
  return `${pidNamespace()}-${pid}`;
}

let cachedNamespace: string | undefined;
function pidNamespace(): string {
  if (cachedNamespace === undefined) {
    try {
      cachedNamespace = /\[(\d+)\]/.exec(readlinkSync("/proc/self/ns/pid"))?.[1] ?? "0";
    } catch {
      cachedNamespace = "0";
    }
  }
  return cachedNamespace;
}

const PREFIX = "coral-run-";
const NAME = /^coral-run-(\d+)-(\d+)-/;

/** Creates this run's directory under `parent` (default: the OS temp dir). */
export function makeRunDir(parent = tmpdir()): Promise<string> {
  return mkdtemp(join(parent, `${PREFIX}${ownerTag(process.pid)}-`));
}

/** makeRunDir for the early start (early-start.ts), which must not yield before Deno is spawned. */
export function makeRunDirSync(parent = tmpdir()): string {
  return mkdtempSync(join(parent, `${PREFIX}${ownerTag(process.pid)}-`));
}

/**
 * Removes run directories under `parent` left by runs whose process no longer exists: same pid
 * namespace, pid gone, directory ours. A pid that was reused keeps its directory until that
 * process is gone too; other users' directories are never touched. Never throws.
 */
export async function sweepStaleRunDirs(parent = tmpdir()): Promise<void> {
  const names = await readdir(parent).catch(() => [] as string[]);
  const ns = pidNamespace();
  await Promise.all(
    names.map(async (name) => {
      const m = NAME.exec(name);
      if (!m || m[1] !== ns || isAlive(Number(m[2]))) return;
      const dir = join(parent, name);
      const st = await stat(dir).catch(() => undefined);
      if (!st?.isDirectory() || (process.getuid && st.uid !== process.getuid())) return;
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    }),
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, it just is not ours to signal.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
