// A script whose only imports are `@coral/sdk` and `node:` built-ins, written plainly, needs no
// `deno info`: its static graph is the script, the SDK bundle and Deno's own modules, all of which
// judgeGraph allows. Most scripts look like that, and `deno info` is a second Deno start on every
// run (~20 ms quiet, ~50 ms of CPU and more on a busy machine).
//
// The test is lexical and errs towards `deno info`: every static or dynamic import and every
// re-export contains the word `import` or `export`, so the source qualifies only if each
// occurrence of either word (in code, comments or strings alike) begins an import statement of the
// allowed form, ending in an explicit semicolon (without one, a following `with { type: "text" }`
// would belong to the import), and nothing names a module in a comment that Deno reads (triple-
// slash references, @deno-types, @ts-types, @jsxImportSource). Anything else — another specifier,
// `import(`, `import.meta`, `export`, a comment inside the statement, an identifier containing
// "import" — falls back to `deno info` and judgeGraph.
import { extname } from "node:path";

const CODE_EXTENSIONS = new Set([".ts", ".mts", ".js", ".mjs", ".tsx", ".jsx"]);

/** `import [type] (* as x | { a, b as c } | x) from "@coral/sdk" | "node:…";` at the current position. */
const ALLOWED = /import[ \t]+(?:type[ \t]+)?(?:\*[ \t]*as[ \t]+[A-Za-z_$][\w$]*|\{[\w$\s,]*\}|[A-Za-z_$][\w$]*)[ \t]*from[ \t]*(["'])(?:@coral\/sdk|node:[a-z_][a-z0-9_/]*)\1[ \t]*;/y;
const WORDS = /import|export/g;
const COMMENT_IMPORTS = /<reference|@deno-types|@ts-types|@jsx|@ts-self-types/;

/** True when the file at `path` with bytes `source` imports nothing but the SDK and Node built-ins. */
export function importsOnlySdk(path: string, source: Uint8Array): boolean {
  if (!CODE_EXTENSIONS.has(extname(path))) return false;
  let text: string;
  try {
    // Deno reads a UTF-16 file by its byte order mark; such a file is read here as something else.
    if ((source[0] === 0xfe && source[1] === 0xff) || (source[0] === 0xff && source[1] === 0xfe)) return false;
    text = new TextDecoder("utf-8", { fatal: true }).decode(source);
  } catch {
    return false;
  }
  if (text.includes("\0") || COMMENT_IMPORTS.test(text)) return false;
  for (const m of text.matchAll(WORDS)) {
    if (m[0] === "export") return false;
    ALLOWED.lastIndex = m.index;
    if (!ALLOWED.test(text)) return false;
  }
  return true;
}
