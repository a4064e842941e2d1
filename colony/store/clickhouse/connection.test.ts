import { execFileSync, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { closedPort } from "../../../test/helpers/colony.js";
import { openClickHouse, parseStoreUrl, readPassword, StoreUrlError } from "./connection.js";

const dir = mkdtempSync(join(tmpdir(), "coral-ch-conn-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function refused(url: string): string {
  try {
    parseStoreUrl(url);
  } catch (err) {
    expect(err).toBeInstanceOf(StoreUrlError);
    return (err as Error).message;
  }
  throw new Error(`${url} was accepted`);
}

describe("parseStoreUrl", () => {
  it("reads server URLs, with the defaults spelled out", () => {
    expect(parseStoreUrl("clickhouse://coral@ch.internal:8123/telemetry")).toEqual({
      kind: "server", url: "http://ch.internal:8123", username: "coral", database: "telemetry", secure: false, host: "ch.internal", port: 8123,
    });
    expect(parseStoreUrl("clickhouses://ch.internal")).toMatchObject({ url: "https://ch.internal:8443", username: "default", database: "coral", secure: true });
    expect(parseStoreUrl("CLICKHOUSE://u%40corp@10.0.0.1/db_1")).toMatchObject({ url: "http://10.0.0.1:8123", username: "u@corp", database: "db_1" });
    expect(parseStoreUrl("clickhouse://default@[::1]:9000/coral")).toMatchObject({ url: "http://[::1]:9000", host: "[::1]", port: 9000 });
    expect(parseStoreUrl("chdb:./data/ch")).toEqual({ kind: "chdb", path: join(process.cwd(), "data/ch"), database: "coral" });
  });

  it("refuses hostile and mistaken URLs with a message that says what to write", () => {
    expect(refused("")).toMatch(/--store is empty — give clickhouse:\/\//);
    expect(refused("   ")).toMatch(/is empty/);
    expect(refused("clickhouse://h/" + "a".repeat(5000))).toMatch(/5015 characters long; a store URL is at most 2048/);
    expect(refused("postgres://u@h/db")).toMatch(/is not a store URL — give clickhouse:\/\/.*a DuckDB file is --db FILE/);
    expect(refused("./coral.duckdb")).toMatch(/not a store URL/);
    expect(refused("chdb:")).toMatch(/chdb: needs a directory/);
    expect(refused("clickhouse:///db")).toMatch(/names no host|not a valid URL/);
    expect(refused("clickhouse://h:0/db")).toMatch(/port 0 is outside 1\.\.65535/);
    expect(refused("clickhouse://h:99999/db")).toMatch(/port must be 1\.\.65535/);
    expect(refused("clickhouse://::1:8123/db")).toMatch(/IPv6 host goes in brackets/);
    expect(refused("clickhouse://h/db?secure=1")).toMatch(/query parameters .* not supported \(use clickhouses:\/\/ for HTTPS\)/);
    expect(refused("clickhouse://h/db\nDROP")).toMatch(/control characters/);
    // A database name is an identifier in every statement: anything that would need quoting is refused.
    for (const db of ["x`; DROP DATABASE default; --", "a.b", "a%60b", "1abc", "ünï", "a".repeat(65), "db/extra"]) {
      expect(refused(`clickhouse://h/${db}`)).toMatch(/database name .* must be letters, digits and _/);
    }
  });

  it("refuses a password in the URL without repeating it", () => {
    for (const url of ["clickhouse://coral:s3cret-pw@h:8123/db", "clickhouses://:s3cret-pw@h/db", "clickhouse://coral:s3cret-pw@[::1]/db"]) {
      const msg = refused(url);
      expect(msg).toMatch(/must not carry the password .* \$CORAL_CLICKHOUSE_PASSWORD or --clickhouse-password-file FILE/);
      expect(msg).not.toContain("s3cret-pw");
    }
  });
});

describe("readPassword", () => {
  it("takes the file's one line, else the environment, else none", () => {
    const f = join(dir, "pw");
    writeFileSync(f, "  p@ss word  \n");
    expect(readPassword(f, { CORAL_CLICKHOUSE_PASSWORD: "env" })).toBe("p@ss word");
    expect(readPassword(undefined, { CORAL_CLICKHOUSE_PASSWORD: "env" })).toBe("env");
    expect(readPassword(undefined, { CORAL_CLICKHOUSE_PASSWORD: "" })).toBeUndefined();
    expect(readPassword(undefined, {})).toBeUndefined();
  });

  it("refuses files that cannot be a password, naming the file and not its content", () => {
    const big = join(dir, "big");
    writeFileSync(big, "x".repeat(5000));
    const two = join(dir, "two");
    writeFileSync(two, "first-line-secret\nsecond\n");
    const empty = join(dir, "empty");
    writeFileSync(empty, "\n");
    const locked = join(dir, "locked");
    writeFileSync(locked, "pw");
    chmodSync(locked, 0);
    const cases: [string, RegExp][] = [
      [join(dir, "missing"), /does not exist/],
      [dir, /is a directory/],
      [big, /larger than 4 KiB/],
      [two, /more than one line/],
      [empty, /is empty/],
      ["/dev/zero", /larger than 4 KiB/],
    ];
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    // Opened for reading, a FIFO nobody writes to would block the start forever.
    cases.push([fifo, /is a pipe nothing was written to within 2 s; it should hold the password/]);
    // root reads any file: the permission case only means something for other users.
    if (process.getuid?.() !== 0) cases.push([locked, /permission denied/]);
    for (const [file, why] of cases) {
      let msg = "";
      try {
        readPassword(file);
      } catch (err) {
        expect(err).toBeInstanceOf(StoreUrlError);
        msg = (err as Error).message;
      }
      expect(msg).toMatch(why);
      expect(msg).toContain(`--clickhouse-password-file: ${file}`);
      expect(msg).not.toContain("first-line-secret");
    }
  });
});

describe("readPassword from a pipe", () => {
  it("takes the password a FIFO's writer sends, as from `<(pass show coral)`", async () => {
    const fifo = join(dir, "fifo-written");
    execFileSync("mkfifo", [fifo]);
    // The writer blocks until the reader opens; readPassword must not block the writer out.
    const writer = spawn("sh", ["-c", `sleep 0.2; printf 'from-a-pipe\\n' > ${fifo}`]);
    const exited = new Promise((r) => writer.on("exit", r));
    expect(readPassword(fifo)).toBe("from-a-pipe");
    await exited;
  });
});

/** A stand-in for a ClickHouse server's HTTP interface that answers every request with one error. */
async function fakeServer(status: number, body: string, headers: Record<string, string> = {}): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(status, { "content-type": "text/plain", ...headers }).end(body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port };
}

async function openFails(url: string, o: Parameters<typeof openClickHouse>[1] = {}): Promise<string> {
  try {
    const { client } = await openClickHouse(parseStoreUrl(url), o);
    await client.close();
  } catch (err) {
    expect(err).toBeInstanceOf(StoreUrlError);
    return (err as Error).message;
  }
  throw new Error("opened");
}

describe("openClickHouse", () => {
  it("says plainly when the server is not there", async () => {
    const addr = await closedPort();
    expect(await openFails(`clickhouse://default@${addr}/coral`)).toMatch(new RegExp(`cannot reach ClickHouse at http://${addr}: connection refused — is the server running`));
    expect(await openFails("clickhouse://default@no-such-host.invalid/coral")).toMatch(/cannot reach ClickHouse at http:\/\/no-such-host\.invalid:8123: the host name does not resolve/);
  });

  it("tells a refused password from other server errors, without the password", async () => {
    const auth = await fakeServer(516, "Code: 516. DB::Exception: coral: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED) (version 26.7.2.1)\n", {
      "x-clickhouse-exception-code": "516",
    });
    const other = await fakeServer(500, "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED) (version 26.7.2.1)\n", { "x-clickhouse-exception-code": "241" });
    try {
      const msg = await openFails(`clickhouse://coral@127.0.0.1:${auth.port}/coral`, { password: "hunter2-secret" });
      expect(msg).toMatch(/refused user "coral": wrong or missing password — set \$CORAL_CLICKHOUSE_PASSWORD or --clickhouse-password-file FILE/);
      expect(msg).not.toContain("hunter2-secret");
      expect(await openFails(`clickhouse://coral@127.0.0.1:${other.port}/coral`)).toMatch(/^ClickHouse at http:\/\/127\.0\.0\.1:\d+: .*Memory limit \(total\) exceeded/);
    } finally {
      auth.server.close();
      other.server.close();
    }
  });

  it("asks for chdb when it is not installed", async () => {
    const missing = () => Promise.reject(Object.assign(new Error("Cannot find package 'chdb'"), { code: "ERR_MODULE_NOT_FOUND" }));
    expect(await openFails(`chdb:${join(dir, "ch")}`, { importChdb: missing })).toBe(
      "--store chdb: needs the chdb package (embedded ClickHouse), which is not installed — run: npm install chdb@3.4.0",
    );
  });
});
