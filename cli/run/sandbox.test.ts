// Every test here is an escape attempt run in a real Deno; each asserts that it was stopped.
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCacheTemplate, CACHE_FILES } from "./deno-cache.js";
import { dataLimitBytes, FILE_SIZE_LIMIT_MIB, RUNTIME_BASE_MIB, withLimits } from "./sandbox.js";
import { httpServer, makeSandbox, run, runSource, type Sandbox } from "./testing.js";

const DENIED = /NotCapable|PermissionDenied|Requires \w+ access/;

let sb: Sandbox;
let colony: Awaited<ReturnType<typeof httpServer>>;
let elsewhere: Awaited<ReturnType<typeof httpServer>>;

beforeAll(async () => {
  sb = await makeSandbox();
  colony = await httpServer("colony");
  elsewhere = await httpServer("elsewhere");
  await sb.file("outside.ts", 'export default "outside";\n');
  await sb.file("outside.txt", "SECRET-TEXT\n");
  await sb.file("outside.json", '{"secret": "SECRET-JSON"}\n');
});
afterAll(async () => {
  await colony?.close();
  await elsewhere?.close();
  await sb?.cleanup();
});

/** Runs `source` granted the colony, and asserts it failed on a permission. */
async function expectDenied(source: string, name?: string) {
  const r = await runSource(sb, source, { colony: `127.0.0.1:${colony.port}` }, name);
  expect(r.stderr + r.stdout).toMatch(DENIED);
  expect(r.code).not.toBe(0);
  return r;
}

describe("file system", () => {
  it("cannot read /etc/passwd", async () => {
    const r = await expectDenied('console.log(Deno.readTextFileSync("/etc/passwd"));\n');
    expect(r.stdout).not.toContain("root:");
  });

  it("cannot read /proc/self/environ", async () => {
    await expectDenied('console.log(Deno.readTextFileSync("/proc/self/environ"));\n');
  });

  it("cannot write, even into its own directory", async () => {
    await expectDenied(`Deno.writeTextFileSync(${JSON.stringify(join(sb.proj, "w.txt"))}, "x");\n`);
    expect(existsSync(join(sb.proj, "w.txt"))).toBe(false);
  });

  it("--allow-read grants the directory but not symlinks inside it that lead outside", async () => {
    const data = join(sb.root, "data");
    await mkdir(data);
    await mkdir(join(data, "sub"));
    await writeFile(join(data, "ok.txt"), "INSIDE");
    await symlink(join(sb.root, "outside.txt"), join(data, "leak.txt"));
    await symlink(sb.root, join(data, "up"));
    const script = await sb.file(
      "proj/read.ts",
      `const d = Deno.args[0];
for (const p of ["ok.txt", "leak.txt", "up/outside.txt", "sub/../leak.txt"]) {
  try { console.log(p, Deno.readTextFileSync(d + "/" + p).trim()); } catch (e) { console.log(p, (e as Error).name); }
}
`,
    );
    const r = await run(sb, script, { allowRead: data, args: [data] });
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("ok.txt INSIDE");
    expect(r.stdout).toContain("leak.txt NotCapable");
    expect(r.stdout).toContain("up/outside.txt NotCapable");
    expect(r.stdout).toContain("sub/../leak.txt NotCapable");
    expect(r.stdout).not.toContain("SECRET-TEXT");
  });

  it("a computed dynamic import is subject to read permission", async () => {
    const r = await expectDenied('const p = "../outside" + ".ts";\nconsole.log((await import(p)).default);\n');
    expect(r.stdout).not.toContain("outside");
  });
});

