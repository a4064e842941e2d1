import { realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, relative, resolve, sep } from "node:path";
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
}

export type GraphVerdict =
  | { ok: true; localFiles: string[] }
  | { ok: false; message: string; localFiles: string[] };

/**
 * Decide whether a module graph may run.
 *
 * Deno's permission flags do not cover module loading: a statically analysable import (including
 * `with { type: "text" }`) reads any local file without --allow-read, and a symlink makes an
 * in-directory path point anywhere. So every edge of the graph is judged here before Deno runs.
 * Imports that are only computed at run time are not in the graph; Deno subjects those to
 * --allow-read, which we do not grant by default.
 *
 * `localFiles` lists the local modules (realpaths, SDK excluded) so that watch mode can watch them.
 */
export function judgeGraph(info: DenoInfo, policy: GraphPolicy): GraphVerdict {
  const localFiles = new Set<string>();
  let refusal: string | undefined;

  const judge = (target: string, written: string, importer: string | undefined) => {
    const rule = ruleFor(target, policy, localFiles);
    if (rule && refusal === undefined) {
      const from = importer ? ` from ${displayName(importer, policy.scriptDir)}` : "";
      refusal = `refused import "${written}"${from}: ${rule}`;
    }
  };

  for (const root of info.roots) judge(root, root, undefined);
  for (const m of info.modules) {
    for (const dep of m.dependencies ?? []) {
      for (const target of [dep.code?.specifier, dep.type?.specifier]) {
        if (target) judge(target, dep.specifier, m.specifier);
      }
    }
    const types = m.typesDependency?.dependency?.specifier;
    if (types) judge(types, m.typesDependency!.specifier, m.specifier);
  }
  // Modules reached only through a redirect have no edge naming them; judge them by themselves.
  for (const m of info.modules) judge(m.specifier, m.specifier, undefined);
  for (const target of Object.values(info.redirects ?? {})) judge(target, target, undefined);

  const files = [...localFiles];
  return refusal === undefined ? { ok: true, localFiles: files } : { ok: false, message: refusal, localFiles: files };
}

/** Returns why `specifier` is refused, or undefined when it may load. */
function ruleFor(specifier: string, policy: GraphPolicy, localFiles: Set<string>): string | undefined {
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
      if (isInside(real, policy.sdkDir)) return undefined;
      // Only the realpath counts: it is what Deno will read, whatever the path says.
      if (!isInside(real, policy.scriptDir)) {
        return real === lexical
          ? `local imports must stay inside ${policy.scriptDir}`
          : `local imports must stay inside ${policy.scriptDir} (it resolves to ${real})`;
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
