// coral's own help, usage and typo rendering. Clipanion parses the command line; what users read
// when they ask for help or get it wrong is written here, the way gh or deno would say it:
// placeholders that name what a flag wants (`--window <duration>`), text wrapped at the terminal's
// width, and one suggestion for a typo instead of a numbered list of every command.
import type { CommandClass, Definition } from "clipanion";
import { closest } from "./suggest.js";

export interface HelpEntry {
  /** Words after `coral` ("query metrics"). */
  path: string[];
  cls: CommandClass;
  def: Definition;
}

export const ROOT_DESCRIPTION =
  "Coral: per-service latency, traces and host metrics in an embedded DuckDB colony, queried from the terminal and from sandboxed TypeScript scripts.";

/** Categories in the order the root help lists them; commands keep their registration order within. */
const CATEGORY_ORDER = ["Colony", "Query", "Scripting"];

/** Columns to wrap at: the terminal's, else 80 (pipes, files, tests). */
export function terminalWidth(stream: NodeJS.WritableStream & { columns?: number; isTTY?: boolean }): number {
  const cols = stream.isTTY ? stream.columns : undefined;
  return Math.max(40, Math.min(cols ?? 80, 120));
}

/** Word-wraps `text` to `width`, every line after the first indented by `indent` spaces. */
export function wrap(text: string, width: number, indent = 0, firstIndent = indent): string {
  const out: string[] = [];
  let line = " ".repeat(firstIndent);
  let empty = true;
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (!empty && line.length + 1 + word.length > width) {
      out.push(line);
      line = " ".repeat(indent) + word;
    } else {
      line += (empty ? "" : " ") + word;
    }
    empty = false;
  }
  out.push(line);
  return out.join("\n");
}

/** Paragraphs of an indented template-literal text, each wrapped. */
function paragraphs(text: string, width: number, indent: number): string {
  return text
    .trim()
    .split(/\n\s*\n/)
    .map((p) => wrap(p.replace(/\s+/g, " "), width, indent))
    .join("\n\n");
}

interface FlagLine {
  names: string[];
  takesValue: boolean;
  description: string;
}

/** Clipanion's option definitions ("--output,-o #0") as names and whether a value follows. */
export function flagsOf(def: Definition): FlagLine[] {
  return def.options.map((o) => {
    const [names, ...arity] = o.definition.split(" ");
    return { names: names!.split(","), takesValue: arity.some((a) => a.startsWith("#")), description: o.description ?? "" };
  });
}

/** The positionals of a usage line ("<SERVICE>", "[dir]", "<script|-> ..."). */
function positionalsOf(entry: HelpEntry): string {
  const afterPath = entry.def.usage.replace(/^\$?\s*coral\s+/, "").slice(entry.path.join(" ").length);
  return afterPath.replace(/\[-[^\]]*\]/g, "").replace(/\s+/g, " ").trim();
}

/**
 * What a flag's value is, by flag name: one vocabulary across commands, so `--window <duration>`
 * reads the same everywhere. A command may override an entry (static `placeholders`).
 */
const PLACEHOLDERS: Record<string, string> = {
  "--output": "format",
  "--colony": "host:port",
  "--listen": "host:port",
  "--otlp": "host:port",
  "--token": "token",
  "--token-file": "file",
  "--db": "file",
  "--audit": "file",
  "--allow-read": "dir",
  "--param": "key=value",
  "--budget": "kind=limit",
  "--otlp-max-body": "size",
  "--otlp-max-inflight": "size",
  "--query-memory": "size",
  "--memory-limit": "size",
  "--query-timeout": "duration",
  "--retention": "duration",
  "--duration": "duration",
  "--timeout": "seconds",
  "--memory": "MB",
  "--rate": "spans/s",
  "--batch": "n",
  "--concurrency": "n",
  "--seed": "n",
};

/** Placeholders of generated `coral query` flags, from the parse rule the proto gave them. */
const BY_PARSE_RULE: Record<string, string> = {
  durationMs: "duration",
  durationNs: "duration",
  percent: "percent",
  int: "n",
  int64: "n",
  double: "number",
  bool: "bool",
};

function placeholderOf(entry: HelpEntry, name: string): string {
  const own = (entry.cls as { placeholders?: Record<string, string> }).placeholders?.[name];
  if (own) return own;
  const variants = (new entry.cls() as unknown as { variants?: { params: { flag: string; parse: string }[] }[] }).variants ?? [];
  const parse = variants.flatMap((v) => v.params).find((p) => p.flag === name)?.parse;
  return (parse && BY_PARSE_RULE[parse]) ?? PLACEHOLDERS[name] ?? name.replace(/^-+/, "");
}

function flagLabel(entry: HelpEntry, f: FlagLine): string {
  // Short names first, as gh and most tools list them: "-o, --output <format>".
  const shown = [...f.names].sort((a, b) => a.length - b.length).join(", ");
  return f.takesValue ? `${shown} <${placeholderOf(entry, f.names[0]!)}>` : shown;
}

