import { Code, ConnectError } from "@connectrpc/connect";
import { UsageError } from "clipanion";
import { errorCodeName } from "../../sdk/errors.js";
import { CliError } from "./cli-error.js";

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

/**
 * Turns an RPC failure into one line that says what happened and what to do next.
 * `colony` is the address the user asked for, so the line can name it.
 */
export function describeRpcError(err: unknown, colony: string): CliError {
  const ce = ConnectError.from(err);
  const code = socketCause(err);
  if (code === "EPROTO") return new CliError(`cannot talk to ${colony}: ${socketErrors.EPROTO}`);
  if (code || ce.code === Code.Unavailable) {
    return new CliError(
      `cannot reach colony at ${colony} (${code ? socketErrors[code] : ce.rawMessage}) — start one with: coral colony start`,
    );
  }
  if (notConnect(ce)) {
    return new CliError(
      `${colony} did not answer as a Coral colony (${ce.rawMessage}) — check --colony or CORAL_COLONY_ADDR, ` +
        "and that the colony runs this version of Coral",
    );
  }
  switch (ce.code) {
    case Code.Unauthenticated:
      return new CliError(
        `colony at ${colony} rejected the request: ${ce.rawMessage} — pass --token-file FILE or set CORAL_TOKEN`,
      );
    case Code.DeadlineExceeded:
      return new CliError(`colony at ${colony} timed out: ${ce.rawMessage}`);
    default:
      return new CliError(`${ce.rawMessage} (${errorCodeName(Code[ce.code])})`);
  }
}
