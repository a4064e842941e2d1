// The answer side of Connect's protocol over HTTP/1.1, as every client of the colony reads it: a
// unary body, and what each way of failing means (a stream's envelopes: connect-stream.ts). Used by
// the colony client's unary calls (client.ts, over node:http or lean-http.ts), which serve the
// Connect transport of `coral query` and `coral mcp` (transport.ts) and `coral run`'s broker,
// whose unary calls must load no Connect or protobuf runtime at all: so nothing here imports them,
// and a failure is a WireError (a status code name and a message) until it is reported
// (transport.ts turns it into a ConnectError).
import type { IncomingMessage } from "node:http";
import type { CoralErrorCode } from "../../surface/error-codes.js";

/** A failed call as the protocol, the colony or the client's own limits name it. */
export class WireError extends Error {
  constructor(
    readonly code: CoralErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Connect's code strings are CoralErrorCode's. */
const CODES: Record<CoralErrorCode, true> = {
  canceled: true,
  unknown: true,
  invalid_argument: true,
  deadline_exceeded: true,
  not_found: true,
  already_exists: true,
  permission_denied: true,
  resource_exhausted: true,
  failed_precondition: true,
  aborted: true,
  out_of_range: true,
  unimplemented: true,
  internal: true,
  unavailable: true,
  data_loss: true,
  unauthenticated: true,
};

/** A code string of Connect's JSON as CoralErrorCode; anything else a server sends is "unknown". */
export function errorCode(value: unknown): CoralErrorCode {
  return typeof value === "string" && Object.hasOwn(CODES, value) ? (value as CoralErrorCode) : "unknown";
}

/** The code Connect gives an HTTP status that carries no error of its own (a proxy's, another server's). */
function codeOfStatus(status: number): CoralErrorCode {
  switch (status) {
    case 400:
      return "internal";
    case 401:
      return "unauthenticated";
    case 403:
      return "permission_denied";
    case 404:
      return "unimplemented";
    case 429:
    case 502:
    case 503:
    case 504:
      return "unavailable";
    default:
      return "unknown";
  }
}

/**
 * Connect's error JSON ({"code":…,"message":…}) where `text` is one; a part it lacks is the
 * status's, as Connect's own client reads it.
 */
function errorOfJson(text: string, status: number): WireError | undefined {
  let e: unknown;
  try {
    e = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof e !== "object" || e === null || Array.isArray(e)) return undefined;
  const { code, message } = e as { code?: unknown; message?: unknown };
  const known = typeof code === "string" && Object.hasOwn(CODES, code);
  return new WireError(known ? (code as CoralErrorCode) : codeOfStatus(status), typeof message === "string" ? message : `HTTP ${status}`);
}

/**
 * What an answer that is not the expected one means: Connect's error JSON when a non-200 carries
 * one, else the bare status, or, for a 200 of another kind, its content type. The last two are what
 * the translator reads as "not a colony" (cli/runtime/errors.ts).
 */
export function unexpectedAnswer(status: number, contentType: string, body: Buffer): WireError {
  if (status !== 200) {
    const e = contentType.startsWith("application/json") ? errorOfJson(body.toString("utf8"), status) : undefined;
    return e ?? new WireError(codeOfStatus(status), `HTTP ${status}`);
  }
  return new WireError("internal", `unsupported content type ${contentType}`.trim());
}

/** The colony stayed silent for `ms` while a call waited for it (client.ts, ClientLimits). */
export function silence(ms: number): WireError {
  return new WireError("deadline_exceeded", `no answer in ${ms / 1000} s`);
}

/** A call its caller aborted, as node:http reports one (both of the client's paths). */
export function aborted(signal: AbortSignal): Error {
  return Object.assign(new Error("This operation was aborted"), { name: "AbortError", code: "ABORT_ERR", cause: signal.reason });
}

/** A whole unary answer: its body when it is a 200 of `contentType`, else the failure it carries. */
export function unaryBody(status: number, type: string, body: Buffer, contentType: string): Buffer {
  if (status === 200 && type === contentType) return body;
  throw unexpectedAnswer(status, type, body);
}

/** An answer larger than the client takes: refused before it is read. */
export function tooLarge(bytes: number, readMaxBytes: number): WireError {
  return new WireError("resource_exhausted", `the colony sent a message of ${bytes} bytes, over the ${readMaxBytes} coral accepts — ask for fewer rows`);
}

/**
 * The whole body of a unary answer, when it is 200 and `contentType`; else the failure it carries.
 * At most `readMaxBytes`: a larger declared length is refused unread, a longer body cut off. The
 * colony may pause no longer than `answerTimeoutMs` while it is sent.
 */
export function readUnary(res: IncomingMessage, contentType: string, limits: { readMaxBytes: number; answerTimeoutMs: number }): Promise<Buffer> {
  const { readMaxBytes, answerTimeoutMs } = limits;
  return new Promise((resolve, reject) => {
    const declared = Number(res.headers["content-length"]);
    if (declared > readMaxBytes) {
      res.destroy();
      reject(tooLarge(declared, readMaxBytes));
      return;
    }
    const timer = setTimeout(() => res.destroy(silence(answerTimeoutMs)), answerTimeoutMs);
    const chunks: Buffer[] = [];
    let length = 0;
    res.on("data", (c: Buffer) => {
      timer.refresh();
      length += c.length;
      if (length > readMaxBytes) res.destroy(tooLarge(length, readMaxBytes));
      else chunks.push(c);
    });
    res.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    res.on("end", () => {
      clearTimeout(timer);
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      try {
        resolve(unaryBody(res.statusCode ?? 0, res.headers["content-type"] ?? "", body, contentType));
      } catch (e) {
        reject(e);
      }
    });
  });
}