/** The one-line synopsis: `coral query metrics <SERVICE> [flags]`. */
export function synopsis(entry: HelpEntry): string {
  const pos = positionalsOf(entry);
  const flags = entry.def.options.length > 0 ? "[flags]" : "";
  // Clipanion writes a trailing rest as "...": `coral run <script|-> [flags] [-- <args>...]`.
  if (pos.endsWith("...")) return ["coral", ...entry.path, pos.replace(/\s*\.\.\.$/, ""), flags, "[-- <args>...]"].filter(Boolean).join(" ");
  return ["coral", ...entry.path, pos, flags].filter(Boolean).join(" ");
}

/** `coral <command> --help`. */
export function commandHelp(entry: HelpEntry, width: number): string {
  const d = entry.def;
  const parts: string[] = [];
  if (d.description) parts.push(wrap(capitalise(d.description), width));
  parts.push(`Usage:\n  ${synopsis(entry)}`);
  const flags = flagsOf(d);
  if (flags.length > 0) {
    const labels = flags.map((f) => flagLabel(entry, f));
    const col = Math.min(Math.max(...labels.map((l) => l.length)) + 4, 34);
    const lines = flags.map((f, i) => {
      const label = `  ${labels[i]}`;
      const lead = label.length + 2 > col ? `${label}\n${" ".repeat(col)}` : label.padEnd(col);
      const text = wrap(f.description, width, col).slice(col);
      return lead + text;
    });
    parts.push(`Flags:\n${lines.join("\n")}`);
  }
  if (d.details) parts.push(paragraphs(d.details, width, 0));
  if (d.examples && d.examples.length > 0) {
    const ex = d.examples.map(([what, cmd]) => `${wrap(`# ${what}`, width, 4, 2)}\n  $ ${cmd.replace(/^\$0\b/, "coral")}`);
    parts.push(`Examples:\n${ex.join("\n\n")}`);
  }
  return `${parts.join("\n\n")}\n`;
}

/** `coral`, `coral help`, `coral --help`: every command by category. */
export function rootHelp(entries: HelpEntry[], width: number): string {
  return listing(ROOT_DESCRIPTION, "coral <command> [flags]", entries, width, [
    "Run `coral help <command>` or `coral <command> --help` for a command's flags and examples.",
    "Docs: README.md and docs/ in the Coral repository.",
  ]);
}

/** `coral query`, `coral help query`: the commands of one group. */
export function groupHelp(group: string, entries: HelpEntry[], width: number): string {
  const members = entries.filter((e) => e.path[0] === group);
  return listing(`The \`coral ${group}\` commands.`, `coral ${group} <command> [flags]`, members, width, [
    `Run \`coral ${group} <command> --help\` for a command's flags and examples.`,
  ]);
}

function listing(intro: string, usage: string, entries: HelpEntry[], width: number, footer: string[]): string {
  const byCategory = new Map<string, HelpEntry[]>();
  for (const e of entries) {
    const c = e.def.category?.trim() || "Other";
    byCategory.set(c, [...(byCategory.get(c) ?? []), e]);
  }
  const categories = [...byCategory.keys()].sort((a, b) => rank(a) - rank(b));
  const col = Math.min(Math.max(...entries.map((e) => e.path.join(" ").length)) + 6, 24);
  const sections = categories.map((c) => {
    const lines = byCategory.get(c)!.map((e) => {
      const name = `  ${e.path.join(" ")}`.padEnd(col);
      return name + wrap(firstSentence(e.def.description ?? ""), width, col).slice(col);
    });
    return `${c}:\n${lines.join("\n")}`;
  });
  return `${wrap(intro, width)}\n\nUsage:\n  ${usage}\n\n${sections.join("\n\n")}\n\n${footer.map((f) => wrap(f, width)).join("\n")}\n`;
}

function rank(category: string): number {
  const i = CATEGORY_ORDER.indexOf(category);
  return i < 0 ? CATEGORY_ORDER.length : i;
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Lists show one short line per command, lower-case first letter like the other summaries. */
function firstSentence(s: string): string {
  const one = s.replace(/\s+/g, " ").trim().replace(/\.$/, "");
  return one.charAt(0).toLowerCase() + one.slice(1);
}

/** "did you mean …" for a command line whose words match no command. */
export function unknownCommand(words: string[], entries: HelpEntry[]): string {
  const groups = [...new Set(entries.map((e) => e.path[0]!))];
  const first = words[0]!;
  if (!groups.includes(first)) {
    const guess = closest(first, groups);
    const hint = guess ? ` — did you mean \`coral ${guess}\`?` : "";
    return `unknown command "${first}"${hint}\nRun \`coral help\` for the list of commands.`;
  }
  const members = entries.filter((e) => e.path[0] === first && e.path.length > 1);
  const second = words[1];
  const names = members.map((e) => e.path.slice(1).join(" "));
  const guess = second === undefined ? undefined : closest(second, names);
  const hint = guess ? ` — did you mean \`coral ${first} ${guess}\`?` : "";
  return `unknown command "coral ${first} ${second ?? ""}"${hint}\nRun \`coral help ${first}\` for its commands.`;
}
