// What `coral run` needs to know of the query API to carry a script's unary calls as Connect JSON:
// for each method its path and kind, for each message the fields with their proto and JSON names
// and types. Computed from the generated descriptors (shapeOf); the build computes it once and
// inlines it into the CLI bundle (scripts/build.mjs), so a run loads no protobuf runtime and no
// descriptors: booting those cost ~30 ms of CPU per run (more on a busy machine), before the
// first call could be answered.
import type { DescEnum, DescField, DescMessage, DescService } from "@bufbuild/protobuf";

/**
 * A field's value type: a scalar's name ("int64", "double", "string", …), "enum:<type name>",
 * "message:<type name>", or for the well-known types the SDK turns into plain values,
 * "timestamp" (a Date) and "json" (google.protobuf.Value/Struct/ListValue: their JSON as it is).
 */
export type ValueType = string;

export interface FieldShape {
  /** The proto name: what a plain value's key is (`duration_ns`). */
  name: string;
  /** The proto3 JSON name (`durationNs`), what the colony's JSON carries. */
  json: string;
  type: ValueType;
  /** Repeated, map (keys as JSON object keys), or a scalar with explicit presence (unset: null). */
  card?: "list" | "map" | "optional";
}

export interface MethodShape {
  /** "unary" or "server_streaming": the API has no other kinds. */
  kind: string;
  input: string;
  output: string;
}

export interface ApiShape {
  /** The service's full name, the first part of every method's path. */
  service: string;
  methods: Record<string, MethodShape>;
  messages: Record<string, FieldShape[]>;
  /** Enum value names by number; the first is the zero value's. */
  enums: Record<string, Record<string, string>>;
}

const SCALARS: Record<number, string> = {
  1: "double",
  2: "float",
  3: "int64",
  4: "uint64",
  5: "int32",
  6: "fixed64",
  7: "fixed32",
  8: "bool",
  9: "string",
  12: "bytes",
  13: "uint32",
  15: "sfixed32",
  16: "sfixed64",
  17: "sint32",
  18: "sint64",
};

/** Well-known messages the SDK's plain values represent by their JSON (surface/plain.ts). */
const JSON_TYPES = new Set(["google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue"]);

/** The shape of `service`, from its descriptors. Throws on a construct the JSON codec does not carry. */
export function shapeOf(service: DescService): ApiShape {
  const shape: ApiShape = { service: service.typeName, methods: {}, messages: {}, enums: {} };
  const addEnum = (e: DescEnum): string => {
    shape.enums[e.typeName] ??= Object.fromEntries(e.values.map((v) => [String(v.number), v.name]));
    return `enum:${e.typeName}`;
  };
  const addMessage = (m: DescMessage): string => {
    if (m.typeName === "google.protobuf.Timestamp") return "timestamp";
    if (JSON_TYPES.has(m.typeName)) return "json";
    if (m.typeName.startsWith("google.protobuf.")) throw new Error(`${m.typeName} has no plain form in coral run's JSON codec (cli/run/plain-json.ts)`);
    if (!shape.messages[m.typeName]) {
      shape.messages[m.typeName] = []; // placed first: recursive messages end here
      shape.messages[m.typeName] = m.fields.map((f) => fieldShape(f, addEnum, addMessage));
    }
    return `message:${m.typeName}`;
  };
  for (const method of service.methods) {
    if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") {
      throw new Error(`${method.name}: ${method.methodKind} methods are not carried by coral run`);
    }
    addMessage(method.input);
    addMessage(method.output);
    shape.methods[method.name] = { kind: method.methodKind, input: method.input.typeName, output: method.output.typeName };
  }
  return shape;
}

function fieldShape(f: DescField, addEnum: (e: DescEnum) => string, addMessage: (m: DescMessage) => string): FieldShape {
  const base = { name: f.name, json: f.jsonName };
  const valueType = (kind: string, scalar: number | undefined, e: DescEnum | undefined, m: DescMessage | undefined): string => {
    if (kind === "enum") return addEnum(e!);
    if (kind === "message") return addMessage(m!);
    return SCALARS[scalar!]!;
  };
  switch (f.fieldKind) {
    case "scalar":
      // A oneof member has presence too; protobuf-es reports EXPLICIT (1) for it and for `optional`.
      return { ...base, type: SCALARS[f.scalar]!, ...(f.presence === 1 || f.oneof ? { card: "optional" as const } : {}) };
    case "enum":
      return { ...base, type: addEnum(f.enum) };
    case "message":
      return { ...base, type: addMessage(f.message) };
    case "list":
      return { ...base, type: valueType(f.listKind, f.scalar, f.enum, f.message), card: "list" };
    case "map":
      return { ...base, type: valueType(f.mapKind, f.scalar, f.enum, f.message), card: "map" };
  }
}
