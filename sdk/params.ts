// Script parameters (`coral run script.ts --param threshold=500`): a plain object of
// strings, with typed readers that fail with one clear line.
import { readEnv } from "./env.js";
import { CoralError } from "./errors.js";
import { UnitParseError, parseBoolean, parseDurationMs, parseDurationNs, parseNumber } from "./units.js";

/** Typed readers; each takes the parameter name and an optional default. */
export interface ParamReaders {
  /** The text of a parameter; without a default, a missing parameter is an error. */
  string(name: string, fallback?: string): string;
  /** A number (`--param limit=20`). */
  number(name: string, fallback?: number): number;
  /** A duration in milliseconds (`--param window=5m` → 300000). */
  durationMs(name: string, fallback?: string): number;
  /** A duration in nanoseconds (`--param threshold=500ms` → 500000000). */
  durationNs(name: string, fallback?: string): number;
  /** A boolean (`true/false/yes/no/1/0`). */
  boolean(name: string, fallback?: boolean): boolean;
  /** Whether the parameter was given. */
  has(name: string): boolean;
}

/** The parameters: `params.threshold === "500"`, plus the typed readers. */
export type Params = Readonly<Record<string, string>> & ParamReaders;

function read(values: Record<string, string>, name: string, hasFallback: boolean): string | undefined {
  if (Object.hasOwn(values, name)) return values[name];
  if (!hasFallback) {
    throw new CoralError("invalid_argument", `missing required parameter "${name}" — pass it with: coral run <script> --param ${name}=VALUE`);
  }
  return undefined;
}

function typed<T>(values: Record<string, string>, name: string, fallback: T | string | undefined, parse: (s: string) => T): T {
  const text = read(values, name, fallback !== undefined);
  try {
    if (text !== undefined) return parse(text);
    return typeof fallback === "string" ? parse(fallback) : (fallback as T);
  } catch (e) {
    if (e instanceof UnitParseError) throw new CoralError("invalid_argument", `parameter "${name}": ${e.message}`);
    throw e;
  }
}

/** Builds the params object from a name → text map. */
export function createParams(values: Record<string, string>): Params {
  const readers: ParamReaders = {
    string: (name, fallback) => read(values, name, fallback !== undefined) ?? fallback!,
    number: (name, fallback) => typed(values, name, fallback, (s) => parseNumber(s)),
    durationMs: (name, fallback) => typed(values, name, fallback, parseDurationMs),
    durationNs: (name, fallback) => typed(values, name, fallback, parseDurationNs),
    boolean: (name, fallback) => typed(values, name, fallback, parseBoolean),
    has: (name) => Object.hasOwn(values, name),
  };
  // Readers live on the prototype: own enumerable keys are exactly the parameters, so
  // `Object.keys(params)` and `JSON.stringify(params)` show only what the user passed.
  return Object.freeze(Object.assign(Object.create(readers), values)) as Params;
}

function fromEnv(): Record<string, string> {
  const raw = readEnv("CORAL_PARAMS");
  if (!raw) return {};
  const parsed = JSON.parse(raw) as unknown;
  if (typeof parsed !== "object" || parsed === null) return {};
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, String(v)]));
}

/** The parameters given to this run of the script. */
export const params: Params = createParams(fromEnv());
