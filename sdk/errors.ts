// Imports only surface/error-codes.ts, itself import-free: the SDK's type declarations must load in
// Deno without npm.
import type { CoralErrorCode } from "../surface/error-codes.js";

export type { CoralErrorCode };

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
