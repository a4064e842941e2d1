import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The root of the coral package. The same code runs from its sources (cli/run/ under tsx) and
 * from an esbuild bundle in dist/, so a fixed number of "../" would be wrong in one of them.
 * We stop at the package.json named "coral" rather than the first one, because a bare
 * `{"type": "module"}` package.json inside dist/ is a common build artefact.
 */
export function packageRoot(from: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(from));
  let firstFound: string | undefined;
  for (;;) {
    const candidate = join(dir, "package.json");
    if (existsSync(candidate)) {
      firstFound ??= dir;
      try {
        if (JSON.parse(readFileSync(candidate, "utf8")).name === "coral") return dir;
      } catch {
        // An unreadable package.json cannot be ours; keep walking.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  if (firstFound) return firstFound;
  throw new Error(`cannot find coral's package.json above ${fileURLToPath(from)}`);
}

/** Where `npm run build` puts the self-contained SDK bundle. */
export function defaultSdkModule(): string {
  return join(packageRoot(), "dist", "sdk", "coral-sdk.js");
}

/**
 * The Deno executable. `npx deno` / the package's bin.cjs would add a Node start-up (~500 ms) and a
 * middle process that does not forward our SIGKILL, orphaning the real Deno on timeout — so we
 * locate the binary the same way the `deno` package's installer does and exec it directly.
 */
export function denoPath(): string {
  const fromEnv = process.env.CORAL_DENO;
  if (fromEnv) return fromEnv;
  const exe = process.platform === "win32" ? "deno.exe" : "deno";
  const require = createRequire(import.meta.url);
  const candidates: string[] = [];
  const target = denoTarget();
  if (target) {
    try {
      candidates.push(join(dirname(require.resolve(`@deno/${target}/package.json`)), exe));
    } catch {
      // Optional dependency not installed for this platform; try the copy below.
    }
  }
  try {
    // The `deno` package's postinstall hard-links the platform binary next to its own package.json.
    candidates.push(join(dirname(require.resolve("deno/package.json")), exe));
  } catch {
    // Not installed at all; reported below.
  }
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `cannot find the Deno binary (looked for @deno/${target ?? "?"} and deno in node_modules); ` +
        "reinstall coral or set CORAL_DENO to a deno executable",
    );
  }
  return found;
}

function denoTarget(): string | undefined {
  const arch = process.arch;
  if (arch !== "x64" && arch !== "arm64") return undefined;
  switch (process.platform) {
    case "linux":
      // Deno publishes no musl build, so glibc is the only Linux flavour to look for.
      return `linux-${arch}-glibc`;
    case "darwin":
    case "win32":
      return `${process.platform}-${arch}`;
    default:
      return undefined;
  }
}
