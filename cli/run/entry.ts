// `coral run`'s own entry, bundled alone as dist/cli/run.cjs and started by bin/coral.cjs through
// V8's code cache (bin/code-cache.cjs). It parses, words errors and prints help exactly as the full
// CLI does (the same dispatch.ts), but loads only the run command: no module loader for a dozen
// chunks, no other command's code, which was most of what `coral run` spent before Deno started
// (docs/performance.md, run_overhead). Plain command lines skip clipanion's parser (quick-parse.ts).
import { RunCommand } from "../commands/run.js";
import { cliWith, entriesOf, execute, runEntry } from "../dispatch.js";
import { terminalWidth } from "../runtime/help.js";
import { exitQuietlyOnClosedPipe } from "../runtime/pipe.js";
import { disposeUnclaimed, offerEarlyStart, type EarlyStart } from "./early-start.js";
import { quickParse } from "./quick-parse.js";

/**
 * `argv` starts with "run"; `early` is the Deno bin/coral.cjs may have started for it already
 * (early-start.ts), which the launcher adopts or discards. Resolves to the exit code once the run
 * is over and its directory removed.
 */
export async function main(argv: string[], early?: EarlyStart): Promise<number> {
  offerEarlyStart(early);
  try {
    exitQuietlyOnClosedPipe(process.stdout);
    const commands = [RunCommand];
    const fields = quickParse(argv);
    if (fields) {
      // What clipanion's process() would return for this command line: the command with its fields set.
      const command = Object.assign(new RunCommand(), fields, { path: ["run"] });
      return await execute(cliWith(commands), command);
    }
    return await runEntry(argv, entriesOf(commands)[0]!, commands, () => terminalWidth(process.stdout));
  } finally {
    // A command line that failed before running (a usage error) leaves the early Deno unclaimed.
    await disposeUnclaimed();
  }
}
