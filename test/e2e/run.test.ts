// `coral run` as a user meets it, end to end with the real SDK bundle and real Deno: script
// parameters, exit codes, scripts on stdin, the unreachable-colony message, tokens, and
// `coral init` + `--check` for editor support. One colony, started with a token (no demo
// data needed here).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { denoPath } from "../../cli/run/paths.js";
import { closedPort, runCoral, spawnColony, type RunResult, type SpawnedColony } from "../helpers/colony.js";

const TOKEN = "run-test-token";

// Created at load time: describe blocks write their scripts while the tests are collected.
const dir = mkdtempSync(join(tmpdir(), "coral-run-e2e-"));
let colony: SpawnedColony;
beforeAll(async () => {
  colony = await spawnColony({ token: TOKEN });
});
afterAll(async () => {
  await colony?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let scriptCount = 0;
function tokenFile(): string {
  const file = join(dir, "token");
  writeFileSync(file, TOKEN, { mode: 0o600 });
  return file;
}

function script(source: string, where = dir): string {
  const file = join(where, `script-${++scriptCount}.ts`);
  writeFileSync(file, source);
  return file;
}

/** `CORAL_TOKEN=<token> coral run --colony <colony> FLAGS… SCRIPT ARGS…` (--token would add a warning to stderr) */
function run(file: string, o: { flags?: string[]; args?: string[]; token?: string | null; colony?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
  const auth: Record<string, string> = o.token === null ? {} : { CORAL_TOKEN: o.token ?? TOKEN };
  const args = o.args ? ["--", ...o.args] : [];
  return runCoral(["run", "--colony", o.colony ?? colony.addr, ...(o.flags ?? []), file, ...args], { env: { ...auth, ...o.env } });
}

const SDK = 'import * as coral from "@coral/sdk";\n';

describe("parameters", () => {
  const show = script(`${SDK}
console.log(JSON.stringify({
  params: coral.params,
  keys: Object.keys(coral.params),
  threshold: coral.params.threshold,
  strictEqual: coral.params.threshold === "500",
  number: coral.params.number("threshold"),
  numberDefault: coral.params.number("limit", 20),
  durationMs: coral.params.durationMs("window"),
  durationMsDefault: coral.params.durationMs("other", "1h"),
  durationNs: coral.params.durationNs("slow"),
  durationNsDefault: coral.params.durationNs("other", "250ms"),
  boolean: coral.params.boolean("verbose"),
  booleanDefault: coral.params.boolean("other", true),
  string: coral.params.string("query"),
  has: [coral.params.has("verbose"), coral.params.has("other")],
  args: Deno.args,
}));
`);

  it("--param values reach the script as a plain object of strings, with typed readers and defaults", async () => {
    const r = await run(show, {
      flags: ["--param", "threshold=500", "--param", "window=5m", "--param", "slow=1.5s", "--param", "verbose=yes", "--param", "query=a=b"],
      args: ["x", "--y"],
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      params: { threshold: "500", window: "5m", slow: "1.5s", verbose: "yes", query: "a=b" },
      keys: ["threshold", "window", "slow", "verbose", "query"],
      threshold: "500",
      strictEqual: true,
      number: 500,
      numberDefault: 20,
      durationMs: 300_000,
      durationMsDefault: 3_600_000,
      durationNs: 1_500_000_000,
      durationNsDefault: 250_000_000,
      boolean: true,
      booleanDefault: true,
      string: "a=b",
      has: [true, false],
      args: ["x", "--y"],
    });
  });

  it("with no --param, params is an empty object", async () => {
    const r = await run(script(`${SDK}console.log(JSON.stringify(coral.params), Object.keys(coral.params).length);\n`));
    expect(r.stdout).toBe("{} 0\n");
  });

  it("a missing required parameter ends the script with one clear line, exit 1", async () => {
    const r = await run(script(`${SDK}const t = coral.params.durationNs("threshold");\nconsole.log("not reached", t);\n`));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      'error: missing required parameter "threshold" — pass it with: coral run <script> --param threshold=VALUE [invalid_argument]\n',
    );
  });

  it("--param may follow the script, as the RFD writes it; a missing one says how to pass it", async () => {
    const file = script(`${SDK}console.log(coral.params.number("limit") * 2);\n`);
    const given = await runCoral(["run", "--colony", colony.addr, file, "--param", "limit=5"], { env: { CORAL_TOKEN: TOKEN } });
    expect(given.stdout).toBe("10\n");
    const missing = await run(file);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/missing required parameter "limit" — pass it with: coral run <script> --param limit=VALUE/);
  });

  it("arguments for the script go after --; an unknown flag before it is a usage error", async () => {
    const file = script("console.log(JSON.stringify(Deno.args));\n");
    expect((await run(file, { args: ["--verbose", "x"] })).stdout).toBe('["--verbose","x"]\n');
    const r = await runCoral(["run", "--colony", colony.addr, file, "--verbose"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--verbose");
  });

  it("a malformed value names the parameter and the expected form", async () => {
    const file = script(`${SDK}
for (const read of [() => coral.params.number("n"), () => coral.params.durationMs("d"), () => coral.params.boolean("b")]) {
  try { read(); } catch (e) { console.log(e.code + ": " + e.message); }
}
`);
    const r = await run(file, { flags: ["--param", "n=ten", "--param", "d=500", "--param", "b=maybe"] });
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split("\n")).toEqual([
      'invalid_argument: parameter "n": "ten" is not a number',
      'invalid_argument: parameter "d": "500" is not a duration; write it like 500ms, 30s, 5m, 1h or 1h30m',
      'invalid_argument: parameter "b": "maybe" is not a boolean; write true or false',
    ]);
  });

  it("--param without '=' is a usage error (exit 2) and the script does not run", async () => {
    const r = await run(script('console.log("ran");\n'), { flags: ["--param", "novalue"] });
    expect(r.code).toBe(2);
    expect(r.stdout).not.toContain("ran");
    expect(r.stdout + r.stderr).toContain('--param: expected key=value, got "novalue"');
  });
});

describe("exit codes", () => {
  for (const [what, source, code] of [
    ["a normal end", 'console.log("done");\n', 0],
    ["Deno.exit(7)", "Deno.exit(7);\n", 7],
    ["Deno.exit(0) after output", 'console.log("x");\nDeno.exit(0);\n', 0],
    ["an uncaught exception", 'throw new Error("boom");\n', 1],
    ["an unhandled rejection", 'await Promise.reject(new Error("later"));\n', 1],
    ["Deno.exitCode = 5", "Deno.exitCode = 5;\n", 5],
  ] as const) {
    it(`${what} → ${code}`, async () => {
      const r = await run(script(source));
      expect(r.code).toBe(code);
    });
  }

  it("an uncaught exception keeps its message and stack on stderr", async () => {
    const r = await run(script('function f() { throw new Error("boom in f"); }\nf();\n'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Error: boom in f/);
    expect(r.stderr).toMatch(/script-\d+\.ts:1/);
  });

  it("a missing script, a directory or a device is refused before Deno starts, exit 1", async () => {
    for (const [path, message] of [
      ["no-such-script.ts", "coral: script not found: no-such-script.ts\n"],
      ["examples", "coral: not a script file: examples\n"],
      ["/dev/zero", "coral: not a script file: /dev/zero\n"],
    ]) {
      const r = await run(path);
      expect(r.code, path).toBe(1);
      expect(r.stderr, path).toBe(message);
    }
  });

  it("stderr that is not a terminal gets no colour codes, even without NO_COLOR set", async () => {
    // The helper sets NO_COLOR=1; an empty value is as good as unset for Deno.
    const r = await run(script('throw new Error("plain");\n'), { env: { NO_COLOR: "" } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: Uncaught .*Error: plain/);
    expect(r.stderr).not.toMatch(/\x1b\[/);
  });
});

describe("scripts on stdin", () => {
  it("`coral run -` runs the source piped in, with the SDK, params and args", async () => {
    const source = `${SDK}const svcs = await coral.services.list();\nconsole.log("services:", svcs.length, "param:", coral.params.who, "args:", Deno.args.join(" "));\n`;
    const r = await runCoral(["run", "--colony", colony.addr, "--param", "who=stdin", "-", "a", "b"], { input: source, env: { CORAL_TOKEN: TOKEN } });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("services: 0 param: stdin args: a b\n");
  });

  it("the exit code of a stdin script is coral's", async () => {
    const r = await runCoral(["run", "--colony", colony.addr, "-"], { input: "Deno.exit(42);\n" });
    expect(r.code).toBe(42);
  });
});

describe("reaching the colony", () => {
  it("an unreachable colony ends an uncaught SDK call with one line naming the address, exit 1", async () => {
    const addr = await closedPort();
    const r = await run(script(`${SDK}await coral.services.list();\nconsole.log("not reached");\n`), { colony: addr, token: null });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(`error: cannot reach colony at ${addr} (connection refused) — start one with: coral colony start [unavailable]\n`);
  });

  const whoami = script(`${SDK}
try {
  const svcs = await coral.services.list();
  console.log("ok", svcs.length);
} catch (e) {
  console.log(e instanceof coral.CoralError ? e.code : "other", e.message);
}
`);

  it("without a token, a colony that requires one answers unauthenticated", async () => {
    const r = await run(whoami, { token: null });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^unauthenticated colony at 127\.0\.0\.1:\d+ rejected the request: .* — pass --token-file FILE or set CORAL_TOKEN\n$/);
    expect(r.stdout).toContain(colony.addr);
  });

  it("with a wrong token, unauthenticated too", async () => {
    const r = await run(whoami, { token: "not-the-token" });
    expect(r.stdout).toMatch(/^unauthenticated /);
  });

  it("the right token, by --token or by $CORAL_TOKEN, is let in", async () => {
    expect((await run(whoami, { token: null, flags: ["--token", TOKEN] })).stdout).toBe("ok 0\n");
    expect((await run(whoami, { token: null, env: { CORAL_TOKEN: TOKEN } })).stdout).toBe("ok 0\n");
  });

  it("the script cannot read the token or the colony's address, by any variable or /proc", async () => {
    const file = script(`${SDK}
const attempts = {
  token: () => Deno.env.get("CORAL_TOKEN"),
  address: () => Deno.env.get("CORAL_COLONY_ADDR"),
  all: () => JSON.stringify(Deno.env.toObject()),
  environ: () => Deno.readTextFileSync("/proc/self/environ"),
  parentEnviron: () => Deno.readTextFileSync("/proc/" + Deno.ppid + "/environ"),
  parentCmdline: () => Deno.readTextFileSync("/proc/" + Deno.ppid + "/cmdline"),
  nodeEnv: () => JSON.stringify(process.env),
};
for (const [name, read] of Object.entries(attempts)) {
  try { console.log(name, "READ", read()); } catch (e) { console.log(name, e.name); }
}
console.log("services", (await coral.services.list()).length);
`);
    for (const flags of [[], ["--token", TOKEN], ["--token-file", tokenFile()]]) {
      const r = await run(file, { flags, token: flags.length ? null : TOKEN });
      expect(r.code).toBe(0);
      expect(r.stdout).not.toContain(TOKEN);
      expect(r.stdout).not.toContain(colony.addr);
      expect(r.stdout).not.toContain(colony.addr.split(":")[1]);
      expect(r.stdout).not.toContain("READ");
      expect(r.stdout).toContain("services 0\n");
    }
  });

  it("the script cannot reach the colony, or anything else, without the SDK", async () => {
    const file = script(`
const targets = ["http://${colony.addr}/coral.colony.v1.QueryService/ListServices", "http://127.0.0.1:8080/", "https://example.com/"];
for (const url of targets) {
  try { await fetch(url, { method: "POST" }); console.log("REACHED", url); } catch (e) { console.log(e.name); }
}
for (const [hostname, port] of [["127.0.0.1", ${colony.addr.split(":")[1]}], ["localhost", 80]]) {
  try { (await Deno.connect({ hostname, port })).close(); console.log("CONNECTED", port); } catch (e) { console.log(e.name); }
}
`);
    const r = await run(file);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("NotCapable\n".repeat(5));
  });

  it("an uncaught unauthenticated error is one line, exit 1", async () => {
    const r = await run(script(`${SDK}await coral.services.list();\n`), { token: null });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: colony at 127\.0\.0\.1:\d+ rejected the request: .*\[unauthenticated\]\n$/);
  });
});

describe("coral init + --check", () => {
  let project: string;
  beforeAll(async () => {
    project = join(dir, "project");
    mkdirSync(project);
    const r = await runCoral(["init", project]);
    expect(r.code, r.stderr).toBe(0);
  });

  const typeError = `${SDK}
const svcs = await coral.services.list();
const first: string = svcs[0].instance_count;
const p99: string = await coral.metrics.getP99("payments");
console.log(first, p99);
`;

  it("init writes deno.json mapping @coral/sdk to a local SDK copy with its types", () => {
    const config = JSON.parse(readFileSync(join(project, "deno.json"), "utf8"));
    expect(config.imports["@coral/sdk"]).toBe("./.coral/coral-sdk.js");
    expect(readFileSync(join(project, ".coral", "coral-sdk.d.ts"), "utf8")).toContain("export");
  });

  it("init where a file stands in the way: one line naming the path, exit 1", async () => {
    const file = join(dir, "a-file");
    writeFileSync(file, "");
    const r = await runCoral(["init", join(file, "scripts")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`coral: cannot set up ${join(file, "scripts")}: a path in it is a file, not a directory (${join(file, "scripts")})\n`);
  });

  it("--check reports SDK type errors with file:line and does not run the script", async () => {
    const file = script(typeError, project);
    const r = await run(file, { flags: ["--check"] });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    const name = file.split("/").pop()!;
    expect(r.stderr).toMatch(/TS2322/);
    expect(r.stderr).toMatch(new RegExp(`${name}:4:\\d+`));
    expect(r.stderr).toMatch(new RegExp(`${name}:5:\\d+`));
    expect(r.stderr).toMatch(/Type 'number' is not assignable to type 'string'/);
  });

  it("--check passes a well-typed script that uses the SDK's types, which then runs", async () => {
    const file = script(
      `${SDK}
const svcs: coral.Service[] = await coral.services.list();
const rows: coral.QueryResult<{ n: number }> = await coral.db.query<{ n: number }>("SELECT 1 AS n");
const err: coral.CoralErrorCode = "not_found";
const limit: number = coral.params.number("limit", 3);
console.log(svcs.length, rows.rows[0].n, err, limit);
`,
      project,
    );
    const r = await run(file, { flags: ["--check"] });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("0 1 not_found 3\n");
  });

  it("Deno itself, using the deno.json that init wrote (as an editor does), finds the same errors", () => {
    const file = script(typeError, project);
    const denoDir = mkdtempSync(join(tmpdir(), "coral-deno-dir-"));
    try {
      let out = "";
      try {
        execFileSync(denoPath(), ["check", "--no-lock", file], {
          cwd: project,
          env: { DENO_DIR: denoDir, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", PATH: process.env.PATH ?? "" },
          stdio: "pipe",
        });
      } catch (e) {
        out = String((e as { stderr?: Buffer }).stderr ?? "") + String((e as { stdout?: Buffer }).stdout ?? "");
      }
      expect(out).toMatch(/Type 'number' is not assignable to type 'string'/);
      expect(out).toMatch(new RegExp(`${file.split("/").pop()}:5:\\d+`));
    } finally {
      rmSync(denoDir, { recursive: true, force: true });
    }
  });
});
