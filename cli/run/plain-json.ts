// Connect JSON ↔ the SDK's plain values, driven by the API's shape (api-shape.ts) instead of the
// protobuf runtime. The colony answers unary calls in proto3 JSON (JSON names, default values left
// out, 64-bit integers and NaN/Infinity as strings, timestamps as RFC 3339 text); plainOf turns that
// into exactly what surface/plain.ts's toPlain makes of the decoded message. checkRequest refuses what
// the colony's JSON decoder would refuse, before anything is sent, naming the method.
import type { ApiShape, FieldShape } from "./api-shape.js";

type Plain = null | boolean | number | string | Date | Plain[] | { [key: string]: Plain };

const INT64 = new Set(["int64", "uint64", "fixed64", "sfixed64", "sint64"]);
const INT32 = new Set(["int32", "uint32", "fixed32", "sfixed32", "sint32"]);

function int64ToPlain(v: string | number): number | string {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : String(v);
}

/** RFC 3339 as proto3 JSON writes a Timestamp, read as protobuf-es's timestampDate would. */
const RFC3339 = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/;

function timestampOf(text: string): Date {
  const m = RFC3339.exec(text);
  if (!m) return new Date(NaN);
  const d = new Date(0);
  // setUTCFullYear, not Date.UTC: years below 100 would be read as 19xx.
  d.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  d.setUTCHours(Number(m[4]), Number(m[5]), Number(m[6]), 0);
  let seconds = d.getTime() / 1000;
  if (m[8] !== "Z") seconds -= (m[8]![0] === "-" ? -1 : 1) * (Number(m[8]!.slice(1, 3)) * 3600 + Number(m[8]!.slice(4, 6)) * 60);
  const nanos = m[7] ? Number(m[7].padEnd(9, "0")) : 0;
  return new Date(seconds * 1000 + Math.round(nanos / 1_000_000));
}

function scalarOf(type: string, v: unknown): Plain {
  if (INT64.has(type)) return int64ToPlain(v as string | number);
  switch (type) {
    case "double":
    case "float":
      return typeof v === "string" ? Number(v) : (v as number);
    case "bytes":
      return Array.from(Buffer.from(v as string, "base64"));
  }
  return v as Plain;
}

function zeroOf(type: string, shape: ApiShape): Plain {
  if (INT64.has(type) || INT32.has(type) || type === "double" || type === "float") return 0;
  switch (type) {
    case "bool":
      return false;
    case "string":
      return "";
    case "bytes":
      return [];
  }
  if (type.startsWith("enum:")) return shape.enums[type.slice(5)]!["0"] ?? 0;
  return null; // messages: unset
}

function valueOf(type: string, v: unknown, shape: ApiShape): Plain {
  if (type.startsWith("message:")) return messageOf(type.slice(8), v as Record<string, unknown>, shape);
  if (type.startsWith("enum:")) return typeof v === "number" ? (shape.enums[type.slice(5)]![String(v)] ?? v) : (v as string);
  if (type === "timestamp") return timestampOf(v as string);
  if (type === "json") return v as Plain;
  return scalarOf(type, v);
}

function fieldOf(f: FieldShape, v: unknown, shape: ApiShape): Plain {
  if (f.card === "list") {
    if (!Array.isArray(v)) return [];
    return v.map((x) => valueOf(f.type, x, shape));
  }
  if (f.card === "map") {
    const out: Record<string, Plain> = {};
    if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) out[k] = valueOf(f.type, x, shape);
    return out;
  }
  // proto3 JSON leaves out default values; null stands for "unset" as well.
  // A google.protobuf.Value set to JSON null is null in the plain form too.
  if (v === undefined || v === null) return f.card === "optional" ? null : zeroOf(f.type, shape);
  return valueOf(f.type, v, shape);
}

function messageOf(typeName: string, json: Record<string, unknown>, shape: ApiShape): Plain {
  const out: Record<string, Plain> = {};
  for (const f of shape.messages[typeName]!) {
    const v = Object.hasOwn(json, f.json) ? json[f.json] : json[f.name];
    out[f.name] = fieldOf(f, v, shape);
  }
  return out;
}

