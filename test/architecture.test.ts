// The house rules of the source tree, checked on the real files: no import loops, and generated
// code depends only on the typed runtime (`surface/`) and other generated code, never on an app
// folder — the rule protobuf-es follows, so the app can import gen/ without closing a loop.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");
const SOURCE_DIRS = ["cli", "codegen", "colony", "gen", "mcp", "sdk", "surface"];

interface Module {
  path: string;
  imports: string[];
  /** Local modules named by `export … from`. */
  reexports: string[];
}

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === "testdata" ? [] : sourceFiles(path);
    return /\.ts$/.test(name) && !/\.(test|d)\.ts$/.test(name) ? [path] : [];
  });
}

function localTarget(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  const target = resolve(dirname(from), specifier).replace(/\.js$/, ".ts");
  return existsSync(target) ? relative(root, target) : undefined;
}

function parse(path: string): Module {
  const source = ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, false);
  const imports: string[] = [];
  const reexports: string[] = [];
  for (const node of source.statements) {
    const spec = (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier;
    if (!spec || !ts.isStringLiteral(spec)) continue;
    const target = localTarget(path, spec.text);
    if (!target) continue;
    imports.push(target);
    if (ts.isExportDeclaration(node)) reexports.push(target);
  }
  // Dynamic imports load lazily but still make a dependency.
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      const target = arg && ts.isStringLiteral(arg) ? localTarget(path, arg.text) : undefined;
      if (target) imports.push(target);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return { path: relative(root, path), imports, reexports };
}

const modules = new Map(SOURCE_DIRS.flatMap(sourceFiles).map((p) => [relative(root, p), parse(p)]));

/** Strongly connected components with more than one module (Tarjan). */
function importLoops(): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const loops: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of modules.get(v)!.imports) {
      if (!modules.has(w)) continue;
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || modules.get(v)!.imports.includes(v)) loops.push(component.sort());
    }
  };
  for (const v of modules.keys()) if (!index.has(v)) connect(v);
  return loops;
}

describe("source tree", () => {
  it("finds the modules it checks", () => {
    expect(modules.size).toBeGreaterThan(80);
    expect([...modules.keys()].some((p) => p.startsWith("gen/"))).toBe(true);
  });

  it("has no import loops", () => {
    expect(importLoops()).toEqual([]);
  });

  // Generated code runs on a runtime the way protobuf-es's output runs on @bufbuild/protobuf: the
  // shared vocabulary and spec types (surface/), other generated code, and for the SDK functions the
  // SDK's own runtime (the fd-3 wire to `coral run`). Never the CLI, the colony, MCP or codegen.
  const GENERATED_MAY_IMPORT = [/^gen\//, /^surface\//, /^sdk\/runtime\.ts$/];

  it("lets generated code import only surface/, gen/ and the SDK runtime", () => {
    const offending = [...modules.values()]
      .filter((m) => m.path.startsWith("gen/"))
      .flatMap((m) => m.imports.filter((t) => !GENERATED_MAY_IMPORT.some((ok) => ok.test(t))).map((t) => `${m.path} → ${t}`));
    expect(offending).toEqual([]);
  });

  it("keeps surface/ free of the apps, so every surface can share it", () => {
    const offending = [...modules.values()]
      .filter((m) => m.path.startsWith("surface/"))
      .flatMap((m) => m.imports.filter((t) => !/^(surface|gen)\//.test(t)).map((t) => `${m.path} → ${t}`));
    expect(offending).toEqual([]);
  });

  // The SDK's entry (sdk/mod.ts) exists to publish the generated functions; the apps use gen/ but
  // never pass it on as their own API.
  it("has no app module re-exporting generated code", () => {
    const offending = [...modules.values()]
      .filter((m) => /^(cli|colony|mcp|codegen)\//.test(m.path))
      .flatMap((m) => m.reexports.filter((t) => t.startsWith("gen/")).map((t) => `${m.path} → ${t}`));
    expect(offending).toEqual([]);
  });
});
