// Clipanion's parse failures ("Unknown Syntax Error: Unsupported option name …" followed by the
// raw usage line) rewritten as one line that names the problem, a suggestion where one is
// likely, and where to look next.
import { flagsOf, synopsis, type HelpEntry } from "./help.js";
import { closest } from "./suggest.js";

/** The failure clipanion reports for the command line, in the words a user needs. */
export function describeParseError(err: unknown, entry: HelpEntry): string {
  const reason = reasonOf(err);
  const command = `coral ${entry.path.join(" ")}`;
  const tail = `\nUsage: ${synopsis(entry)}\nRun \`${command} --help\` for its flags and examples.`;
  let m: RegExpExecArray | null;
  if ((m = /Unsupported option name \("(.*)"\)/.exec(reason))) {
    const names = flagsOf(entry.def).flatMap((f) => f.names);
    const given = m[1]!.split("=")[0]!;
    const guess = closest(given.replace(/^-+/, ""), names.map((n) => n.replace(/^-+/, "")));
    const full = guess === undefined ? undefined : names.find((n) => n.replace(/^-+/, "") === guess);
    return `unknown flag ${given} for \`${command}\`${full ? ` — did you mean ${full}?` : ""}${tail}`;
  }
  if ((m = /Not enough arguments to option (\S+?)\.?$/.exec(reason))) return `${m[1]} needs a value${tail}`;
  if (/Not enough positional arguments/.test(reason)) {
    const missing = synopsis(entry).match(/<[^>]+>/g)?.join(" ") ?? "an argument";
    return `\`${command}\` needs ${missing}${tail}`;
  }
  if ((m = /Extraneous positional argument \("(.*)"\)/.exec(reason))) {
    return `unexpected argument "${m[1]}" for \`${command}\` (quote values that contain spaces)${tail}`;
  }
  return `${reason.replace(/\.$/, "")}${tail}`;
}

/** The most specific reason clipanion gives: a candidate's own, else the error's message. */
function reasonOf(err: unknown): string {
  const e = err as { message?: string; candidates?: { reason: string | null }[] };
  const fromCandidate = e.candidates?.find((c) => c.reason)?.reason;
  return (fromCandidate ?? e.message ?? String(err)).replace(/^Unknown Syntax Error: /, "").split("\n")[0]!;
}

/**
 * `--window -5m` makes clipanion read "-5m" as an unknown flag and report that --window has no
 * value. A value-taking flag followed by something that reads as a negative number is joined into
 * `--window=-5m`, so the value's own check can say what is wrong with it.
 */
export function joinNegativeValues(argv: string[], entry: HelpEntry): string[] {
  const takesValue = new Set(flagsOf(entry.def).filter((f) => f.takesValue).flatMap((f) => f.names));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return [...out, ...argv.slice(i)];
    const next = argv[i + 1];
    if (takesValue.has(a) && next !== undefined && /^-\.?\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}
