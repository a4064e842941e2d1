// The error vocabulary every surface shares: the CLI, the SDK and MCP name a failure's kind the
// same way. Kept free of imports: the SDK's type declarations must load in Deno without npm.

/** Error codes of a failed call (CoralError.code in the SDK): the gRPC status names, in snake_case. */
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

/** A gRPC status name as CoralError spells it: "NotFound" → "not_found". */
export function errorCodeName(statusName: string): CoralErrorCode {
  return statusName.replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase()) as CoralErrorCode;
}
