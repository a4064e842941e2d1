// `coral run` starts the script's Deno from the bare command line before the rest of the CLI loads
// (cli/run/early-start.ts). Through the real binary and a real Deno, wrapped so that every Deno
// start is recorded: a plain run uses the early Deno and no other; a command line that fails after
// it started (usage error, refused graph, stop signal) leaves no Deno running and no run directory.
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { denoPath } from "../../cli/run/paths.js";

const bin = fileURLToPath(new URL("../../bin/coral.cjs", import.meta.url));
const root = mkdtempSync(join(tmpdir(), "coral-early-e2e-"));
const tmp = join(root, "tmp");
const starts = join(root, "deno-starts");
const wrapper = join(root, "deno");
// exec keeps the pid: what is recorded is the pid of the Deno that runs.
writeFileSync(wrapper, `#!/bin/sh\necho $$ >> '${starts}'\nexec '${denoPath()}' "$@"\n`);
chmodSync(wrapper, 0o755);

afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeEach(() => {
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  rmSync(starts, { force: true });
});

function script(name: string, source: string): string {
  const path = join(root, name);
  writeFileSync(path, source);
  return path;
}

function startCoral(args: string[]) {
  const child = spawn(process.execPath, [bin, "run", "--colony", "127.0.0.1:9", ...args], {
    env: { PATH: process.env.PATH ?? "", TMPDIR: tmp, NO_COLOR: "1", CORAL_DENO: wrapper },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, exited };
}

/** Pids of the Denos started so far. */
function denoStarts(): number[] {
  try {
    return readFileSync(starts, "utf8").trim().split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function running(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

function runDirs(): string[] {
  return readdirSync(tmp).filter((n) => n.startsWith("coral-run-"));
}

const printPid = "console.log(String(Deno.pid));\n";

describe("coral run's early start", () => {
  it("runs a plain command line's script in the Deno it started first, and starts no other", async () => {
    const r = await startCoral([script("pid.ts", printPid), "--param", "a=1", "--", "x"]).exited;
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(denoStarts()).toEqual([Number(r.stdout.trim())]);
    expect(runDirs()).toEqual([]);
  });

  it("the early Deno writes a piped stdout in full (Node's non-blocking pipe mode is set before the spawn, not after)", async () => {
    const loud = script("loud.ts", 'const line = "x".repeat(1023);\nfor (let i = 0; i < 2048; i++) console.log(line);\nDeno.exit(3);\n');
    const r = await startCoral([loud]).exited;
    expect(r.stderr).toBe("");
    expect(r.stdout.length).toBe(2048 * 1024);
    expect(r.code).toBe(3);
  });

  it("a usage error found after Deno started: exit 2, that Deno gone, no run directory", async () => {
    const r = await startCoral([script("usage.ts", printPid), "--timeout", "soon"]).exited;
    expect(r.stderr).toBe('coral: --timeout: expected a number from 0 to 2147483, got "soon"\n');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    const [deno, ...more] = denoStarts();
    expect(more).toEqual([]);
    expect(deno === undefined || !running(deno)).toBe(true);
    expect(runDirs()).toEqual([]);
  });

  it("a refused module graph: exit 1, nothing of the script ran, that Deno gone", async () => {
    script(".hidden.ts", 'console.log("HIDDEN RAN");\n');
    const r = await startCoral([script("refused.ts", 'import "./.hidden.ts";\nconsole.log("MAIN RAN");\n')]).exited;
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/refused import "\.\/\.hidden\.ts"/);
    expect(r.code).toBe(1);
    expect(denoStarts().filter(running)).toEqual([]);
    expect(runDirs()).toEqual([]);
  });

  for (const [signal, code] of [["SIGTERM", 143], ["SIGHUP", 129], ["SIGINT", 130]] as const) {
    it(`${signal} as soon as Deno has started (the CLI still loading or just done): exit ${code}, nothing left`, async () => {
      const run = startCoral([script("held.ts", 'await new Promise((r) => setTimeout(r, 600_000));\n')]);
      // Bounded by the test timeout.
      while (denoStarts().length === 0) await new Promise((r) => setTimeout(r, 5));
      run.child.kill(signal);
      const r = await run.exited;
      expect({ code: r.code, signal: r.signal }).toEqual({ code, signal: null });
      expect(denoStarts().filter(running)).toEqual([]);
      expect(runDirs()).toEqual([]);
    });
  }
});
