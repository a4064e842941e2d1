// `coral colony start --store …` as a user runs it: the ClickHouse store's flags, their errors, and
// a colony on embedded ClickHouse (chdb) that keeps its data across restarts. The HTTP path to a
// real ClickHouse server is exercised only up to its error answers (a stand-in server); see
// docs/scale-out.md for what this machine cannot cover.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { closedPort, runCoral } from "../helpers/colony.js";

const dir = mkdtempSync(join(tmpdir(), "coral-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const start = (args: string[], env?: Record<string, string>) => runCoral(["colony", "start", "--listen", "127.0.0.1:0", "--otlp", "off", ...args], { env });

/** One line for the user: no stack trace, no internal error. */
function expectOneLine(stderr: string): void {
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr).not.toMatch(/internal error|Error: /);
}

describe("coral colony start --store", () => {
  it("refuses bad store flags as usage errors (exit 2) that say what to write", async () => {
    const cases: [string[], RegExp][] = [
      [["--store", ""], /--store is empty — give clickhouse:\/\/USER@HOST:8123\/DB or chdb:DIR/],
      [["--store", "mysql://h/db"], /is not a store URL — give clickhouse:\/\//],
      [["--store", "clickhouse://h:0/db"], /port 0 is outside 1\.\.65535/],
      [["--store", "clickhouse://h/x`y"], /database name "x`y" must be letters, digits and _/],
      [["--store", "chdb:" + join(dir, "a"), "--db", join(dir, "a.duckdb")], /--db and --store: give only one of them/],
      [["--cluster", "prod"], /--cluster applies to a ClickHouse store: add --store clickhouse:\/\//],
      [["--clickhouse-password-file", "/etc/passwd"], /--clickhouse-password-file applies to a ClickHouse store/],
      [["--store", "chdb:" + join(dir, "a"), "--cluster", "prod"], /--cluster needs a ClickHouse server/],
      [["--store", "clickhouse://h/db", "--cluster", "prod; DROP"], /--cluster: "prod; DROP" is not a cluster name/],
      [["--store", "clickhouse://h/db", "--clickhouse-password-file", join(dir, "missing")], /--clickhouse-password-file: .*missing does not exist/],
    ];
    for (const [args, why] of cases) {
      const r = await start(args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(why);
      expectOneLine(r.stderr);
    }
  });

  it("refuses a password on the command line without echoing it", async () => {
    const r = await start(["--store", "clickhouse://coral:letmein-42@127.0.0.1:8123/coral"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/must not carry the password .*\$CORAL_CLICKHOUSE_PASSWORD or --clickhouse-password-file FILE/);
    expect(r.stdout + r.stderr).not.toContain("letmein-42");
  });

  it("fails with one line (exit 1) when the server is not there or refuses the password", async () => {
    const addr = await closedPort();
    const gone = await start(["--store", `clickhouse://default@${addr}/coral`]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(new RegExp(`cannot reach ClickHouse at http://${addr}: connection refused`));
    expectOneLine(gone.stderr);

    // A stand-in for a server that refuses the login, as ClickHouse answers it over HTTP.
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () =>
        res
          .writeHead(516, { "x-clickhouse-exception-code": "516" })
          .end("Code: 516. DB::Exception: coral: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED) (version 26.7.2.1)\n"),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const pwFile = join(dir, "pw");
      writeFileSync(pwFile, "file-secret-77\n", { mode: 0o600 });
      for (const [args, env] of [
        [["--clickhouse-password-file", pwFile], {}],
        [[], { CORAL_CLICKHOUSE_PASSWORD: "env-secret-88" }],
      ] as const) {
        const r = await start(["--store", `clickhouse://coral@127.0.0.1:${port}/coral`, ...args], env);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/refused user "coral": wrong or missing password — set \$CORAL_CLICKHOUSE_PASSWORD or --clickhouse-password-file FILE/);
        expect(r.stdout + r.stderr).not.toMatch(/file-secret-77|env-secret-88/);
        expectOneLine(r.stderr);
      }
    } finally {
      server.close();
    }
  });

  it("runs on embedded ClickHouse, seeds the demo once, and keeps its data across a restart", async () => {
    const store = join(dir, "chdb");
    const r1 = await spawnOnStore(store, ["--demo", "--demo-static"]);
    expect(r1.stdout).toMatch(new RegExp(`^colony listening on \\S+ \\(store chdb:${store}\\)$`, "m"));
    expect(r1.stderr).toMatch(/seeded demo data: \d+ spans from 6 services/);
    const r2 = await spawnOnStore(store, ["--demo", "--demo-static"]);
    expect(r2.stderr).toMatch(new RegExp(`chdb:${store} already holds 6 services; keeping its data instead of seeding demo data`));
    // Seeding three hours of demo spans into embedded ClickHouse takes tens of seconds on a busy machine.
  }, 300_000);
});

/** Starts a colony on `chdb:DIR`, waits until it is ready, and stops it: its output. */
async function spawnOnStore(store: string, extra: string[]): Promise<{ stdout: string; stderr: string }> {
  const { spawn } = await import("node:child_process");
  const proc = spawn(process.execPath, ["bin/coral.cjs", "colony", "start", "--listen", "127.0.0.1:0", "--otlp", "off", "--store", `chdb:${store}`, ...extra], {
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
    env: { PATH: process.env.PATH!, HOME: process.env.HOME!, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  proc.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  proc.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", resolve));
  await new Promise<void>((resolve, reject) => {
    proc.stdout.on("data", () => /^colony listening on /m.test(stdout) && resolve());
    void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
  proc.kill("SIGTERM");
  expect(await exited).toBe(0);
  return { stdout, stderr };
}
