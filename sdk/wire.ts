// The values that cross the pipe between a script's SDK and `coral run` (docs/scripting.md,
// "The wire"). Results are plain values (plain.ts); JSON cannot carry some of them, so those travel
// as a one-key object {"$": [tag, value]} that the SDK turns back:
//   ["date", ms | null]                  a Date (null: an invalid Date)
//   ["num", "NaN" | "Infinity" | "-Infinity" | "-0"]
//   ["obj", {...}]                        an object that itself has a "$" key, so it is never
//                                         mistaken for a tag
// Kept free of imports: both sides use it, and the SDK bundle must stay small.

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function tagNumber(n: number): Json {
  if (Number.isFinite(n)) return Object.is(n, -0) ? { $: ["num", "-0"] } : n;
  return { $: ["num", String(n)] };
}

/** A plain value in its JSON form; throws on what a plain value never holds (undefined, bigint, …). */
export function toWire(v: unknown): Json {
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "number":
      return tagNumber(v);
    case "object": {
      if (v === null) return null;
      if (Array.isArray(v)) {
        const out = new Array<Json>(v.length);
        for (let i = 0; i < v.length; i++) out[i] = toWire(v[i]);
        return out;
      }
      if (v instanceof Date) {
        const ms = v.getTime();
        return { $: ["date", Number.isNaN(ms) ? null : ms] };
      }
      const out: { [key: string]: Json } = {};
      for (const k of Object.keys(v)) out[k] = toWire((v as Record<string, unknown>)[k]);
      return Object.hasOwn(out, "$") ? { $: ["obj", out] } : out;
    }
  }
  throw new TypeError(`cannot send a ${typeof v} to a script`);
}

function untag(tag: unknown): unknown {
  if (!Array.isArray(tag) || tag.length !== 2) throw new TypeError("malformed tagged value");
  const [kind, value] = tag as [unknown, unknown];
  switch (kind) {
    case "date":
      return new Date(value === null ? NaN : (value as number));
    case "num":
      return value === "-0" ? -0 : Number(value);
    case "obj":
      return reviveObject(value as Record<string, unknown>);
  }
  throw new TypeError(`unknown tag ${String(kind)}`);
}

function reviveObject(o: Record<string, unknown>): Record<string, unknown> {
  for (const k of Object.keys(o)) {
    const x = o[k];
    if (typeof x === "object" && x !== null) o[k] = fromWire(x);
  }
  return o;
}

/** The plain value a JSON form stands for; revives in place (the parsed message is ours). */
export function fromWire(v: unknown): unknown {
  if (typeof v !== "object" || v === null) return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (typeof x === "object" && x !== null) v[i] = fromWire(x);
    }
    return v;
  }
  const o = v as Record<string, unknown>;
  if (Object.hasOwn(o, "$")) return untag(o.$);
  return reviveObject(o);
}

/**
 * A request object in proto3 JSON: numbers JSON cannot carry are written as proto3 JSON spells
 * them ("NaN", "Infinity"), so the colony names the bad value instead of seeing null.
 */
export function requestToWire(request: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(request)) {
    const v = request[k];
    if (v === undefined) continue;
    out[k] = typeof v === "number" && !Number.isFinite(v) ? String(v) : v;
  }
  return out;
}
