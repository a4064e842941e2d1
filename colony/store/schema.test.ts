import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { userTableRows } from "./schema.js";

// docs/scripting.md is written by hand around its table of tables; the table itself must say what
// schema.ts declares, or the docs drift (two new tables once went undocumented).
describe("the documented SQL tables", () => {
  it("docs/scripting.md lists every user table with its columns, as schema.ts declares them", () => {
    const docs = readFileSync(new URL("../../docs/scripting.md", import.meta.url), "utf8");
    const documented = [...docs.matchAll(/^\| `(\w+)` \| ([^|]+) \| `([^`|]+)` \|$/gm)].map((m) => ({
      table: m[1]!,
      rowPer: m[2]!.trim(),
      columns: m[3]!.split(",").map((c) => c.trim()),
    }));
    expect(documented).toEqual(userTableRows());
  });
});
