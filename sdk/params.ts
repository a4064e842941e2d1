// Script parameters (`coral run script.ts --param threshold=500`): a plain object of
// strings, with typed readers that fail with one clear line.
import { readEnv } from "./env.js";
import { CoralError } from "./errors.js";
import { UnitParseError, parseBoolean, parseDurationMs, parseDurationNs, parseNumber } from "../surface/units.js";

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

/**
 * The parameters: `params.threshold === "500"`, plus the typed readers. A parameter named like a
 * reader (`--param has=1`) does not replace it: `params.has` stays the function, and the value is
 * read with a reader, `params.string("has")`; `Object.keys(params)` still lists it, JSON leaves it out.
 */
export type Params = Readonly<Record<string, string>> & ParamReaders;

const READER_NAMES: ReadonlySet<string> = new Set(["string", "number", "durationMs", "durationNs", "boolean", "has"]);

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
  // `Object.keys(params)` and `JSON.stringify(params)` show only what the user passed. A parameter
  // named like a reader is an own accessor that reads as the reader, so it cannot shadow it yet
  // still shows in the keys (JSON leaves it out, as it does every function). defineProperty, not
  // assignment, also keeps a parameter named `__proto__` an ordinary key.
  const target = Object.create(readers) as Record<string, unknown>;
  for (const [name, text] of Object.entries(values)) {
    const property: PropertyDescriptor = READER_NAMES.has(name)
      ? { get: () => readers[name as keyof ParamReaders], enumerable: true }
      : { value: text, enumerable: true };
    Object.defineProperty(target, name, property);
  }
  return Object.freeze(target) as Params;
}

function fromEnv(): Record<string, string> {
  const raw = readEnv("CORAL_PARAMS");
  if (!raw) return {};
  const parsed = JSON.parse(raw) as unknown;
  if (typeof parsed !== "object" || parsed === null) return {};
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, String(v)]));
}

/**
 * The parameters given to this run of the script (`coral run script.ts --param threshold=500ms`):
 * `params.threshold` is the text as given, and the readers below convert and check it, e.g.
 * `params.durationNs("threshold", "500ms")`.
 * @namespace
 */
export const params: Params = createParams(fromEnv());
