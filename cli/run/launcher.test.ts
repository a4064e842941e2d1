// What a script is given and how its run ends, through runScript/watchScript and the commands.
import { existsSync, realpathSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { denoSpec, launch, prepareRunDir } from "./deno-start.js";
import { offerEarlyStart, type EarlyStart } from "./early-start.js";
import { initScriptsDir } from "./init-dir.js";
import { denoPath } from "./paths.js";
import { makeRunDir } from "./run-dir.js";
import type { RunOptions } from "./launcher.js";
import { watchScript } from "./watch.js";
import { capture, emptyStdin, httpServer, makeSandbox, run, runSource, type Sandbox } from "./testing.js";

let sb: Sandbox;
let colony: Awaited<ReturnType<typeof httpServer>>;

beforeAll(async () => {
  sb = await makeSandbox();
  colony = await httpServer("colony says hi");
});
afterAll(async () => {
  await colony?.close();
  await sb?.cleanup();
});

describe("runScript", () => {
  it("maps @coral/sdk to the bundle and passes args", async () => {
    const r = await runSource(sb, 'import { ping } from "@coral/sdk";\nconsole.log(ping(), JSON.stringify(Deno.args));\n', {
      args: ["a", "--b=c"],
    });
    expect(r.stdout).toBe('pong ["a","--b=c"]\n');
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  it("gives the script its params and CORAL_MODE, but not the colony's address or token, nor the network", async () => {
    const r = await runSource(
      sb,
      `for (const name of ["CORAL_PARAMS", "CORAL_MODE", "CORAL_COLONY_ADDR", "CORAL_TOKEN", "NODE_CHANNEL_FD"]) {
  try { console.log(name, Deno.env.get(name) ?? "(unset)"); } catch (e) { console.log(name, e.name); }
}
try { await fetch("http://127.0.0.1:${colony.port}/"); console.log("fetched"); } catch (e) { console.log("fetch", e.name); }
`,
      { colony: `127.0.0.1:${colony.port}`, token: "t0k", params: { service: "payments", expr: "a=b=c" } },
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(
      [
        'CORAL_PARAMS {"service":"payments","expr":"a=b=c"}',
        "CORAL_MODE cli",
        "CORAL_COLONY_ADDR NotCapable",
        "CORAL_TOKEN NotCapable",
        "NODE_CHANNEL_FD NotCapable",
        "fetch NotCapable",
        "",
      ].join("\n"),
    );
    expect(colony.hits()).toBe(0);
  });

  it("exits with the script's exit code", async () => {
    const r = await runSource(sb, 'console.log("before");\nDeno.exit(3);\n');
    expect(r.stdout).toBe("before\n");
    expect(r.code).toBe(3);
  });

  it("passes an ordinary uncaught error through untouched, exit 1", async () => {
    const r = await runSource(sb, 'throw new RangeError("not a memory problem");\n');
    expect(r.stderr).toContain("RangeError: not a memory problem");
    expect(r.stderr).not.toContain("memory limit");
    expect(r.code).toBe(1);
  });

  it("does not swallow stderr lines that merely look like a V8 report", async () => {
    const r = await runSource(sb, 'console.error("#");\nconsole.error("# heading");\nconsole.error("");\nconsole.error("done");\n');
    expect(r.stderr).toBe("#\n# heading\n\ndone\n");
    expect(r.code).toBe(0);
  });

  it("reads the script from stdin with '-'", async () => {
    const r = await run(sb, "-", {
      stdin: emptyStdin('import { ping } from "@coral/sdk";\nconsole.log("stdin", ping(), Deno.args[0]);\n'),
      args: ["x"],
    });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("stdin pong x\n");
    expect(r.code).toBe(0);
  });

  it("a script from stdin has no directory to import from", async () => {
    const r = await run(sb, "-", { stdin: emptyStdin(`import x from "${sb.proj}/lib.ts";\nconsole.log(x);\n`) });
    expect(r.stderr).toMatch(/refused import ".*lib\.ts" from stdin\.ts: local imports must stay inside/);
    expect(r.code).toBe(1);
  });

  it("--check reports type errors with file:line and does not run", async () => {
    const r = await runSource(
      sb,
      'import { ping } from "@coral/sdk";\nconsole.log("RAN");\nconst n: number = ping();\nconsole.log(n);\n',
      { check: true },
      "typed.ts",
    );
    expect(r.stdout).not.toContain("RAN");
    expect(r.stderr).toMatch(/TS2322/);
    expect(r.stderr).toMatch(/typed\.ts:3:7/);
    expect(r.code).toBe(1);
  });

  it("--check passes a well-typed script on to run", async () => {
    const r = await runSource(sb, 'import { ping } from "@coral/sdk";\nconst s: string = ping();\nconsole.log(s);\n', { check: true });
    expect(r.stdout).toBe("pong\n");
    expect(r.code).toBe(0);
  });

  it("reports a missing SDK bundle in one line", async () => {
    const r = await runSource(sb, "console.log(1);\n", { sdkModule: join(sb.root, "nope", "coral-sdk.js") });
    expect(r.stderr).toMatch(/^coral: the @coral\/sdk bundle is missing at .*nope\/coral-sdk\.js/);
    expect(r.code).toBe(1);
  });

  it("an abort stops the run with 130", async () => {
    const controller = new AbortController();
    const script = await sb.file("proj/forever.ts", 'console.log("up");\nsetInterval(() => {}, 1000);\n');
    const out = capture();
    const pending = run(sb, script, { stdout: out.stream }, controller.signal);
    await until(() => out.text().includes("up"));
    controller.abort();
    expect((await pending).code).toBe(130);
  });
});

describe("early start (a Deno started before the launcher, early-start.ts)", () => {
  /** What bin/coral.cjs would offer: a prepared run directory and a Deno started for `spec` there. */
  async function offer(script: string, o: { memoryMb?: number; sdk?: string } = {}): Promise<EarlyStart> {
    const work = await makeRunDir();
    const prepared = prepareRunDir(work, o.sdk ?? sb.sdk, true);
    const spec = denoSpec({ deno: denoPath(), work, gated: true, script: realpathSync(script), args: [], params: {}, memoryMb: o.memoryMb ?? 64, stdin: "pipe", stdout: "pipe" });
    const launched = launch(spec);
    const early: EarlyStart = {
      work,
      prepared,
      spec,
      launched,
      discard: async () => {
        launched.child.kill("SIGKILL");
        await launched.closed.catch(() => {});
      },
      release: () => {},
    };
    offerEarlyStart(early);
    return early;
  }
  const printPid = 'console.log(String(Deno.pid));\n';

  it("runs the script in the early Deno when the launcher computes the same start", async () => {
    const script = await sb.file("proj/early-pid.ts", printPid);
    const early = await offer(script);
    const r = await run(sb, script);
    expect(r).toEqual({ code: 0, stdout: `${early.launched.child.pid}\n`, stderr: "" });
    expect(existsSync(early.work)).toBe(false);
  });

  it("kills an early Deno started for other flags at its gate and runs the script in its own", async () => {
    const script = await sb.file("proj/early-other.ts", printPid);
    const early = await offer(script, { memoryMb: 65 });
    const r = await run(sb, script);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\d+\n$/);
    expect(r.stdout).not.toBe(`${early.launched.child.pid}\n`);
    expect(await early.launched.closed).toEqual({ code: null, signal: "SIGKILL" });
    expect(existsSync(early.work)).toBe(false);
  });

  it("kills an early Deno prepared for another SDK bundle", async () => {
    const script = await sb.file("proj/early-sdk.ts", printPid);
    const other = await sb.file("other-sdk/coral-sdk.js", 'export const ping = () => "other";\n');
    const early = await offer(script, { sdk: other });
    const r = await run(sb, script);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toBe(`${early.launched.child.pid}\n`);
    expect(await early.launched.closed).toEqual({ code: null, signal: "SIGKILL" });
    expect(existsSync(early.work)).toBe(false);
  });

  it("a refused script's early Deno dies at its gate, having run nothing", async () => {
    await sb.file("proj/.secret.ts", 'console.log("SECRET RAN");\n');
    const script = await sb.file("proj/early-refused.ts", 'import "./.secret.ts";\nconsole.log("MAIN RAN");\n');
    const early = await offer(script);
    const r = await run(sb, script);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/refused import "\.\/\.secret\.ts"/);
    expect(await early.launched.closed).toEqual({ code: null, signal: "SIGKILL" });
    expect(existsSync(early.work)).toBe(false);
  });
});

describe("watchScript", () => {
  it("re-runs when an imported module changes, and stops on abort", async () => {
    await sb.file("proj/watched/lib.ts", 'export const version = "v1";\n');
    const script = await sb.file("proj/watched/main.ts", 'import { version } from "./lib.ts";\nconsole.log("run " + version);\n');
    const out = capture();
    const err = capture();
    const controller = new AbortController();
    const session = watchScript(
      {
        script,
        args: [],
        colony: "127.0.0.1:9",
        params: {},
        timeoutSec: 10,
        memoryMb: 64,
        sdkModule: sb.sdk,
        stdout: out.stream,
        stderr: err.stream,
        stdin: emptyStdin(),
      },
      controller.signal,
    );
    await until(() => err.text().includes("watching for changes"));
    expect(out.text()).toBe("run v1\n");
    await writeFile(join(sb.proj, "watched/lib.ts"), 'export const version = "v2";\n');
    await until(() => out.text().includes("run v2"));
    expect(err.text()).toContain("lib.ts changed; restarting");
    controller.abort();
    expect(await session).toBe(130);
  });
});

describe("RunCommand", () => {
  // Vitest loads clipanion through Node's ESM resolver, which rejects its extensionless internal
  // imports; so the commands run in one tsx process (as in the real CLI) that reports each case.
  type Case = { args: string[]; env?: Record<string, string>; options?: boolean };
  async function cli(cases: Case[]): Promise<{ code?: number; stderr: string; options?: RunOptions }[]> {
    const here = new URL(".", import.meta.url);
    const runner = fileURLToPath(new URL("./testing-cli.ts", here));
    const tsx = fileURLToPath(new URL("../../node_modules/.bin/tsx", here));
    // A CORAL_* variable in the developer's shell would change the defaults the cases check.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CORAL_")));
    const { stdout } = await execFileP(tsx, [runner, JSON.stringify(cases)], { env: { ...env, NO_COLOR: "1" } });
    return JSON.parse(stdout);
  }

  it("rejects bad flag values with a usage error naming the flag (exit 2), and maps good ones", async () => {
    const bad: [string[], RegExp][] = [
      [["run", "--timeout", "abc", "x.ts"], /--timeout: expected a number from 0 to 2147483, got "abc"/],
      [["run", "--timeout", "1e9", "x.ts"], /--timeout: expected a number from 0 to 2147483, got "1e9"/],
      [["run", "--memory", "1.5", "x.ts"], /--memory: expected a whole number/],
      [["run", "--memory", "1e15", "x.ts"], /--memory: expected a whole number from 16 to 1048576, got "1e15"/],
      [["run", "--param", "novalue", "x.ts"], /--param: expected key=value, got "novalue"/],
      [["run", "--colony", "nohost", "x.ts"], /--colony/],
      [["run", "--watch", "-"], /--watch: needs a script file/],
    ];
    const results = await cli([
      ...bad.map(([args]) => ({ args })),
      { args: ["run", "x.ts"], env: { CORAL_SCRIPT_TIMEOUT: "soon" } },
      {
        args: ["run", "--timeout", "2.5", "--param", "a=b=c", "--param", "k=", "--colony", "[::1]:9999", "s.ts", "--", "--x", "y"],
        options: true,
      },
      { args: ["run", "s.ts", "--param", "late=1", "--", "--x"], env: { CORAL_SCRIPT_MEMORY: "128", CORAL_COLONY_ADDR: "10.0.0.1:7000" }, options: true },
    ]);
    bad.forEach(([, message], i) => {
      expect(results[i].stderr).toMatch(message);
      expect(results[i].stderr).not.toMatch(/\n\s+at /);
      expect(results[i].code).toBe(2);
    });
    expect(results[bad.length].stderr).toMatch(/\$CORAL_SCRIPT_TIMEOUT: expected a number/);
    expect(results[bad.length].code).toBe(2);
    expect(results[bad.length + 1].options).toMatchObject({
      script: "s.ts",
      args: ["--x", "y"],
      timeoutSec: 2.5,
      memoryMb: 512,
      params: { a: "b=c", k: "" },
      colony: "[::1]:9999",
    });
    expect(results[bad.length + 2].options).toMatchObject({
      script: "s.ts",
      args: ["--x"],
      params: { late: "1" },
      timeoutSec: 60,
      memoryMb: 128,
      colony: "10.0.0.1:7000",
    });
  });
});

describe("InitCommand", () => {
  it("writes deno.json and the SDK copy, and refuses to overwrite without --force", async () => {
    const dir = join(sb.root, "init-target");
    await initScriptsDir(dir, { sdkModule: sb.sdk });
    const config = JSON.parse(await readFile(join(dir, "deno.json"), "utf8"));
    expect(config.imports["@coral/sdk"]).toBe("./.coral/coral-sdk.js");
    expect(await readFile(join(dir, ".coral/coral-sdk.js"), "utf8")).toMatch(/^\/\* @ts-self-types="\.\/coral-sdk\.d\.ts" \*\/\n/);
    expect(existsSync(join(dir, ".coral/coral-sdk.d.ts"))).toBe(true);

    await writeFile(join(dir, "deno.json"), '{"imports": {"other": "./o.ts"}, "lint": {}}');
    await expect(initScriptsDir(dir, { sdkModule: sb.sdk })).rejects.toThrow(/already exists; pass --force/);
    await initScriptsDir(dir, { sdkModule: sb.sdk, force: true });
    const forced = JSON.parse(await readFile(join(dir, "deno.json"), "utf8"));
    expect(forced).toEqual({ imports: { other: "./o.ts", "@coral/sdk": "./.coral/coral-sdk.js" }, lint: {} });
  });
});

const execFileP = promisify(execFile);

async function until(condition: () => boolean): Promise<void> {
  // Bounded by the test timeout, not by a duration of our own.
  while (!condition()) await new Promise((r) => setTimeout(r, 20));
}