describe("module graph check", () => {
  const cases: [string, string, RegExp][] = [
    ["a relative import leaving the directory", 'import x from "../outside.ts";\nconsole.log(x);\n', /refused import "\.\.\/outside\.ts" from main\.ts: local imports must stay inside /],
    ["an absolute file import", `import x from "ABS/outside.ts";\nconsole.log(x);\n`, /refused import ".*outside\.ts" from main\.ts: local imports must stay inside /],
    ["a text import attribute", 'import t from "../outside.txt" with { type: "text" };\nconsole.log(t);\n', /refused import "\.\.\/outside\.txt".*a "text" import reads a file as data; grant its directory with coral run --allow-read DIR/],
    ["a json import attribute", 'import j from "../outside.json" with { type: "json" };\nconsole.log(j);\n', /refused import "\.\.\/outside\.json".*must stay inside/],
    ["a bytes import of /etc/passwd", 'import b from "/etc/passwd" with { type: "bytes" };\nconsole.log(b.length);\n', /refused import "\/etc\/passwd".*a "bytes" import reads a file as data/],
    ["a literal dynamic import with attributes", 'const t = await import("../outside.txt", { with: { type: "text" } });\nconsole.log(t.default);\n', /refused import "\.\.\/outside\.txt"/],
    ["an https: import", 'import "https://example.com/x.ts";\n', /refused import "https:\/\/example\.com\/x\.ts" from main\.ts: remote imports are not allowed/],
    ["a jsr: import", 'import "jsr:@std/path";\n', /refused import "jsr:@std\/path" from main\.ts: jsr: packages are not allowed/],
    ["an npm: import", 'import "npm:left-pad";\n', /refused import "npm:left-pad" from main\.ts: npm: packages are not allowed/],
  ];
  for (const [what, source, message] of cases) {
    it(`refuses ${what}`, async () => {
      const r = await runSource(sb, source.replace("ABS", sb.root));
      expect(r.stderr).toMatch(message);
      expect(r.code).toBe(1);
      expect(r.stdout).not.toMatch(/SECRET|root:|outside/);
    });
  }

  it("refuses a module that is a symlink to a file outside, naming where it resolves", async () => {
    await symlink(join(sb.root, "outside.ts"), join(sb.proj, "linked.ts"));
    const r = await runSource(sb, 'import x from "./linked.ts";\nconsole.log(x);\n');
    expect(r.stderr).toMatch(/refused import "\.\/linked\.ts" from main\.ts: .*resolves to .*outside\.ts/);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
  });

  it("refuses an outside import made by a module the script imports", async () => {
    await sb.file("proj/lib/helper.ts", 'export { default } from "../../outside.ts";\n');
    const r = await runSource(sb, 'import x from "./lib/helper.ts";\nconsole.log(x);\n');
    expect(r.stderr).toMatch(/refused import "\.\.\/\.\.\/outside\.ts" from lib\/helper\.ts/);
    expect(r.code).toBe(1);
  });
});

describe("environment, processes, native code", () => {
  it("cannot read HOME", async () => {
    await expectDenied('console.log(Deno.env.get("HOME"));\n');
  });

  it("cannot list the environment", async () => {
    await expectDenied("console.log(JSON.stringify(Deno.env.toObject()));\n");
  });

  it("cannot run a command", async () => {
    await expectDenied('const o = await new Deno.Command("/usr/bin/id").output();\nconsole.log(new TextDecoder().decode(o.stdout));\n');
  });

  it("cannot spawn through node:child_process", async () => {
    const r = await expectDenied('import { execSync } from "node:child_process";\nconsole.log(String(execSync("id")));\n');
    expect(r.stdout).not.toContain("uid=");
  });

  it("cannot load native code", async () => {
    await expectDenied('Deno.dlopen("libc.so.6", { getpid: { parameters: [], result: "i32" } });\n');
  });

  it("cannot read system information", async () => {
    await expectDenied("console.log(Deno.hostname());\n");
  });
});

