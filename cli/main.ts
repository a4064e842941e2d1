import { Cli, type CommandClass } from "clipanion";
import pkg from "../package.json" with { type: "json" };
import { allCommands, commandsFor } from "./commands/index.js";
import { reportError } from "./runtime/command.js";
import { ExitCode } from "./runtime/exit.js";
import { commandHelp, groupHelp, rootHelp, terminalWidth, unknownCommand, type HelpEntry } from "./runtime/help.js";
import { describeParseError, joinNegativeValues } from "./runtime/parse-errors.js";
import { exitQuietlyOnClosedPipe } from "./runtime/pipe.js";
import { colorsEnabled } from "./runtime/tty.js";

const HELP = new Set(["--help", "-h"]);

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
  const rest = argv.slice(entry.path.length);
  const endOfFlags = rest.indexOf("--");
  if ((endOfFlags < 0 ? rest : rest.slice(0, endOfFlags)).some((a) => HELP.has(a))) {
    process.stdout.write(commandHelp(entry, width));
    return ExitCode.ok;
  }

  const cli = cliWith(commands);
  let command;
  try {
    command = cli.process(joinNegativeValues(argv, entry));
  } catch (err) {
    process.stderr.write(`coral: ${describeParseError(err, entry)}\n`);
    return ExitCode.usage;
  }
  try {
    return await cli.run(command);
  } catch (err) {
    return reportError(err, process.stderr);
  }
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

function cliWith(commands: CommandClass[]): Cli {
  const cli = new Cli({ binaryLabel: "Coral", binaryName: "coral", binaryVersion: pkg.version, enableColors: colorsEnabled(process.stdout) });
  for (const c of commands) cli.register(c);
  return cli;
}

function entriesOf(commands: CommandClass[]): HelpEntry[] {
  const defs = cliWith(commands).definitions();
  return commands.map((cls) => {
    const path = cls.paths![0]!;
    const def = defs.find((d) => d.path === ["coral", ...path].join(" "))!;
    return { path, cls, def };
  });
}

/** The command whose path is the longest prefix of the command line. */
function matchEntry(argv: string[], entries: HelpEntry[]): HelpEntry | undefined {
  return entries
    .filter((e) => e.path.every((w, i) => argv[i] === w))
    .sort((a, b) => b.path.length - a.path.length)[0];
}

process.exitCode = await main(process.argv.slice(2));
