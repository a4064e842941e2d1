// `coral run`'s common command lines, read without clipanion's parser. Clipanion compiles a state
// machine for the command's thirteen options on every start, which cost as much as loading it
// (docs/performance.md, run_overhead, round 4). This reader takes only the plain shapes — known long flags
// with values that cannot be mistaken for flags, one script, arguments — and yields the same field
// values clipanion would (quick-parse.test.ts compares both over a corpus of command lines); for
// anything else (a typo, a short flag, `--no-watch`, a value starting with "-", help) it declines and
// the full parser takes over, with its error messages.

/** Flags taking one value, by name: the RunCommand field each sets (the last one given wins). */
const SINGLE: Readonly<Record<string, string>> = {
  "--timeout": "timeout",
  "--memory": "memory",
  "--allow-read": "allowRead",
  "--audit": "audit",
  "--colony": "colony",
  "--token": "token",
  "--token-file": "tokenFile",
};
/** Repeatable flags: each occurrence adds a value. */
const REPEATED: Readonly<Record<string, string>> = { "--param": "params", "--budget": "budget" };
const SWITCHES: Readonly<Record<string, string>> = { "--watch": "watch", "--check": "check" };

/** Every flag the reader knows, for the test that keeps it in step with RunCommand. */
export const QUICK_FLAGS = { single: Object.keys(SINGLE), repeated: Object.keys(REPEATED), switches: Object.keys(SWITCHES) };

export interface RunFields {
  watch: boolean;
  check: boolean;
  timeout: string | undefined;
  memory: string | undefined;
  allowRead: string | undefined;
  audit: string | undefined;
  colony: string | undefined;
  token: string | undefined;
  tokenFile: string | undefined;
  params: string[];
  budget: string[];
  script: string | undefined;
  rest: string[];
}

/** RunCommand's fields for `argv` (which starts with "run"), or undefined when the full parser must decide. */
export function quickParse(argv: readonly string[]): RunFields | undefined {
  if (argv[0] !== "run") return undefined;
  const f: RunFields = {
    watch: false,
    check: false,
    timeout: undefined,
    memory: undefined,
    allowRead: undefined,
    audit: undefined,
    colony: undefined,
    token: undefined,
    tokenFile: undefined,
    params: [],
    budget: [],
    script: undefined,
    rest: [],
  };
  const fields = f as unknown as Record<string, unknown>;
  const positional = (a: string) => {
    if (f.script === undefined) f.script = a;
    else f.rest.push(a);
  };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      for (const b of argv.slice(i + 1)) positional(b);
      break;
    }
    if (a === "-" || !a.startsWith("-")) {
      positional(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq < 0 ? a : a.slice(0, eq);
    if (Object.hasOwn(SWITCHES, name)) {
      if (eq >= 0) return undefined;
      fields[SWITCHES[name]!] = true;
      continue;
    }
    if (!Object.hasOwn(SINGLE, name) && !Object.hasOwn(REPEATED, name)) return undefined;
    let value: string | undefined;
    if (eq >= 0) value = a.slice(eq + 1);
    else {
      value = argv[++i];
      if (value === undefined || value.startsWith("-")) return undefined;
    }
    if (Object.hasOwn(SINGLE, name)) fields[SINGLE[name]!] = value;
    else (fields[REPEATED[name]!] as string[]).push(value);
  }
  return f.script === undefined ? undefined : f;
}