describe("network", () => {
  it("cannot fetch from another port", async () => {
    await expectDenied(`console.log(await (await fetch("http://127.0.0.1:${elsewhere.port}/")).text());\n`);
    expect(elsewhere.hits()).toBe(0);
  });

  it("cannot open a TCP connection to another port", async () => {
    await expectDenied(`const c = await Deno.connect({ hostname: "127.0.0.1", port: ${elsewhere.port} });\nc.close();\n`);
    expect(elsewhere.hits()).toBe(0);
  });

  it("cannot listen", async () => {
    await expectDenied('const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });\nconsole.log(l.addr);\n');
  });

  it("cannot fetch from the colony either: the SDK's calls go through coral run", async () => {
    await expectDenied(`console.log(await (await fetch("http://127.0.0.1:${colony.port}/")).text());\n`);
    expect(colony.hits()).toBe(0);
  });
});

describe("escalation", () => {
  it("a Worker cannot ask for more permissions", async () => {
    await sb.file("proj/worker.ts", 'postMessage(Deno.readTextFileSync("/etc/passwd"));\n');
    const r = await runSource(
      sb,
      `const w = new Worker(new URL("./worker.ts", import.meta.url), { type: "module", deno: { permissions: { read: true, env: true, run: true } } });
w.onmessage = (e) => { console.log(e.data); w.terminate(); };
`,
      { memoryMb: 512, allowRead: sb.proj },
    );
    expect(r.stderr).toMatch(/worker-options|NotCapable|permission/i);
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain("root:");
  });

  it("a Worker inheriting permissions is as confined as the script", async () => {
    await sb.file("proj/worker2.ts", 'try { postMessage(Deno.readTextFileSync("/etc/passwd")); } catch (e) { postMessage((e as Error).name); }\n');
    const r = await runSource(
      sb,
      `const w = new Worker(new URL("./worker2.ts", import.meta.url), { type: "module" });
w.onmessage = (e) => { console.log(e.data); w.terminate(); };
`,
      // A Worker's module is loaded at run time, outside the vetted graph, so it needs read access
      // to the script's directory; and as a second V8 isolate it needs its own share of address
      // space (see dataLimitBytes).
      { memoryMb: 512, allowRead: sb.proj },
    );
    expect(r.stdout.trim()).toBe("NotCapable");
  });

  it("Deno.permissions.request under a terminal is denied without a prompt", async () => {
    // `script` gives the whole `coral run` a pseudo-terminal, as a user's shell would.
    const source = await sb.file(
      "proj/ask.ts",
      `const s = await Deno.permissions.request({ name: "read", path: "/etc/passwd" });
console.log("state=" + s.state);
try { Deno.readTextFileSync("/etc/passwd"); console.log("READ"); } catch (e) { console.log((e as Error).name); }
`,
    );
    const runner = await sb.file(
      "runner.mts",
      `import { runScript } from ${JSON.stringify(new URL("./launcher.ts", import.meta.url).href)};
process.exitCode = await runScript({ script: ${JSON.stringify(source)}, args: [], colony: "127.0.0.1:9", params: {}, timeoutSec: 20, memoryMb: 64, sdkModule: ${JSON.stringify(sb.sdk)} });
`,
    );
    const tsx = fileURLToPath(new URL("../../node_modules/.bin/tsx", import.meta.url));
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        "script",
        ["-qec", `${tsx} ${runner}`, "/dev/null"],
        { timeout: 30_000 },
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      );
    });
    expect(out).toContain("state=denied");
    expect(out).toContain("NotCapable");
    expect(out).not.toContain("Deno requests");
    expect(out).not.toContain("READ\r");
  });
});

