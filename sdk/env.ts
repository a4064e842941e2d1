// The environment `coral run` hands a script (CORAL_PARAMS, CORAL_MODE),
// read the same way under Deno (scripts) and Node (tests). Kept free of imports: the SDK's type
// declarations must load in Deno without npm.

/** A variable's value; unset, or not readable for lack of permission, is undefined. */
export function readEnv(name: string): string | undefined {
  const g = globalThis as { Deno?: { env: { get(n: string): string | undefined } }; process?: { env: Record<string, string | undefined> } };
  try {
    return g.Deno ? g.Deno.env.get(name) : g.process?.env[name];
  } catch {
    return undefined;
  }
}
