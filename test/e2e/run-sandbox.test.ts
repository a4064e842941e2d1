// What a script can touch on this machine, through the real `coral` binary and a real Deno: files
// (only its own modules), the disk (nothing), the processes it leaves (none), the CLI's memory
// (bounded whatever the script prints), and what its parameters and error messages look like.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listFiles } from "../helpers/files.js";
import { runCoral } from "../helpers/colony.js";

const bin = fileURLToPath(new URL("../../bin/coral.cjs", import.meta.url));

let root: string;
/** The scripts' directory; `root` holds it and what is "outside". */
let dir: string;
/** TMPDIR of every `coral run` here, so that its run directories can be found and counted. */
let tmp: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "coral-sandbox-e2e-"));
  dir = join(root, "scripts");
  tmp = join(root, "tmp");
  await mkdir(join(dir, ".git"), { recursive: true });
  await mkdir(join(dir, "sub"), { recursive: true });
  await mkdir(tmp);
  await writeFile(join(dir, ".env"), "API_KEY=SECRET-ENV\n");
  await writeFile(join(dir, ".git", "config"), "[remote] SECRET-GIT\n");
  await writeFile(join(dir, ".git", "hook.ts"), 'export default "SECRET-HOOK";\n');
  await writeFile(join(dir, ".hidden.ts"), 'export default "SECRET-HIDDEN";\n');
  await writeFile(join(dir, "sub", "id_rsa"), "SECRET-KEY\n");
  await writeFile(join(dir, "config"), 'export default "SECRET-CONFIG";\n');
  await writeFile(join(dir, "notes.txt"), "NOTES\n");
  await writeFile(join(dir, "lib.ts"), "export const two = 2;\n");
  await writeFile(join(dir, "data.json"), '{"three": 3}\n');
  await writeFile(join(dir, "worker.ts"), 'postMessage("worker ran"); close();\n');
  await writeFile(join(root, "outside.txt"), "SECRET-OUTSIDE\n");
  await symlink(join(root, "outside.txt"), join(dir, "escape.txt"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function script(name: string, source: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, source);
  return path;
}

function coralRun(args: string[]) {
  return runCoral(["run", ...args], { env: { TMPDIR: tmp } });
}

/** The run directories `coral run` left in `tmp`. */
function runDirs(): string[] {
  return readdirSync(tmp).filter((n) => n.startsWith("coral-run-"));
}

function bytesUnder(path: string): number {
  let total = 0;
  for (const f of listFiles(path)) total += statSync(join(path, f)).size;
  return total;
}

/**
 * `coral run ARGS` as a child we can signal, with a stdin to hold the script at a point of its
 * choosing: the script prints a line and then reads stdin to its end.
 */
function startCoral(args: string[], o: { stdout?: number } = {}) {
  const child = spawn(process.execPath, [bin, "run", ...args], {
    env: { PATH: process.env.PATH ?? "", TMPDIR: tmp, NO_COLOR: "1" },
    stdio: ["pipe", o.stdout ?? "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  const line = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (stdout.includes(text)) resolve();
      };
      child.stdout!.on("data", check);
      void exited.then(() => reject(new Error(`coral run ended before printing "${text}": ${stderr}`)));
      check();
    });
  return { child, exited, line, stdout: () => stdout, stderr: () => stderr };
}

/** The pid of the Deno that `coral run` (pid `cli`) started. */
function denoOf(cli: ChildProcess): number {
  const children = readFileSync(`/proc/${cli.pid}/task/${cli.pid}/children`, "utf8").trim().split(/\s+/);
  expect(children).toHaveLength(1);
  return Number(children[0]);
}

/** Whether `pid` still runs (a zombie waiting for its reaper has already died). */
function running(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

const HOLD = 'for await (const _ of Deno.stdin.readable) { /* held until the test closes stdin */ }\n';

describe("files: a script imports only its own modules", () => {
  const refused: [string, string, RegExp][] = [
    ["a text import of .env", 'import t from "./.env" with { type: "text" };\nconsole.log(t);\n', /refused import "\.\/\.env" from .*: a "text" import reads a file as data; grant its directory with coral run --allow-read DIR/],
    ["a text import of .git/config", 'import t from "./.git/config" with { type: "text" };\nconsole.log(t);\n', /refused import "\.\/\.git\/config".*"text" import/],
    ["a bytes import through sub/../", 'import b from "./sub/../sub/id_rsa" with { type: "bytes" };\nconsole.log(new TextDecoder().decode(b));\n', /refused import "\.\/sub\/\.\.\/sub\/id_rsa".*"bytes" import/],
    ["a text import of a symlink that leads outside", 'import t from "./escape.txt" with { type: "text" };\nconsole.log(t);\n', /refused import "\.\/escape\.txt".*resolves to .*outside\.txt/],
    ["a hidden module", 'import t from "./.hidden.ts";\nconsole.log(t);\n', /refused import "\.\/\.hidden\.ts".*hidden files and directories are not modules/],
    ["a module in a hidden directory", 'import t from "./.git/hook.ts";\nconsole.log(t);\n', /refused import "\.\/\.git\/hook\.ts".*hidden files and directories are not modules/],
    ["a file without a module extension", 'import t from "./config";\nconsole.log(t);\n', /refused import "\.\/config".*only \.ts, .*\.json files are modules/],
    ["a json import of a file that is not .json", 'import t from "./notes.txt" with { type: "json" };\nconsole.log(t);\n', /refused import "\.\/notes\.txt".*files are modules/],
  ];
  for (const [what, source, message] of refused) {
    it(`refuses ${what} before running`, async () => {
      const r = await coralRun([await script("attempt.ts", source)]);
      expect(r.stderr).toMatch(message);
      expect(r.stdout + r.stderr).not.toContain("SECRET");
      expect(r.code).toBe(1);
    });
  }

  it("runs its own .ts and .json modules", async () => {
    const r = await coralRun([
      await script("own.ts", 'import { two } from "./lib.ts";\nimport d from "./data.json" with { type: "json" };\nconsole.log(two + d.three);\n'),
    ]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("5\n");
    expect(r.code).toBe(0);
  });

  it("with --allow-read on its directory, text imports read inside it, and only there", async () => {
    const ok = await coralRun(["--allow-read", dir, await script("notes.ts", 'import t from "./notes.txt" with { type: "text" };\nconsole.log(t.trim());\n')]);
    expect(ok.stderr).toBe("");
    expect(ok.stdout).toBe("NOTES\n");
    const out = await coralRun(["--allow-read", dir, await script("out.ts", 'import t from "./escape.txt" with { type: "text" };\nconsole.log(t);\n')]);
    expect(out.stderr).toMatch(/refused import "\.\/escape\.txt"/);
    expect(out.stdout).not.toContain("SECRET");
    expect(out.code).toBe(1);
  });

  const runtime: [string, string][] = [
    ["a computed dynamic import of .env", 'const p = "./.e" + "nv";\nconsole.log((await import(p, { with: { type: "text" } })).default);\n'],
    ["a computed dynamic import of its own module", 'const p = "./li" + "b.ts";\nconsole.log((await import(p)).two);\n'],
    ["a Worker from a local file", 'const w = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });\nw.onmessage = (e) => console.log(e.data);\n'],
  ];
  for (const [what, source] of runtime) {
    it(`stops ${what} at run time (read permission)`, async () => {
      const r = await coralRun([await script("runtime.ts", source)]);
      expect(r.stderr).toMatch(/Requires read access to ".*", coral run --allow-read DIR grants one directory/);
      expect(r.stdout).not.toMatch(/SECRET|worker ran|^2$/m);
      expect(r.code).not.toBe(0);
    });
  }
});

describe("disk: a script writes nothing", () => {
  it("the Cache API, localStorage and Deno KV store nothing; the run directory stays its seeded size", async () => {
    const s = await script(
      "storage.ts",
      `const big = "x".repeat(1 << 20);
const tried = [];
try { const c = await caches.open("c"); for (let i = 0; i < 64; i++) await c.put("http://a/" + i, new Response(big)); tried.push("caches stored"); } catch { tried.push("caches refused"); }
try { for (let i = 0; i < 8; i++) localStorage.setItem("k" + i, big); tried.push("localStorage stored"); } catch { tried.push("localStorage refused"); }
tried.push(typeof (Deno as unknown as { openKv?: unknown }).openKv === "function" ? "kv available" : "kv absent");
sessionStorage.setItem("s", "kept in memory");
tried.push(sessionStorage.getItem("s"));
console.log(tried.join(", "));
${HOLD}`,
    );
    const run = startCoral([s]);
    await run.line("\n");
    expect(run.stdout()).toBe("caches refused, localStorage refused, kv absent, kept in memory\n");
    const dirs = runDirs();
    expect(dirs).toHaveLength(1);
    // The seeded compile caches are about 1 MiB; 64 MiB of cache entries would be far over.
    expect(bytesUnder(join(tmp, dirs[0]))).toBeLessThan(8 * 1024 * 1024);
    run.child.stdin!.end();
    expect((await run.exited).code).toBe(0);
    expect(runDirs()).toEqual([]);
  });

  it("modules created at run time cannot grow Deno's compile caches past the file-size cap", async () => {
    // Unbounded, this writes about 700 MB into the run's DENO_DIR.
    const s = await script(
      "flood.ts",
      `const pad = "// " + "y".repeat(20000) + "\\n";
for (let i = 0; i < 5000; i++) {
  const fns = Array.from({ length: 200 }, (_, j) => "export function f" + j + "(a: number) { return a + " + (i + j) + "; }").join("\\n");
  await import("data:application/typescript," + encodeURIComponent("const x: number = " + i + ";\\n" + pad + fns));
}
console.log("all 5000 imported");
`,
    );
    const r = await coralRun([s]);
    expect(r.stdout).not.toContain("all 5000 imported");
    expect(r.stderr).toMatch(/script stopped: it made Deno cache more than 32 MiB of compiled code/);
    expect(r.code).toBe(128 + 25);
    expect(runDirs()).toEqual([]);
  });

  it("a stdout redirected to a file is not capped by the file-size limit", async () => {
    const out = join(root, "big.out");
    const fd = openSync(out, "w");
    const s = await script(
      "big.ts",
      'const b = new TextEncoder().encode("z".repeat(1 << 20));\nfor (let i = 0; i < 40; i++) Deno.stdout.writeSync(b);\n',
    );
    const run = startCoral([s], { stdout: fd });
    closeSync(fd);
    run.child.stdin!.end();
    expect((await run.exited).code).toBe(0);
    expect(statSync(out).size).toBe(40 * 1024 * 1024);
  });
});

describe("processes: coral run leaves nothing running and nothing behind", () => {
  const sleeper = () => script("sleeper.ts", 'console.log("ready");\nawait new Promise((r) => setTimeout(r, 600_000));\n');

  for (const [signal, code] of [["SIGTERM", 143], ["SIGHUP", 129], ["SIGINT", 130]] as const) {
    it(`${signal} stops Deno, removes the run directory and exits ${code}`, async () => {
      const run = startCoral([await sleeper()]);
      await run.line("ready");
      const deno = denoOf(run.child);
      run.child.kill(signal);
      expect(await run.exited).toEqual({ code, signal: null });
      expect(running(deno)).toBe(false);
      expect(runDirs()).toEqual([]);
    });
  }

  it("--watch ends on SIGTERM the same way", async () => {
    const run = startCoral(["--watch", await sleeper()]);
    await run.line("ready");
    const deno = denoOf(run.child);
    run.child.kill("SIGTERM");
    expect(await run.exited).toEqual({ code: 143, signal: null });
    expect(running(deno)).toBe(false);
    expect(runDirs()).toEqual([]);
  });

  it("a SIGKILLed coral run takes Deno with it, and the next run removes its directory", async () => {
    const run = startCoral([await sleeper()]);
    await run.line("ready");
    const deno = denoOf(run.child);
    run.child.kill("SIGKILL");
    await run.exited;
    await waitUntil(() => !running(deno));
    expect(runDirs()).toHaveLength(1);
    const next = await coralRun([await script("next.ts", 'console.log("next");\n')]);
    expect(next.stdout).toBe("next\n");
    expect(runDirs()).toEqual([]);
  });
});

describe("stderr: the CLI's memory does not grow with what a script prints", () => {
  /** Peak resident memory (VmHWM, KiB) of a `coral run` whose script wrote `mib` MiB of stderr without a newline. */
  async function peakAfter(mib: number): Promise<number> {
    const s = await script(
      `stderr-${mib}.ts`,
      `const chunk = new TextEncoder().encode("#".repeat(1 << 20));
for (let i = 0; i < ${mib}; i++) Deno.stderr.writeSync(chunk);
console.log("written");
${HOLD}`,
    );
    const run = startCoral([s]);
    await run.line("written");
    const hwm = Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${run.child.pid}/status`, "utf8"))![1]);
    run.child.stdin!.end();
    expect((await run.exited).code).toBe(0);
    expect(run.stderr().length).toBe(mib * 1024 * 1024);
    return hwm;
  }

  it("64 MiB of stderr without a newline costs the CLI no more than 2 MiB do, give or take 32 MiB", async () => {
    const small = await peakAfter(2);
    const large = await peakAfter(64);
    // Holding the text would add 64 MiB at least (128 as UTF-16); quadratic copying far more.
    expect(large - small).toBeLessThan(32 * 1024);
  });
});

describe("Deno's permission hints name what coral run offers", () => {
  it("a denied read points at --allow-read DIR, a denied connection at the SDK", async () => {
    const read = await coralRun([await script("hint-read.ts", 'Deno.readTextFileSync("/etc/hostname");\n')]);
    expect(read.stderr).toContain('Requires read access to "/etc/hostname", coral run --allow-read DIR grants one directory');
    const net = await coralRun([await script("hint-net.ts", 'await fetch("http://127.0.0.1:4242/");\n')]);
    expect(net.stderr).toContain("scripts cannot open connections; use the @coral/sdk functions");
    const sys = await coralRun([await script("hint-sys.ts", "Deno.hostname();\n")]);
    expect(sys.stderr).toContain("sys access is not available to scripts");
    for (const r of [read, net, sys]) {
      expect(r.stderr).not.toMatch(/run again with/);
      expect(r.code).toBe(1);
    }
  });
});

describe("params", () => {
  it("a parameter named like a reader leaves the reader in place and is read through it", async () => {
    const s = await script(
      "params.ts",
      'import * as coral from "@coral/sdk";\nconst p = coral.params;\nconsole.log(typeof p.has, typeof p.string, p.string("has"), p.string("string"), p.number("limit"), Object.keys(p).join(","));\n',
    );
    const r = await coralRun(["--param", "has=1", "--param", "string=x", "--param", "limit=20", s]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("function function 1 x 20 has,string,limit\n");
  });

  it("parameters over the OS limit are a usage error before anything starts", async () => {
    const s = await script("noop.ts", 'console.log("ran");\n');
    const many = Array.from({ length: 200 }, (_, i) => ["--param", `p${i}=${"v".repeat(1000)}`]).flat();
    const r = await coralRun([...many, s]);
    expect(r.stderr).toMatch(/^coral: --param: the parameters take \d+ KiB as JSON, over the 128 KiB the OS allows \(largest: "p\d+", 1\.0 KiB\)/);
    expect(r.stderr).not.toMatch(/E2BIG|internal error/);
    expect(r.stdout).toBe("");
    expect(r.code).toBe(2);
  });
});

/** Waits for a state another process reaches on its own (here: the kernel delivering SIGKILL). */
async function waitUntil(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((r) => setImmediate(r));
}
