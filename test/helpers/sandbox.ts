// Harness of the sandbox escape suite (test/hostile/sandbox.test.ts): each attempt is a hostile
// script run through the real `coral run` (bin/coral.cjs in a child process) with bait around it,
// and this module gathers the evidence that it was stopped — not only what the run printed, but
// what it left: files created or grown, its temp directory, processes still alive, and the peak
// memory of the `coral run` process itself. Everything is read from the file system and /proc
// (Linux), while the run goes on and after it ended.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync, type Stats } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const bin = join(root, "bin/coral.cjs");

/** The colony's bearer token: `coral run` holds it; no attempt may ever print it. */
export const TOKEN = `tok-${randomBytes(12).toString("hex")}`;
/** Written into every bait file; no attempt may ever print it either. */
export const BAIT = `BAIT-${randomBytes(8).toString("hex")}`;

/** The files of one attempt's world. `proj` is the script's directory. */
export interface Scene {
  /** Unique per attempt; also the name prefix of anything a script manages to create in /tmp. */
  tag: string;
  dir: string;
  proj: string;
  outside: string;
  home: string;
  /** TMPDIR of the `coral run` process: its run directory is created here and nowhere else. */
  tmp: string;
  script: string;
}

let sceneCount = 0;
/** Where the scenes go; created with the first one (listing the tests must not leave it behind). */
const base = join(tmpdir(), `coral-escape-${process.pid}-${randomBytes(3).toString("hex")}`);
export const sceneBase = base;

/**
 * A fresh world for one attempt: the script beside secrets a careless user keeps next to scripts
 * (.env, .git/config, an SSH key, a plain data file), one harmless module, and outside it a
 * directory of more secrets and a fake home with ~/.ssh/id_rsa. Extra files and symlinks may be
 * added (paths relative to the scene; a value starting with "->" makes a symlink to that target).
 */
export function scene(source: string, extra: Record<string, string> = {}): Scene {
  const tag = `coral-escape-${++sceneCount}-${randomBytes(3).toString("hex")}`;
  const dir = join(base, tag);
  const proj = join(dir, "proj");
  const outside = join(dir, "outside");
  const home = join(dir, "home");
  const tmp = join(dir, "tmp");
  const files: Record<string, string> = {
    "proj/.env": `CORAL_TOKEN=${BAIT}\n`,
    "proj/.git/config": `[remote "origin"]\n\turl = https://${BAIT}@example.com/x.git\n`,
    "proj/id_rsa": `-----BEGIN OPENSSH PRIVATE KEY-----\n${BAIT}\n`,
    "proj/sub/id_rsa": `-----BEGIN OPENSSH PRIVATE KEY-----\n${BAIT}\n`,
    "proj/data.txt": `${BAIT}\n`,
    "proj/inside.ts": 'export default "inside";\n',
    "outside/outside.ts": `export default "${BAIT}";\n`,
    "outside/secret.txt": `${BAIT}\n`,
    "outside/secret.json": JSON.stringify({ secret: BAIT }),
    "outside/secret.d.ts": `export type Secret = "${BAIT}";\nconst leak: number = "${BAIT}";\n`,
    "home/.ssh/id_rsa": `-----BEGIN OPENSSH PRIVATE KEY-----\n${BAIT}\n`,
    ...extra,
  };
  mkdirSync(tmp, { recursive: true });
  for (const [rel, text] of Object.entries(files)) {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    if (text.startsWith("->")) symlinkSync(text.slice(2), p);
    else writeFileSync(p, text);
  }
  const script = join(proj, "main.ts");
  writeFileSync(script, source);
  return { tag, dir, proj, outside, home, tmp, script };
}

/** Calls `visit` with every entry below `dir` (not following symlinks); entries that vanish meanwhile are skipped. */
function walkTree(dir: string, visit: (path: string, st: Stats) => void): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const p = join(dir, name);
    let st: Stats;
    try {
      st = lstatSync(p);
    } catch {
      continue; // removed while we looked
    }
    visit(p, st);
    if (st.isDirectory()) walkTree(p, visit);
  }
}

