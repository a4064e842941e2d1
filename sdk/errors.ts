// Kept free of imports: the SDK's type declarations must load in Deno without npm.

/** Error codes of CoralError: the gRPC status names, in snake_case. */
export type CoralErrorCode =
  | "canceled"
  | "unknown"
  | "invalid_argument"
  | "deadline_exceeded"
  | "not_found"
  | "already_exists"
  | "permission_denied"
  | "resource_exhausted"
  | "failed_precondition"
  | "aborted"
  | "out_of_range"
  | "unimplemented"
  | "internal"
  | "unavailable"
  | "data_loss"
  | "unauthenticated";

/** Every failure of an SDK call: `code` says what kind, the message says what to do. */
export class CoralError extends Error {
  override name = "CoralError";
  constructor(
    readonly code: CoralErrorCode,
    message: string,
  ) {
    super(message);
  }
}


/** A gRPC status name as CoralError spells it: "NotFound" → "not_found". */
export function errorCodeName(statusName: string): CoralErrorCode {
  return statusName.replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase()) as CoralErrorCode;
}
