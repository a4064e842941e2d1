// A failure read off the wire (connect-wire.ts) as Connect's clients raise it, so that the one
// translator (errors.ts) reads every client's failures alike. Apart from connect-wire.ts because it
// needs Connect's runtime, which a `coral run` loads only once a call fails.
import { Code, ConnectError } from "@connectrpc/connect";
import { WireError } from "./connect-wire.js";

/** A WireError as a ConnectError with its code; any other failure as it is. */
export function connectErrorOf(err: unknown): unknown {
  if (!(err instanceof WireError)) return err;
  const name = err.code.replace(/(^|_)([a-z])/g, (_, _u, c: string) => c.toUpperCase());
  return new ConnectError(err.message, (Code as unknown as Record<string, Code>)[name] ?? Code.Unknown);
}
