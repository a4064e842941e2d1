// Where a command's bearer token comes from. A token on the command line is readable by every
// local user (`ps`, /proc/PID/cmdline), so --token-file and $CORAL_TOKEN are the documented ways
// and --token is kept, with a warning, for scripts that already use it.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { UsageError } from "clipanion";
import { checkToken } from "./colony-address.js";

/** A token is a few dozen bytes; a bigger file is the wrong file (a key, a log), not a token. */
const TOKEN_FILE_MAX_BYTES = 4096;

export interface TokenFlags {
  token?: string;
  tokenFile?: string;
}

/**
 * The token for this command: --token or --token-file, else $CORAL_TOKEN (empty: none).
 * Both flags at once is a usage error: two explicit sources on one command line are a mistake
 * (say a wrapper adds one and the user another), and picking either silently would only
 * surface later as a rejected request, far from the cause. The environment variable is an
 * ambient default, so a flag overrides it, as --colony overrides $CORAL_COLONY_ADDR.
 * Problems are UsageErrors (exit 2) naming where the token came from; warnings go to `stderr`.
 */
export function resolveToken(flags: TokenFlags, stderr: NodeJS.WritableStream): string | undefined {
  if (flags.token !== undefined && flags.tokenFile !== undefined) {
    throw new UsageError("--token and --token-file: give only one of them");
  }
  if (flags.token !== undefined) {
    const token = checkToken(flags.token, "--token") || undefined;
    if (token) {
      stderr.write("coral: warning: --token is visible to other local users in `ps`; use --token-file FILE or CORAL_TOKEN instead\n");
    }
    return token;
  }
  if (flags.tokenFile !== undefined) return readTokenFile(flags.tokenFile, stderr);
  const env = process.env.CORAL_TOKEN;
  return env === undefined || env.trim() === "" ? undefined : checkToken(env, "$CORAL_TOKEN");
}

function readTokenFile(path: string, stderr: NodeJS.WritableStream): string {
  const fail = (why: string) => new UsageError(`--token-file: ${path} ${why}`);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw fail(openProblem(err));
  }
  let text: string;
  let mode: number | undefined;
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw fail("is a directory, not a file");
    if (st.isFile() && st.size > TOKEN_FILE_MAX_BYTES) throw fail(tooLarge);
    // Read to the limit rather than trusting st.size: a pipe (`--token-file <(pass show coral)`)
    // or a device reports no size, and /dev/zero must not be read forever.
    const buf = Buffer.alloc(TOKEN_FILE_MAX_BYTES + 1);
    let n = 0;
    while (n < buf.length) {
      let got: number;
      try {
        got = readSync(fd, buf, n, buf.length - n, null);
      } catch (err) {
        throw fail(`cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      if (got === 0) break;
      n += got;
    }
    if (n > TOKEN_FILE_MAX_BYTES) throw fail(tooLarge);
    text = buf.subarray(0, n).toString("utf8").trim();
    // Only a regular file's mode says who else can read the token; a pipe's does not.
    if (st.isFile() && process.platform !== "win32") mode = st.mode & 0o777;
  } finally {
    closeSync(fd);
  }
  if (text === "") throw fail("is empty; it should hold the token");
  checkToken(text, `--token-file: ${path}`);
  if (mode !== undefined && (mode & 0o077) !== 0) {
    // As ssh does for private keys, but a warning: refusing would break setups that
    // protect the file some other way (a private directory, a single-user machine).
    stderr.write(
      `coral: warning: --token-file ${path} is accessible to other users (mode ${mode.toString(8).padStart(4, "0")}); protect it with: chmod 600 ${path}\n`,
    );
  }
  return text;
}

const tooLarge = `is larger than ${TOKEN_FILE_MAX_BYTES / 1024} KiB; it should hold only the token`;

function openProblem(err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case "ENOENT":
      return "does not exist";
    case "EACCES":
    case "EPERM":
      return "cannot be read (permission denied)";
    case "EISDIR":
      return "is a directory, not a file";
    case "ENOTDIR":
      return "does not exist (a path component is not a directory)";
    default:
      return `cannot be opened (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
}
