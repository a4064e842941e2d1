import pkg from "../package.json" with { type: "json" };
import { allCommands, commandsFor } from "./commands/index.js";
import { entriesOf, HELP, matchEntry, runEntry } from "./dispatch.js";
import { ExitCode } from "./runtime/exit.js";
import { commandHelp, groupHelp, rootHelp, terminalWidth, unknownCommand } from "./runtime/help.js";
import { exitQuietlyOnClosedPipe } from "./runtime/pipe.js";

async function main(argv: string[]): Promise<number> {
  exitQuietlyOnClosedPipe(process.stdout);
  const width = terminalWidth(process.stdout);
  const first = argv[0];
  if (first === undefined || HELP.has(first) || (first === "help" && argv.length === 1)) {
    process.stdout.write(rootHelp(entriesOf(await allCommands()), width));
    return ExitCode.ok;
  }
  if (argv.length === 1 && ["version", "--version", "-v"].includes(first)) {
    process.stdout.write(`coral ${pkg.version}\n`);
    return ExitCode.ok;
  }
  if (first === "help") return help(argv.slice(1), width);

  // Only the commands this command line can mean are loaded (see commandsFor).
  const commands = await commandsFor(argv);
  const entries = entriesOf(commands);
  const entry = matchEntry(argv, entries);
  if (!entry) {
    if (entries.some((e) => e.path[0] === first) && (argv.length === 1 || HELP.has(argv[1]!))) {
      process.stdout.write(groupHelp(first, entries, width));
      return ExitCode.ok;
    }
    process.stderr.write(`coral: ${unknownCommand(argv, entries.length > 0 ? entries : entriesOf(await allCommands()))}\n`);
    return ExitCode.usage;
  }
  return runEntry(argv, entry, commands, () => width);
}

/** `coral help`, `coral help query`, `coral help query metrics`. */
async function help(words: string[], width: number): Promise<number> {
  const entries = entriesOf(await allCommands());
  const entry = entries.find((e) => e.path.join(" ") === words.join(" "));
  if (entry) {
    process.stdout.write(commandHelp(entry, width));
    return ExitCode.ok;
  }
  if (words.length === 1 && entries.some((e) => e.path[0] === words[0])) {
    process.stdout.write(groupHelp(words[0]!, entries, width));
    return ExitCode.ok;
  }
  process.stderr.write(`coral: ${unknownCommand(words, entries)}\n`);
  return ExitCode.usage;
}

process.exitCode = await main(process.argv.slice(2));
