// The SDK's public type declarations as a script author needs them, for run_script's description:
// the .d.ts files `npm run build` writes beside the bundle (tsc output of the generated SDK), so the
// model reads the same signatures `coral run --check` checks against. Multi-line doc comments are
// dropped (they would triple the size; the names carry the units), one-line ones kept, and only
// what the SDK's entry module exports is listed: no internal helpers.
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

interface Parsed {
  /** Exported top-level declarations by name, comments trimmed. */
  decls: Map<string, string>;
  /** Names imported from other files: name → file. */
  imports: Map<string, string>;
  /** What the file re-exports: "*" (everything of `from`) or the names listed. */
  reexports: { from: string; names: string[] | "*" }[];
  /** Names exported without a source (`export type { A };`): found among the imports. */
  relisted: string[];
}

const DECL = /^export (?:declare )?(?:const|let|function|class|interface|type|enum|namespace) (\w+)/;
const names = (list: string) => list.split(",").map((n) => n.trim().replace(/^type\s+/, "").split(/\s+as\s+/).pop()!).filter(Boolean);

function parse(file: string): Parsed {
  const text = readFileSync(file, "utf8").replace(/^[ \t]*\/\*\*(?:(?!\*\/)[\s\S])*\n(?:(?!\*\/)[\s\S])*\*\/[ \t]*\n/gm, "");
  const out: Parsed = { decls: new Map(), imports: new Map(), reexports: [], relisted: [] };
  const at = (spec: string) => resolve(dirname(file), spec);
  const lines = text.split("\n");
  let doc = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const comment = doc;
    doc = /^\/\*\*.*\*\/$/.test(line) ? `${line}\n` : "";
    let m: RegExpExecArray | null;
    if ((m = /^import (?:type )?\{([^}]*)\} from "([^"]+)";/.exec(line))) {
      for (const n of names(m[1]!)) out.imports.set(n, at(m[2]!));
    } else if ((m = /^export \* from "([^"]+)";/.exec(line))) {
      out.reexports.push({ from: at(m[1]!), names: "*" });
    } else if ((m = /^export (?:type )?\{([^}]*)\} from "([^"]+)";/.exec(line))) {
      out.reexports.push({ from: at(m[2]!), names: names(m[1]!) });
    } else if ((m = /^export (?:type )?\{([^}]*)\};/.exec(line))) {
      out.relisted.push(...names(m[1]!));
    } else if ((m = DECL.exec(line))) {
      // A declaration runs to the next line that starts a statement of its own.
      const body = [line];
      while (i + 1 < lines.length && lines[i + 1] !== "" && !/^\S/.test(lines[i + 1]!)) body.push(lines[++i]!);
      if (i + 1 < lines.length && /^[}\]);]/.test(lines[i + 1]!)) body.push(lines[++i]!);
      out.decls.set(m[1]!, comment + body.join("\n"));
    }
  }
  return out;
}

function collect(file: string, wanted: string[] | "*", seen: Map<string, string>, depth = 0): void {
  if (depth > 8 || !existsSync(file)) return;
  const p = parse(file);
  for (const [name, decl] of p.decls) if (wanted === "*" || wanted.includes(name)) seen.set(name, decl);
  for (const name of p.relisted) {
    const from = p.imports.get(name);
    if (from && (wanted === "*" || wanted.includes(name))) collect(from, [name], seen, depth + 1);
  }
  for (const r of p.reexports) {
    const names = r.names === "*" ? wanted : wanted === "*" ? r.names : r.names.filter((n) => wanted.includes(n));
    if (names === "*" || names.length) collect(r.from, names, seen, depth + 1);
  }
}

/** The SDK's declarations, from the .d.ts beside `sdkModule`; undefined when the SDK is not built. */
export function sdkDeclarations(sdkModule: string): string | undefined {
  const entry = sdkModule.replace(/\.m?js$/, ".d.ts");
  if (!existsSync(entry)) return undefined;
  const seen = new Map<string, string>();
  collect(entry, "*", seen);
  return seen.size ? [...seen.values()].join("\n") + "\n" : undefined;
}
