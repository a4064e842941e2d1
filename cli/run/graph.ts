import { realpathSync } from "node:fs";
import { basename, dirname, extname, isAbsolute, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** The parts of `deno info --json` output that the check reads. */
export interface DenoInfo {
  roots: string[];
  modules: DenoInfoModule[];
  redirects?: Record<string, string>;
}

interface DenoInfoModule {
  specifier: string;
  kind?: string;
  local?: string;
  error?: string;
  dependencies?: {
    specifier: string;
    /** The import attribute `type` ("json", "text", "bytes"); absent for code. */
    assertionType?: string;
    code?: { specifier?: string };
    type?: { specifier?: string };
  }[];
  typesDependency?: { specifier: string; dependency?: { specifier?: string } };
}

export interface GraphPolicy {
  /** Realpath of the directory local modules must stay inside. */
  scriptDir: string;
  /**
   * Realpath of the SDK bundle's directory. Everything in it may load: the bundle itself and the
   * declaration files its types reference, which a type check reads.
   */
  sdkDir: string;
  /** Realpath of the --allow-read directory, if one was granted: text and bytes imports may read it. */
  readRoot?: string;
}

/**
 * File names a local module may have. Anything else (`.env`, `id_rsa`, `config`) is data, and data
 * is read only through --allow-read.
 */
const MODULE_EXTENSIONS = new Set([".ts", ".mts", ".tsx", ".js", ".mjs", ".jsx", ".json"]);

export type GraphVerdict =
  | { ok: true; localFiles: string[] }
  | { ok: false; message: string; localFiles: string[] };

/**
 * Decide whether a module graph may run.
 *
 * Deno's permission flags do not cover module loading: a statically analysable import (including
 * `with { type: "text" }`) reads any local file without --allow-read, and a symlink makes an
 * in-directory path point anywhere. So every edge of the graph is judged here before Deno runs:
 * local code and JSON modules must be module files (MODULE_EXTENSIONS, no dot-named part) inside
 * the script's directory, and text or bytes imports, being reads, must fall inside --allow-read.
 * Imports that are only computed at run time are not in the graph; Deno subjects every one of
 * them, even of a file beside the script, to --allow-read (measured, Deno 2.9.6).
 *
 * `localFiles` lists the local modules (realpaths, SDK excluded) so that watch mode can watch them.
 */
export function judgeGraph(info: DenoInfo, policy: GraphPolicy): GraphVerdict {
  const localFiles = new Set<string>();
  let refusal: string | undefined;

  const judged = new Set<string>();
  const judge = (target: string, written: string, importer: string | undefined, as?: string) => {
    judged.add(target);
    const rule = ruleFor(target, policy, localFiles, importer === undefined ? "root" : as);
    if (rule && refusal === undefined) {
      const from = importer ? ` from ${displayName(importer, policy.scriptDir)}` : "";
      refusal = `refused import "${written}"${from}: ${rule}`;
    }
  };

  for (const root of info.roots) judge(root, root, undefined);
  for (const m of info.modules) {
    for (const dep of m.dependencies ?? []) {
      if (dep.code?.specifier) judge(dep.code.specifier, dep.specifier, m.specifier, dep.assertionType);
      if (dep.type?.specifier) judge(dep.type.specifier, dep.specifier, m.specifier);
    }
    const types = m.typesDependency?.dependency?.specifier;
    if (types) judge(types, m.typesDependency!.specifier, m.specifier);
  }
  // Modules reached only through a redirect have no edge naming them; judge them by themselves,
  // as code: no edge says how they are imported, and code is the strictest reading.
  const unnamed = [...info.modules.map((m) => m.specifier), ...Object.values(info.redirects ?? {})];
  for (const target of unnamed.filter((t) => !judged.has(t))) judge(target, target, "");

  const files = [...localFiles];
  return refusal === undefined ? { ok: true, localFiles: files } : { ok: false, message: refusal, localFiles: files };
}

/**
 * Returns why `specifier` is refused, or undefined when it may load. `as` is the import's type
 * attribute, or "root" for the script itself, which the user named and so may have any name.
 */
function ruleFor(specifier: string, policy: GraphPolicy, localFiles: Set<string>, as: string | undefined): string | undefined {
  let url: URL;
  try {
    url = new URL(specifier);
  } catch {
    return "not a resolvable module specifier";
  }
  switch (url.protocol) {
    case "file:": {
      const lexical = fileURLToPath(url);
      // A missing file cannot leak anything; Deno reports it when it runs. Judge its lexical path.
      const real = realpathOrUndefined(lexical) ?? lexical;
      const resolvesTo = real === lexical ? "" : ` (it resolves to ${real})`;
      // Text and bytes imports hand a file's contents to the script as data: that is a read, which
      // only --allow-read grants, whatever the file is called or wherever it sits (the SDK's
      // directory included: it also holds the cache template).
      if (as === "text" || as === "bytes") {
        if (policy.readRoot !== undefined && isInside(real, policy.readRoot)) return undefined;
        return `a "${as}" import reads a file as data; grant its directory with coral run --allow-read DIR${resolvesTo}`;
      }
      if (isInside(real, policy.sdkDir)) return undefined;
      // Only the realpath counts: it is what Deno will read, whatever the path says.
      if (!isInside(real, policy.scriptDir)) return `local imports must stay inside ${policy.scriptDir}${resolvesTo}`;
      if (as !== "root") {
        const rel = relative(policy.scriptDir, real);
        // .env, .git/config, .ssh/…: dot-names hold configuration and secrets, never a script's modules.
        if (rel.split(sep).some((part) => part.startsWith("."))) {
          return `hidden files and directories are not modules${resolvesTo}`;
        }
        if (!MODULE_EXTENSIONS.has(extname(real))) {
          return `only ${[...MODULE_EXTENSIONS].join(", ")} files are modules${resolvesTo}`;
        }
        if (as === "json" && extname(real) !== ".json") return `a "json" import must name a .json file${resolvesTo}`;
      }
      localFiles.add(real);
      return undefined;
    }
    case "node:":
      // Node built-ins are part of Deno; what they do is checked by the same permissions as Deno.*.
      return undefined;
    case "data:":
      // Inline code reads nothing; whatever it imports is itself an edge of this graph.
      return undefined;
    case "http:":
    case "https:":
      return "remote imports are not allowed (scripts may only import @coral/sdk and local files)";
    case "jsr:":
    case "npm:":
      return `${url.protocol} packages are not allowed (scripts may only import @coral/sdk and local files)`;
    default:
      return `${url.protocol} imports are not allowed`;
  }
}

function realpathOrUndefined(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

export function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === "" || (!rel.startsWith(".." + sep) && rel !== ".." && !isAbsolute(rel));
}

function displayName(specifier: string, scriptDir: string): string {
  if (!specifier.startsWith("file:")) return specifier;
  const path = fileURLToPath(specifier);
  const real = realpathOrUndefined(path) ?? path;
  return isInside(real, scriptDir) ? relative(scriptDir, real) || basename(real) : path;
}

/** The directory judged as the SDK's: that of the bundle, symlinks resolved. */
export function sdkDirOf(sdkModule: string): string {
  const p = resolve(sdkModule);
  return dirname(realpathOrUndefined(p) ?? p);
}
