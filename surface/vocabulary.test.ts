// The promise of vocabulary.ts, checked with the compiler: a value added to one of the annotation
// enums in options.proto (as protobuf-es would generate it) makes the type check fail in exactly
// the table that must say what the value means, and nowhere else; the real enums compile clean.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");
const generated = readFileSync(join(root, "gen/coral/options/v1/options_pb.ts"), "utf8");

/** The members of a generated enum, as `NAME = n` lines. */
function members(name: string): string[] {
  const body = new RegExp(`export enum ${name} \\{([\\s\\S]*?)\\n\\}`).exec(generated)?.[1];
  if (!body) throw new Error(`enum ${name} not found in options_pb.ts`);
  return [...body.matchAll(/^\s*([A-Z0-9_]+) = (\d+),/gm)].map((m) => `${m[1]} = ${m[2]}`);
}

const ENUMS = ["Unit", "Parse", "Encoding", "Layout"] as const;

/** Type errors of vocabulary.ts compiled against the generated enums, `extra` added to one of them. */
function typeErrors(extra?: { enumName: (typeof ENUMS)[number]; member: string }): string[] {
  const stub = ENUMS.map((e) => {
    const all = [...members(e), ...(extra?.enumName === e ? [extra.member] : [])];
    return `export enum ${e} { ${all.join(", ")} }`;
  }).join("\n");
  const dir = mkdtempSync(join(tmpdir(), "coral-vocabulary-"));
  try {
    writeFileSync(join(dir, "options_pb.ts"), stub);
    writeFileSync(join(dir, "units.ts"), readFileSync(join(root, "surface/units.ts"), "utf8"));
    const vocabulary = readFileSync(join(root, "surface/vocabulary.ts"), "utf8");
    writeFileSync(join(dir, "vocabulary.ts"), vocabulary.replace(/from "\.\.\/gen\/coral\/options\/v1\/options_pb\.js"/, 'from "./options_pb.js"'));
    const program = ts.createProgram([join(dir, "vocabulary.ts")], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      lib: ["lib.es2022.d.ts"],
      types: [],
    });
    return diagnostics(program);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function diagnostics(program: ts.Program): string[] {
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.text.slice(0, d.start).split("\n").length : 0;
    const text = d.file?.text.split("\n")[line - 1] ?? "";
    return `${d.file?.fileName.split("/").pop()}:${line} ${text.trim()} — ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`;
  });
}

describe("the annotation vocabulary", () => {
  it("compiles against the generated enums", () => {
    expect(typeErrors()).toEqual([]);
  });

  it.each([
    ["Unit", "UNITS"],
    ["Parse", "PARSE"],
    ["Encoding", "ENCODINGS"],
    ["Layout", "LAYOUTS"],
  ] as const)("refuses to compile a new %s value until %s says what it means", (enumName, table) => {
    const errors = typeErrors({ enumName, member: "ADDED_IN_A_TEST = 99" });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(`export const ${table}`);
    expect(errors[0]).toContain(`Property '[${enumName}.ADDED_IN_A_TEST]' is missing`);
  });
});
