// `coral run`'s own entry, bundled alone as dist/cli/run.cjs and started by bin/coral.cjs through
// V8's code cache (bin/code-cache.cjs). It parses, words errors and prints help exactly as the full
// CLI does (the same dispatch.ts), but loads only the run command: no module loader for a dozen
// chunks, no other command's code, which was most of what `coral run` spent before Deno started
// (docs/performance.md, run_overhead). Plain command lines skip clipanion's parser (quick-parse.ts).
import { RunCommand } from "../commands/run.js";
import { cliWith, entriesOf, execute, runEntry } from "../dispatch.js";
import { terminalWidth } from "../runtime/help.js";
import { exitQuietlyOnClosedPipe } from "../runtime/pipe.js";
import { quickParse } from "./quick-parse.js";

/** `argv` starts with "run"; resolves to the exit code once the run is over and its directory removed. */
export async function main(argv: string[]): Promise<number> {
  exitQuietlyOnClosedPipe(process.stdout);
  const commands = [RunCommand];
  const fields = quickParse(argv);
  if (fields) {
    // What clipanion's process() would return for this command line: the command with its fields set.
    const command = Object.assign(new RunCommand(), fields, { path: ["run"] });
    return execute(cliWith(commands), command);
  }
  return runEntry(argv, entriesOf(commands)[0]!, commands, () => terminalWidth(process.stdout));
}
