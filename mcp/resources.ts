// What `coral mcp` offers to read: the API and SDK reference (docs/reference/, docs/scripting.md),
// the example scripts and the SDK's type declarations, from the coral checkout it runs from. Only
// the files listed here can be read: a URI is looked up, never turned into a path.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { Resource } from "@modelcontextprotocol/sdk/types.js";
import { userTableRows } from "../colony/store/schema.js";

export interface Library {
  resources: Resource[];
  read(uri: string): { uri: string; mimeType: string; text: string } | undefined;
}

interface Entry extends Resource {
  mimeType: string;
  load(): string;
}

function markdownFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".md"))
    .sort()
    .map((f) => join(dir, f));
}

/** A markdown file's first heading, else its name. */
function titleOf(text: string, fallback: string): string {
  return /^#\s+(.+)$/m.exec(text)?.[1]?.trim() ?? fallback;
}

/** An example script's opening comment, first sentence: what it does. */
function summaryOf(source: string): string {
  const lead = source.match(/^(\/\/.*\n)+/)?.[0] ?? "";
  const text = lead.replace(/^\/\/ ?/gm, "").replace(/\s+/g, " ").trim();
  return /^(.*?[.:])(\s|$)/.exec(text)?.[1] ?? text;
}

/** `root`: the coral checkout; `declarations`: the SDK's .d.ts text, when built. */
export function library(root: string, declarations: string | undefined): Library {
  const entries: Entry[] = [];
  const docs = [...markdownFiles(join(root, "docs/reference")), join(root, "docs/scripting.md")].filter((f) => existsSync(f));
  for (const file of docs) {
    const rel = relative(root, file);
    const text = readFileSync(file, "utf8");
    entries.push({
      uri: `coral://${rel}`,
      name: rel,
      title: titleOf(text, rel),
      description: rel === "docs/scripting.md" ? "coral run, the SDK, its limits and the SQL tables" : `Reference: ${titleOf(text, rel)}`,
      mimeType: "text/markdown",
      load: () => readFileSync(file, "utf8"),
    });
  }
  const examples = join(root, "examples");
  if (existsSync(examples)) {
    for (const name of readdirSync(examples).filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")).sort()) {
      const file = join(examples, name);
      entries.push({
        uri: `coral://examples/${name}`,
        name: `examples/${name}`,
        description: `Example script (run it with run_script): ${summaryOf(readFileSync(file, "utf8"))}`,
        mimeType: "text/x-typescript",
        load: () => readFileSync(file, "utf8"),
      });
    }
  }
  if (declarations) {
    entries.push({
      uri: "coral://sdk/coral-sdk.d.ts",
      name: "sdk/coral-sdk.d.ts",
      description: "The type declarations of @coral/sdk, as scripts import it",
      mimeType: "text/x-typescript",
      load: () => declarations,
    });
  }
  const byUri = new Map(entries.map((e) => [e.uri, e]));
  return {
    resources: entries.map(({ load: _load, ...r }) => r),
    read(uri) {
      const e = byUri.get(uri);
      return e && { uri, mimeType: e.mimeType, text: e.load() };
    },
  };
}

/** The SQL tables, one line: "services(name, namespace, …) — one row per service; spans(…)". */
export function sqlTables(): string {
  return userTableRows()
    .map((t) => `${t.table}(${t.columns.join(", ")}) — one row per ${t.rowPer}`)
    .join("; ");
}
