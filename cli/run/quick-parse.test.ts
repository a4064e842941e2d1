// The quick reader must agree with clipanion on every command line it accepts, and must decline
// what it does not know; clipanion is the reference, run on the same command lines here.
import { describe, expect, it } from "vitest";
import { RunCommand } from "../commands/run.js";
import { cliWith, entriesOf } from "../dispatch.js";
import { flagsOf } from "../runtime/help.js";
import { QUICK_FLAGS, quickParse, type RunFields } from "./quick-parse.js";

const cli = cliWith([RunCommand]);
const FIELDS = Object.keys(quickParse(["run", "x.ts"])!) as (keyof RunFields)[];

/** What clipanion makes of `argv`: the command's fields, or "error". */
function reference(argv: string[]): Partial<RunFields> | "error" {
  try {
    const command = cli.process(argv) as unknown as Record<string, unknown>;
    return Object.fromEntries(FIELDS.map((k) => [k, command[k]]));
  } catch {
    return "error";
  }
}

function expectAgrees(argv: string[]): boolean {
  const quick = quickParse(argv);
  if (quick === undefined) return false;
  expect({ argv, fields: quick }).toEqual({ argv, fields: reference(argv) });
  return true;
}

describe("quickParse", () => {
  it("knows exactly RunCommand's flags, and every field of the command", () => {
    const flags = flagsOf(entriesOf([RunCommand])[0]!.def);
    const names = (takesValue: boolean) => flags.filter((f) => f.takesValue === takesValue).flatMap((f) => f.names).sort();
    expect(names(true)).toEqual([...QUICK_FLAGS.single, ...QUICK_FLAGS.repeated].sort());
    expect(names(false)).toEqual([...QUICK_FLAGS.switches].sort());
    const command = new RunCommand() as unknown as Record<string, unknown>;
    expect(FIELDS.sort()).toEqual(Object.keys(command).filter((k) => command[k] !== undefined && typeof command[k] === "object").sort());
  });

  it("agrees with clipanion on the command lines of the docs and the tests", () => {
    const lines = [
      ["run", "analysis.ts"],
      ["run", "-"],
      ["run", "latency-check.ts", "--param", "service=payments", "--param", "threshold=500ms", "--", "--verbose"],
      ["run", "--watch", "--check", "analysis.ts"],
      ["run", "--timeout", "120", "--memory", "1024", "long-analysis.ts"],
      ["run", "--allow-read", "./baselines", "compare.ts"],
      ["run", "--colony", "colony.internal:9090", "--token-file", "/home/u/.coral-token", "analysis.ts"],
      ["run", "--budget", "rpcs=100,rows=100000", "--audit", "calls.jsonl", "untrusted.ts"],
      ["run", "--colony", "127.0.0.1:9090", "/tmp/one-call-sdk.ts"],
      ["run", "a.ts", "b", "c"],
      ["run", "a.ts", "b", "--", "c", "--watch", "-h", "--help", "-"],
      ["run", "--", "a.ts", "x"],
      ["run", "a.ts", "--timeout=5", "--timeout", "6"],
      ["run", "--param=a=b=c", "--param", "k=", "--budget=none", "s.ts"],
      ["run", "--token", "", "s.ts"],
      ["run", "", "x"],
      ["run", "--colony=", "s.ts"],
      ["run", "--check", "--check", "s.ts", "--watch"],
      ["run", "s.ts", "--memory", "64", "--", "--memory", "1"],
    ];
    for (const argv of lines) expect(expectAgrees(argv), JSON.stringify(argv)).toBe(true);
  });

  it("declines what the full parser must word or decide", () => {
    for (const argv of [
      ["run"],
      ["run", "--help"],
      ["run", "a.ts", "-h"],
      ["run", "--watch=true", "a.ts"],
      ["run", "--no-watch", "a.ts"],
      ["run", "--tim", "5", "a.ts"],
      ["run", "--timeout"],
      ["run", "a.ts", "--timeout"],
      ["run", "--timeout", "-5", "a.ts"],
      ["run", "--colony", "--watch", "a.ts"],
      ["run", "--param", "-", "a.ts"],
      ["run", "-x", "a.ts"],
      ["run", "--"],
      ["query", "a.ts"],
    ]) {
      expect(quickParse(argv), JSON.stringify(argv)).toBeUndefined();
    }
  });

  it("agrees with clipanion on every command line built from a vocabulary of awkward tokens", () => {
    const vocabulary = ["--watch", "--check", "--timeout", "--param", "--budget=x", "--colony=", "--", "-", "a.ts", "k=v", "", "-5", "--memory", "x y", "--token-file"];
    let accepted = 0;
    let n = 0;
    // Every line of up to three tokens, and of four starting with a script: ~7,000 command lines.
    const walk = (prefix: string[], depth: number) => {
      n++;
      if (expectAgrees(["run", ...prefix])) accepted++;
      if (depth === 0) return;
      for (const t of vocabulary) walk([...prefix, t], depth - 1);
    };
    walk([], 3);
    for (const t of vocabulary) walk(["a.ts", t], 2);
    expect(n).toBeGreaterThan(7_000);
    // The reader is useful only if it takes a good share of them.
    expect(accepted).toBeGreaterThan(n / 20);
  });
});
