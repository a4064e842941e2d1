// What one colony process can tell about another from /proc (Linux): whether a process holding the
// database is a colony's worker, and whose. Light on purpose: the supervisor imports it too.
import { readFileSync } from "node:fs";

/**
 * The command-line flag that makes `coral colony start` the worker of a supervisor. Hidden from
 * help; it also names the worker in `ps`, and lets a start tell a worker from other processes.
 */
export const WORKER_FLAG = "--supervised-worker";

function cmdline(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return undefined;
  }
}

function parentOf(pid: number): number | undefined {
  try {
    // Fields after the command name, which is in parentheses and may hold spaces: state, ppid, …
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/**
 * Who holds a database whose lock names `pid`: the colony to stop (for a worker, its supervisor —
 * the process the user started), or, when the holder is a worker whose supervisor is gone (killed),
 * `exiting`: such a worker ends by itself within moments, so a start should wait for it.
 */
export function lockHolder(pid: number): { pid: number; exiting: boolean } {
  const args = cmdline(pid);
  // No command line: a process whose memory is gone already, its last threads exiting (its files,
  // and so the lock, go with them).
  if (args?.join("") === "") return { pid, exiting: true };
  if (!args?.includes(WORKER_FLAG)) return { pid, exiting: false };
  const parent = parentOf(pid);
  // A worker being replaced by this process's own supervisor is on its way out too.
  const parentArgs = parent === undefined || parent === process.ppid ? undefined : cmdline(parent);
  const supervised = parentArgs !== undefined && parentArgs.includes("colony") && !parentArgs.includes(WORKER_FLAG);
  return supervised ? { pid: parent!, exiting: false } : { pid, exiting: true };
}

/** Resident memory of a process in bytes (VmRSS), or undefined once it is gone. */
export function residentBytes(pid: number): number | undefined {
  try {
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}
