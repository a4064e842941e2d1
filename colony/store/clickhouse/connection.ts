// Where a colony's ClickHouse store is (`--store URL`) and the client that talks to it.
//
//   clickhouse://USER@HOST:PORT/DB    HTTP (default port 8123)
//   clickhouses://USER@HOST:PORT/DB   HTTPS (default port 8443)
//   chdb:DIR                          ClickHouse embedded in the process (npm `chdb`), data in DIR
//
// The password never appears in the URL (argv is readable by every local user, and URLs end up in
// logs): it comes from $CORAL_CLICKHOUSE_PASSWORD or a file, and no message here repeats it.
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { resolve } from "node:path";
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from "@clickhouse/client";

export type ClickHouseTarget =
  | { kind: "server"; url: string; username: string; database: string; secure: boolean; host: string; port: number }
  | { kind: "chdb"; path: string; database: string };

/** A store URL or connection problem, worded for the user: one line, no stack. */
export class StoreUrlError extends Error {
  override readonly name = "StoreUrlError";
}

const MAX_URL_CHARS = 2048;
/** A plain identifier: quoting could make any name safe, but a name that needs quoting is a mistake here. */
const DATABASE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const DEFAULT_DATABASE = "coral";
/** Embedded chdb keeps one database per directory; the name only matters to raw SQL that qualifies tables. */
const CHDB_DATABASE = "coral";

export const PASSWORD_ENV = "CORAL_CLICKHOUSE_PASSWORD";

/** Whether `--store` names a ClickHouse store (anything else is refused by parseStoreUrl). */
export function isClickHouseUrl(raw: string): boolean {
  return /^(clickhouses?:\/\/|chdb:)/i.test(raw);
}

/** What the user wrote, fit to quote in an error: cut short, without control characters. */
function quote(raw: string): string {
  const shown = raw.length > 80 ? `${raw.slice(0, 77)}...` : raw;
  return JSON.stringify(shown);
}