/** Every entry below `dir` with its type, size and mtime: what a script may not change. */
export function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  walkTree(dir, (p, st) => out.set(p, `${st.isDirectory() ? "d" : st.isSymbolicLink() ? "l" : "f"} ${st.size} ${st.mtimeMs} ${st.mode}`));
  return out;
}

/** The entries that differ between two snapshots, as readable lines. */
export function changes(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [p, v] of after) if (before.get(p) !== v) out.push(`${before.has(p) ? "changed" : "created"} ${p}`);
  for (const p of before.keys()) if (!after.has(p)) out.push(`removed ${p}`);
  return out;
}

/** Total bytes of the regular files below `dir`. */
export function bytesUnder(dir: string): number {
  let total = 0;
  walkTree(dir, (_, st) => {
    if (st.isFile()) total += st.size;
  });
  return total;
}

interface ProcInfo {
  start: string;
  state: string;
}

function procInfo(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may itself contain spaces or parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0]!, start: fields[19]! };
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/)) if (c) out.push(Number(c));
    } catch {
      // the task ended
    }
  }
  return out;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
  } catch {
    return "";
  }
}

function statusKiB(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Live processes (not zombies) whose command line mentions `needle`. */
export function processesMentioning(needle: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const line = cmdline(Number(name));
    if (line.includes(needle) && procInfo(Number(name))?.state !== "Z") out.push(`${name} ${line.slice(0, 160)}`);
  }
  return out;
}

export interface Evidence {
  code: number;
  signal: NodeJS.Signals | null;
  /** Up to KEEP_BYTES of each stream; the byte counts are complete. */
  stdout: string;
  stderr: string;
  stdoutBytes: number;
  stderrBytes: number;
  /** Peak resident memory (VmHWM) of the `coral run` process, in MiB, as last sampled. */
  cliPeakMiB: number;
  /** The most bytes found under the run's TMPDIR at any sample. */
  tmpPeakBytes: number;
  /** Processes started under `coral run` during the run, by pid, with their start times. */
  descendants: Map<number, { start: string; cmd: string }>;
  pid: number;
}

/** What the attempt's streams keep for assertions; floods are counted, not stored. */
const KEEP_BYTES = 256 * 1024;
const SAMPLE_MS = 200;

/** `coral run` processes at once: the machine has two cores, shared with the colony and Deno. */
const MAX_RUNS = 3;
let running = 0;
const waiting: (() => void)[] = [];
async function slot(): Promise<() => void> {
  if (running >= MAX_RUNS) await new Promise<void>((r) => waiting.push(r));
  else running++;
  return () => {
    const next = waiting.shift();
    if (next) next();
    else running--;
  };
}

export interface RunSpec {
  args: string[];
  env?: Record<string, string>;
  /** TMPDIR of `coral run`; measured while it runs. */
  tmp: string;
  cwd?: string;
  input?: string;
  /** Called with each chunk of stdout, and the child, e.g. to signal it once the script is ready. */
  onStdout?: (text: string, child: ChildProcess) => void;
  /** Wrap the command in util-linux `script`, giving it a pseudo-terminal as a user's shell would. */
  pty?: boolean;
}

function quote(s: string): string {
  return `'${s.replace(/'/g, "'\\''")}'`;
}

/**
 * Runs `coral ARGS…` and samples it every SAMPLE_MS until it exits: the process tree below it, its
 * VmHWM and the bytes under its TMPDIR. The environment holds nothing from the developer's shell
 * beyond PATH and LANG; HOME is the scene's fake home.
 */
