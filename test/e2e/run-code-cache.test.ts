// `coral run` starts from dist/cli/run.cjs through V8's code cache (bin/code-cache.cjs). The cache
// is an optimisation that must never change what runs: these tests damage it every way a file can
// be damaged and run the real CLI (a copy of the install, so the shared dist/ is left alone) with
// real Deno each time. No colony: the scripts make no call.
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeEach, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const base = mkdtempSync(join(tmpdir(), "coral-code-cache-"));
// World-readable, so that the read-only case can run the install as another user.
chmodSync(base, 0o755);
const install = join(base, "install");
const cliDir = join(install, "dist", "cli");
const bundle = join(cliDir, "run.cjs");
const script = join(base, "hello.ts");
writeFileSync(script, 'console.log("six times seven is " + 6 * 7);\n');

afterAll(() => rmSync(base, { recursive: true, force: true }));

/** A fresh copy of what `coral run` loads: bin/, the run bundles, and links to the SDK and node_modules. */
beforeEach(() => {
  rmSync(install, { recursive: true, force: true });
  mkdirSync(join(install, "bin"), { recursive: true });
  mkdirSync(cliDir, { recursive: true });
  for (const f of ["coral.cjs", "code-cache.cjs"]) copyFileSync(join(root, "bin", f), join(install, "bin", f));
  copyFileSync(join(root, "dist/cli/run.cjs"), bundle);
  copyFileSync(join(root, "dist/cli/run-early.cjs"), join(cliDir, "run-early.cjs"));
  writeFileSync(join(install, "package.json"), JSON.stringify({ name: "coral", private: true, type: "module" }));
  symlinkSync(join(root, "dist/sdk"), join(install, "dist/sdk"));
  symlinkSync(join(root, "node_modules"), join(install, "node_modules"));
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function env(): Record<string, string> {
  const e: Record<string, string> = { NO_COLOR: "1" };
  for (const k of ["PATH", "HOME", "TMPDIR", "LANG"]) if (process.env[k] !== undefined) e[k] = process.env[k]!;
  return e;
}

function coralRun(file = script, prefix: string[] = []): Promise<Result> {
  return new Promise((resolve, reject) => {
    const argv = [...prefix, process.execPath, join(install, "bin/coral.cjs"), "run", file];
    const child = spawn(argv[0]!, argv.slice(1), { env: env(), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function expectHello(r: Result): void {
  expect(r.stderr).toBe("");
  expect(r.stdout).toBe("six times seven is 42\n");
  expect(r.code).toBe(0);
}

/** The cache files beside the bundle, and anything left half-written. */
function cacheFiles(): string[] {
  return readdirSync(cliDir).filter((f) => f !== "run.cjs" && f !== "run-early.cjs");
}

function cacheFile(): string {
  const files = cacheFiles();
  expect(files).toHaveLength(1);
  expect(files[0]).toMatch(/^run\.cjs\.v\d+\.\d+\.\d+-[a-z0-9]+\.v8cache$/);
  return join(cliDir, files[0]!);
}

/** A run that found a usable cache leaves it untouched: same inode (a rewrite renames a new file in). */
async function expectCacheUsed(file: string): Promise<void> {
  const before = statSync(file);
  expectHello(await coralRun());
  const after = statSync(file);
  expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
}

/** A run with the cache damaged by `damage` still runs the script, and leaves a good cache behind. */
async function expectRecovers(damage: (file: string) => void): Promise<void> {
  expectHello(await coralRun());
  const file = cacheFile();
  damage(file);
  const damaged = readFileSync(file);
  expectHello(await coralRun());
  expect(readFileSync(cacheFile()).equals(damaged)).toBe(false);
  await expectCacheUsed(cacheFile());
}

describe("coral run's code cache", () => {
  it("is written by the first run and used by the next", async () => {
    expect(cacheFiles()).toEqual([]);
    expectHello(await coralRun());
    await expectCacheUsed(cacheFile());
  });

  it("recovers from a payload damaged in the middle (V8 alone would abort the process)", async () => {
    await expectRecovers((file) => {
      const data = readFileSync(file);
      for (let i = 0; i < 64; i++) data[(data.length >> 1) + i] ^= 0xff;
      writeFileSync(file, data);
    });
  });

  it("recovers from a truncated cache", async () => {
    await expectRecovers((file) => writeFileSync(file, readFileSync(file).subarray(0, 5000)));
  });

  it("recovers from an empty cache and from garbage", async () => {
    await expectRecovers((file) => writeFileSync(file, ""));
    await expectRecovers((file) => writeFileSync(file, Buffer.alloc(300_000, 0x41)));
  });

  it("recovers from a header line that never ends", async () => {
    await expectRecovers((file) => writeFileSync(file, "coral-code-cache 1".padEnd(100_000, " ")));
  });

  it("ignores a cache made by another Node", async () => {
    await expectRecovers((file) => {
      const data = readFileSync(file);
      const nl = data.indexOf(10);
      const header = data.toString("latin1", 0, nl).replace(process.version, "v20.0.0");
      writeFileSync(file, Buffer.concat([Buffer.from(header, "latin1"), data.subarray(nl)]));
    });
  });

  it("ignores a cache made for another build of the bundle, even one of the same length", async () => {
    await expectRecovers(() => {
      // Same length, other bytes: V8's own check (the source's length) would take the old cache.
      const source = readFileSync(bundle, "utf8");
      expect(source).toContain("//# sourceMappingURL=run.cjs.map");
      writeFileSync(bundle, source.replace("//# sourceMappingURL=run.cjs.map", "//# sourceMappingURL=RUN.CJS.MAP"));
      utimesSync(bundle, new Date(), new Date(Date.now() + 5000));
    });
  });

  it("runs from a read-only install, writing nothing", async () => {
    let prefix: string[] = [];
    if (process.getuid?.() === 0) {
      // root writes anywhere; the install belongs to root and the run is another user's.
      const setpriv = spawnSync("setpriv", ["--version"]);
      if (setpriv.status !== 0) throw new Error("this test needs setpriv(1) when run as root");
      prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    } else {
      chmodSync(cliDir, 0o555);
    }
    try {
      expectHello(await coralRun(script, prefix));
      expectHello(await coralRun(script, prefix));
      expect(cacheFiles()).toEqual([]);
    } finally {
      chmodSync(cliDir, 0o755);
    }
  });

  it("is never torn by concurrent first runs", async () => {
    const results = await Promise.all(Array.from({ length: 6 }, () => coralRun()));
    for (const r of results) expectHello(r);
    // One whole cache, no temp file left behind, and the next run uses it.
    await expectCacheUsed(cacheFile());
  });

  it("delivers all of a script's output and its exit code before exiting", async () => {
    const loud = join(base, "loud.ts");
    writeFileSync(loud, 'const line = "x".repeat(1023) + "\\n";\nfor (let i = 0; i < 2048; i++) console.log(line.slice(0, -1));\nconsole.error("bye");\nDeno.exit(3);\n');
    const r = await coralRun(loud);
    expect(r.code).toBe(3);
    expect(r.stdout.length).toBe(2048 * 1024);
    expect(r.stderr).toBe("bye\n");
  });
});
