/** Exit codes of every `coral` command (documented in docs/reference/cli.md). */
export const ExitCode = {
  ok: 0,
  /** The command ran and failed: colony unreachable, not found, rejected query… */
  error: 1,
  /** The command line itself is wrong: unknown flag, malformed value. */
  usage: 2,
} as const;