export async function runTracked(spec: RunSpec): Promise<Evidence> {
  const release = await slot();
  try {
    return await new Promise<Evidence>((resolve, reject) => {
      const env: Record<string, string> = { NO_COLOR: "1", TMPDIR: spec.tmp, PATH: process.env.PATH ?? "/usr/bin:/bin" };
      if (process.env.LANG) env.LANG = process.env.LANG;
      Object.assign(env, spec.env);
      const argv = [process.execPath, bin, ...spec.args];
      const child = spec.pty
        ? spawn("script", ["-qec", argv.map(quote).join(" "), "/dev/null"], { cwd: spec.cwd ?? root, env, stdio: "pipe" })
        : spawn(argv[0]!, argv.slice(1), { cwd: spec.cwd ?? root, env, stdio: "pipe" });
      const ev: Evidence = {
        code: -1,
        signal: null,
        stdout: "",
        stderr: "",
        stdoutBytes: 0,
        stderrBytes: 0,
        cliPeakMiB: 0,
        tmpPeakBytes: 0,
        descendants: new Map(),
        pid: child.pid!,
      };
      // With a pty, `script` runs a shell that runs node: the CLI is the node below it.
      const cliPid = () => {
        if (!spec.pty) return child.pid!;
        for (const [pid, d] of ev.descendants) if (d.cmd.startsWith(process.execPath)) return pid;
        return undefined;
      };
      const sample = () => {
        const stack = [child.pid!];
        while (stack.length) {
          for (const c of childrenOf(stack.pop()!)) {
            const info = procInfo(c);
            if (info && !ev.descendants.has(c)) ev.descendants.set(c, { start: info.start, cmd: cmdline(c) });
            stack.push(c);
          }
        }
        const cli = cliPid();
        const hwm = cli === undefined ? undefined : statusKiB(cli, "VmHWM");
        if (hwm !== undefined) ev.cliPeakMiB = Math.max(ev.cliPeakMiB, hwm / 1024);
        ev.tmpPeakBytes = Math.max(ev.tmpPeakBytes, bytesUnder(spec.tmp));
      };
      const timer = setInterval(sample, SAMPLE_MS);
      child.stdout.on("data", (c: Buffer) => {
        ev.stdoutBytes += c.length;
        if (ev.stdout.length < KEEP_BYTES) ev.stdout += c.toString("utf8");
        spec.onStdout?.(ev.stdout, child);
      });
      child.stderr.on("data", (c: Buffer) => {
        ev.stderrBytes += c.length;
        if (ev.stderr.length < KEEP_BYTES) ev.stderr += c.toString("utf8");
      });
      child.stdin.on("error", () => {});
      child.stdin.end(spec.input ?? "");
      child.on("error", (e) => {
        clearInterval(timer);
        reject(e);
      });
      child.on("exit", () => sample());
      child.on("close", (code, signal) => {
        clearInterval(timer);
        ev.code = code ?? 128;
        ev.signal = signal;
        resolve(ev);
      });
      setImmediate(sample);
    });
  } finally {
    release();
  }
}

/** Processes seen under `coral run` that are still alive (same pid, same start time, not a zombie). */
export function survivors(ev: Evidence, scene?: Scene): string[] {
  const out: string[] = [];
  for (const [pid, d] of ev.descendants) {
    const now = procInfo(pid);
    if (now && now.start === d.start && now.state !== "Z") out.push(`${pid} ${d.cmd.slice(0, 160)}`);
  }
  // A process the sampler never saw still names the scene's script on its command line.
  if (scene) for (const p of processesMentioning(scene.dir)) if (!out.includes(p)) out.push(p);
  return out;
}

/** Waits until no survivor is left or `ms` passed; returns what is left. For deaths that take a moment (pdeathsig). */
export async function survivorsAfter(ev: Evidence, scene: Scene, ms: number): Promise<string[]> {
  const until = Date.now() + ms;
  for (;;) {
    const left = survivors(ev, scene);
    if (left.length === 0 || Date.now() > until) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Entries of /tmp a script could only have made by escaping: they carry the scene's tag. */
export function tmpEntriesOf(tag: string): string[] {
  try {
    return readdirSync("/tmp").filter((n) => n.includes(tag));
  } catch {
    return [];
  }
}

/** The target of a symlink, or undefined. */
export function linkTarget(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}