/** The plain value of a message of `typeName` from its proto3 JSON. */
export function plainOf(typeName: string, json: unknown, shape: ApiShape): Record<string, Plain> {
  return messageOf(typeName, (json ?? {}) as Record<string, unknown>, shape) as Record<string, Plain>;
}

/** Why `v` is not a proto3 JSON value of `type`, or undefined when it is one. */
function badValue(type: string, v: unknown, shape: ApiShape, depth: number): string | undefined {
  if (v === null) return undefined; // unset
  if (type.startsWith("message:")) return badMessage(type.slice(8), v, shape, depth + 1);
  if (type.startsWith("enum:")) {
    const names = Object.values(shape.enums[type.slice(5)]!);
    if (typeof v === "string" ? names.includes(v) : Number.isInteger(v)) return undefined;
    return `expected one of ${names.join(", ")}, got ${JSON.stringify(v)}`;
  }
  const got = () => `got ${typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) ? "an array" : typeof v}`;
  switch (type) {
    case "timestamp":
      return typeof v === "string" && RFC3339.test(v) ? undefined : `expected an RFC 3339 timestamp, ${got()}`;
    case "json":
      return undefined;
    case "bool":
      return typeof v === "boolean" ? undefined : `expected a boolean, ${got()}`;
    case "string":
      return typeof v === "string" ? undefined : `expected a string, ${got()}`;
    case "bytes":
      return typeof v === "string" && /^[A-Za-z0-9+/_-]*={0,2}$/.test(v) ? undefined : `expected base64 text, ${got()}`;
    case "double":
    case "float":
      if (typeof v === "number" || (typeof v === "string" && (["NaN", "Infinity", "-Infinity"].includes(v) || (v.trim() !== "" && Number.isFinite(Number(v)))))) return undefined;
      return `expected a number, ${got()}`;
  }
  // Integers: a JSON number or decimal text, within the type's range.
  const n = typeof v === "number" ? v : typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n)) return `expected an integer, ${got()}`;
  const unsigned = type.startsWith("u") || type === "fixed32" || type === "fixed64";
  if (unsigned && n < 0) return `expected an unsigned integer, got ${String(v)}`;
  if (INT32.has(type) && (unsigned ? n > 0xffffffff : n < -0x80000000 || n > 0x7fffffff)) return `${String(v)} is out of range for ${type}`;
  if (INT64.has(type) && typeof v === "string") {
    const b = BigInt(v);
    if (unsigned ? b > 0xffffffffffffffffn : b < -0x8000000000000000n || b > 0x7fffffffffffffffn) return `${v} is out of range for ${type}`;
  }
  return undefined;
}

function badMessage(typeName: string, v: unknown, shape: ApiShape, depth: number): string | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return `expected an object for ${typeName}`;
  if (depth > 32) return "nested too deeply";
  const fields = shape.messages[typeName]!;
  for (const [key, value] of Object.entries(v)) {
    const f = fields.find((x) => x.json === key || x.name === key);
    if (!f) return `${typeName} has no field "${key}"`;
    let why: string | undefined;
    if (f.card === "list" && value !== null) {
      if (!Array.isArray(value)) why = "expected an array";
      else for (let i = 0; i < value.length && !why; i++) why = badValue(f.type, value[i], shape, depth);
    } else if (f.card === "map" && value !== null) {
      if (typeof value !== "object" || Array.isArray(value)) why = "expected an object";
      else for (const x of Object.values(value as object)) if ((why = badValue(f.type, x, shape, depth))) break;
    } else {
      why = badValue(f.type, value, shape, depth);
    }
    if (why) return `field "${key}": ${why}`;
  }
  return undefined;
}

/** Why `request` cannot be a request of `typeName`, or undefined when the colony may be asked. */
export function checkRequest(typeName: string, request: unknown, shape: ApiShape): string | undefined {
  return badMessage(typeName, request, shape, 0);
}