export function parseStoreUrl(raw: string): ClickHouseTarget {
  if (raw.trim() === "") throw new StoreUrlError("--store is empty — give clickhouse://USER@HOST:8123/DB or chdb:DIR (or leave --store out for a DuckDB file, --db)");
  if (raw.length > MAX_URL_CHARS) throw new StoreUrlError(`--store is ${raw.length} characters long; a store URL is at most ${MAX_URL_CHARS}`);
  // Before anything quotes the URL: the password must not reach a terminal or a log.
  if (/^clickhouses?:\/\/[^/@]*:[^/@]*@/i.test(raw)) {
    throw new StoreUrlError(
      `--store must not carry the password (anything on the command line is visible to every local user in \`ps\`) — remove it from the URL and set $${PASSWORD_ENV} or --clickhouse-password-file FILE`,
    );
  }
  if (/[\u0000-\u001f\u007f]/.test(raw)) throw new StoreUrlError(`--store ${quote(raw)} contains control characters`);
  const chdb = /^chdb:(.*)$/is.exec(raw);
  if (chdb) {
    const dir = chdb[1]!;
    if (dir.trim() === "") throw new StoreUrlError("--store chdb: needs a directory for the embedded ClickHouse data, e.g. chdb:./coral-chdb");
    return { kind: "chdb", path: resolve(dir), database: CHDB_DATABASE };
  }
  const scheme = /^(clickhouses?):\/\//i.exec(raw)?.[1]?.toLowerCase();
  if (!scheme) {
    throw new StoreUrlError(`--store ${quote(raw)} is not a store URL — give clickhouse://USER@HOST:8123/DB, clickhouses://USER@HOST:8443/DB or chdb:DIR (a DuckDB file is --db FILE)`);
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new StoreUrlError(`--store ${quote(raw)} is not a valid URL (a port must be 1..65535; an IPv6 host goes in brackets: clickhouse://default@[::1]:8123/coral)`);
  }
  if (url.hostname === "") throw new StoreUrlError(`--store ${quote(raw)} names no host — clickhouse://USER@HOST:8123/DB`);
  if (url.search !== "" || url.hash !== "") {
    throw new StoreUrlError(`--store ${quote(raw)}: query parameters and fragments are not supported (use clickhouses:// for HTTPS)`);
  }
  const secure = scheme === "clickhouses";
  const port = url.port === "" ? (secure ? 8443 : 8123) : Number(url.port);
  if (port < 1 || port > 65535) throw new StoreUrlError(`--store ${quote(raw)}: port ${port} is outside 1..65535`);
  let database = DEFAULT_DATABASE;
  const path = url.pathname.replace(/^\//, "");
  if (path !== "") {
    let decoded: string;
    try {
      decoded = decodeURIComponent(path);
    } catch {
      decoded = path;
    }
    if (!DATABASE_NAME.test(decoded)) {
      throw new StoreUrlError(`--store: database name ${quote(decoded)} must be letters, digits and _ (not starting with a digit), at most 64 characters`);
    }
    database = decoded;
  }
  let username = "default";
  if (url.username !== "") {
    try {
      username = decodeURIComponent(url.username);
    } catch {
      throw new StoreUrlError(`--store ${quote(raw)}: the user name is not valid percent-encoding`);
    }
  }
  // hostname keeps an IPv6 address in its brackets.
  const base = `${secure ? "https" : "http"}://${url.hostname}:${port}`;
  return { kind: "server", url: base, username, database, secure, host: url.hostname, port };
}

/** A password is a line of text; a bigger file is the wrong file. */
const PASSWORD_FILE_MAX_BYTES = 4096;
/** How long a pipe (`<(pass show coral)`, a FIFO) gets to deliver the password. */
const PASSWORD_PIPE_WAIT_MS = 2_000;

const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * The ClickHouse password: the file's first line (surrounding whitespace dropped) when a file is
 * given, else $CORAL_CLICKHOUSE_PASSWORD, else none (ClickHouse's passwordless `default` user).
 * Bounded in size and time whatever the file is: a FIFO nobody writes to, /dev/zero, a directory
 * or a huge file fail at once, or within PASSWORD_PIPE_WAIT_MS, with one line.
 */
export function readPassword(file: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (file === undefined) return env[PASSWORD_ENV] === undefined || env[PASSWORD_ENV] === "" ? undefined : env[PASSWORD_ENV];
  const fail = (why: string) => new StoreUrlError(`--clickhouse-password-file: ${file} ${why}`);
  let fd: number;
  try {
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer, forever.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw fail(code === "ENOENT" ? "does not exist" : code === "EACCES" || code === "EPERM" ? "cannot be read (permission denied)" : `cannot be opened (${code})`);
  }
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw fail("is a directory, not a file");
    const pipe = stat.isFIFO() || stat.isSocket();
    const until = Date.now() + PASSWORD_PIPE_WAIT_MS;
    // Read to the limit rather than trusting the size: a pipe reports none, /dev/zero never ends.
    const buf = Buffer.alloc(PASSWORD_FILE_MAX_BYTES + 1);
    let n = 0;
    for (;;) {
      let got: number;
      try {
        got = readSync(fd, buf, n, buf.length - n, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw fail(`cannot be read (${(err as NodeJS.ErrnoException).code})`);
        got = -1;
      }
      if (got > 0) n += got;
      if (n === buf.length) break;
      // End of a file; of a pipe once its writer wrote and left (before, a FIFO reads as ended too).
      if (got === 0 && (!pipe || n > 0)) break;
      if (Date.now() >= until) {
        if (n === 0) throw fail(`is a pipe nothing was written to within ${PASSWORD_PIPE_WAIT_MS / 1000} s; it should hold the password`);
        break;
      }
      pause(10);
    }
    if (n > PASSWORD_FILE_MAX_BYTES) throw fail(`is larger than ${PASSWORD_FILE_MAX_BYTES / 1024} KiB; it should hold only the password`);
    const text = buf.subarray(0, n).toString("utf8").trim();
    if (text === "") throw fail("is empty; it should hold the password");
    if (/[\r\n]/.test(text)) throw fail("holds more than one line; it should hold only the password");
    return text;
  } finally {
    closeSync(fd);
  }
}

/** Failures reach the colony as errors, worded for the user; the client's own log would print stacks. */
const QUIET = { level: ClickHouseLogLevel.OFF };

export interface OpenOptions {
  password?: string;
  /** How to load chdb (tests replace it to see the "not installed" path). */
  importChdb?: () => Promise<{ createChdbConnection: (o: { path: string }) => unknown }>;
}

/**
 * Opens a client for the target and checks it works (the server answers, the user may log in),
 * turning the usual failures into one actionable line (StoreUrlError). The database itself is
 * created by createTables, so a missing one is not an error here.
 */
export async function openClickHouse(target: ClickHouseTarget, o: OpenOptions = {}): Promise<{ client: ClickHouseClient; database: string }> {
  let client: ClickHouseClient;
  if (target.kind === "chdb") {
    let mod: { createChdbConnection: (o: { path: string }) => unknown };
    try {
      // Only here, and lazily: chdb is a 540 MB native library that a server deployment never needs.
      mod = await (o.importChdb ?? importChdb)();
    } catch {
      throw new StoreUrlError("--store chdb: needs the chdb package (embedded ClickHouse), which is not installed — run: npm install chdb@3.4.0");
    }
    try {
      client = createClient({ connection: mod.createChdbConnection({ path: target.path }) as never, log: QUIET });
    } catch (err) {
      throw new StoreUrlError(`cannot open embedded ClickHouse in ${target.path}: ${firstLine(err)}`);
    }
  } else {
    client = createClient({
      url: target.url,
      username: target.username,
      password: o.password ?? "",
      request_timeout: 30_000,
      // Every colony process is one client; the pool bounds its concurrent requests.
      max_open_connections: 10,
      log: QUIET,
    });
  }
  try {
    await client.command({ query: "SELECT 1" });
  } catch (err) {
    await client.close().catch(() => {});
    throw connectError(target, err);
  }
  return { client, database: target.database };
}

/** chdb is CommonJS: imported from ESM, its exports may sit on `default`. */
async function importChdb(): Promise<{ createChdbConnection: (o: { path: string }) => unknown }> {
  const mod = (await import("chdb/connection")) as { createChdbConnection?: (o: { path: string }) => unknown; default?: { createChdbConnection?: (o: { path: string }) => unknown } };
  const create = mod.createChdbConnection ?? mod.default?.createChdbConnection;
  if (typeof create !== "function") throw new Error("chdb/connection has no createChdbConnection");
  return { createChdbConnection: create };
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0]!.replace(/\s*\(version [^)]*\)\s*$/, "");
}