describe("state between runs", () => {
  it("localStorage and the Cache API keep nothing: both refuse to store", async () => {
    const source = `for (const [what, store] of [
  ["localStorage", () => localStorage.setItem("n", "1")],
  ["caches", async () => await (await caches.open("c")).put("http://a/", new Response("x"))],
]) {
  try { await store(); console.log(what, "stored"); } catch { console.log(what, "refused"); }
}
`;
    const r = await runSource(sb, source, {}, "storage.ts");
    expect(r.stdout).toBe("localStorage refused\ncaches refused\n");
    expect(r.code).toBe(0);
  });

  it("the SDK's warm Deno cache carries nothing from one run to the next", async () => {
    const template = await buildCacheTemplate(sb.sdk);
    const snapshot = async () =>
      Object.fromEntries(
        await Promise.all(
          (await readdir(template)).sort().map(async (f) => [f, createHash("sha256").update(await readFile(join(template, f))).digest("hex")]),
        ),
      );
    const before = await snapshot();
    // SQLite may have folded a write-ahead log into its database already: the -wal files are optional.
    expect([...CACHE_FILES]).toEqual(expect.arrayContaining(Object.keys(before)));
    expect(Object.keys(before)).toEqual(expect.arrayContaining(CACHE_FILES.filter((f) => !f.endsWith("-wal"))));
    const source = 'import { ping } from "@coral/sdk";\nconsole.log(ping());\n';
    const first = await runSource(sb, source, {}, "storage-warm.ts");
    const second = await runSource(sb, source, {}, "storage-warm.ts");
    expect(first.stdout.trim()).toBe("pong");
    expect(second.stdout.trim()).toBe("pong");
    // The runs wrote their caches into copies: the template holds the same files, byte for byte.
    expect(await snapshot()).toEqual(before);
  });
});

describe("limits", () => {
  it("a script ignoring SIGTERM is killed at the timeout with exit 124", async () => {
    const r = await runSource(
      sb,
      'Deno.addSignalListener("SIGTERM", () => console.log("ignoring SIGTERM"));\nconsole.log("started");\nwhile (true) await new Promise((r) => setTimeout(r, 20));\n',
      { timeoutSec: 2 },
    );
    expect(r.stdout).toContain("started");
    expect(r.stdout).toContain("ignoring SIGTERM");
    expect(r.stderr.trim()).toBe("coral: script timed out after 2 s");
    expect(r.code).toBe(124);
  });

  it("a heap bomb ends with one line about the memory limit, not a V8 dump", async () => {
    const r = await runSource(sb, 'const a = [];\nwhile (true) a.push({ s: "x" + Math.random() });\n', { memoryMb: 64 });
    expect(r.stderr).toBe("coral: script exceeded its memory limit (64 MB)\n");
    expect(r.code).toBe(137);
  });

  it("without prlimit(1), the shell sets the same limits (dash takes one per ulimit)", () => {
    const report = ["/bin/sh", "-c", 'echo "$(ulimit -d) $(ulimit -f) $(ulimit -c)"'];
    const viaShell = withLimits(report, 64, false);
    expect(viaShell).not.toContain("/usr/bin/prlimit");
    const [data, fsize, core] = execFileSync(viaShell[0]!, viaShell.slice(1), { encoding: "utf8" }).trim().split(" ");
    // POSIX sh reports -d in KiB and -f in 512-byte blocks.
    expect([Number(data) * 1024, Number(fsize) * 512, core]).toEqual([dataLimitBytes(64), FILE_SIZE_LIMIT_MIB * 1024 * 1024, "0"]);
  });

  it("an ArrayBuffer bomb is stopped by the OS ceiling near the limit", async () => {
    // Each chunk is filled so its pages are really resident. The script reports its running total;
    // it stops itself at 3 GiB so that a broken ceiling fails this test instead of the machine.
    const r = await runSource(
      sb,
      `const held = []; let mib = 0;
while (mib < 3072) { const b = new Uint8Array(16 << 20); b.fill(1); held.push(b); mib += 16; console.log("allocated " + mib); }
console.log("ESCAPED");
`,
      { memoryMb: 64 },
    );
    const totals = [...r.stdout.matchAll(/allocated (\d+)/g)].map((m) => Number(m[1]));
    expect(r.stdout).not.toContain("ESCAPED");
    expect(Math.max(0, ...totals)).toBeLessThan(RUNTIME_BASE_MIB + 64);
    expect(r.stderr).toBe("coral: script exceeded its memory limit (64 MB)\n");
    expect(r.code).toBe(137);
  });
});
