import { Builtins, Cli } from "clipanion";
import { commandsFor } from "./commands/index.js";
import { reportError } from "./runtime/command.js";
import { ExitCode } from "./runtime/exit.js";
import { colorsEnabled } from "./runtime/tty.js";

const cli = new Cli({
  binaryLabel: "Coral",
  binaryName: "coral",
  binaryVersion: "0.1.0",
  enableColors: colorsEnabled(process.stdout),
});

async function main(argv: string[]): Promise<number> {
  // Only the commands this command line can mean are loaded (see commandsFor).
  for (const command of await commandsFor(argv)) cli.register(command);
  cli.register(Builtins.HelpCommand);
  cli.register(Builtins.VersionCommand);
  let command;
  try {
    command = cli.process(argv);
  } catch (err) {
    // Clipanion writes its own parse errors to stdout; they belong on stderr, exit 2.
    process.stderr.write(cli.error(err));
    return ExitCode.usage;
  }
  try {
    return await cli.run(command);
  } catch (err) {
    return reportError(err, process.stderr);
  }
}

process.exitCode = await main(process.argv.slice(2));
