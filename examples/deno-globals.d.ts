// Not an example: lets the repository's own `tsc --noEmit` (Node types, `@coral/sdk` mapped to
// sdk/mod.ts) type-check these scripts, which run in Deno. It declares the few Deno APIs the
// examples use. Deno itself never loads this file — `coral run --check` checks the examples
// against Deno's real types (test/e2e/run-examples.test.ts).
declare namespace Deno {
  /** Arguments after the script path on the `coral run` command line. */
  const args: string[];
  /** The exit code the script ends with when it finishes normally. */
  let exitCode: number;
  /** Ends the script now with `code`. */
  function exit(code?: number): never;
  /** Environment variables (a script may read only CORAL_PARAMS and CORAL_MODE). */
  const env: { get(name: string): string | undefined };
}
