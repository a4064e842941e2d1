import { describe, expect, it } from "vitest";
import { importsOnlySdk } from "./graph-fast.js";

const only = (source: string, path = "/s/script.ts") => importsOnlySdk(path, new TextEncoder().encode(source));

// Whatever this lets through skips `deno info`; whatever it refuses is judged by deno info and
// judgeGraph as before. So every case that could load anything but the SDK must be refused here.
describe("importsOnlySdk", () => {
  it("takes scripts importing only @coral/sdk and node: built-ins, written plainly", () => {
    expect(only(`import * as coral from "@coral/sdk";\nconsole.log(await coral.services.list());\n`)).toBe(true);
    expect(only(`import { db, metrics } from '@coral/sdk';\nimport process from "node:process";\nimport { join } from "node:path";\n`)).toBe(true);
    expect(only(`import type { Column } from "@coral/sdk";\nimport {\n  db,\n  params as p,\n} from "@coral/sdk";\n`)).toBe(true);
    expect(only(`console.log(1);\n`, "/s/plain.js")).toBe(true);
  });

  const refused: [string, string][] = [
    ["a local module", `import "./lib.ts";`],
    ["a local module with a binding", `import { x } from "./lib.ts";`],
    ["a text import of a secret", `import env from "./.env" with { type: "text" };`],
    ["the SDK as text (with)", `import * as c from "@coral/sdk" with { type: "text" };`],
    ["the SDK as text, attributes on the next line without a semicolon", `import * as c from "@coral/sdk"\nwith { type: "text" }`],
    ["the SDK as bytes (assert)", `import c from "@coral/sdk" assert { type: "bytes" };`],
    ["a subpath of the SDK", `import x from "@coral/sdk/../../etc/passwd";`],
    ["a remote module", `import x from "https://example.com/x.ts";`],
    ["an npm package", `import x from "npm:left-pad";`],
    ["a bare node module name", `import fs from "fs";`],
    ["a dynamic import", `const m = await import("./lib.ts");`],
    ["a dynamic import of the SDK", `const m = await import("@coral/sdk");`],
    ["import.meta", `new Worker(new URL("./w.ts", import.meta.url), { type: "module" });`],
    ["a re-export", `export * from "./lib.ts";`],
    ["an export of its own", `export const x = 1;`],
    ["a comment inside the statement", `import /* */ * as c from "@coral/sdk";`],
    ["an identifier containing the word", `import { important } from "@coral/sdk";`],
    ["TS import-require", `import x = require("./lib.ts");`],
    ["a triple-slash reference", `/// <reference path="../secret.d.ts" />\nimport * as c from "@coral/sdk";`],
    ["@deno-types", `// @deno-types="./.env"\nimport * as c from "@coral/sdk";`],
    ["@ts-types", `// @ts-types="./.env"\nimport * as c from "@coral/sdk";`],
    ["a JSX import source pragma", `/** @jsxImportSource ./lib */\nconst x = <div />;`],
    ["a NUL byte", `import * as c from "@coral/sdk";\0`],
  ];
  for (const [what, source] of refused) {
    it(`leaves ${what} to deno info`, () => {
      expect(only(source)).toBe(false);
    });
  }

  it("leaves files Deno would decode otherwise, and other file kinds, to deno info", () => {
    const utf16 = new Uint8Array([0xff, 0xfe, ...Buffer.from(`import "./x.ts";`, "utf16le")]);
    expect(importsOnlySdk("/s/script.ts", utf16)).toBe(false);
    expect(importsOnlySdk("/s/script.ts", new Uint8Array([0x69, 0xc3, 0x28]))).toBe(false); // not UTF-8
    expect(only(`console.log(1);`, "/s/data.json")).toBe(false);
    expect(only(`console.log(1);`, "/s/script")).toBe(false);
  });
});