/** A ClickHouse server's error code (`Code: 516`) or a socket error's (ECONNREFUSED). */
function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  return typeof e?.code === "string" ? e.code : typeof e?.cause?.code === "string" ? e.cause.code : undefined;
}

export function connectError(target: ClickHouseTarget, err: unknown): StoreUrlError {
  const where = target.kind === "chdb" ? `embedded ClickHouse in ${target.path}` : `ClickHouse at ${target.url}`;
  const code = errorCode(err);
  const msg = firstLine(err);
  if (code === "ECONNREFUSED") return new StoreUrlError(`cannot reach ${where}: connection refused — is the server running, and is that its HTTP${target.kind === "server" && target.secure ? "S" : ""} port?`);
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return new StoreUrlError(`cannot reach ${where}: the host name does not resolve`);
  if (code === "ETIMEDOUT" || code === "ECONNRESET" || code === "EHOSTUNREACH" || code === "ENETUNREACH" || /timeout/i.test(msg)) {
    return new StoreUrlError(`cannot reach ${where}: ${code ?? "timed out"}`);
  }
  if (code === "516" || code === "194" || /AUTHENTICATION_FAILED|REQUIRED_PASSWORD|password is incorrect/i.test(msg)) {
    const user = target.kind === "server" ? target.username : "";
    return new StoreUrlError(`${where} refused user ${JSON.stringify(user)}: wrong or missing password — set $${PASSWORD_ENV} or --clickhouse-password-file FILE`);
  }
  if (code === "81" || /UNKNOWN_DATABASE/.test(msg)) return new StoreUrlError(`${where}: database ${target.database} does not exist and could not be created — create it, or grant the user CREATE DATABASE`);
  if (code === "497" || /ACCESS_DENIED/.test(msg)) return new StoreUrlError(`${where}: the user may not do this: ${msg}`);
  if (/EPROTO|wrong version number|SSL/i.test(msg)) return new StoreUrlError(`cannot reach ${where}: TLS failed (${msg}) — clickhouse:// is HTTP, clickhouses:// is HTTPS`);
  return new StoreUrlError(`${where}: ${msg}`);
}
