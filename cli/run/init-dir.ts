import { existsSync } from "node:fs";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { defaultSdkModule } from "./paths.js";

/** Where the SDK copy lives inside a scripts directory; dot-named so it stays out of the way. */
const SDK_DIR = ".coral";
const SDK_JS = "coral-sdk.js";

/** A reason not to write, meant for the user as is. */
export class InitRefused extends Error {}

/** Creates DIR/deno.json and DIR/.coral/ with the SDK; returns what it wrote. */
export async function initScriptsDir(
  dir: string,
  o: { force?: boolean; sdkModule?: string } = {},
): Promise<string[]> {
  const sdkModule = resolve(o.sdkModule ?? defaultSdkModule());
  const sdkDts = sdkModule.replace(/\.m?js$/, ".d.ts");
  if (!existsSync(sdkModule)) throw new InitRefused(`the @coral/sdk bundle is missing at ${sdkModule} (run \`npm run build\`)`);
  const denoJson = join(dir, "deno.json");
  if (existsSync(denoJson) && !o.force) {
    throw new InitRefused(`${denoJson} already exists; pass --force to overwrite it`);
  }

  // The whole SDK directory: the .d.ts beside the bundle may reference further declaration files.
  const target = join(dir, SDK_DIR);
  await makeDirs(target);
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

/**
 * `mkdir -p`, one level at a time. Node's recursive mkdir never returns when a level cannot be
 * created and does not exist either (`coral init /proc/x` spun forever): here that level's error
 * (ENOENT) ends it.
 */
async function makeDirs(path: string): Promise<void> {
  const missing: string[] = [];
  for (let p = resolve(path); !existsSync(p); p = dirname(p)) {
    missing.unshift(p);
    if (dirname(p) === p) break;
  }
  for (const p of missing) {
    await mkdir(p).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "EEXIST") throw e;
    });
  }
}
