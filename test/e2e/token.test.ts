// The bearer token off the command line (issue #9): every command that takes --token also takes
// --token-file, and $CORAL_TOKEN; --token still works but warns that `ps` shows it. End to end
// with the real CLI against a colony that was itself given its token by file.
import { execFileSync } from "node:child_process";
import { chmodSync, createWriteStream, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCoral, spawnColony, type SpawnedColony } from "../helpers/colony.js";

const TOKEN = "tok-3f9a1c0b7e";
const TOKEN_FLAG_WARNING =
  "coral: warning: --token is visible to other local users in `ps`; use --token-file FILE or CORAL_TOKEN instead\n";

const dir = mkdtempSync(join(tmpdir(), "coral-token-e2e-"));

/** A token file with the given content and mode (0600 unless told: the mode users are told to use). */
function tokenFile(name: string, content: string | Buffer, mode = 0o600): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  chmodSync(path, mode); // explicit: the umask would otherwise decide
  return path;
}

const goodFile = tokenFile("good.token", `  ${TOKEN}\n\n`);
const wrongFile = tokenFile("wrong.token", "not-the-token\n");

let colony: SpawnedColony;
beforeAll(async () => {
  colony = await spawnColony({ extraArgs: ["--token-file", goodFile] });
});
afterAll(async () => {
  await colony?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function services(auth: string[], o: { env?: Record<string, string>; input?: string } = {}) {
  return runCoral(["query", "services", "--colony", colony.addr, "-o", "json", ...auth], o);
}

describe("a colony started with --token-file", () => {
  it("serves a client giving the same token by --token-file, silently", async () => {
    const r = await services(["--token-file", goodFile]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toHaveProperty("services");
  });

  it("serves a client giving the token by $CORAL_TOKEN", async () => {
    const r = await services([], { env: { CORAL_TOKEN: TOKEN } });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  it.skipIf(process.platform === "win32")("takes the token from a pipe, as `--token-file <(pass show coral)` gives it", async () => {
    const fifo = join(dir, "token.fifo");
    execFileSync("mkfifo", ["-m", "600", fifo]);
    // Opening a FIFO for writing waits for the reader: coral, started next.
    const writer = createWriteStream(fifo);
    writer.end(`${TOKEN}\n`);
    const r = await services(["--token-file", fifo]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  it("refuses a wrong token from a file or $CORAL_TOKEN, and no token, with exit 1", async () => {
    for (const [auth, env] of [
      [["--token-file", wrongFile], undefined],
      [[], { CORAL_TOKEN: "not-the-token" }],
      [[], undefined],
    ] as const) {
      const r = await services([...auth], { env });
      expect(r.code, JSON.stringify({ auth, env })).toBe(1);
      expect(r.stderr).toMatch(/^coral: colony at 127\.0\.0\.1:\d+ rejected the request: .* — pass --token-file FILE or set CORAL_TOKEN\n$/);
    }
  });

  it("a flag wins over $CORAL_TOKEN", async () => {
    expect((await services(["--token-file", goodFile], { env: { CORAL_TOKEN: "not-the-token" } })).code).toBe(0);
    expect((await services(["--token-file", wrongFile], { env: { CORAL_TOKEN: TOKEN } })).code).toBe(1);
    const flag = await services(["--token", TOKEN], { env: { CORAL_TOKEN: "not-the-token" } });
    expect(flag.code).toBe(0);
  });

  it("--token still works, with one warning line on stderr", async () => {
    const r = await services(["--token", TOKEN]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(TOKEN_FLAG_WARNING);
  });

  it("--token and --token-file together is a usage error", async () => {
    const r = await services(["--token", TOKEN, "--token-file", goodFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("coral: --token and --token-file: give only one of them\n");
  });

  it("coral demo load sends the token from the file; a wrong one is refused", async () => {
    const load = (file: string) =>
      runCoral(["demo", "load", "--otlp", colony.otlpUrl!, "--rate", "200", "--duration", "0.2", "--batch", "10", "--token-file", file]);
    const ok = await load(goodFile);
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/, 0 rejected/);
    const refused = await load(wrongFile);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/401/);
  });

  it("coral run passes the token from the file to the script", async () => {
    const script = join(dir, "whoami.ts");
    writeFileSync(script, 'import * as coral from "@coral/sdk";\nconsole.log("ok", (await coral.services.list()).length >= 0);\n');
    const ok = await runCoral(["run", "--colony", colony.addr, "--token-file", goodFile, script]);
    expect(ok.stderr).toBe("");
    expect(ok.stdout).toBe("ok true\n");
    expect(ok.code).toBe(0);
    const refused = await runCoral(["run", "--colony", colony.addr, "--token-file", wrongFile, script]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/unauthenticated/);
  });
});

describe("a token file coral cannot use: exit 2, one line, no stack", () => {
  const big = tokenFile("big.token", "a".repeat(4097));
  const cases: [string, string, string][] = [
    ["a missing file", join(dir, "nope.token"), "does not exist"],
    ["a directory", dir, "is a directory, not a file"],
    ["an empty file", tokenFile("empty.token", ""), "is empty; it should hold the token"],
    ["a file of only whitespace", tokenFile("blank.token", " \n\t\n"), "is empty; it should hold the token"],
    ["a file larger than 4 KiB", big, "is larger than 4 KiB; it should hold only the token"],
    ["a device that never ends", "/dev/zero", "is larger than 4 KiB; it should hold only the token"],
    ["two words", tokenFile("words.token", "abc def\n"), ": a token is visible ASCII without spaces (e.g. from `openssl rand -hex 16`)"],
    ["two lines", tokenFile("lines.token", "abc\ndef\n"), ": a token is visible ASCII without spaces (e.g. from `openssl rand -hex 16`)"],
    ["non-ASCII", tokenFile("accent.token", "t\u00e9\n"), ": a token is visible ASCII without spaces (e.g. from `openssl rand -hex 16`)"],
  ];

  for (const [what, path, why] of cases) {
    it(what, async () => {
      const r = await services(["--token-file", path]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toBe(`coral: --token-file: ${path}${why.startsWith(":") ? "" : " "}${why}\n`);
    });
  }

  it("a token of exactly 4 KiB is still read (and then rejected by the colony as wrong)", async () => {
    const r = await services(["--token-file", tokenFile("4k.token", "b".repeat(4096))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/rejected the request/);
  });

  it("every command refuses it the same way, before doing anything", async () => {
    const missing = join(dir, "nope.token");
    const line = `coral: --token-file: ${missing} does not exist\n`;
    for (const args of [
      ["colony", "start", "--db", ":memory:", "--listen", "127.0.0.1:0", "--otlp", "off"],
      ["query", "sql", "SELECT 1", "--colony", colony.addr],
      ["run", "--colony", colony.addr, join(dir, "whatever.ts")],
      ["demo", "load", "--otlp", colony.otlpUrl!, "--duration", "0.1"],
    ]) {
      const r = await runCoral([...args, "--token-file", missing]);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toBe(line);
    }
  });

  it("a bad $CORAL_TOKEN is named as such", async () => {
    const r = await services([], { env: { CORAL_TOKEN: "a b" } });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("coral: $CORAL_TOKEN: a token is visible ASCII without spaces (e.g. from `openssl rand -hex 16`)\n");
  });
});

describe.skipIf(process.platform === "win32")("a token file other users can read", () => {
  it("warns once, like ssh for a key, and still uses it", async () => {
    const open = tokenFile("open.token", `${TOKEN}\n`, 0o644);
    const r = await services(["--token-file", open]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(
      `coral: warning: --token-file ${open} is accessible to other users (mode 0644); protect it with: chmod 600 ${open}\n`,
    );
  });

  it("a colony started with such a file warns too", async () => {
    const open = tokenFile("open-colony.token", `${TOKEN}\n`, 0o640);
    // A database in a directory that does not exist ends the start right after the token is read.
    const r = await runCoral(["colony", "start", "--db", join(dir, "no-such-dir", "c.duckdb"), "--listen", "127.0.0.1:0", "--otlp", "off", "--token-file", open]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines[0]).toBe(`coral: warning: --token-file ${open} is accessible to other users (mode 0640); protect it with: chmod 600 ${open}`);
    expect(lines).toHaveLength(2);
  });
});

describe("--token on the other commands", () => {
  it("colony start, run and demo load warn about --token too", async () => {
    const colonyStart = await runCoral(["colony", "start", "--db", join(dir, "no-such-dir", "c.duckdb"), "--listen", "127.0.0.1:0", "--otlp", "off", "--token", TOKEN]);
    expect(colonyStart.code).toBe(1);
    expect(colonyStart.stderr.startsWith(TOKEN_FLAG_WARNING)).toBe(true);

    const script = join(dir, "hello.ts");
    writeFileSync(script, 'console.log("hi");\n');
    const run = await runCoral(["run", "--colony", colony.addr, "--token", TOKEN, script]);
    expect(run.stdout).toBe("hi\n");
    expect(run.stderr).toBe(TOKEN_FLAG_WARNING);

    const load = await runCoral(["demo", "load", "--otlp", colony.otlpUrl!, "--rate", "100", "--duration", "0.1", "--batch", "10", "--token", TOKEN]);
    expect(load.code).toBe(0);
    expect(load.stderr).toBe(TOKEN_FLAG_WARNING);
  });

  it("every command's help offers --token-file", async () => {
    for (const args of [["colony", "start"], ["query", "services"], ["query", "sql"], ["run"], ["demo", "load"]]) {
      const r = await runCoral([...args, "--help"]);
      expect(r.stdout, args.join(" ")).toContain("--token-file");
    }
  });
});
