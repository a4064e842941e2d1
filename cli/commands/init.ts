import { Command, Option } from "clipanion";
import { existsSync } from "node:fs";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { defaultSdkModule } from "../run/paths.js";
import { CliError } from "../runtime/errors.js";
import { CoralCommand } from "../runtime/command.js";

/** Where the SDK copy lives inside a scripts directory; dot-named so it stays out of the way. */
const SDK_DIR = ".coral";
const SDK_JS = "coral-sdk.js";

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
    const written = await initScriptsDir(dir, { force: this.force });
    this.context.stdout.write(
      `${written.map((f) => `wrote ${f}`).join("\n")}\nnext: write a script that imports "@coral/sdk", then: coral run <script>.ts\n`,
    );
    return 0;
  }
}

/** Creates the deno.json and SDK copy; returns the files written. Exported for tests. */
export async function initScriptsDir(
  dir: string,
  o: { force?: boolean; sdkModule?: string } = {},
): Promise<string[]> {
  const sdkModule = resolve(o.sdkModule ?? defaultSdkModule());
  const sdkDts = sdkModule.replace(/\.m?js$/, ".d.ts");
  if (!existsSync(sdkModule)) throw new CliError(`the @coral/sdk bundle is missing at ${sdkModule} (run \`npm run build\`)`);
  const denoJson = join(dir, "deno.json");
  if (existsSync(denoJson) && !o.force) {
    throw new CliError(`${denoJson} already exists; pass --force to overwrite it`);
  }

  // The whole SDK directory: the .d.ts beside the bundle may reference further declaration files.
  const target = join(dir, SDK_DIR);
  await mkdir(target, { recursive: true });
  await cp(dirname(sdkModule), target, { recursive: true, force: true });
  const written: string[] = [target + "/"];
  const js = await readFile(sdkModule, "utf8");
  if (existsSync(sdkDts) && !/@ts-self-types|<reference\s+types=/.test(js.slice(0, 1024))) {
    // Deno's language server does not look beside a .js file for its .d.ts; this directive tells it.
    await writeFile(join(target, SDK_JS), `/* @ts-self-types="./${basename(sdkDts)}" */\n${js}`);
  } else if (basename(sdkModule) !== SDK_JS) {
    await writeFile(join(target, SDK_JS), js);
  }

  let config: Record<string, unknown> = {};
  if (existsSync(denoJson)) {
    // With --force, keep the user's other settings and replace only our mapping.
    try {
      config = JSON.parse(await readFile(denoJson, "utf8"));
    } catch {
      config = {};
    }
  }
  const imports = { ...((config.imports as Record<string, string> | undefined) ?? {}) };
  imports["@coral/sdk"] = `./${SDK_DIR}/${SDK_JS}`;
  config.imports = imports;
  await writeFile(denoJson, `${JSON.stringify(config, null, 2)}\n`);
  written.unshift(denoJson);
  return written;
}
