/**
 * A failure whose message is already written for the user: printed as is, no stack.
 *
 * Kept apart from errors.ts (which re-exports it) because that module needs the Connect runtime to
 * describe RPC failures, and commands that make no RPC (`coral run`, `coral init`) should not load it.
 */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}
