// What a user sees when they ask coral for help, mistype, or pipe its output into `head`: coral's
// own words, never the CLI framework's ("#0", "Unknown Syntax Error", numbered command lists) or
// Node's (EPIPE stack traces).
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCoral, spawnColony, type RunResult, type SpawnedColony } from "../helpers/colony.js";

const bin = fileURLToPath(new URL("../../bin/coral.cjs", import.meta.url));

/** Output that would mean the framework's rendering leaked through. */
function expectOwnWords(r: RunResult): void {
  const all = r.stdout + r.stderr;
  expect(all).not.toMatch(/#\d\b/);
  expect(all).not.toContain("Unknown Syntax Error");
  expect(all).not.toMatch(/^\s+\d+\. coral /m);
  expect(all).not.toMatch(/\n\s+at .+:\d+:\d+\)?\n/);
}

/**
 * Every line fits the 80 columns a pipe or a default terminal gets, except example command lines:
 * those stay whole so they can be copied.
 */
function expectFits80(text: string): void {
  const long = text.split("\n").filter((l) => l.length > 80 && !l.startsWith("  $ "));
  expect(long, "lines over 80 columns").toEqual([]);
}

describe("help", () => {
  it.each([[[]], [["help"]], [["--help"]], [["-h"]]])("`coral %s` lists every command by category, exit 0", async (args) => {
    const r = await runCoral(args);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    for (const cmd of ["colony start", "demo load", "query metrics", "query sql", "run", "init"]) expect(r.stdout).toContain(`  ${cmd} `);
    expect(r.stdout).toMatch(/^Query:$/m);
    expectOwnWords(r);
    expectFits80(r.stdout);
  });

  it("a bare group (`coral query`) shows that group's commands, exit 0", async () => {
    const r = await runCoral(["query"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("coral query <command> [flags]");
    expect(r.stdout).toContain("  query traces ");
    expect(r.stdout).not.toContain("colony start");
    expect(await runCoral(["help", "query"])).toEqual(r);
  });

  it("`coral help <command>` is `coral <command> --help`: placeholders name what a flag wants", async () => {
    const viaHelp = await runCoral(["help", "query", "traces"]);
    const viaFlag = await runCoral(["query", "traces", "--help"]);
    expect(viaHelp).toEqual(viaFlag);
    expect(viaFlag.code).toBe(0);
    expect(viaFlag.stdout).toContain("coral query traces <SERVICE> [flags]");
    expect(viaFlag.stdout).toContain("--window <duration>");
    expect(viaFlag.stdout).toContain("--limit <n>");
    expect(viaFlag.stdout).toContain("-o, --output <format>");
    expectOwnWords(viaFlag);
    expectFits80(viaFlag.stdout);
  });

  it("every command's help fits 80 columns and shows no framework placeholders", async () => {
    const list = await runCoral(["help"]);
    const paths = [...list.stdout.matchAll(/^ {2}([a-z]+(?: [a-z]+)?) {2,}/gm)].map((m) => m[1]!.split(" "));
    expect(paths.length).toBeGreaterThanOrEqual(10);
    for (const path of paths) {
      const r = await runCoral([...path, "--help"]);
      expect(r.code, path.join(" ")).toBe(0);
      expectOwnWords(r);
      expectFits80(r.stdout);
      expect(r.stdout).toContain(`Usage:\n  coral ${path.join(" ")}`);
    }
  });

  it("`--help` after `--` belongs to the script, not to coral run", async () => {
    const r = await runCoral(["run", "--help"]);
    expect(r.stdout).toContain("coral run <script|-> [flags] [-- <args>...]");
  });

  it("version: `coral version`, `--version` and `-v` print the package version", async () => {
    const { version } = (await import("../../package.json", { with: { type: "json" } })).default;
    for (const arg of ["version", "--version", "-v"]) {
      const r = await runCoral([arg]);
      expect(r).toEqual({ code: 0, stdout: `coral ${version}\n`, stderr: "" });
    }
  });
});

describe("mistakes", () => {
  it("a mistyped command gets one suggestion, exit 2", async () => {
    const r = await runCoral(["qurey", "services"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe('coral: unknown command "qurey" — did you mean `coral query`?\nRun `coral help` for the list of commands.\n');
  });

  it("a mistyped subcommand gets the group's closest command", async () => {
    const r = await runCoral(["query", "metricz", "payments"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("did you mean `coral query metrics`?");
    expectOwnWords(r);
  });

  it("a word that resembles nothing gets no guess", async () => {
    const r = await runCoral(["frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('coral: unknown command "frobnicate"\nRun `coral help` for the list of commands.\n');
  });

  it("a mistyped flag names the command and the flag it probably meant", async () => {
    const r = await runCoral(["query", "metrics", "--widnow", "5m", "payments"]);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe("coral: unknown flag --widnow for `coral query metrics` — did you mean --window?");
    expect(r.stderr).toContain("Usage: coral query metrics <SERVICE> [flags]");
    expectOwnWords(r);
  });

  it("a missing positional is named", async () => {
    const r = await runCoral(["query", "metrics"]);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe("coral: `coral query metrics` needs <SERVICE>");
  });

  it("a flag without its value says so", async () => {
    const r = await runCoral(["query", "metrics", "payments", "--window"]);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe("coral: --window needs a value");
  });

  it("a negative value is checked as a value (not taken for a flag)", async () => {
    const r = await runCoral(["query", "metrics", "payments", "--window", "-5m"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--window: "-5m"');
    expect(r.stderr).not.toContain("needs a value");
  });

  it("an extra argument is named, with the hint about quoting", async () => {
    const r = await runCoral(["query", "sql", "SELECT", "1"]);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe('coral: unexpected argument "1" for `coral query sql` (quote values that contain spaces)');
  });
});

describe("coral colony start", () => {
  it("at a terminal, says where to send data and how to look at it (stdout keeps its two ready lines)", async () => {
    const { mkdtempSync, readFileSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = mkdtempSync(join(tmpdir(), "coral-hint-"));
    try {
      // A pty, as a user's terminal. The shell records its PID, which `exec` hands to `timeout`
      // (the bound should the hint never come); Ctrl-C to it once the hint is out ends the colony.
      const pidFile = join(dir, "pid");
      const cmd = `echo $$ > '${pidFile}'; exec timeout -s INT 30 '${process.execPath}' '${bin}' colony start --db '${join(dir, "c.duckdb")}' --listen 127.0.0.1:0 --otlp 127.0.0.1:0`;
      const pty = spawn("script", ["-qc", cmd, "/dev/null"], { env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      let interrupted = false;
      const closed = new Promise<void>((resolve) => pty.on("close", () => resolve()));
      pty.stdout.setEncoding("utf8").on("data", (d: string) => {
        out += d.replace(/\r/g, "");
        if (interrupted || !/Look at it: .*\n/.test(out)) return;
        interrupted = true;
        process.kill(Number(readFileSync(pidFile, "utf8")), "SIGINT");
      });
      await closed;
      const otlp = /otlp listening on (\S+)/.exec(out)![1];
      expect(out).toContain(`Send telemetry: point an OpenTelemetry SDK or Collector at http://${otlp}`);
      expect(out).toContain(`or try: coral demo load --otlp ${otlp}`);
      expect(out).toMatch(/Look at it: coral query services --colony 127\.0\.0\.1:\d+/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("coral init", () => {
  it("a directory that cannot be created fails at once with one line (it used to spin forever)", async () => {
    const r = await runCoral(["init", "/proc/coral-init-test/scripts"]);
    expect(r).toEqual({ code: 1, stdout: "", stderr: "coral: cannot set up /proc/coral-init-test/scripts: no such file or directory (/proc/coral-init-test)\n" });
  });
});

describe("against a colony started with --demo", () => {
  let colony: SpawnedColony;
  beforeAll(async () => {
    colony = await spawnColony({ demo: true, otlp: "off" });
  });
  afterAll(async () => {
    await colony?.stop();
  });

  it("coral colony start --demo said it was seeding before the seconds it takes", () => {
    const err = colony.stderr();
    expect(err.indexOf("seeding three hours of demo telemetry")).toBeGreaterThanOrEqual(0);
    expect(err.indexOf("seeding three hours")).toBeLessThan(err.indexOf("seeded demo data"));
  });

  it("a bound from the proto is checked before sending, named by its flag: exit 2", async () => {
    const r = await runCoral(["query", "traces", "payments", "--limit", "1001", "--colony", "127.0.0.1:9"]);
    expect(r).toMatchObject({ code: 2, stderr: "coral: --limit: must be in 1..1000; got 1001\n" });
  });

  it("a value only the colony can judge (SQL that is not one SELECT) is a usage error too: exit 2", async () => {
    const r = await runCoral(["query", "sql", "DELETE FROM spans", "--colony", colony.addr]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("(invalid_argument)");
  });

  it.each([["table"], ["json"], ["csv"]])("`coral query sql --stream -o %s … | head -1` stops quietly, exit 0", async (format) => {
    // The reader closes the pipe after its first chunk, as head does; coral is still writing.
    const r = await new Promise<{ code: number | null; stderr: string; got: number }>((resolve) => {
      const child = spawn(
        process.execPath,
        [bin, "query", "sql", "--stream", "-o", format, "--colony", colony.addr, "SELECT range AS n FROM range(2000000)"],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      let got = 0;
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      child.stdout.once("data", (d: Buffer) => {
        got = d.length;
        child.stdout.destroy();
      });
      child.on("close", (code) => resolve({ code, stderr, got }));
    });
    expect(r.got).toBeGreaterThan(0);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });
});
