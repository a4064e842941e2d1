// The committed gen/ and docs/reference/ must be exactly what `npm run gen` produces from
// the protos and the plugin: generated files are never edited by hand, never stale.
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { listFiles } from "../test/helpers/files.js";
import { afterAll, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "coral-drift-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

it("gen/ and docs/reference/ are up to date with the protos and the plugin", { timeout: 180_000 }, () => {
  // Same templates as `npm run gen`, in a copy of the repo's generator inputs.
  for (const p of ["proto", "codegen", "sdk", "surface", "buf.yaml", "buf.gen.yaml", "buf.gen.options.yaml", "gen/coral/options"]) {
    cpSync(join(root, p), join(work, p), { recursive: true });
  }
  // The plugin imports the options it reads from gen/, its vocabulary from surface/ and its units
  // from sdk/, as in the repo.
  const buf = join(root, "node_modules/.bin/buf");
  const env = { ...process.env, NODE_OPTIONS: `--import=${import.meta.resolve("tsx")}` };
  writeFileSync(join(work, "package.json"), '{"type":"module"}');
  // Linked, not copied: a copy of node_modules took most of this test's time on a loaded machine.
  symlinkSync(join(root, "node_modules"), join(work, "node_modules"), "dir");
  execFileSync(buf, ["generate", "--template", "buf.gen.options.yaml"], { cwd: work, env, stdio: "pipe" });
  execFileSync(buf, ["generate"], { cwd: work, env, stdio: "pipe" });
  for (const dir of ["gen", "docs/reference"]) {
    const fresh = listFiles(join(work, dir));
    expect(listFiles(join(root, dir)), `${dir}: run \`npm run gen\` and commit the result`).toEqual(fresh);
    for (const f of fresh) {
      expect(readFileSync(join(root, dir, f), "utf8"), `${dir}/${f} is stale: run \`npm run gen\` and commit the result`).toBe(
        readFileSync(join(work, dir, f), "utf8"),
      );
    }
  }
});
