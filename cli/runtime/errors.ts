import { Code, ConnectError } from "@connectrpc/connect";
import { UsageError } from "clipanion";
import { errorCodeName, type CoralErrorCode } from "../../surface/error-codes.js";
import { CliError } from "./cli-error.js";
import { ExitCode } from "./exit.js";

export { CliError };

export { UsageError };

/** Network-level causes worth naming, as Node reports them. */
const socketErrors: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host not found",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  EPROTO: "TLS failed: colonies serve plain HTTP, write --colony HOST:PORT",
};

const socketCodeInMessage = new RegExp(`\\b(${Object.keys(socketErrors).join("|")})\\b`);

/** The code of the first network-level cause in the chain that socketErrors names. */
function socketCause(err: unknown): string | undefined {
  for (let e: any = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (typeof e.code === "string" && socketErrors[e.code]) return e.code;
    const m = socketCodeInMessage.exec(String(e.message ?? ""));
    if (m) return m[1];
  }
  return undefined;
}

/**
 * Whether the answer came from something other than a colony serving this API: another HTTP
 * server on that port, or a colony too old to know the method (both give a bare HTTP status,
 * or a content type Connect does not speak).
 */
function notConnect(ce: ConnectError): boolean {
  return /^HTTP \d{3}$/.test(ce.rawMessage) || ce.rawMessage.startsWith("unsupported content type");
}

/** An RPC failure as its status code (CoralError's spelling) and one line that says what to do. */
export interface RpcFailure {
  code: CoralErrorCode;
  message: string;
  /** The message is the colony's own text, not a line of ours: callers add where it came from. */
  fromColony: boolean;
}

/**
 * What an RPC failure means for the user, once for `coral query` and for scripts under `coral run`
 * (whose SDK calls the parent makes). `colony` is the address the user asked for, so the line can
 * name it.
 */
export function rpcFailure(err: unknown, colony: string): RpcFailure {
  const ce = ConnectError.from(err);
  const code = socketCause(err);
  const ours = (c: CoralErrorCode, message: string): RpcFailure => ({ code: c, message, fromColony: false });
  if (code === "EPROTO") return ours("unavailable", `cannot talk to ${colony}: ${socketErrors.EPROTO}`);
  // A colony restarts its worker when user SQL runs away (memory, or past what DuckDB can
  // interrupt); the calls in flight then lose their connection, and a retry is served.
  if (code === "ECONNRESET") return ours("unavailable", `colony at ${colony} closed the connection (it may be restarting after a runaway query) — retry`);
  if (code || ce.code === Code.Unavailable) {
    return ours(
      "unavailable",
      `cannot reach colony at ${colony} (${code ? socketErrors[code] : ce.rawMessage}) — start one with: coral colony start`,
    );
  }
  if (notConnect(ce)) {
    return ours(
      "unavailable",
      `${colony} did not answer as a Coral colony (${ce.rawMessage}) — check --colony or CORAL_COLONY_ADDR, ` +
        "and that the colony runs this version of Coral",
    );
  }
  switch (ce.code) {
    case Code.Unauthenticated:
      return ours("unauthenticated", `colony at ${colony} rejected the request: ${ce.rawMessage} — pass --token-file FILE or set CORAL_TOKEN`);
    case Code.DeadlineExceeded:
      return ours("deadline_exceeded", `colony at ${colony} timed out: ${ce.rawMessage}`);
    default:
      return { code: errorCodeName(Code[ce.code]), message: ce.rawMessage, fromColony: true };
  }
}

/** Turns an RPC failure into the one line `coral query` prints. */
export function describeRpcError(err: unknown, colony: string): CliError {
  const f = rpcFailure(err, colony);
  // A value the colony refused (a bound only it checks, SQL that is not one SELECT) is a mistake in
  // the command line like one clipanion catches: exit 2.
  const exit = f.code === "invalid_argument" ? ExitCode.usage : ExitCode.error;
  return new CliError(f.fromColony ? `${f.message} (${f.code})` : f.message, exit);
}
