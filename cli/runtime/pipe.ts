/**
 * `coral query … | head` closes our stdout early. Node reports that as an EPIPE error on the next
 * write; unhandled, it is a stack trace and exit 1. A Unix tool in that spot just stops, so we do:
 * quietly, exit 0 — there is no one left to tell.
 */
export function exitQuietlyOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
}
