// From a command line and the commands it can mean to an exit code: shared by the full CLI
// (main.ts) and `coral run`'s own entry (run/entry.ts), so both parse, word errors and print help
// the same way.
import { Cli, type Command, type CommandClass } from "clipanion";
import pkg from "../package.json" with { type: "json" };
import { reportError } from "./runtime/command.js";
import { ExitCode } from "./runtime/exit.js";
import { commandHelp, type HelpEntry } from "./runtime/help.js";
import { describeParseError, joinNegativeValues } from "./runtime/parse-errors.js";
import { colorsEnabled } from "./runtime/tty.js";

export const HELP = new Set(["--help", "-h"]);

export function cliWith(commands: CommandClass[]): Cli {
  const cli = new Cli({ binaryLabel: "Coral", binaryName: "coral", binaryVersion: pkg.version, enableColors: colorsEnabled(process.stdout) });
  for (const c of commands) cli.register(c);
  return cli;
}

export function entriesOf(commands: CommandClass[]): HelpEntry[] {
  const defs = cliWith(commands).definitions();
  return commands.map((cls) => {
    const path = cls.paths![0]!;
    const def = defs.find((d) => d.path === ["coral", ...path].join(" "))!;
    return { path, cls, def };
  });
}

/** The command whose path is the longest prefix of the command line. */
export function matchEntry(argv: string[], entries: HelpEntry[]): HelpEntry | undefined {
  return entries
    .filter((e) => e.path.every((w, i) => argv[i] === w))
    .sort((a, b) => b.path.length - a.path.length)[0];
}

/** Whether the command line after the command's path asks for its help (`--help`/`-h` before any `--`). */
export function asksForHelp(rest: string[]): boolean {
  const endOfFlags = rest.indexOf("--");
  return (endOfFlags < 0 ? rest : rest.slice(0, endOfFlags)).some((a) => HELP.has(a));
}

/** Runs the command `entry` names (one of `commands`): its help if asked for, else parsed and executed. */
export async function runEntry(argv: string[], entry: HelpEntry, commands: CommandClass[], width: () => number): Promise<number> {
  if (asksForHelp(argv.slice(entry.path.length))) {
    process.stdout.write(commandHelp(entry, width()));
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
  return execute(cli, command);
}

/** Runs a parsed command; whatever escapes it becomes one line on stderr and an exit code. */
export async function execute(cli: Cli, command: Command): Promise<number> {
  try {
    return await cli.run(command);
  } catch (err) {
    return reportError(err, process.stderr);
  }
}
