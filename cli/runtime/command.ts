import { Command, UsageError } from "clipanion";
import { CliError } from "./cli-error.js";
import { ExitCode } from "./exit.js";

/**
 * Base of every coral command: `run()` does the work; failures become one line on
 * stderr and a documented exit code, never a stack trace (set CORAL_DEBUG=1 for one).
 */
export abstract class CoralCommand extends Command {
  abstract run(): Promise<number | void>;

  async execute(): Promise<number> {
    try {
      return (await this.run()) ?? ExitCode.ok;
    } catch (err) {
      return reportError(err, this.context.stderr);
    }
  }
}

export function reportError(err: unknown, stderr: NodeJS.WritableStream): number {
  if (process.env.CORAL_DEBUG) stderr.write(`${(err as Error)?.stack ?? err}\n`);
  if (err instanceof UsageError) {
    stderr.write(`coral: ${err.message}\n`);
    return ExitCode.usage;
  }
  if (err instanceof CliError) {
    stderr.write(`coral: ${err.message}\n`);
    return err.exitCode;
  }
  stderr.write(`coral: internal error: ${(err as Error)?.message ?? String(err)}\n`);
  return ExitCode.error;
}
