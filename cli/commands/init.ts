import { Command, Option } from "clipanion";
import { resolve } from "node:path";
import { initScriptsDir, InitRefused } from "../run/init-dir.js";
import { CliError } from "../runtime/cli-error.js";
import { CoralCommand } from "../runtime/command.js";

export class InitCommand extends CoralCommand {
  static paths = [["init"]];

  static usage = Command.Usage({
    category: "Scripting",
    description: "set up a directory for writing coral run scripts",
    details: `
      Writes DIR/deno.json (default: the current directory) with an import map that points \`@coral/sdk\` at a copy of the SDK in DIR/.coral/, so that Deno's language server (VS Code, Neovim, …) autocompletes and type-checks scripts.

      \`coral run\` does not read this deno.json: it always maps \`@coral/sdk\` to the SDK that ships with the coral you run. Re-run \`coral init --force\` after upgrading coral to refresh the copy.

      An existing deno.json is left alone unless \`--force\` is given.
    `,
    examples: [
      ["Prepare the current directory", "coral init"],
      ["Prepare a new scripts directory", "coral init ./scripts"],
      ["Refresh the SDK copy after an upgrade", "coral init --force"],
    ],
  });

  force = Option.Boolean("--force", false, { description: "Overwrite an existing deno.json" });
  dir = Option.String({ name: "dir", required: false });

  async run(): Promise<number> {
    const dir = resolve(this.dir ?? ".");
    let written: string[];
    try {
      written = await initScriptsDir(dir, { force: this.force });
    } catch (e) {
      if (e instanceof InitRefused) throw new CliError(e.message);
      const err = e as NodeJS.ErrnoException;
      const why: Record<string, string> = {
        ENOTDIR: "a path in it is a file, not a directory",
        EISDIR: "a file init writes is a directory there",
        EACCES: "permission denied",
        EPERM: "permission denied",
        EROFS: "read-only file system",
        ENOENT: "no such file or directory",
      };
      if (err.code && why[err.code]) throw new CliError(`cannot set up ${dir}: ${why[err.code]} (${err.path ?? dir})`);
      throw e;
    }
    this.context.stdout.write(
      `${written.map((f) => `wrote ${f}`).join("\n")}\nnext: write a script that imports "@coral/sdk", then: coral run <script>.ts\n`,
    );
    return 0;
  }
}
